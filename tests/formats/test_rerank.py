"""Reading rerank answers for billing, and the request shape every rerank vendor agrees on."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay.formats.ir import InvalidRequest
from omnirelay.formats.rerank import check_rerank_request, rerank_usage_to_ir
from omnirelay.formats.usage import Usage


@pytest.mark.parametrize(
    ("body", "usage"),
    [
        ({"usage": {"total_tokens": 815, "prompt_tokens": 815}}, Usage(input_tokens=815)),  # Jina
        ({"usage": {"total_tokens": 42}}, Usage(input_tokens=42)),  # Voyage
        ({"meta": {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": 77}}}, Usage(input_tokens=77)),
        ({"meta": {"tokens": {"input_tokens": 12, "output_tokens": 0}}}, Usage(input_tokens=12)),  # SiliconFlow
        ({"meta": {"billed_units": {"search_units": 1}}}, None),  # Cohere: no tokens, the gateway counts
        ({"results": []}, None),
    ],
)
def test_usage_of_each_vendor(body: dict[str, Any], usage: Usage | None) -> None:
    assert rerank_usage_to_ir(body) == usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": 1, "documents": ["a"]}, "query"),
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "q", "documents": ["a", {"title": "b"}]}, "documents[1]"),
        ({"query": "q", "documents": ["a"], "top_n": True}, "top_n"),
    ],
)
def test_malformed_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_rerank_request(body)
    assert caught.value.param == param


def test_string_and_text_object_documents_are_accepted() -> None:
    check_rerank_request({"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1})
