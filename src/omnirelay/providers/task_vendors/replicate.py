"""Replicate predictions, on the gateway's ``/replicate/v1/...`` routes (the official ``replicate`` SDK works with
``base_url`` set to ``<gateway>/replicate``).

Upstream: ``POST /v1/models/{owner}/{name}/predictions`` ``{"input": {...}}`` → the prediction (201);
``GET /v1/predictions/{id}``. Status ``starting | processing | succeeded | failed | canceled``; ``output`` is one URL
or a list of them. Key: ``Authorization: Bearer``.

Public model names are the gateway's price-table names (``flux-kontext-pro``); :data:`MODELS` maps them to the
Replicate model they run on, and a client that names an ``owner/name`` not in the table routes by that name itself.
A channel's ``model_map`` may point a public name at another ``owner/name``.

``Prefer: wait[=N]`` holds the answer until the prediction ends (at most 60 s and ``tasks.max_wait_s``). Not
supported: cancel (answered 501) and the ``webhook`` events filter (the gateway's webhook is sent once, when the
prediction ends).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
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
    UpstreamCall,
    images_made,
    parse_progress,
    text_of,
)

MODELS: dict[str, str] = {
    "flux-kontext-pro": "black-forest-labs/flux-kontext-pro",
    "flux-kontext-max": "black-forest-labs/flux-kontext-max",
    "flux-pro": "black-forest-labs/flux-pro",
    "flux-pro-1.1": "black-forest-labs/flux-1.1-pro",
    "flux-pro-1.1-ultra": "black-forest-labs/flux-1.1-pro-ultra",
    "flux-dev": "black-forest-labs/flux-dev",
    "flux-schnell": "black-forest-labs/flux-schnell",
    "imagen-4.0-generate-001": "google/imagen-4",
    "imagen-4.0-fast-generate-001": "google/imagen-4-fast",
    "imagen-4.0-ultra-generate-001": "google/imagen-4-ultra",
}
"""Public model → Replicate ``owner/name``."""
PUBLIC: dict[str, str] = {path: model for model, path in MODELS.items()}
CLIENT_STATUS: dict[str, str] = {
    "SUBMITTED": "starting",
    "QUEUED": "starting",
    "IN_PROGRESS": "processing",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
}
_TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthenticated",
    402: "Payment required",
    404: "Not found",
    501: "Not implemented",
}
_PREFER_WAIT = re.compile(r"\bwait(?:=(\d+))?\b")
WAIT_MAX_S = 60
"""Replicate holds a ``Prefer: wait`` answer at most this long (the gateway also caps it by ``tasks.max_wait_s``)."""
_CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _content_type(url: str) -> str:
    return _CONTENT_TYPES.get(url.rsplit(".", 1)[-1].lower(), "application/octet-stream")


class ReplicateVendor(TaskVendor):
    name: ClassVar[str] = "replicate"
    channel_types: ClassVar[tuple[str, ...]] = ("replicate",)
    client_auth: ClassVar[tuple[tuple[str, str], ...]] = (("authorization", "Bearer "), ("authorization", "Token "))
    submit_paths: ClassVar[Mapping[str, str]] = {"predict": "/v1/models/{model}/predictions"}
    fetch_path: ClassVar[str] = "/v1/predictions/{id}"
    status_map: ClassVar[Mapping[str, TaskStatus]] = {
        "starting": "QUEUED",
        "processing": "IN_PROGRESS",
        "succeeded": "SUCCESS",
        "failed": "FAILURE",
        "canceled": "FAILURE",
        "aborted": "FAILURE",
    }
    progress_field: ClassVar[str | None] = None
    poll: ClassVar[PollPolicy] = PollPolicy(first_s=1.0, backoff=1.5, max_interval_s=10.0, timeout_s=1800.0)
    price_unit = "image"
    public_id_prefix: ClassVar[str] = "rep_"
    default_action: ClassVar[str] = "predict"
    routes: ClassVar[tuple[ClientRoute, ...]] = (
        ClientRoute("POST", "/replicate/v1/models/{owner}/{name}/predictions", "submit", "predict"),
        ClientRoute("GET", "/replicate/v1/predictions/{task_id}", "fetch"),
        ClientRoute("POST", "/replicate/v1/predictions/{task_id}/cancel", "fetch", "cancel"),
    )

    # --- upstream ------------------------------------------------------------------------------------------------

    def submit_call(self, submission: Submission, upstream_model: str, parent: str | None) -> UpstreamCall:
        path = upstream_model if "/" in upstream_model else MODELS.get(upstream_model, upstream_model)
        body = {"input": submission.payload.get("input") or {}}
        return UpstreamCall("POST", self.submit_paths["predict"].format(model=path), body)

    def read_task(self, task: Mapping[str, Any]) -> TaskUpdate:
        update = super().read_task(task)
        if update.status != "IN_PROGRESS":
            return update
        # Image models print a tqdm bar ("  45%|####      |"); its last percentage is the progress.
        logs = task.get("logs")
        lines = [line for line in logs.splitlines() if "%|" in line] if isinstance(logs, str) else []
        progress = parse_progress(lines[-1].split("%|")[0]) if lines else 0
        return TaskUpdate(update.status, progress, update.results, update.error, update.raw)

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        output = task.get("output")
        urls = [output] if isinstance(output, str) else output if isinstance(output, list) else []
        return TaskResults(images=tuple(Media(u, _content_type(u)) for u in urls if isinstance(u, str) and u))

    def billed_quantity(self, task: TaskView, update: TaskUpdate) -> Mapping[PriceUnit, Quantity] | None:
        return images_made(update)

    # --- client --------------------------------------------------------------------------------------------------

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        path = f"{params.get('owner', '')}/{params.get('name', '')}"
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            raise InvalidSubmit("input is required and must be an object.")
        count = inputs.get("num_outputs", 1)
        if not isinstance(count, int) or count < 1:
            raise InvalidSubmit("input.num_outputs must be a positive integer.")
        hook = body.get("webhook")
        return Submission(
            model=PUBLIC.get(path, path),
            action="predict",
            payload={"input": inputs},
            prompt=text_of(inputs.get("prompt")),
            notify_hook=hook if isinstance(hook, str) and hook else None,
            quantity=count,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        inputs = {**config, "prompt": prompt}
        count = inputs.get("num_outputs", inputs.get("n", 1))
        inputs.pop("n", None)
        if not isinstance(count, int) or count < 1:
            raise InvalidSubmit("'num_outputs' must be a positive integer.")
        if count != 1:
            inputs["num_outputs"] = count
        return Submission(model=model, action="predict", payload={"input": inputs}, prompt=prompt, quantity=count)

    def _prediction(self, task: TaskView) -> dict[str, Any]:
        base = f"{task.base_url.rstrip('/')}/replicate" if task.base_url else ""
        output: Any = None
        if task.status == "SUCCESS":
            urls = [m.url for m in task.results.images]
            output = urls if isinstance(task.raw.get("output"), list) else (urls[0] if urls else None)
        started = (
            task.started_at if task.started_at is not None else (task.finished_at if task.status == "SUCCESS" else None)
        )
        metrics = task.raw.get("metrics") if task.status == "SUCCESS" else None
        return {
            "id": task.public_id,
            "model": MODELS.get(task.model, task.model),
            "version": "",
            "input": task.request.get("input") or {},
            "logs": "",
            "output": output,
            "data_removed": False,
            "error": (task.error or "failed") if task.status == "FAILURE" else None,
            "status": CLIENT_STATUS[task.status],
            "created_at": _iso(task.submitted_at),
            "started_at": _iso(started),
            "completed_at": _iso(task.finished_at),
            "urls": {
                "get": f"{base}/v1/predictions/{task.public_id}",
                "cancel": f"{base}/v1/predictions/{task.public_id}/cancel",
            },
            "metrics": {"predict_time": metrics.get("predict_time")} if isinstance(metrics, dict) else {},
        }

    def submit_wait(self, headers: Mapping[str, str]) -> float:
        match = _PREFER_WAIT.search(headers.get("prefer", ""))
        if match is None:
            return 0.0
        return float(min(WAIT_MAX_S, int(match.group(1)))) if match.group(1) else float(WAIT_MAX_S)

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        return 201, self._prediction(task)

    def render_fetch(self, route: ClientRoute, task: TaskView) -> tuple[int, Any]:
        if route.action == "cancel":
            return self.render_error(501, "Canceling a prediction through this gateway is not supported yet.")
        return 200, self._prediction(task)

    def render_task(self, task: TaskView) -> Any:
        return self._prediction(task)

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        title = _TITLES.get(status, "Too many requests" if status == 429 else "Error")
        return status, {"title": title, "detail": message, "status": status}
