"""Kling through its official API, on the gateway's ``/kling/v1/...`` routes (the same paths and shapes).

Upstream: ``POST /v1/videos/text2video``, ``/v1/videos/image2video``, ``/v1/images/generations``,
``/v1/images/kolors-virtual-try-on`` answer ``{"code": 0, "message": "SUCCEED", "request_id", "data": {"task_id",
"task_status": "submitted", ...}}`` (a non-zero ``code`` is a refusal); each kind is polled at its own
``GET .../{task_id}``, so the stored upstream id is ``<kind>:<id>`` (:meth:`KlingVendor.task_ref`).

Auth: a Kling channel's key is ``access_key|secret_key``; every call carries a fresh HS256 JWT (``iss`` = access
key, valid 30 minutes from 5 s ago) signed with the secret, as Kling's docs prescribe.

Prices (``per_task``): a video is keyed ``mode/duration`` (``std/5s``, ``pro/10s``), an image call ``image`` times
``n`` (re-counted from the images returned), a try-on ``default``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from omnirelay.providers.task_vendors.base import (
    ClientRoute,
    InvalidSubmit,
    Media,
    PollPolicy,
    PriceUnit,
    Quantity,
    Submission,
    SubmitRefused,
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

KINDS: dict[str, str] = {
    "text2video": "videos/text2video",
    "image2video": "videos/image2video",
    "images": "images/generations",
    "try_on": "images/kolors-virtual-try-on",
}
"""Action → Kling's path below ``/v1``."""
DEFAULT_MODELS: dict[str, str] = {
    "text2video": "kling-v1",
    "image2video": "kling-v1",
    "images": "kling-v1",
    "try_on": "kolors-virtual-try-on-v1",
}
CLIENT_STATUS: dict[str, str] = {
    "SUBMITTED": "submitted",
    "QUEUED": "submitted",
    "IN_PROGRESS": "processing",
    "SUCCESS": "succeed",
    "FAILURE": "failed",
}
REFUSALS: dict[int, int] = {1200: 400, 1201: 400, 1300: 400, 1301: 400, 1302: 429, 1303: 429, 1102: 429}
"""Kling body code → HTTP meaning, for refusals written in a 200 body (anything else unknown: 502)."""
_CODES: dict[int, int] = {400: 1201, 401: 1000, 403: 1103, 404: 1203, 429: 1302, 500: 5000, 502: 5000, 503: 5001}
JWT_LIFETIME_S = 1800


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def kling_jwt(access_key: str, secret_key: str, now: float | None = None) -> str:
    """The HS256 token Kling expects: ``iss`` = access key, ``exp`` in 30 minutes, ``nbf`` 5 s ago."""
    issued = int(time.time() if now is None else now)
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    claims = _b64(orjson.dumps({"iss": access_key, "exp": issued + JWT_LIFETIME_S, "nbf": issued - 5}))
    signature = hmac.new(secret_key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


def _seconds(value: Any) -> int | None:
    try:
        return int(float(str(value)))
    except ValueError:
        return None


class KlingVendor(TaskVendor):
    name: ClassVar[str] = "kling"
    channel_types: ClassVar[tuple[str, ...]] = ("kling",)
    submit_paths: ClassVar[Mapping[str, str]] = {action: f"/v1/{path}" for action, path in KINDS.items()}
    upstream_id_field: ClassVar[str] = "data.task_id"
    status_field: ClassVar[str] = "task_status"
    status_map: ClassVar[Mapping[str, TaskStatus]] = {
        "submitted": "QUEUED",
        "processing": "IN_PROGRESS",
        "succeed": "SUCCESS",
        "failed": "FAILURE",
    }
    progress_field: ClassVar[str | None] = None
    error_field: ClassVar[str | None] = "task_status_msg"
    poll: ClassVar[PollPolicy] = PollPolicy(first_s=10.0, backoff=1.5, max_interval_s=30.0, timeout_s=2 * 3600.0)
    public_id_prefix: ClassVar[str] = "kling_"
    default_action: ClassVar[str] = "text2video"
    routes: ClassVar[tuple[ClientRoute, ...]] = tuple(
        route
        for action, path in KINDS.items()
        for route in (
            ClientRoute("POST", f"/kling/v1/{path}", "submit", action),
            ClientRoute("GET", f"/kling/v1/{path}/{{task_id}}", "fetch", action),
        )
    )

    # --- upstream ------------------------------------------------------------------------------------------------

    def auth_headers(self, api_key: str) -> dict[str, str]:
        access, _, secret = api_key.partition("|")
        if not access:
            return {}
        # A key without its secret half cannot be signed; sent as is, Kling answers 1002 (invalid token).
        return {"Authorization": "Bearer " + (kling_jwt(access, secret) if secret else access)}

    def submit_call(self, submission: Submission, upstream_model: str, parent: str | None) -> UpstreamCall:
        body = dict(submission.payload)
        body["model_name"] = upstream_model
        return UpstreamCall("POST", self.submit_paths[submission.action], body)

    def read_submit(self, status: int, body: bytes) -> str:
        data = orjson.loads(body) if body else {}
        code = data.get("code") if isinstance(data, dict) else None
        if code != 0:
            message = data.get("message") if isinstance(data, dict) else None
            http = REFUSALS.get(code, 502) if isinstance(code, int) else 502
            raise SubmitRefused(http, str(message or "Kling refused the task."), code)
        return super().read_submit(status, body)

    def task_ref(self, submission: Submission, upstream_id: str) -> str:
        return f"{submission.action}:{upstream_id}"

    def fetch_call(self, upstream_id: str) -> UpstreamCall:
        action, _, task_id = upstream_id.partition(":")
        return UpstreamCall("GET", f"/v1/{KINDS.get(action, KINDS['text2video'])}/{task_id}")

    def read_fetch(self, body: bytes) -> dict[str, Any]:
        data = orjson.loads(body)
        task = data.get("data") if isinstance(data, dict) and data.get("code") == 0 else None
        return task if isinstance(task, dict) else {}

    def read_task(self, task: Mapping[str, Any]) -> TaskUpdate:
        if not task:
            raise ValueError("Kling answered no task")
        return super().read_task(task)

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        result = task.get("task_result") if isinstance(task.get("task_result"), dict) else {}
        videos = tuple(
            Media(str(v["url"]), "video/mp4", float(v["duration"]) if _seconds(v.get("duration")) else None)
            for v in result.get("videos") or ()
            if isinstance(v, dict) and v.get("url")
        )
        images = tuple(
            Media(str(i["url"]), "image/png")
            for i in result.get("images") or ()
            if isinstance(i, dict) and i.get("url")
        )
        return TaskResults(images=images, videos=videos)

    def billed_quantity(self, task: TaskView, update: TaskUpdate) -> Mapping[PriceUnit, Quantity] | None:
        # Only an images call is sold per image made (its "image" option, counted as tasks).
        return images_made(update, "task") if task.action == "images" else None

    # --- client --------------------------------------------------------------------------------------------------

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        action = route.action or self.default_action
        payload = dict(body)
        hook = pop_hook(payload, "callback_url", "notify_hook")
        model = payload.pop("model_name", None) or payload.pop("model", None) or DEFAULT_MODELS[action]
        if not isinstance(model, str):
            raise InvalidSubmit("'model_name' must be a string.")
        prompt = text_of(payload.get("prompt"))
        option, quantity = "default", 1
        if action == "try_on":
            if not (payload.get("human_image") or payload.get("model_image")) or not payload.get("cloth_image"):
                raise InvalidSubmit("'human_image' and 'cloth_image' are required.")
        elif action == "image2video" and not payload.get("image"):
            raise InvalidSubmit("'image' is required.")
        elif action != "image2video" and not prompt.strip():
            raise InvalidSubmit("'prompt' is required.")
        if action in ("text2video", "image2video"):
            seconds = _seconds(payload.get("duration", "5"))
            if seconds not in (5, 10):
                raise InvalidSubmit("'duration' must be '5' or '10'.")
            mode = payload.get("mode", "std")
            if mode not in ("std", "pro"):
                raise InvalidSubmit("'mode' must be 'std' or 'pro'.")
            option = f"{mode}/{seconds}s"
        elif action == "images":
            count = payload.get("n", 1)
            if not isinstance(count, int) or not 1 <= count <= 9:
                raise InvalidSubmit("'n' must be an integer from 1 to 9.")
            option, quantity = "image", count
        # The gateway's own webhook replaces Kling's callback: the upstream must never call the client directly.
        return Submission(
            model=model,
            action=action,
            payload=payload,
            prompt=prompt,
            notify_hook=hook,
            option=option,
            quantity=quantity,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        action = str(config.get("action") or "")
        if action not in KINDS:
            action = "image2video" if config.get("image") and not prompt else "text2video"
            if model.startswith("kolors-virtual-try-on"):
                action = "try_on"
        body: dict[str, Any] = {k: v for k, v in config.items() if k != "action"}
        body["model_name"] = model
        if prompt:
            body["prompt"] = prompt
        if "duration" in body:
            body["duration"] = str(body["duration"])
        return self.parse_submit(ClientRoute("POST", "/task/submit", "submit", action), body, {})

    def _envelope(self, task: TaskView, data: dict[str, Any]) -> dict[str, Any]:
        request_id = hashlib.sha256(f"{task.public_id}:{task.updated_at}".encode()).hexdigest()[:32]
        return {"code": 0, "message": "SUCCEED", "request_id": request_id, "data": data}

    def _data(self, task: TaskView) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_id": task.public_id,
            "task_status": CLIENT_STATUS[task.status],
            "task_status_msg": (task.error or "") if task.status == "FAILURE" else "",
            "task_info": {"external_task_id": task.request.get("external_task_id") or ""},
            "created_at": int(task.submitted_at * 1000),
            "updated_at": int(task.updated_at * 1000),
        }
        if task.status == "SUCCESS":
            if task.action in ("text2video", "image2video"):
                data["task_result"] = {
                    "videos": [
                        {
                            "id": f"{task.public_id}-{i}",
                            "url": v.url,
                            "duration": f"{v.duration:g}" if v.duration else "",
                        }
                        for i, v in enumerate(task.results.videos)
                    ]
                }
            else:
                data["task_result"] = {
                    "images": [{"index": i, "url": m.url} for i, m in enumerate(task.results.images)]
                }
        return data

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        data = self._data(task)
        return 200, self._envelope(
            task, {k: data[k] for k in ("task_id", "task_status", "task_info", "created_at", "updated_at")}
        )

    def render_task(self, task: TaskView) -> Any:
        return self._envelope(task, self._data(task))

    def render_fetch(self, route: ClientRoute, task: TaskView) -> tuple[int, Any]:
        if route.action != task.action:  # a video's id asked on the images path: not a task of that kind
            return self.render_error(404, "Task not found")
        return 200, self.render_task(task)

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        code = _CODES.get(status, 5000 if status >= 500 else 1200)
        request_id = hashlib.sha256(f"{status}:{message}:{time.time()}".encode()).hexdigest()[:32]
        return status, {"code": code, "message": message, "request_id": request_id}
