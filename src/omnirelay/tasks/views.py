"""The unified task shapes (``POST /task/submit``, ``GET /task/{task_id}``), from a :class:`TaskView`."""

from __future__ import annotations

from typing import Any

from omnirelay.providers.task_vendors import vendors
from omnirelay.providers.task_vendors.base import TaskView

UNIFIED = "unified"


def unified_submitted(task: TaskView) -> dict[str, Any]:
    return {
        "task_id": task.public_id,
        "status": task.status,
        "progress": f"{task.progress}%",
        "created_at": int(task.submitted_at),
        "updated_at": int(task.updated_at),
        "results": task.results.to_json(),
    }


def unified_task(task: TaskView) -> dict[str, Any]:
    result = task.results.to_json()
    if task.status == "FAILURE" and task.error:
        result.setdefault("text", task.error)
    return {
        "task_id": task.public_id,
        "status": task.status,
        "progress": f"{task.progress}%",
        "err_reason": (task.error or "") if task.status == "FAILURE" else None,
        "submit_time": int(task.submitted_at),
        "finish_time": int(task.finished_at) if task.finished_at is not None else None,
        "message": f"{task.vendor} {task.action} {task.model}",
        "task_result": result,
    }


def render_for(surface: str, task: TaskView) -> Any:
    """The task in the shape of the route that submitted it (the webhook body)."""
    family = vendors().get(surface)
    return family.render_task(task) if family is not None else unified_task(task)
