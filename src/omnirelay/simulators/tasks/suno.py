"""The fake Suno upstream, in the suno-api shape that resellers (and new-api's Suno channel) speak.

- ``POST /suno/submit/music``: inspiration mode (``gpt_description_prompt``), custom mode (``prompt`` = lyrics,
  ``title``, ``tags``) or continuation (``task`` = ``extend``, ``continue_clip_id``, ``continue_at``); answers
  ``{"code": "success", "message": "", "data": "<task id>"}``. Each music task makes two clips, as Suno does.
- ``POST /suno/submit/lyrics``: ``prompt`` → one lyrics text.
- ``GET /suno/fetch/{id}`` → ``{"code": "success", "data": <task>}``; ``POST /suno/fetch`` ``{"ids": [...]}`` →
  ``{"code": "success", "data": [<task>, ...]}`` (unknown ids left out).

A task is ``{task_id, notify_hook, action: MUSIC|LYRICS, status: SUBMITTED|QUEUED|IN_PROGRESS|SUCCESS|FAILURE,
fail_reason, submit_time, start_time, finish_time (unix seconds), progress: "NN%", data}``; ``data`` holds the clips
(``id, title, status, audio_url, image_url, image_large_url, video_url, model_name, major_model_version, metadata``)
or, for lyrics, ``{id, status, title, text}``. Clips' MP3/JPEG/MP4 are served from ``/files/``.

Errors: ``{"code": "<reason>", "message": "...", "data": null}`` with the HTTP status. Auth: ``Authorization: Bearer``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import SimulatorState, generated_words, strip_directives
from omnirelay.simulators.media import jpeg, mp3
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

MODELS = ("chirp-v3-0", "chirp-v3-5", "chirp-v4", "chirp-auk", "chirp-bluejay")
DEFAULT_MV = "chirp-v3-5"
_STATUS = {
    Phase.QUEUED: "QUEUED",
    Phase.RUNNING: "IN_PROGRESS",
    Phase.SUCCEEDED: "SUCCESS",
    Phase.FAILED: "FAILURE",
    Phase.CANCELED: "FAILURE",
}
_CLIP_STATUS = {Phase.QUEUED: "submitted", Phase.RUNNING: "streaming", Phase.SUCCEEDED: "complete"}
_ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 404: "task_not_exist", 429: "too_many_requests"}


def _error(status: int, message: str) -> Response:
    if status == 401 and not message:
        message = "Invalid API key."
    code = _ERROR_CODES.get(status, "upstream_error")
    return json_response({"code": code, "message": message or code, "data": None}, status)


def _success(data: Any) -> Response:
    return json_response({"code": "success", "message": "", "data": data})


def _knob_text(body: Mapping[str, Any]) -> str:
    return " ".join(str(body.get(k) or "") for k in ("gpt_description_prompt", "prompt", "title", "tags"))


class _Suno(TaskSimulator):
    async def submit(self, request: Request) -> Response:
        action = request.path_params["action"].lower()
        admitted = await self.admit(request, _knob_text)
        if isinstance(admitted, Response):
            return admitted
        body, text = admitted
        if body is None:
            return _error(400, "The body must be a JSON object.")
        if action == "lyrics":
            return self._lyrics(request, body, text)
        if action != "music":
            return _error(400, f"invalid_action: {action}")
        return self._music(request, body, text)

    def _music(self, request: Request, body: dict[str, Any], text: str) -> Response:
        mv = str(body.get("mv") or DEFAULT_MV)
        if mv not in MODELS and not mv.endswith("-upload"):
            return _error(400, f"Unknown model mv={mv!r}.")
        description = str(body.get("gpt_description_prompt") or "")
        lyrics = str(body.get("prompt") or "")
        mode = "inspiration" if description else "custom"
        parent_clip = body.get("continue_clip_id")
        if body.get("task") == "extend" or parent_clip:
            if not parent_clip or not any(
                parent_clip in t.extra.get("clips", ()) and t.phase() is Phase.SUCCEEDED
                for t in self.book.tasks.values()
            ):
                return _error(400, "continue_clip_id must name a finished clip.")
            mode = "extend"
        elif not description and not lyrics:
            return _error(400, "Either gpt_description_prompt (inspiration mode) or prompt (custom mode) is required.")
        knobs = task_knobs(self.state, self.defaults, request, text)
        task = self.book.add(SimTask(new_id("uuid"), "MUSIC", mv, body, knobs))
        title = str(body.get("title") or "") or " ".join(generated_words(task.id, 3)).title()
        task.extra.update(mode=mode, title=title, clips=[new_id("uuid") for _ in range(2)])
        for clip in task.extra["clips"]:
            seed = f"{clip}:{text}"
            self.book.add_file(task, "mp3", "audio/mpeg", lambda s=seed, n=knobs.length: mp3(n, s))
            self.book.add_file(task, "jpeg", "image/jpeg", lambda s=seed: jpeg(400, 400, s))
            self.book.add_file(task, "mp4", "video/mp4", lambda s=seed, n=knobs.length: mp4(n, 320, 320, s))
        return _success(task.id)

    def _lyrics(self, request: Request, body: dict[str, Any], text: str) -> Response:
        prompt = str(body.get("prompt") or "")
        if not strip_directives(prompt):
            return _error(400, "prompt_empty")
        knobs = task_knobs(self.state, self.defaults, request, text)
        task = self.book.add(SimTask(new_id("uuid"), "LYRICS", "", body, knobs))
        task.extra["lyrics_id"] = new_id("uuid")
        return _success(task.id)

    def render(self, request: Request, task: SimTask) -> dict[str, Any]:
        phase = task.phase()
        status = "SUBMITTED" if task.awaiting_queue() else _STATUS[phase]
        return {
            "task_id": task.id,
            "notify_hook": task.input.get("notify_hook") or "",
            "action": task.action,
            "status": status,
            "fail_reason": task.knobs.fail_reason if phase is Phase.FAILED else "",
            "submit_time": int(task.created_at),
            "start_time": int(task.started_at) if task.started_at else 0,
            "finish_time": int(task.finished_at) if task.finished_at else 0,
            "progress": f"{task.progress()}%",
            "data": self._lyrics_data(task, phase) if task.action == "LYRICS" else self._clips(request, task, phase),
        }

    def _clips(self, request: Request, task: SimTask, phase: Phase) -> list[dict[str, Any]]:
        if phase is Phase.QUEUED:
            return []
        done = phase is Phase.SUCCEEDED
        clips = []
        for i, clip in enumerate(task.extra["clips"]):
            audio, image, video = task.outputs[i * 3 : i * 3 + 3]
            clips.append(
                {
                    "id": clip,
                    "title": task.extra["title"],
                    "status": _CLIP_STATUS.get(phase, "error"),
                    "audio_url": file_url(request, audio) if done else "",
                    "image_url": file_url(request, image) if done else "",
                    "image_large_url": file_url(request, image) if done else "",
                    "video_url": file_url(request, video) if done else "",
                    "model_name": task.model,
                    "major_model_version": "v" + task.model.removeprefix("chirp-v").replace("-", "."),
                    "created_at": task.created_at,
                    "metadata": {
                        "tags": str(task.input.get("tags") or ""),
                        "prompt": str(task.input.get("prompt") or ""),
                        "gpt_description_prompt": task.input.get("gpt_description_prompt"),
                        "type": "gen" if task.extra["mode"] != "extend" else "extend",
                        "duration": task.knobs.length if done else None,
                        "error_type": "generation_failed" if phase is Phase.FAILED else None,
                        "error_message": task.knobs.fail_reason if phase is Phase.FAILED else None,
                    },
                }
            )
        return clips

    def _lyrics_data(self, task: SimTask, phase: Phase) -> dict[str, Any]:
        prompt = strip_directives(str(task.input.get("prompt") or ""))
        words = "".join(generated_words(prompt, 24)).split()
        verses = [" ".join(words[i : i + 6]).capitalize() for i in range(0, len(words), 6)]
        text = "[Verse]\n" + "\n".join(verses[:2]) + "\n\n[Chorus]\n" + "\n".join(verses[2:])
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        return {
            "id": task.extra["lyrics_id"],
            "status": "complete" if phase is Phase.SUCCEEDED else ("error" if phase.final else "running"),
            "title": " ".join(words[:3]).title() if phase is Phase.SUCCEEDED else "",
            "text": text if phase is Phase.SUCCEEDED else "",
            "seed": digest[:8],
        }

    async def fetch_one(self, request: Request) -> Response:
        task = await self.gated_task(request, "task_not_exist")
        return task if isinstance(task, Response) else _success(self.render(request, task))

    async def fetch_many(self, request: Request) -> Response:
        raw = await request.body()
        refused = await self.gate(request, raw)
        if refused is not None:
            return refused
        body = parse_json(raw)
        ids = (body or {}).get("ids")
        if not isinstance(ids, list):
            return _error(400, "'ids' must be a list of task ids.")
        action = str((body or {}).get("action") or "").upper()
        found = [self.book.get(str(i)) for i in ids]
        tasks = [t for t in found if t is not None and (not action or t.action == action)]
        return _success([self.render(request, t) for t in tasks])


def create_suno_simulator(state: SimulatorState | None = None, defaults: TaskKnobs | None = None) -> Starlette:
    """Build the fake Suno upstream around one ``SimulatorState`` (keys, faults, request log)."""
    sim = _Suno(state or SimulatorState(), defaults or TaskKnobs(duration=3.0, length=30.0), _error)
    return sim.app(
        [
            Route("/suno/submit/{action}", sim.submit, methods=["POST"]),
            Route("/suno/fetch/{task_id}", sim.fetch_one, methods=["GET"]),
            Route("/suno/fetch", sim.fetch_many, methods=["POST"]),
        ]
    )
