"""FAL's queue API, on the gateway's ``/fal-ai/...`` routes (``fal-client`` works with its queue URL pointed at the
gateway).

Upstream (``https://queue.fal.run``): ``POST /{model path}`` → ``{"request_id", "status_url", "response_url", ...}``;
``GET /{owner}/{alias}/requests/{id}/status`` → ``{"status": IN_QUEUE | IN_PROGRESS | COMPLETED, "error"?}``;
``GET /{owner}/{alias}/requests/{id}`` → the model's result (``images`` or ``video``), read once the status says
``COMPLETED`` (:meth:`FalVendor.result_call`). Key: ``Authorization: Key <key>``.

Public model names are the gateway's price-table names (``flux-kontext-pro``); :data:`MODELS` maps them to FAL
model paths, and a path not in the table routes by ``fal-ai/<path>`` itself. Clients get the gateway's
``request_id`` and URLs; the status route answers 202 until the request is completed, like FAL.

``?fal_webhook=URL`` becomes the gateway's webhook (called once, when the request ends, signed like every task
webhook). Not supported: cancel (answered 501), streaming and logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

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
    UpstreamCall,
    images_made,
    pop_hook,
    text_of,
)

MODELS: dict[str, str] = {
    "flux-kontext-pro": "fal-ai/flux-pro/kontext",
    "flux-kontext-max": "fal-ai/flux-pro/kontext/max",
    "flux-pro-1.1": "fal-ai/flux-pro/v1.1",
    "flux-pro-1.1-ultra": "fal-ai/flux-pro/v1.1-ultra",
    "flux-dev": "fal-ai/flux/dev",
    "flux-schnell": "fal-ai/flux/schnell",
    "imagen-4.0-generate-001": "fal-ai/imagen4/preview",
    "imagen-4.0-fast-generate-001": "fal-ai/imagen4/preview/fast",
    "kling-v2-1-master": "fal-ai/kling-video/v2.1/master/text-to-video",
}
"""Public model → FAL model path."""
PUBLIC: dict[str, str] = {path: model for model, path in MODELS.items()}
CLIENT_STATUS: dict[str, str] = {
    "SUBMITTED": "IN_QUEUE",
    "QUEUED": "IN_QUEUE",
    "IN_PROGRESS": "IN_PROGRESS",
    "SUCCESS": "COMPLETED",
    "FAILURE": "COMPLETED",
}


def _owner_alias(path: str) -> str:
    return "/".join(path.strip("/").split("/")[:2])


def fal_path(upstream_model: str) -> str:
    return upstream_model if "/" in upstream_model else MODELS.get(upstream_model, upstream_model)


class FalVendor(TaskVendor):
    name: ClassVar[str] = "fal"
    channel_types: ClassVar[tuple[str, ...]] = ("fal",)
    auth_scheme: ClassVar[str] = "Key "
    client_auth: ClassVar[tuple[tuple[str, str], ...]] = (("authorization", "Key "), ("authorization", "Bearer "))
    submit_paths: ClassVar[Mapping[str, str]] = {"queue": "/{model}"}
    upstream_id_field: ClassVar[str] = "request_id"
    status_map: ClassVar[Mapping[str, TaskStatus]] = {
        "IN_QUEUE": "QUEUED",
        "IN_PROGRESS": "IN_PROGRESS",
        "COMPLETED": "SUCCESS",
    }
    progress_field: ClassVar[str | None] = None
    poll: ClassVar[PollPolicy] = PollPolicy(first_s=1.0, backoff=1.5, max_interval_s=10.0, timeout_s=1800.0)
    price_unit = "image"
    public_id_prefix: ClassVar[str] = "fal_"
    default_action: ClassVar[str] = "queue"
    routes: ClassVar[tuple[ClientRoute, ...]] = (
        ClientRoute("GET", "/fal-ai/{path:path}/requests/{task_id}/status", "fetch", "status"),
        ClientRoute("GET", "/fal-ai/{path:path}/requests/{task_id}", "fetch", "result"),
        ClientRoute("PUT", "/fal-ai/{path:path}/requests/{task_id}/cancel", "fetch", "cancel"),
        ClientRoute("POST", "/fal-ai/{path:path}", "submit", "queue"),
    )

    # --- upstream ------------------------------------------------------------------------------------------------

    def submit_call(self, submission: Submission, upstream_model: str, parent: str | None) -> UpstreamCall:
        return UpstreamCall("POST", "/" + fal_path(upstream_model).strip("/"), dict(submission.payload))

    def read_submit(self, status: int, body: bytes) -> str:
        request_id = super().read_submit(status, body)
        # The queue URLs keep only owner/alias of the model path; read them from the answer's own status_url.
        status_url = orjson.loads(body).get("status_url")
        owner_alias = ""
        if isinstance(status_url, str) and "/requests/" in status_url:
            owner_alias = "/".join(urlsplit(status_url).path.split("/requests/")[0].split("/")[-2:])
        return f"{owner_alias}:{request_id}"

    def task_ref(self, submission: Submission, upstream_id: str) -> str:
        if upstream_id.startswith(":"):  # no status_url in the answer: FAL's rule on the model path
            return _owner_alias(fal_path(submission.model)) + upstream_id
        return upstream_id

    def fetch_call(self, upstream_id: str) -> UpstreamCall:
        model, _, request_id = upstream_id.rpartition(":")
        return UpstreamCall("GET", f"/{model}/requests/{request_id}/status")

    def read_task(self, task: Mapping[str, Any]) -> TaskUpdate:
        update = super().read_task(task)
        if update.status == "SUCCESS" and task.get("error"):
            return TaskUpdate("FAILURE", update.progress, TaskResults(), str(task["error"]), dict(task))
        return update

    def result_call(self, upstream_id: str, update: TaskUpdate) -> UpstreamCall | None:
        model, _, request_id = upstream_id.rpartition(":")
        return UpstreamCall("GET", f"/{model}/requests/{request_id}")

    def read_result(self, update: TaskUpdate, status: int, body: bytes) -> TaskUpdate | None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if status != 200 or not isinstance(data, dict):
            if 400 <= status < 500 and status not in (404, 408, 429) and isinstance(data, dict):
                detail = data.get("detail")
                return TaskUpdate("FAILURE", update.progress, TaskResults(), str(detail or "failed"), update.raw)
            return None  # the queue or the result store is briefly away: ask again
        return TaskUpdate("SUCCESS", 100, self.results_of(data), None, {**update.raw, "result": data})

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        images = tuple(
            Media(str(i["url"]), str(i.get("content_type") or "image/png"), None, i.get("width"), i.get("height"))
            for i in task.get("images") or ()
            if isinstance(i, dict) and i.get("url")
        )
        video = task.get("video")
        videos = ()
        if isinstance(video, dict) and video.get("url"):
            videos = (Media(str(video["url"]), str(video.get("content_type") or "video/mp4")),)
        return TaskResults(images=images, videos=videos)

    def billed_quantity(self, task: TaskView, update: TaskUpdate) -> Mapping[PriceUnit, Quantity] | None:
        return images_made(update)

    # --- client --------------------------------------------------------------------------------------------------

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        path = "fal-ai/" + str(params.get("path", "")).strip("/")
        payload = dict(body)
        hook = pop_hook(payload, "notify_hook") or params.get("fal_webhook") or None
        prompt = text_of(payload.get("prompt"))
        if not prompt.strip() and not payload.get("image_url"):
            raise InvalidSubmit("'prompt' is required.")
        count = payload.get("num_images", 1)
        if not isinstance(count, int) or count < 1:
            raise InvalidSubmit("'num_images' must be a positive integer.")
        duration = payload.get("duration")
        return Submission(
            model=PUBLIC.get(path, path),
            action="queue",
            payload=payload,
            prompt=prompt,
            notify_hook=hook,
            option=f"{duration}s" if duration is not None else None,
            quantity=count,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        body = {**config, "prompt": prompt}
        if "n" in body:
            body["num_images"] = body.pop("n")
        path = fal_path(model).removeprefix("fal-ai/")
        submission = self.parse_submit(ClientRoute("POST", "/task/submit", "submit", "queue"), body, {"path": path})
        return replace(submission, model=model)  # the name the client asked for, not the price table's for the path

    def _urls(self, task: TaskView) -> dict[str, str]:
        base = f"{task.base_url.rstrip('/')}/{_owner_alias(fal_path(task.model))}/requests/{task.public_id}"
        return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        return 200, {"status": "IN_QUEUE", "request_id": task.public_id, **self._urls(task), "queue_position": 0}

    def render_status(self, task: TaskView) -> tuple[int, Any]:
        status = CLIENT_STATUS[task.status]
        body: dict[str, Any] = {"status": status, "request_id": task.public_id}
        body["response_url"] = self._urls(task)["response_url"]
        if status == "IN_QUEUE":
            body["queue_position"] = 0
        else:
            body["logs"] = None
        if task.status == "FAILURE":
            body["error"] = task.error or "failed"
            body["error_type"] = "request_failed"
        if status == "COMPLETED":
            body["metrics"] = {}
        return (200 if status == "COMPLETED" else 202), body

    def render_task(self, task: TaskView) -> Any:
        if task.status != "SUCCESS":
            return self.render_status(task)[1]
        if task.results.videos:
            video = task.results.videos[0]
            return {"video": {"url": video.url, "content_type": video.content_type}}
        images = [
            {"url": m.url, "width": m.width, "height": m.height, "content_type": m.content_type}
            for m in task.results.images
        ]
        return {"images": images, "prompt": task.prompt, "has_nsfw_concepts": [False] * len(images)}

    def render_fetch(self, route: ClientRoute, task: TaskView) -> tuple[int, Any]:
        if route.action == "status":
            return self.render_status(task)
        if route.action == "cancel":
            return self.render_error(501, "Canceling a request through this gateway is not supported yet.")
        if task.status == "FAILURE":
            return 422, {"detail": task.error or "The request failed."}
        if task.status != "SUCCESS":
            return 400, {"detail": "Request is still in progress."}
        return 200, self.render_task(task)

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        return status, {"detail": message}
