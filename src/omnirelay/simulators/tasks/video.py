"""The fake generic video upstream: an aggregator's ``/v1/video/generations`` (new-api's video API), which is how
Runway, Luma, Pika, Veo, Hailuo and Seedance models are resold.

- ``POST /v1/video/generations`` ``{model, prompt, image?, duration?, width?, height?, fps?, seed?, n?}`` →
  ``{"task_id": "<id>", "status": "queued"}``.
- ``GET /v1/video/generations/{task_id}`` → ``{"task_id", "status": queued|processing|succeeded|failed,
  "progress": 0-100, "url", "format": "mp4", "metadata": {"duration", "fps", "width", "height", "seed"},
  "error": null | {"code", "message"}}``; the MP4 is served from ``/files/``.

The video lasts the requested ``duration`` (default 5 s; the ``length`` knob overrides), at ``width`` x ``height``
(default 640x360). Errors are OpenAI-shaped (``{"error": {"message", "type", "code"}}``). Auth: ``Authorization:
Bearer``.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import SimulatorState, directives_in
from omnirelay.simulators.media_video import mp4
from omnirelay.simulators.tasks.lifecycle import (
    Phase,
    SimTask,
    TaskKnobs,
    TaskSimulator,
    file_url,
    json_response,
    new_id,
    task_knobs,
)

_STATUS = {
    Phase.QUEUED: "queued",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "succeeded",
    Phase.FAILED: "failed",
    Phase.CANCELED: "failed",
}
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}


def _error(status: int, message: str) -> Response:
    if status == 401 and not message:
        message = "Invalid API key."
    kind = _TYPES.get(status, "server_error")
    return json_response({"error": {"message": message, "type": kind, "code": kind}}, status)


def _positive(value: Any, default: float) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


class _Video(TaskSimulator):
    async def submit(self, request: Request) -> Response:
        admitted = await self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        body, text = admitted
        if body is None:
            return _error(400, "The body must be a JSON object.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _error(400, "'model' is required.")
        if not text and not body.get("image"):
            return _error(400, "'prompt' or 'image' is required.")
        duration = _positive(body.get("duration"), 5.0)
        width = _positive(body.get("width"), 640)
        height = _positive(body.get("height"), 360)
        if duration is None or width is None or height is None:
            return _error(400, "'duration', 'width' and 'height' must be positive numbers.")
        knobs = task_knobs(self.state, self.defaults, request, text)
        if "length" in directives_in(text):
            duration = knobs.length
        task = self.book.add(SimTask(new_id("hex", 24), "generate", body["model"], body, knobs))
        task.extra.update(duration=duration, width=int(width), height=int(height), seed=body.get("seed") or 0)
        seed = f"{task.id}:{text}"
        self.book.add_file(
            task, "mp4", "video/mp4", lambda s=seed, d=duration, w=int(width), h=int(height): mp4(d, w, h, s)
        )
        return json_response({"task_id": task.id, "status": "queued"})

    def render(self, request: Request, task: SimTask) -> dict[str, Any]:
        phase = task.phase()
        done = phase is Phase.SUCCEEDED
        return {
            "task_id": task.id,
            "status": _STATUS[phase],
            "progress": task.progress(),
            "url": file_url(request, task.outputs[0]) if done else None,
            "format": "mp4",
            "metadata": {
                "duration": task.extra["duration"],
                "fps": 24,
                "width": task.extra["width"],
                "height": task.extra["height"],
                "seed": task.extra["seed"],
            },
            "error": {"code": "generation_failed", "message": task.knobs.fail_reason}
            if phase is Phase.FAILED
            else None,
        }

    async def fetch(self, request: Request) -> Response:
        task = await self.gated_task(request, "Task not found.")
        return task if isinstance(task, Response) else json_response(self.render(request, task))


def create_video_simulator(state: SimulatorState | None = None, defaults: TaskKnobs | None = None) -> Starlette:
    """Build the fake video aggregator around one ``SimulatorState`` (keys, faults, request log)."""
    sim = _Video(state or SimulatorState(), defaults or TaskKnobs(duration=5.0), _error)
    return sim.app(
        [
            Route("/v1/video/generations", sim.submit, methods=["POST"]),
            Route("/v1/video/generations/{task_id}", sim.fetch, methods=["GET"]),
        ]
    )
