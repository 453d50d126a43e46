"""``/v1/rerank`` in the Cohere/Jina shape, as OpenAI-compatible rerank vendors (Jina, Voyage, SiliconFlow,
vLLM, new-api style aggregators) take it::

    {"model": "...", "query": "...", "documents": ["...", {"text": "..."}], "top_n": 3, "return_documents": true}
    → {"results": [{"index": 2, "relevance_score": 0.93, "document": {"text": "..."}}], "usage": {...}}

Calls pass through unchanged; this module reads what billing needs from the answer and checks the request.
Vendors report usage three ways: Jina and Voyage ``usage.total_tokens``; Cohere ``meta.billed_units``
(``search_units``, and ``input_tokens`` on newer models) with ``meta.tokens``; SiliconFlow ``meta.tokens``.
"""

from __future__ import annotations

from omnirelay.formats._json import int_or_zero, obj_or_none
from omnirelay.formats.ir import InvalidRequest, JSONObject
from omnirelay.formats.usage import Usage


def rerank_usage_to_ir(body: JSONObject) -> Usage | None:
    """Tokens the vendor reports for a rerank answer; None when it reports none (Cohere's search units alone):
    the gateway then counts the query and documents itself."""
    usage = obj_or_none(body.get("usage"))
    if usage is not None:
        tokens = int_or_zero(usage, "total_tokens") or int_or_zero(usage, "prompt_tokens")
        if tokens:
            return Usage(input_tokens=tokens)
    meta = obj_or_none(body.get("meta")) or {}
    for source in (obj_or_none(meta.get("tokens")), obj_or_none(meta.get("billed_units"))):
        tokens = int_or_zero(source, "input_tokens")
        if tokens:
            return Usage(input_tokens=tokens, output_tokens=int_or_zero(source, "output_tokens"))
    return None


def check_rerank_request(body: JSONObject) -> None:
    """The shape every rerank vendor agrees on; raises InvalidRequest naming the field."""
    if not isinstance(body.get("query"), str):
        raise InvalidRequest("'query' must be a string.", "query")
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise InvalidRequest("'documents' must be a non-empty array.", "documents")
    for i, document in enumerate(documents):
        if not isinstance(document, str) and not (isinstance(document, dict) and isinstance(document.get("text"), str)):
            raise InvalidRequest(f"'documents[{i}]' must be a string or an object with 'text'.", f"documents[{i}]")
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InvalidRequest("'top_n' must be a positive integer.", "top_n")
