"""The fake FAL upstream: the queue API of ``queue.fal.run``.

- ``POST /{owner}/{alias}[/{path}]`` (the model, e.g. ``/fal-ai/flux-pro/kontext``) with the model's input →
  ``{"status": "IN_QUEUE", "request_id", "response_url", "status_url", "cancel_url", "queue_position"}``;
  ``?fal_webhook=URL`` is remembered as FAL does.
- ``GET /{owner}/{alias}/requests/{id}/status[?logs=1]`` → ``{"status": IN_QUEUE|IN_PROGRESS|COMPLETED,
  "queue_position", "response_url", "logs", "metrics"}`` (202 until completed, then 200). A failed request is
  ``COMPLETED`` with ``error`` and ``error_type``, as FAL reports it.
- ``GET /{owner}/{alias}/requests/{id}`` → the model's result: images
  ``{"images": [{"url", "width", "height", "content_type"}], "seed", "has_nsfw_concepts", "prompt", "timings"}``
  or, for video models (a path with ``video``), ``{"video": {"url", "content_type", "file_name", "file_size"}}``;
  400 while the request is unfinished, the failure's status and ``{"detail"}`` when it failed.
- ``PUT /{owner}/{alias}/requests/{id}/cancel`` → 202 ``CANCELLATION_REQUESTED`` or 400 ``ALREADY_COMPLETED``.

As on FAL, the queue URLs keep only ``owner/alias`` of the model path. Auth: ``Authorization: Key <key>``;
errors are ``{"detail": "..."}``.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.media import jpeg, png
from omnirelay.simulators.media_video import mp4
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
    Phase.QUEUED: "IN_QUEUE",
    Phase.RUNNING: "IN_PROGRESS",
    Phase.SUCCEEDED: "COMPLETED",
    Phase.FAILED: "COMPLETED",
    Phase.CANCELED: "COMPLETED",
}
_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
_ASPECTS = {"1:1": (1024, 1024), "16:9": (1024, 576), "9:16": (576, 1024), "4:3": (1024, 768), "3:4": (768, 1024)}


def _error(status: int, detail: str) -> Response:
    if status == 401 and not detail:
        detail = "Authentication is required to access this application."
    return json_response({"detail": detail or "Error"}, status)


_NOT_FOUND = "Request not found."


class _Fal(TaskSimulator):
    def authorized(self, request: Request) -> bool:
        return self.state.key_ok(bearer(request, "key"))

    def _queue_base(self, request: Request, model: str) -> str:
        owner_alias = "/".join(model.split("/")[:2])
        return f"{str(request.base_url).rstrip('/')}/{owner_alias}/requests"

    async def submit(self, request: Request) -> Response:
        model = request.path_params["model"].strip("/")
        admitted = await self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        body, text = admitted
        if model.count("/") < 1:
            return _error(404, f"Application '{model}' not found.")
        if body is None:
            return _error(422, "The body must be a JSON object.")
        video = "video" in model
        if not text.strip() and not (video and body.get("image_url")):
            return json_response(
                {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]}, 422
            )
        knobs = task_knobs(self.state, self.defaults, request, text)
        task = self.book.add(SimTask(new_id("uuid"), "video" if video else "image", model, body, knobs))
        task.extra["webhook"] = request.query_params.get("fal_webhook")
        seed = f"{task.id}:{text}"
        if video:
            seconds = float(str(body.get("duration") or knobs.length).rstrip("s") or knobs.length)
            width, height = _ASPECTS.get(str(body.get("aspect_ratio") or "16:9"), (1024, 576))
            self.book.add_file(task, "mp4", "video/mp4", lambda: mp4(seconds, width // 2, height // 2, seed))
        else:
            width, height = self._image_size(body)
            jpg = body.get("output_format") == "jpeg"
            count = body.get("num_images", 1)
            count = count if isinstance(count, int) and 1 <= count <= 4 else 1
            for i in range(count):
                if jpg:
                    self.book.add_file(task, "jpeg", "image/jpeg", lambda i=i: jpeg(width, height, f"{seed}:{i}"))
                else:
                    self.book.add_file(task, "png", "image/png", lambda i=i: png(width, height, f"{seed}:{i}"))
            task.extra["size"] = (width, height)
        base = self._queue_base(request, model)
        return json_response(
            {
                "status": "IN_QUEUE",
                "request_id": task.id,
                "response_url": f"{base}/{task.id}",
                "status_url": f"{base}/{task.id}/status",
                "cancel_url": f"{base}/{task.id}/cancel",
                "queue_position": 0,
            }
        )

    @staticmethod
    def _image_size(body: dict[str, Any]) -> tuple[int, int]:
        size = body.get("image_size")
        if isinstance(size, dict) and isinstance(size.get("width"), int) and isinstance(size.get("height"), int):
            return max(16, min(2048, size["width"])), max(16, min(2048, size["height"]))
        if isinstance(size, str) and size in _SIZES:
            return _SIZES[size]
        return _ASPECTS.get(str(body.get("aspect_ratio") or ""), (1024, 768))

    def find(self, request: Request) -> SimTask | None:
        task = self.book.get(request.path_params["request_id"])
        owner_alias = f"{request.path_params['owner']}/{request.path_params['alias']}"
        if task is None or "/".join(task.model.split("/")[:2]) != owner_alias:
            return None
        return task

    async def status(self, request: Request) -> Response:
        task = await self.gated_task(request, _NOT_FOUND)
        if isinstance(task, Response):
            return task
        phase = task.phase()
        body: dict[str, Any] = {
            "status": _STATUS[phase],
            "request_id": task.id,
            "response_url": f"{self._queue_base(request, task.model)}/{task.id}",
        }
        if phase is Phase.QUEUED:
            body["queue_position"] = 0
        if phase is not Phase.QUEUED:  # FAL always sends the key, null unless ?logs=1 asked for them
            wanted = request.query_params.get("logs") in {"1", "true"}
            line = {"message": f"Progress {task.progress()}%", "level": "INFO", "source": "user", "timestamp": ""}
            body["logs"] = [line] if wanted else None
        if phase.final:
            started, finished = task.started_at or task.created_at, task.finished_at or task.created_at
            body["metrics"] = {"inference_time": round(finished - started, 3)}
        if phase is Phase.FAILED:
            body["error"] = task.knobs.fail_reason
            body["error_type"] = "internal_error"
        elif phase is Phase.CANCELED:
            body["error"] = "Request was cancelled."
            body["error_type"] = "request_cancelled"
        return json_response(body, 200 if phase.final else 202)

    async def result(self, request: Request) -> Response:
        task = await self.gated_task(request, _NOT_FOUND)
        if isinstance(task, Response):
            return task
        phase = task.phase()
        if not phase.final:
            return _error(400, "Request is still in progress.")
        if phase is Phase.FAILED:
            return _error(500, task.knobs.fail_reason)
        if phase is Phase.CANCELED:
            return _error(400, "Request was cancelled.")
        urls = [file_url(request, name) for name in task.outputs]
        if task.action == "video":
            return json_response(
                {
                    "video": {
                        "url": urls[0],
                        "content_type": "video/mp4",
                        "file_name": task.outputs[0],
                        "file_size": None,
                    }
                }
            )
        width, height = task.extra["size"]
        content_type = "image/jpeg" if task.outputs[0].endswith(".jpeg") else "image/png"
        images = [{"url": u, "width": width, "height": height, "content_type": content_type} for u in urls]
        return json_response(
            {
                "images": images,
                "seed": int(task.id.replace("-", "")[:8], 16),
                "has_nsfw_concepts": [False] * len(images),
                "prompt": task.input.get("prompt"),
                "timings": {"inference": round(task.knobs.duration * (1 - task.knobs.queue), 3)},
            }
        )

    async def cancel(self, request: Request) -> Response:
        task = await self.gated_task(request, _NOT_FOUND)
        if isinstance(task, Response):
            return task
        if task.cancel():
            return json_response({"status": "CANCELLATION_REQUESTED"}, 202)
        return json_response({"status": "ALREADY_COMPLETED"}, 400)


def create_fal_simulator(state: SimulatorState | None = None, defaults: TaskKnobs | None = None) -> Starlette:
    """Build the fake FAL queue upstream around one ``SimulatorState``."""
    sim = _Fal(state or SimulatorState(), defaults or TaskKnobs(duration=3.0), _error)
    requests = "/{owner}/{alias}/requests/{request_id}"
    return sim.app(
        [
            Route(requests + "/status", sim.status, methods=["GET"]),
            Route(requests + "/cancel", sim.cancel, methods=["PUT"]),
            Route(requests, sim.result, methods=["GET"]),
            Route("/{model:path}", sim.submit, methods=["POST"]),
        ],
        lambda request: _error(404, f"Not found: {request.url.path}"),
    )
