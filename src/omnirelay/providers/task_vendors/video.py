"""One OpenAI-style route for every video model: ``POST /v1/video/generations`` + ``GET .../{task_id}``.

The client shape is new-api's video API: submit ``{"model", "prompt", "image"?, "duration"?, "width"?,
"height"?, "resolution"?, "fps"?, "seed"?, "metadata"?}`` → ``{"task_id", "status": "queued"}``; fetch →
``{"task_id", "status": queued|processing|succeeded|failed, "url", "format", "metadata": {"duration", "fps",
"width", "height", "seed"}, "error": null | {"code", "message"}}``.

Upstream (channel type ``video``): an aggregator speaking that same shape (how Runway, Luma, Pika, Veo, Hailuo and
Seedance are resold); models served by another family's channel (``mj_video`` on a midjourney-proxy channel, Kling
models on a Kling channel) are submitted in that family's shape through its ``from_unified``. The vendor reports
the real duration (``metadata.duration``), which re-prices ``per_second`` models on success.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

from omnirelay.providers.task_vendors.base import (
    ClientRoute,
    InvalidSubmit,
    Media,
    PollPolicy,
    PriceUnit,
    Quantity,
    Submission,
    TaskResults,
    TaskStatus,
    TaskUpdate,
    TaskVendor,
    TaskView,
    dig,
    pop_hook,
    text_of,
)

CLIENT_STATUS: dict[str, str] = {
    "SUBMITTED": "queued",
    "QUEUED": "queued",
    "IN_PROGRESS": "processing",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
}


def _number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return number if number > 0 else None


class VideoVendor(TaskVendor):
    name: ClassVar[str] = "video"
    channel_types: ClassVar[tuple[str, ...]] = ("video",)
    submit_paths: ClassVar[Mapping[str, str]] = {"generate": "/v1/video/generations"}
    upstream_id_field: ClassVar[str] = "task_id"
    fetch_path: ClassVar[str] = "/v1/video/generations/{id}"
    status_map: ClassVar[Mapping[str, TaskStatus]] = {
        "submitted": "SUBMITTED",
        "queued": "QUEUED",
        "pending": "QUEUED",
        "processing": "IN_PROGRESS",
        "in_progress": "IN_PROGRESS",
        "running": "IN_PROGRESS",
        "succeeded": "SUCCESS",
        "success": "SUCCESS",
        "completed": "SUCCESS",
        "failed": "FAILURE",
        "failure": "FAILURE",
        "canceled": "FAILURE",
    }
    error_field: ClassVar[str | None] = "error.message"
    poll: ClassVar[PollPolicy] = PollPolicy(first_s=5.0, backoff=1.5, max_interval_s=30.0, timeout_s=2 * 3600.0)
    price_unit = "second"
    public_id_prefix: ClassVar[str] = "video_"
    default_action: ClassVar[str] = "generate"
    routes: ClassVar[tuple[ClientRoute, ...]] = (
        ClientRoute("POST", "/v1/video/generations", "submit", "generate"),
        ClientRoute("GET", "/v1/video/generations/{task_id}", "fetch"),
    )

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        url = task.get("url") or dig(task, "data.url")
        if not url:
            return TaskResults()
        metadata = task.get("metadata") if isinstance(task.get("metadata"), dict) else {}
        duration = _number(metadata.get("duration"))
        return TaskResults(
            videos=(
                Media(
                    str(url),
                    f"video/{task.get('format') or 'mp4'}",
                    float(duration) if duration is not None else None,
                    metadata.get("width"),
                    metadata.get("height"),
                ),
            )
        )

    def billed_quantity(self, task: TaskView, update: TaskUpdate) -> Mapping[PriceUnit, Quantity] | None:
        metadata = update.raw.get("metadata")
        seconds = _number(metadata.get("duration")) if isinstance(metadata, dict) else None
        return {"second": seconds} if seconds is not None else None

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidSubmit("'model' is required.")
        prompt = body.get("prompt")
        if (not isinstance(prompt, str) or not prompt.strip()) and not body.get("image"):
            raise InvalidSubmit("'prompt' or 'image' is required.")
        payload = dict(body)
        hook = pop_hook(payload, "notify_hook", "notifyHook")
        seconds = _number(payload.get("duration"))
        if "duration" in payload and seconds is None:
            raise InvalidSubmit("'duration' must be a positive number of seconds.")
        count = payload.get("n", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            raise InvalidSubmit("'n' must be 1 to 4.")
        resolution = payload.get("resolution") or payload.get("size")
        option = None
        if seconds is not None:
            option = f"{resolution}/{int(seconds)}s" if isinstance(resolution, str) else f"{int(seconds)}s"
        return Submission(
            model=model,
            action="generate",
            payload=payload,
            prompt=text_of(prompt),
            notify_hook=hook,
            option=option,
            quantity=count,
            seconds=seconds,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        body: dict[str, Any] = {**config, "model": model, "prompt": prompt}
        return self.parse_submit(self.routes[0], body, {})

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        return 200, {"task_id": task.public_id, "status": CLIENT_STATUS[task.status]}

    def render_task(self, task: TaskView) -> Any:
        video = task.results.videos[0] if task.results.videos else None
        request = task.request
        return {
            "task_id": task.public_id,
            "status": CLIENT_STATUS[task.status],
            "progress": task.progress,
            "url": video.url if video is not None else None,
            "format": (video.content_type.removeprefix("video/") if video is not None else "mp4"),
            "metadata": {
                "duration": video.duration
                if video is not None and video.duration is not None
                else request.get("duration"),
                "fps": request.get("fps"),
                "width": (video.width if video is not None and video.width else request.get("width")),
                "height": (video.height if video is not None and video.height else request.get("height")),
                "seed": request.get("seed"),
            },
            "error": {"code": "task_failed", "message": task.error or ""} if task.status == "FAILURE" else None,
        }

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        kind = "invalid_request_error" if status < 500 else "upstream_error"
        return status, {"error": {"message": message, "type": kind, "code": None}}
