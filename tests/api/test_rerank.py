"""``POST /v1/rerank`` (Cohere/Jina shape) through the gateway to an OpenAI-compatible rerank vendor (the OpenAI
simulator). No official SDK speaks this shape: the ``openai`` client's low-level ``post`` and plain ``httpx`` stand
in, as they do for users."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from omnirelay.billing.cost import cost_of_tokens
from omnirelay.config import ChannelConfig
from omnirelay.formats.usage import Usage
from tests.api.keyed_gateway import keyed_gateway, usage_rows, with_claude
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness
from tests.harness import ServerThread

pytestmark = SQLITE_ONLY

DOCUMENTS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower is in Paris.",
    "Bananas are rich in potassium.",
]
QUERY = "What is the capital of France?"


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    channel = ChannelConfig(
        name="rerankers",
        base_url=openai_sim.url + "/v1",
        api_keys=[UPSTREAM_KEY],
        models=["rerank-2", "rerank-v3.5", "jina-reranker-v2-base-multilingual"],
        model_map={"house-reranker": "bge-reranker-v2-m3"},
    )
    yield from keyed_gateway(with_claude(database_url, channel))


@pytest.fixture(autouse=True)
def _reset(openai_sim: ServerThread) -> None:
    httpx.post(openai_sim.url + "/_sim/reset")


def rerank(gw: GatewayHarness, **body: Any) -> httpx.Response:
    return httpx.post(gw.base_url + "/rerank", json=body, headers={"authorization": f"Bearer {gw.keys['all']}"})


def upstream_log(sim: ServerThread) -> list[dict[str, Any]]:
    return httpx.get(sim.url + "/_sim/requests").json()["requests"]  # type: ignore[no-any-return]


def test_rerank_orders_documents_and_bills_reported_tokens(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["all"], max_retries=0)
    raw = sdk.post(
        "/rerank",
        body={"model": "rerank-2", "query": QUERY, "documents": DOCUMENTS, "top_n": 3},
        cast_to=httpx.Response,
    )
    answer = raw.json()
    results = answer["results"]
    assert len(results) == 3
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert results[0]["index"] == 1  # the one document that answers the query
    for result in results:
        assert result["document"]["text"] == DOCUMENTS[result["index"]]
    tokens = answer["usage"]["total_tokens"]
    assert tokens > 0
    rows = usage_rows(gw)[before:]
    assert len(rows) == 1
    row = rows[0]
    assert (row.endpoint, row.model, row.status_code, row.usage_estimated) == ("openai.rerank", "rerank-2", 200, False)
    assert (row.prompt_tokens, row.completion_tokens) == (tokens, 0)
    price = gw.gateway.billing.price_for("rerank-2")
    assert row.cost_micros == cost_of_tokens(price, Usage(input_tokens=tokens)) == -(-tokens * 50_000 // 1_000_000)


def test_per_search_price_bills_one_search(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    response = rerank(gw, model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, return_documents=False)
    assert response.status_code == 200
    assert all("document" not in r for r in response.json()["results"])
    row = usage_rows(gw)[before:][0]
    assert row.cost_micros == 2000  # $2.00 per 1,000 searches


def test_answer_without_usage_is_counted_by_the_gateway(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    response = rerank(
        gw, model="jina-reranker-v2-base-multilingual", query=f"{QUERY} [sim no_usage=true]", documents=DOCUMENTS
    )
    assert response.status_code == 200 and "usage" not in response.json()
    row = usage_rows(gw)[before:][0]
    assert row.usage_estimated is True and row.prompt_tokens > 0 and row.cost_micros > 0


def test_model_map_rewrites_only_the_model(gw: GatewayHarness, openai_sim: ServerThread) -> None:
    raw = orjson.dumps({"model": "house-reranker", "query": "q", "documents": ["a", {"text": "b"}]})
    response = httpx.post(
        gw.base_url + "/rerank",
        content=raw,
        headers={"authorization": f"Bearer {gw.keys['all']}", "content-type": "application/json"},
    )
    assert response.status_code == 200
    sent = upstream_log(openai_sim)[-1]
    assert sent["path"] == "/v1/rerank"
    assert sent["body"] == raw.decode().replace("house-reranker", "bge-reranker-v2-m3")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": QUERY}, "documents"),
        ({"documents": DOCUMENTS}, "query"),
        ({"query": QUERY, "documents": "not a list"}, "documents"),
        ({"query": QUERY, "documents": [1, 2]}, "documents[0]"),
        ({"query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ],
)
def test_malformed_requests_are_a_400_before_any_upstream_call(
    gw: GatewayHarness, openai_sim: ServerThread, body: dict[str, Any], param: str
) -> None:
    response = rerank(gw, model="rerank-2", **body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream_log(openai_sim) == []


def test_rerank_to_a_channel_without_rerank_is_refused_clearly(gw: GatewayHarness) -> None:
    response = rerank(gw, model="claude-x", query=QUERY, documents=DOCUMENTS)
    assert response.status_code == 501
    error = response.json()["error"]
    assert "rerank" in error["message"] and "anthropic" in error["message"]


def test_upstream_failure_is_an_openai_shaped_error(gw: GatewayHarness) -> None:
    response = rerank(gw, model="rerank-2", query=f"{QUERY} [sim fault=503]", documents=DOCUMENTS)
    assert response.status_code == 503
    assert set(response.json()["error"]) >= {"message", "type", "code"}
    assert UPSTREAM_KEY not in response.text
