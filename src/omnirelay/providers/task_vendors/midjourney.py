"""Midjourney through a midjourney-proxy upstream (the shape every reseller speaks), on the gateway's ``/mj`` routes.

Upstream: ``POST /mj/submit/{imagine,blend,describe,change,action,video}`` answers ``{"code", "description",
"properties", "result": "<id>"}`` where code 1 is accepted, 21 "already exists" and 22 "queued" are accepted too,
23 (queue full), 24 (banned prompt) and 4 (validation) are refusals; ``GET /mj/task/{id}/fetch`` gives one task and
``POST /mj/task/list-by-condition`` ``{"ids": [...]}`` several (the poller's batch). Key header: ``mj-api-secret``.

Each action is its own priced model, as resellers sell them: ``mj_imagine``, ``mj_upscale``, ``mj_variation``...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from omnirelay.providers.task_vendors.base import (
    ClientRoute,
    InvalidSubmit,
    Media,
    PollPolicy,
    Submission,
    SubmitRefused,
    TaskResults,
    TaskStatus,
    TaskVendor,
    TaskView,
    pop_hook,
    text_of,
)

ACCEPTED_CODES = frozenset({1, 21, 22})
MODES = frozenset({"fast", "relax", "turbo"})
REFUSALS: dict[int, int] = {4: 400, 23: 429, 24: 400}
"""midjourney-proxy code → what it means in HTTP terms (anything else: the upstream broke, 502)."""

ACTION_MODELS: dict[str, str] = {
    "imagine": "mj_imagine",
    "blend": "mj_blend",
    "describe": "mj_describe",
    "video": "mj_video",
    "UPSCALE": "mj_upscale",
    "VARIATION": "mj_variation",
    "REROLL": "mj_reroll",
}
CUSTOM_ID_MODELS: dict[str, str] = {
    "upsample": "mj_upscale",
    "variation": "mj_variation",
    "low_variation": "mj_variation",
    "high_variation": "mj_variation",
    "reroll": "mj_reroll",
}
"""The button kind inside an ``MJ::JOB::<kind>::...`` custom id → its model; other buttons are ``mj_modal``."""

MJ_STATUS: dict[str, str] = {"SUBMITTED": "SUBMITTED", "QUEUED": "SUBMITTED", "IN_PROGRESS": "IN_PROGRESS"}
_ERROR_CODES: dict[int, int] = {400: 4, 401: 4, 403: 4, 404: 3, 429: 23}


def _model_for(action: str, body: Mapping[str, Any]) -> str:
    if action == "change":
        change = str(body.get("action") or "").upper()
        if change not in ACTION_MODELS:
            raise InvalidSubmit("'action' must be UPSCALE, VARIATION or REROLL.")
        return ACTION_MODELS[change]
    if action == "action":
        custom_id = body.get("customId")
        if not isinstance(custom_id, str) or not custom_id.startswith("MJ::"):
            raise InvalidSubmit("'customId' must be a button's customId.")
        parts = custom_id.split("::")
        return CUSTOM_ID_MODELS.get(parts[2] if len(parts) > 2 else "", "mj_modal")
    return ACTION_MODELS[action]


class MidjourneyVendor(TaskVendor):
    name: ClassVar[str] = "midjourney"
    channel_types: ClassVar[tuple[str, ...]] = ("midjourney",)
    auth_header: ClassVar[str] = "mj-api-secret"
    auth_scheme: ClassVar[str] = ""
    client_auth: ClassVar[tuple[tuple[str, str], ...]] = (("authorization", "Bearer "), ("mj-api-secret", ""))
    submit_paths: ClassVar[Mapping[str, str]] = {
        action: f"/mj/submit/{action}" for action in ("imagine", "blend", "describe", "change", "action", "video")
    }
    parent_field: ClassVar[str | None] = "taskId"
    upstream_id_field: ClassVar[str] = "result"
    fetch_path: ClassVar[str] = "/mj/task/{id}/fetch"
    batch_path: ClassVar[str | None] = "/mj/task/list-by-condition"
    batch_size: ClassVar[int] = 100
    status_map: ClassVar[Mapping[str, TaskStatus]] = {
        "NOT_START": "SUBMITTED",
        "SUBMITTED": "QUEUED",
        "MODAL": "IN_PROGRESS",
        "IN_PROGRESS": "IN_PROGRESS",
        "SUCCESS": "SUCCESS",
        "FAILURE": "FAILURE",
        "CANCEL": "FAILURE",
    }
    error_field: ClassVar[str | None] = "failReason"
    poll: ClassVar[PollPolicy] = PollPolicy(first_s=3.0, backoff=1.5, max_interval_s=15.0, timeout_s=3600.0)
    public_id_prefix: ClassVar[str] = "mj_"
    default_action: ClassVar[str] = "imagine"
    routes: ClassVar[tuple[ClientRoute, ...]] = (
        *(
            ClientRoute("POST", f"/mj/submit/{action}", "submit", action)
            for action in ("imagine", "blend", "describe", "change", "action", "video")
        ),
        # new-api's speed prefixes: /fast/mj/..., /relax/mj/..., /turbo/mj/... (priced by mode).
        *(
            ClientRoute("POST", f"/{{mode}}/mj/submit/{action}", "submit", action)
            for action in ("imagine", "blend", "describe", "change", "action", "video")
        ),
        ClientRoute("GET", "/mj/task/{task_id}/fetch", "fetch"),
        ClientRoute("POST", "/mj/task/list-by-condition", "list"),
    )

    # --- upstream ----------------------------------------------------------------------------------------------

    def read_submit(self, status: int, body: bytes) -> str:
        data = orjson.loads(body) if body else {}
        code = data.get("code") if isinstance(data, dict) else None
        if code in ACCEPTED_CODES and data.get("result"):
            return str(data["result"])
        description = str(data.get("description") or "") if isinstance(data, dict) else ""
        raise SubmitRefused(REFUSALS.get(code, 502) if isinstance(code, int) else 502, description, code)

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        images = ()
        videos = ()
        if task.get("imageUrl"):
            images = (Media(str(task["imageUrl"]), "image/png"),)
        urls = task.get("videoUrls") or ([task["videoUrl"]] if task.get("videoUrl") else [])
        if urls:
            videos = tuple(Media(str(u.get("url") if isinstance(u, dict) else u), "video/mp4") for u in urls)
        text = None
        if str(task.get("action")) == "DESCRIBE":
            text = str(dig_prompt(task))
        return TaskResults(images=images, videos=videos, text=text)

    # --- client side -------------------------------------------------------------------------------------------

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        action = route.action or "imagine"
        payload = dict(body)
        hook = pop_hook(payload, "notifyHook", "notify_hook")
        prompt = payload.get("prompt")
        if action in ("imagine", "video") and (not isinstance(prompt, str) or not prompt.strip()):
            raise InvalidSubmit("'prompt' is required.")
        if action == "blend" and len(payload.get("base64Array") or []) < 2:
            raise InvalidSubmit("'base64Array' needs at least two images.")
        if action == "describe" and not payload.get("base64"):
            raise InvalidSubmit("'base64' is required.")
        parent = None
        if action in ("change", "action"):
            parent = payload.get("taskId")
            if not isinstance(parent, str) or not parent:
                raise InvalidSubmit("'taskId' is required.")
            if action == "change" and str(payload.get("action", "")).upper() != "REROLL":
                index = payload.get("index")
                if not isinstance(index, int) or not 1 <= index <= 4:
                    raise InvalidSubmit("'index' must be 1 to 4.")
        mode = params.get("mode") or payload.get("mode")  # fast | relax | turbo: the per_task price key
        if mode is not None:
            if not isinstance(mode, str) or mode not in MODES:
                raise InvalidSubmit("The speed must be fast, relax or turbo.")
            # midjourney-proxy picks an account of that speed from accountFilter.modes.
            existing = payload.get("accountFilter")
            payload["accountFilter"] = {**(existing if isinstance(existing, dict) else {}), "modes": [mode.upper()]}
            payload.pop("mode", None)
        return Submission(
            model=_model_for(action, payload),
            action=action,
            payload=payload,
            prompt=text_of(prompt),
            notify_hook=hook,
            option=str(mode).lower() if isinstance(mode, str) else None,
            parent=parent,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        action = next((a for a, m in ACTION_MODELS.items() if m == model), None)
        if action is None:
            raise InvalidSubmit(f"The model '{model}' is not a Midjourney action.")
        body: dict[str, Any] = {"prompt": prompt, **config}
        if action.isupper():
            body["action"] = action
            action = "change"
        submission = self.parse_submit(ClientRoute("POST", "/task/submit", "submit", action), body, {})
        return submission

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        return 200, {"code": 1, "description": "Submit success", "properties": {}, "result": task.public_id}

    def render_task(self, task: TaskView) -> Any:
        raw = task.raw
        image = task.results.images[0].url if task.results.images else None
        videos = [m.url for m in task.results.videos]
        return {
            "id": task.public_id,
            "action": str(raw.get("action") or _ACTION_NAMES.get(task.action, task.action.upper())),
            "customId": task.request.get("customId", ""),
            "botType": str(raw.get("botType") or task.request.get("botType") or "MID_JOURNEY"),
            "prompt": task.prompt,
            "promptEn": str(raw.get("promptEn") or task.prompt),
            "description": str(raw.get("description") or ""),
            "state": task.request.get("state", ""),
            "submitTime": int(task.submitted_at * 1000),
            "startTime": int(task.started_at * 1000) if task.started_at else 0,
            "finishTime": int(task.finished_at * 1000) if task.finished_at else 0,
            "imageUrl": image or "",
            "videoUrl": videos[0] if videos else "",
            "videoUrls": [{"url": u} for u in videos],
            "status": MJ_STATUS.get(task.status, task.status),
            "progress": f"{task.progress}%",
            "failReason": task.error or "",
            "buttons": list(raw.get("buttons") or []) if task.status == "SUCCESS" else [],
            "properties": {"finalPrompt": str(raw.get("promptEn") or task.prompt)},
        }

    def render_refusal(self, refused: SubmitRefused) -> tuple[int, Any]:
        """midjourney-proxy's own refusals (24 banned prompt, 23 queue full...) reach the client as it sent them."""
        if isinstance(refused.vendor_code, int) and refused.vendor_code in REFUSALS:
            return 200, {"code": refused.vendor_code, "description": refused.message, "properties": {}, "result": None}
        return super().render_refusal(refused)

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        code = _ERROR_CODES.get(status, 9)
        return status, {"code": code, "description": message, "properties": {}, "result": None}


_ACTION_NAMES = {"imagine": "IMAGINE", "blend": "BLEND", "describe": "DESCRIBE", "video": "VIDEO"}


def dig_prompt(task: Mapping[str, Any]) -> str:
    properties = task.get("properties")
    if isinstance(properties, dict) and properties.get("finalPrompt"):
        return str(properties["finalPrompt"])
    return str(task.get("prompt") or task.get("description") or "")
