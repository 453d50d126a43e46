"""The fake Replicate upstream: predictions on official models, in the HTTP API's shape.

- ``POST /v1/models/{owner}/{name}/predictions`` ``{"input": {...}, "webhook", "webhook_events_filter"}`` → 201
  and the prediction; with ``Prefer: wait`` (or ``wait=N``, at most 60 s) the answer waits for the prediction to
  end (or the time to pass), as the real API does.
- ``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``.

A prediction is ``{id, model, version, input, logs, output, data_removed, error, status: starting|processing|
succeeded|failed|canceled, created_at, started_at, completed_at (ISO 8601), urls: {get, cancel, web}, metrics}``.
The image models answer ``output`` as one URL (PNG by default, ``output_format: "jpg"`` for JPEG); ``num_outputs``
> 1 gives a list. WebP, the real default of some models, is refused with a 422 rather than faked.

Errors are problem details: ``{"title", "detail", "status"}`` (422 adds ``invalid_fields``); auth is
``Authorization: Bearer <token>`` (``Token <token>`` is accepted too, as the API still does).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.media import jpeg, png
from omnirelay.simulators.tasks.lifecycle import (
    Phase,
    SimTask,
    TaskKnobs,
    TaskSimulator,
    bearer,
    file_url,
    json_response,
    new_id,
    task_knobs,
)

_STATUS = {
    Phase.QUEUED: "starting",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "succeeded",
    Phase.FAILED: "failed",
    Phase.CANCELED: "canceled",
}
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    402: "Payment required",
    404: "Not found",
    429: "Too many requests",
}
_ASPECTS = {"1:1": (1, 1), "16:9": (16, 9), "9:16": (9, 16), "4:3": (4, 3), "3:4": (3, 4), "3:2": (3, 2), "2:3": (2, 3)}
_WAIT_MAX_S = 60
_NOT_FOUND = "The requested resource could not be found."
_PREFER_WAIT = re.compile(r"\bwait(?:=(\d+))?\b")


def _error(status: int, detail: str, **extra: Any) -> Response:
    if status == 401 and not detail:
        detail = "You did not pass a valid authentication token"
    title = _TITLES.get(status, "Internal server error" if status >= 500 else "Error")
    return json_response({"title": title, "detail": detail, "status": status, **extra}, status)


def _invalid(field: str, description: str) -> Response:
    return _error(
        422,
        f"- {field}: {description}",
        invalid_fields=[{"type": "invalid", "field": field, "description": description}],
    )


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _input_prompt(body: Mapping[str, Any]) -> str:
    inputs = body.get("input")
    return str(inputs.get("prompt") or "") if isinstance(inputs, dict) else ""


class _Replicate(TaskSimulator):
    def authorized(self, request: Request) -> bool:
        return self.state.key_ok(bearer(request) or bearer(request, "token"))

    async def create(self, request: Request) -> Response:
        admitted = await self.admit(request, _input_prompt)
        if isinstance(admitted, Response):
            return admitted
        body, text = admitted
        inputs = (body or {}).get("input")
        if body is None:
            return _error(400, "The request body must be a JSON object.")
        if not isinstance(inputs, dict):
            return _invalid("input", "input is required")
        if not str(inputs.get("prompt") or "").strip():
            return _invalid("input.prompt", "prompt is required")
        output_format = str(inputs.get("output_format") or "png")
        if output_format not in {"png", "jpg"}:
            return _invalid("input.output_format", f"{output_format} is not supported by this simulator (png, jpg)")
        aspect = str(inputs.get("aspect_ratio") or "1:1")
        if aspect not in _ASPECTS:
            return _invalid("input.aspect_ratio", f"aspect_ratio must be one of {', '.join(_ASPECTS)}")
        count = inputs.get("num_outputs", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            return _invalid("input.num_outputs", "num_outputs must be an integer from 1 to 4")
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        knobs = task_knobs(self.state, self.defaults, request, text)
        task = self.book.add(SimTask(new_id("base32", 26), "predict", model, inputs, knobs))
        task.extra["many"] = "num_outputs" in inputs
        task.extra["webhook"] = body.get("webhook")
        wide, high = _ASPECTS[aspect]
        width, height = (1024, 1024 * high // wide) if wide >= high else (1024 * wide // high, 1024)
        maker, extension, content_type = (
            (jpeg, "jpg", "image/jpeg") if output_format == "jpg" else (png, "png", "image/png")
        )
        for i in range(count):
            self.book.add_file(task, extension, content_type, lambda i=i: maker(width, height, f"{task.id}:{text}:{i}"))
        wait = self._wait_seconds(request.headers.get("prefer", ""))
        if wait:
            await self._until_done(task, wait)
        return json_response(self._render(request, task), 201)

    @staticmethod
    def _wait_seconds(prefer: str) -> float:
        match = _PREFER_WAIT.search(prefer)
        if match is None:
            return 0.0
        return float(min(_WAIT_MAX_S, int(match.group(1)) if match.group(1) else _WAIT_MAX_S))

    @staticmethod
    async def _until_done(task: SimTask, limit: float) -> None:
        # A task's end is known in advance (its phase is a function of the clock), so one sleep is enough.
        if not task.phase().final:
            await asyncio.sleep(max(0.0, min(limit, task.knobs.duration - task.elapsed())))

    def _render(self, request: Request, task: SimTask) -> dict[str, Any]:
        phase = task.phase()
        base = str(request.base_url).rstrip("/")
        output: Any = None
        if phase is Phase.SUCCEEDED:
            urls = [file_url(request, name) for name in task.outputs]
            output = urls if task.extra["many"] else urls[0]
        logs = ""
        if phase is not Phase.QUEUED:
            logs = f"Using seed: {int(hashlib.sha256(task.id.encode()).hexdigest()[:6], 16)}\n"
            logs += "".join(f"{p:3d}%|{'#' * (p // 10):10s}|\n" for p in range(0, task.progress() + 1, 25))
        metrics: dict[str, Any] = {}
        if phase.final and task.started_at is not None and task.finished_at is not None:
            metrics = {"predict_time": round(task.finished_at - task.started_at, 3)}
            if phase is Phase.SUCCEEDED:
                metrics["image_count"] = len(task.outputs)
        return {
            "id": task.id,
            "model": task.model,
            "version": hashlib.sha256(task.model.encode()).hexdigest(),
            "input": task.input,
            "logs": logs,
            "output": output,
            "data_removed": False,
            "error": task.knobs.fail_reason if phase is Phase.FAILED else None,
            "status": _STATUS[phase],
            "created_at": _iso(task.created_at),
            "started_at": _iso(task.started_at),
            "completed_at": _iso(task.finished_at),
            "urls": {
                "get": f"{base}/v1/predictions/{task.id}",
                "cancel": f"{base}/v1/predictions/{task.id}/cancel",
                "web": f"https://replicate.com/p/{task.id}",
            },
            "metrics": metrics,
        }

    async def get(self, request: Request) -> Response:
        task = await self.gated_task(request, _NOT_FOUND)
        return task if isinstance(task, Response) else json_response(self._render(request, task))

    async def cancel(self, request: Request) -> Response:
        task = await self.gated_task(request, _NOT_FOUND)
        if isinstance(task, Response):
            return task
        task.cancel()
        return json_response(self._render(request, task))


def create_replicate_simulator(state: SimulatorState | None = None, defaults: TaskKnobs | None = None) -> Starlette:
    """Build the fake Replicate upstream around one ``SimulatorState``."""
    sim = _Replicate(state or SimulatorState(), defaults or TaskKnobs(duration=3.0), _error)
    return sim.app(
        [
            Route("/v1/models/{owner}/{name}/predictions", sim.create, methods=["POST"]),
            Route("/v1/predictions/{task_id}", sim.get, methods=["GET"]),
            Route("/v1/predictions/{task_id}/cancel", sim.cancel, methods=["POST"]),
        ],
        lambda request: _error(404, _NOT_FOUND),
    )
