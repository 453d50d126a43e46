"""The fake ``POST /v1/rerank`` of an OpenAI-compatible rerank vendor, in Jina's shape (which Cohere v2 clients
also read)::

    {"model", "query", "documents": [str | {"text"}], "top_n", "return_documents"}
    → {"id", "model", "results": [{"index", "relevance_score", "document": {"text"}}], "usage": {"total_tokens"}}

Scores are deterministic and meaningful enough to test with: the share of the query's words a document contains,
squashed into (0, 1), with a hash of the pair to break ties. Results come best first, ``top_n`` of them;
``return_documents`` defaults to true as at Jina. Usage counts each (query, document) pair, as Jina and Voyage
bill it. Knobs and faults come from directives in the query.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import TYPE_CHECKING

from starlette.responses import Response

from omnirelay.simulators.openai_content import InvalidRequest, JSONObject, count_tokens, require

if TYPE_CHECKING:
    from omnirelay.simulators.openai import _Call, _OpenAISimulator

_WORD = re.compile(r"\w+")


def relevance(query: str, document: str) -> float:
    """In (0, 1): higher when more of the query's words appear in the document."""
    wanted = {w.lower() for w in _WORD.findall(query)}
    present = {w.lower() for w in _WORD.findall(document)}
    overlap = len(wanted & present) / len(wanted) if wanted else 0.0
    jitter = hashlib.sha256(f"{query}\x00{document}".encode()).digest()[0] / 255 / 100
    return round(1 / (1 + math.exp(-(8 * overlap - 4))) * 0.99 + jitter, 6)


def _document_text(document: object, index: int) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        return str(document["text"])
    raise InvalidRequest(f"Invalid 'documents[{index}]': expected a string or an object with 'text'.", "documents")


class RerankEndpoint:
    def __init__(self, sim: _OpenAISimulator) -> None:
        self.sim = sim

    async def handle(self, call: _Call) -> Response:
        require(call.body, "model", "query", "documents")
        body = call.body
        query = body["query"]
        documents = body["documents"]
        if not isinstance(query, str) or not query:
            raise InvalidRequest("Invalid 'query': expected a non-empty string.", "query")
        if not isinstance(documents, list) or not documents:
            raise InvalidRequest("Invalid 'documents': expected a non-empty array.", "documents")
        texts = [_document_text(d, i) for i, d in enumerate(documents)]
        knobs = self.sim.state.knobs_for(call.request, query)
        early = await self.sim._prelude(call, knobs)
        if early is not None:
            return early
        top_n = body.get("top_n")
        limit = top_n if isinstance(top_n, int) and not isinstance(top_n, bool) and top_n > 0 else len(texts)
        scored = sorted(((relevance(query, t), i) for i, t in enumerate(texts)), key=lambda s: (-s[0], s[1]))
        with_documents = body.get("return_documents", True) is not False
        results: list[JSONObject] = []
        for score, index in scored[:limit]:
            result: JSONObject = {"index": index, "relevance_score": score}
            if with_documents:
                result["document"] = {"text": texts[index]}
            results.append(result)
        answer: JSONObject = {"id": self.sim._id("rerank-", 24), "model": body["model"], "results": results}
        if not knobs.no_usage:
            query_tokens = count_tokens(query)
            total = sum(query_tokens + count_tokens(t) for t in texts)
            answer["usage"] = {"total_tokens": total, "prompt_tokens": total}
        return self.sim._json(call, knobs, answer)
