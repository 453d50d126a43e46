"""The fake Kling upstream: the official Kling AI API (``api-singapore.klingai.com``) shape.

Routes (each kind also answers ``GET /v1/<kind>/{task_id}`` and a list ``GET /v1/<kind>?pageNum=&pageSize=``):
``/v1/videos/text2video``, ``/v1/videos/image2video``, ``/v1/images/generations``,
``/v1/images/kolors-virtual-try-on``. Every answer is ``{"code": 0, "message": "SUCCEED", "request_id", "data"}``;
a task is ``{task_id, task_status: submitted|processing|succeed|failed, task_status_msg, task_info, created_at,
updated_at (ms), task_result: {videos: [{id, url, duration}]} | {images: [{index, url}]}, final_unit_deduction}``.

Auth is Kling's: ``Authorization: Bearer <JWT>``, HS256, ``iss`` = access key, signed with the secret key, valid
between ``nbf`` and ``exp``. The simulator's keys (``SimulatorState.api_keys``) are ``access_key|secret_key``
pairs; with no keys configured any well-formed, unexpired HS256 token is accepted (its signature cannot be known).
Errors carry Kling's codes: 1000-1004 auth (401), 1200/1201 bad params (400), 1203 not found (404),
1302 rate limit (429), 5000/5001 server (500/503).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.media import png
from omnirelay.simulators.media_video import mp4
from omnirelay.simulators.tasks.lifecycle import (
    Phase,
    SimTask,
    TaskKnobs,
    TaskSimulator,
    bearer,
    file_url,
    gate,
    invalid_url,
    json_response,
    new_id,
    task_knobs,
)

KINDS = ("videos/text2video", "videos/image2video", "images/generations", "images/kolors-virtual-try-on")
_STATUS = {
    Phase.QUEUED: "submitted",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "succeed",
    Phase.FAILED: "failed",
    Phase.CANCELED: "failed",
}
_CODES = {400: 1201, 401: 1000, 403: 1103, 404: 1203, 408: 5002, 429: 1302, 500: 5000, 502: 5000, 503: 5001}
_VIDEO_SIZES = {"16:9": (640, 360), "9:16": (360, 640), "1:1": (480, 480)}
_IMAGE_SIZES = {
    "16:9": (1024, 576),
    "9:16": (576, 1024),
    "1:1": (1024, 1024),
    "4:3": (1024, 768),
    "3:4": (768, 1024),
    "3:2": (1024, 683),
    "2:3": (683, 1024),
    "21:9": (1344, 576),
}


def _error(status: int, message: str, code: int | None = None) -> Response:
    body = {
        "code": code if code is not None else _CODES.get(status, 5000),
        "message": message or "Authentication failed.",
        "request_id": new_id("uuid"),
    }
    return json_response(body, status)


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_jwt(token: str | None, secrets_by_issuer: dict[str, str], now: float | None = None) -> tuple[int, str]:
    """(0, "") for a token Kling would accept, else (Kling error code, why)."""
    if not token:
        return 1001, "Authorization is empty."
    parts = token.split(".")
    if len(parts) != 3:
        return 1002, "Authorization is invalid: not a JWT."
    try:
        header = orjson.loads(_b64url_decode(parts[0]))
        claims = orjson.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, orjson.JSONDecodeError):
        return 1002, "Authorization is invalid: not a JWT."
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "HS256":
        return 1002, "Authorization is invalid: HS256 expected."
    issuer = claims.get("iss")
    if secrets_by_issuer:
        secret = secrets_by_issuer.get(str(issuer))
        if secret is None:
            return 1000, "Authentication failed: unknown access key."
        expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            return 1000, "Authentication failed: bad signature."
    elif not issuer:
        return 1002, "Authorization is invalid: no iss."
    now = time.time() if now is None else now
    if isinstance(claims.get("nbf"), int | float) and now < claims["nbf"]:
        return 1003, "Authorization is not yet valid."
    if not isinstance(claims.get("exp"), int | float) or now >= claims["exp"]:
        return 1004, "Authorization has expired."
    return 0, ""


class _Kling(TaskSimulator):
    def _secrets(self) -> dict[str, str]:
        pairs = (key.partition("|") for key in self.state.api_keys)
        return {ak: sk for ak, _, sk in pairs if sk}

    async def gate(self, request: Request, raw: bytes = b"", text: str = "") -> Response | None:
        # Kling says why a token was refused, with its own code: the JWT check gives both.
        code, why = check_jwt(bearer(request), self._secrets())
        return await gate(
            self.state,
            request,
            raw,
            text,
            code == 0,
            lambda status, message: _error(status, message or why, code if status == 401 and code else None),
        )

    async def submit(self, request: Request) -> Response:
        kind = f"{request.path_params['group']}/{request.path_params['kind']}"
        if kind not in KINDS:
            return _error(404, invalid_url(request), 1202)
        admitted = await self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        body, text = admitted
        if body is None:
            return _error(400, "The body must be a JSON object.", 1200)
        problem = _validate(kind, body)
        if problem:
            return _error(400, problem, 1201)
        knobs = task_knobs(self.state, self.defaults, request, text)
        model = str(body.get("model_name") or body.get("model") or _default_model(kind))
        task = self.book.add(SimTask(new_id("digits", 18), kind, model, body, knobs))
        seed = f"{task.id}:{text}"
        if kind.startswith("videos/"):
            seconds = float(str(body.get("duration") or "5"))
            width, height = _VIDEO_SIZES.get(str(body.get("aspect_ratio") or "16:9"), (640, 360))
            if body.get("mode") == "pro":
                width, height = width * 2, height * 2
            task.extra["seconds"] = seconds
            task.extra["video_id"] = new_id("uuid")
            self.book.add_file(task, "mp4", "video/mp4", lambda: mp4(seconds, width, height, seed))
        else:
            count = 1 if kind.endswith("try-on") else int(body.get("n") or 1)
            width, height = _IMAGE_SIZES.get(str(body.get("aspect_ratio") or "16:9"), (1024, 576))
            for i in range(count):
                self.book.add_file(task, "png", "image/png", lambda i=i: png(width, height, f"{seed}:{i}"))
        return self._ok(self._render(request, task, brief=True))

    def _ok(self, data: Any) -> Response:
        return json_response({"code": 0, "message": "SUCCEED", "request_id": new_id("uuid"), "data": data})

    def _render(self, request: Request, task: SimTask, brief: bool = False) -> dict[str, Any]:
        phase = task.phase()
        updated = task.finished_at or task.started_at or task.created_at
        out: dict[str, Any] = {
            "task_id": task.id,
            "task_status": _STATUS[phase],
            "task_info": {"external_task_id": task.input.get("external_task_id") or ""},
            "created_at": int(task.created_at * 1000),
            "updated_at": int(updated * 1000),
        }
        if brief:
            return out
        out["task_status_msg"] = task.knobs.fail_reason if phase is Phase.FAILED else ""
        if phase is Phase.SUCCEEDED:
            urls = [file_url(request, name) for name in task.outputs]
            if task.action.startswith("videos/"):
                seconds = task.extra["seconds"]
                out["task_result"] = {
                    "videos": [{"id": task.extra["video_id"], "url": urls[0], "duration": f"{seconds:g}"}]
                }
                out["final_unit_deduction"] = "2" if task.input.get("mode") == "pro" else "1"
            else:
                out["task_result"] = {"images": [{"index": i, "url": u} for i, u in enumerate(urls)]}
                out["final_unit_deduction"] = str(len(urls))
        return out

    async def get(self, request: Request) -> Response:
        task = await self.gated_task(request, "Task not found.")
        return task if isinstance(task, Response) else self._ok(self._render(request, task))

    def find(self, request: Request) -> SimTask | None:
        task = self.book.get(request.path_params["task_id"])
        kind = f"{request.path_params['group']}/{request.path_params['kind']}"
        return task if task is not None and task.action == kind else None

    async def list_tasks(self, request: Request) -> Response:
        refused = await self.gate(request)
        if refused is not None:
            return refused
        kind = f"{request.path_params['group']}/{request.path_params['kind']}"
        try:
            page = max(1, int(request.query_params.get("pageNum", "1")))
            size = min(500, max(1, int(request.query_params.get("pageSize", "30"))))
        except ValueError:
            return _error(400, "pageNum and pageSize must be integers.", 1201)
        tasks = sorted((t for t in self.book.tasks.values() if t.action == kind), key=lambda t: -t.created_at)
        return self._ok([self._render(request, t) for t in tasks[(page - 1) * size : page * size]])


def _default_model(kind: str) -> str:
    return "kolors-virtual-try-on-v1" if kind.endswith("try-on") else "kling-v1"


def _validate(kind: str, body: dict[str, Any]) -> str | None:
    if kind == "images/kolors-virtual-try-on":
        if not (body.get("human_image") or body.get("model_image")) or not body.get("cloth_image"):
            return "human_image and cloth_image are required."
        return None
    if kind == "videos/image2video":
        if not body.get("image"):
            return "image is required."
    elif not str(body.get("prompt") or "").strip():
        return "prompt is required."
    if len(str(body.get("prompt") or "")) > 2500:
        return "prompt must be at most 2500 characters."
    if kind.startswith("videos/"):
        if str(body.get("duration") or "5") not in {"5", "10"}:
            return "duration must be '5' or '10'."
        if str(body.get("mode") or "std") not in {"std", "pro"}:
            return "mode must be 'std' or 'pro'."
        if str(body.get("aspect_ratio") or "16:9") not in _VIDEO_SIZES:
            return "aspect_ratio must be one of 16:9, 9:16, 1:1."
    else:
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 9:
            return "n must be an integer from 1 to 9."
        if str(body.get("aspect_ratio") or "16:9") not in _IMAGE_SIZES:
            return "aspect_ratio is not supported."
    return None


def create_kling_simulator(state: SimulatorState | None = None, defaults: TaskKnobs | None = None) -> Starlette:
    """Build the fake Kling upstream; ``state.api_keys`` holds ``access_key|secret_key`` pairs."""
    sim = _Kling(state or SimulatorState(), defaults or TaskKnobs(duration=4.0), _error)
    return sim.app(
        [
            Route("/v1/{group}/{kind}", sim.submit, methods=["POST"]),
            Route("/v1/{group}/{kind}", sim.list_tasks, methods=["GET"]),
            Route("/v1/{group}/{kind}/{task_id}", sim.get, methods=["GET"]),
        ],
        lambda request: _error(404, invalid_url(request), 1202),
    )
