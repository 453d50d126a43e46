"""Suno through a suno-api upstream (the shape resellers and new-api speak), on the gateway's ``/suno`` routes.

Upstream: ``POST /suno/submit/{music,lyrics}`` answers ``{"code": "success", "message": "", "data": "<id>"}``
(any other ``code`` is a refusal); ``POST /suno/fetch`` ``{"ids": [...]}`` reports many tasks at once (the
poller's batch) as ``{"code": "success", "data": [<task>...]}``; a task's ``data`` is its clips (two per music
call) or its lyrics. Key: ``Authorization: Bearer``.

Models, as resellers sell them: ``suno_music`` (every ``mv``; the version is a field of the body) and
``suno_lyrics``, each per call. A continuation names the task it extends (``task_id``, the gateway's public id) and
the clip (``continue_clip_id``); it goes to the same channel and key as that task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

ACTION_MODELS: dict[str, str] = {"music": "suno_music", "lyrics": "suno_lyrics"}
_ERROR_CODES: dict[int, str] = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "task_not_exist"}
_CLIP_FIELDS = ("id", "title", "status", "model_name", "major_model_version", "created_at")
_METADATA_FIELDS = ("tags", "prompt", "gpt_description_prompt", "type", "duration", "error_type", "error_message")


class SunoVendor(TaskVendor):
    name: ClassVar[str] = "suno"
    channel_types: ClassVar[tuple[str, ...]] = ("suno",)
    submit_paths: ClassVar[Mapping[str, str]] = {"music": "/suno/submit/music", "lyrics": "/suno/submit/lyrics"}
    parent_field: ClassVar[str | None] = "task_id"
    upstream_id_field: ClassVar[str] = "data"
    fetch_path: ClassVar[str] = "/suno/fetch/{id}"
    batch_path: ClassVar[str | None] = "/suno/fetch"
    batch_size: ClassVar[int] = 50
    status_map: ClassVar[Mapping[str, TaskStatus]] = {
        "NOT_START": "SUBMITTED",
        "SUBMITTED": "SUBMITTED",
        "QUEUED": "QUEUED",
        "IN_PROGRESS": "IN_PROGRESS",
        "SUCCESS": "SUCCESS",
        "FAILURE": "FAILURE",
    }
    error_field: ClassVar[str | None] = "fail_reason"
    poll: ClassVar[PollPolicy] = PollPolicy(first_s=5.0, backoff=1.5, max_interval_s=20.0, timeout_s=1800.0)
    public_id_prefix: ClassVar[str] = "suno_"
    default_action: ClassVar[str] = "music"
    routes: ClassVar[tuple[ClientRoute, ...]] = (
        ClientRoute("POST", "/suno/submit/{action}", "submit"),
        ClientRoute("GET", "/suno/fetch/{task_id}", "fetch"),
        ClientRoute("POST", "/suno/fetch", "list"),
    )

    # --- upstream ------------------------------------------------------------------------------------------------

    def read_submit(self, status: int, body: bytes) -> str:
        data = orjson.loads(body) if body else {}
        data = data if isinstance(data, dict) else {}
        if data.get("code") != "success":
            raise SubmitRefused(400, text_of(data.get("message")) or "Suno refused the task.", data.get("code"))
        return super().read_submit(status, body)

    def read_fetch(self, body: bytes) -> dict[str, Any]:
        data = orjson.loads(body)
        task = data.get("data") if isinstance(data, dict) else None
        return task if isinstance(task, dict) else {}

    def read_batch(self, body: bytes) -> list[dict[str, Any]]:
        data = orjson.loads(body)
        tasks = data.get("data") if isinstance(data, dict) else None
        return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []

    def upstream_id_of(self, task: Mapping[str, Any]) -> str | None:
        value = task.get("task_id")
        return None if value is None else str(value)

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        data = task.get("data")
        if isinstance(data, dict):  # lyrics
            return TaskResults(text=text_of(data.get("text")))
        clips = [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []
        audio, images, videos = [], [], []
        for clip in clips:
            metadata = clip.get("metadata") if isinstance(clip.get("metadata"), dict) else {}
            duration = metadata.get("duration")
            seconds = float(duration) if isinstance(duration, int | float) else None
            if clip.get("audio_url"):
                audio.append(Media(str(clip["audio_url"]), "audio/mpeg", seconds))
            if clip.get("image_url"):
                images.append(Media(str(clip["image_url"]), "image/jpeg"))
            if clip.get("video_url"):
                videos.append(Media(str(clip["video_url"]), "video/mp4", seconds))
        return TaskResults(images=tuple(images), videos=tuple(videos), audio=tuple(audio))

    # --- client --------------------------------------------------------------------------------------------------

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        action = str(params.get("action") or route.action or "").lower()
        if action not in ACTION_MODELS:
            raise InvalidSubmit(f"invalid_action: '{action}' (music or lyrics).")
        payload = dict(body)
        hook = pop_hook(payload, "notify_hook", "notifyHook")
        payload.pop("model", None)
        description, lyrics = text_of(payload.get("gpt_description_prompt")), text_of(payload.get("prompt"))
        parent = None
        if action == "music":
            extends = payload.get("task") == "extend" or payload.get("continue_clip_id")
            if extends:
                parent = payload.get("task_id")
                if not isinstance(parent, str) or not parent or not payload.get("continue_clip_id"):
                    raise InvalidSubmit("A continuation needs 'task_id' and 'continue_clip_id'.")
            elif not description.strip() and not lyrics.strip():
                raise InvalidSubmit("Either 'gpt_description_prompt' (inspiration) or 'prompt' (lyrics) is required.")
        elif not lyrics.strip():
            raise InvalidSubmit("prompt_empty: 'prompt' is required.")
        return Submission(
            model=ACTION_MODELS[action],
            action=action,
            payload=payload,
            prompt=description or lyrics,
            notify_hook=hook,
            parent=parent,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        action = "lyrics" if model == ACTION_MODELS["lyrics"] else "music"
        body: dict[str, Any] = dict(config)
        custom = action == "lyrics" or any(k in config for k in ("title", "tags", "lyrics", "custom_mode"))
        if action == "music" and "lyrics" in body:
            body["prompt"] = body.pop("lyrics")
        elif custom:
            body.setdefault("prompt", prompt)
        else:
            body.setdefault("gpt_description_prompt", prompt)
        return self.parse_submit(ClientRoute("POST", "/task/submit", "submit", action), body, {"action": action})

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        return 200, {"code": "success", "message": "", "data": task.public_id}

    def _task(self, task: TaskView) -> dict[str, Any]:
        return {
            "task_id": task.public_id,
            "notify_hook": "",
            "action": task.action.upper(),
            "status": task.status,
            "fail_reason": (task.error or "") if task.status == "FAILURE" else "",
            "submit_time": int(task.submitted_at),
            "start_time": int(task.started_at) if task.started_at else 0,
            "finish_time": int(task.finished_at) if task.finished_at else 0,
            "progress": f"{task.progress}%",
            "data": self._lyrics(task) if task.action == "lyrics" else self._clips(task),
        }

    def _clips(self, task: TaskView) -> list[dict[str, Any]]:
        """The clips with the gateway's result URLs; identity fields (clip ids, needed to continue a song) and
        descriptive metadata come from the vendor's task object, its URLs never do."""
        raw = task.raw.get("data")
        upstream = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
        results = task.results
        clips = []
        for i, clip in enumerate(upstream):
            metadata = clip.get("metadata") if isinstance(clip.get("metadata"), dict) else {}
            out: dict[str, Any] = {k: clip.get(k) for k in _CLIP_FIELDS}
            done = task.status == "SUCCESS"
            out["audio_url"] = results.audio[i].url if done and i < len(results.audio) else ""
            out["image_url"] = results.images[i].url if done and i < len(results.images) else ""
            out["image_large_url"] = out["image_url"]
            out["video_url"] = results.videos[i].url if done and i < len(results.videos) else ""
            out["metadata"] = {k: metadata.get(k) for k in _METADATA_FIELDS}
            clips.append(out)
        return clips

    def _lyrics(self, task: TaskView) -> dict[str, Any]:
        raw = task.raw.get("data") if isinstance(task.raw.get("data"), dict) else {}
        return {
            "id": raw.get("id", ""),
            "status": raw.get("status", ""),
            "title": raw.get("title", ""),
            "text": task.results.text or "",
        }

    def render_task(self, task: TaskView) -> Any:
        return {"code": "success", "message": "", "data": self._task(task)}

    def render_list(self, tasks: Sequence[TaskView]) -> Any:
        return {"code": "success", "message": "", "data": [self._task(t) for t in tasks]}

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        code = _ERROR_CODES.get(status, "too_many_requests" if status == 429 else "upstream_error")
        return status, {"code": code, "message": message, "data": None}
