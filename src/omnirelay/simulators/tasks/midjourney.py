"""The fake Midjourney upstream, in the midjourney-proxy shape.

- ``POST /mj/submit/imagine`` ``{prompt, base64Array?, notifyHook?, state?, botType?}``, ``/blend``
  ``{base64Array (2-5), dimensions?}``, ``/describe`` ``{base64}``, ``/change`` ``{action: UPSCALE|VARIATION|REROLL,
  index, taskId}``, ``/action`` ``{customId, taskId}``, ``/video`` ``{prompt, image?, motion?}``: each answers
  ``{"code": 1, "description": "Submit success", "properties": {}, "result": "<16 digits>"}``, or a refusal in the
  same envelope with HTTP 200: 4 (validation), 23 (queue full), 24 (banned prompt: the word ``forbidden`` in a
  prompt, with ``properties.bannedWord``). ``[sim code=23]`` in a prompt forces a code.
- ``GET /mj/task/{id}/fetch`` → the task; ``POST /mj/task/list-by-condition`` ``{"ids": [...]}`` → a list.

A task: ``{id, action, customId, botType, prompt, promptEn, description, state, submitTime, startTime,
finishTime (ms), imageUrl, videoUrl, status: NOT_START|SUBMITTED|IN_PROGRESS|SUCCESS|FAILURE, progress: "NN%",
failReason, properties, buttons}``. IMAGINE, VARIATION, REROLL and BLEND make a 2x2 grid PNG with U1-U4/V1-V4 and
reroll buttons; UPSCALE one PNG; DESCRIBE four prompts; VIDEO an MP4. Auth: ``mj-api-secret``.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import SimulatorState, directives_in, strip_directives
from omnirelay.simulators.media import png
from omnirelay.simulators.media_video import mp4
from omnirelay.simulators.tasks.lifecycle import (
    Phase,
    SimTask,
    TaskKnobs,
    TaskSimulator,
    file_url,
    json_response,
    new_id,
    parse_json,
    task_knobs,
)

BANNED_WORDS = ("forbidden",)
_STATUS = {
    Phase.QUEUED: "SUBMITTED",
    Phase.RUNNING: "IN_PROGRESS",
    Phase.SUCCEEDED: "SUCCESS",
    Phase.FAILED: "FAILURE",
    Phase.CANCELED: "FAILURE",
}
_GRID_ACTIONS = frozenset({"IMAGINE", "VARIATION", "REROLL", "BLEND"})
_CHANGE_ACTIONS = frozenset({"UPSCALE", "VARIATION", "REROLL"})


def _envelope(code: int, description: str, result: str | None = None, **properties: Any) -> Response:
    return json_response({"code": code, "description": description, "properties": properties, "result": result})


def _error(status: int, message: str) -> Response:
    if status == 401:
        return json_response({"code": 4, "description": message or "Unauthorized: invalid mj-api-secret"}, 401)
    return json_response({"code": 9, "description": message, "properties": {}, "result": None}, status)


def _buttons(job_hash: str) -> list[dict[str, Any]]:
    buttons = [
        {"customId": f"MJ::JOB::upsample::{i}::{job_hash}", "emoji": "", "label": f"U{i}", "type": 2, "style": 2}
        for i in range(1, 5)
    ]
    buttons.append(
        {"customId": f"MJ::JOB::reroll::0::{job_hash}::SOLO", "emoji": "🔄", "label": "", "type": 2, "style": 2}
    )
    buttons += [
        {"customId": f"MJ::JOB::variation::{i}::{job_hash}", "emoji": "", "label": f"V{i}", "type": 2, "style": 2}
        for i in range(1, 5)
    ]
    return buttons


class _Midjourney(TaskSimulator):
    def authorized(self, request: Request) -> bool:
        return self.state.key_ok(request.headers.get("mj-api-secret"))

    async def submit(self, request: Request) -> Response:
        kind = request.path_params["action"]
        admitted = await self.admit(request)
        if isinstance(admitted, Response):
            return admitted
        body, text = admitted
        if body is None:
            return _envelope(4, "The body must be a JSON object.")
        forced = directives_in(text).get("code")
        if forced and forced != "1":
            return _envelope(int(forced), "Simulated refusal.")
        plain = strip_directives(text)
        banned = next((w for w in BANNED_WORDS if w in plain.lower()), None)
        if banned is not None:
            return _envelope(24, "Banned prompt", promptEn=plain, bannedWord=banned)
        action, parent, index = self._action(kind, body)
        if action is None:
            return _envelope(4, parent or "Invalid parameters.")
        knobs = task_knobs(self.state, self.defaults, request, text)
        prompt = plain if kind != "change" and kind != "action" else (parent.input.get("prompt", "") if parent else "")
        task = self.book.add(SimTask(new_id("digits", 16), action, "midjourney", {**body, "prompt": prompt}, knobs))
        task.extra.update(hash=new_id("uuid"), index=index)
        seed = f"{task.id}:{plain}"
        if action == "VIDEO":
            self.book.add_file(task, "mp4", "video/mp4", lambda s=seed, n=knobs.length: mp4(n, 480, 480, s))
        elif action != "DESCRIBE":
            size = 1024 if action == "UPSCALE" else 512
            self.book.add_file(task, "png", "image/png", lambda s=seed, n=size: png(n, n, s))
        return _envelope(1, "Submit success", task.id)

    def _action(self, kind: str, body: dict[str, Any]) -> tuple[str | None, Any, int]:
        """(action, parent task, index); on a validation error (None, message, 0)."""
        if kind == "imagine":
            return ("IMAGINE", None, 0) if strip_directives(str(body.get("prompt") or "")) else (None, "prompt", 0)
        if kind == "blend":
            ok = isinstance(body.get("base64Array"), list) and 2 <= len(body["base64Array"]) <= 5
            return ("BLEND", None, 0) if ok else (None, "base64Array needs 2 to 5 images", 0)
        if kind == "describe":
            return ("DESCRIBE", None, 0) if body.get("base64") else (None, "base64 is required", 0)
        if kind == "video":
            return ("VIDEO", None, 0) if body.get("prompt") or body.get("image") else (None, "prompt", 0)
        parent = self.book.get(str(body.get("taskId") or ""))
        if parent is None or parent.phase() is not Phase.SUCCEEDED:
            return None, "The task to act on does not exist or has not succeeded.", 0
        if kind == "change":
            change = str(body.get("action") or "").upper()
            index = body.get("index") if isinstance(body.get("index"), int) else 0
            if change not in _CHANGE_ACTIONS or (change != "REROLL" and not 1 <= index <= 4):
                return None, "action must be UPSCALE, VARIATION or REROLL with an index of 1 to 4", 0
            return change, parent, index
        if kind == "action":
            custom = str(body.get("customId") or "")
            parts = custom.split("::")
            if len(parts) < 5 or parts[4] != parent.extra.get("hash"):
                return None, "customId does not belong to this task.", 0
            names = {"upsample": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}
            return names.get(parts[2], "VARIATION"), parent, int(parts[3]) if parts[3].isdigit() else 0
        return None, f"Unknown action {kind}.", 0

    def render(self, request: Request, task: SimTask) -> dict[str, Any]:
        phase = task.phase()
        status = "NOT_START" if task.awaiting_queue() else _STATUS[phase]
        done = phase is Phase.SUCCEEDED
        prompt = str(task.input.get("prompt") or "")
        url = file_url(request, task.outputs[0]) if done and task.outputs else ""
        description = ""
        if task.action == "DESCRIBE" and done:
            description = "\n\n".join(f"{i}️⃣ a simulated description, variant {i}" for i in range(1, 5))
        return {
            "id": task.id,
            "action": task.action,
            "customId": task.input.get("customId", ""),
            "botType": task.input.get("botType", "MID_JOURNEY"),
            "prompt": prompt,
            "promptEn": prompt,
            "description": description or "/imagine " + prompt,
            "state": task.input.get("state", ""),
            "submitTime": int(task.created_at * 1000),
            "startTime": int(task.started_at * 1000) if task.started_at else 0,
            "finishTime": int(task.finished_at * 1000) if task.finished_at else 0,
            "imageUrl": url if task.action != "VIDEO" else "",
            "videoUrl": url if task.action == "VIDEO" else "",
            "status": status,
            "progress": f"{task.progress()}%",
            "failReason": task.knobs.fail_reason if phase is Phase.FAILED else "",
            "properties": {"finalPrompt": prompt, "messageHash": task.extra["hash"]},
            "buttons": _buttons(task.extra["hash"]) if done and task.action in _GRID_ACTIONS else [],
        }

    async def fetch(self, request: Request) -> Response:
        task = await self.gated_task(request, "Task not found")
        return task if isinstance(task, Response) else json_response(self.render(request, task))

    async def list_by_condition(self, request: Request) -> Response:
        raw = await request.body()
        refused = await self.gate(request, raw)
        if refused is not None:
            return refused
        ids = (parse_json(raw) or {}).get("ids")
        if not isinstance(ids, list):
            return _error(400, "ids must be a list")
        found = [self.book.get(str(i)) for i in ids]
        return json_response([self.render(request, t) for t in found if t is not None])


def create_midjourney_simulator(state: SimulatorState | None = None, defaults: TaskKnobs | None = None) -> Starlette:
    """Build the fake midjourney-proxy around one ``SimulatorState`` (keys, faults, request log)."""
    sim = _Midjourney(state or SimulatorState(), defaults or TaskKnobs(duration=3.0, length=5.0), _error)
    return sim.app(
        [
            Route("/mj/submit/{action}", sim.submit, methods=["POST"]),
            Route("/mj/task/{task_id}/fetch", sim.fetch, methods=["GET"]),
            Route("/mj/task/list-by-condition", sim.list_by_condition, methods=["POST"]),
        ]
    )
