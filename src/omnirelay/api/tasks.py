"""Client-facing task routes: the unified API and every vendor family's own routes, built from the families' data.

- ``POST /task/submit`` ``{"model", "prompt", "config": {...}, "notify_hook"?}`` → ``{"task_id", "status":
  "SUBMITTED", "progress": "0%", "created_at", "updated_at", "results": {}}``.
- ``GET /task/{task_id}[?wait=N]`` → the unified task; ``{"error": "Task not found"}`` (404) for an unknown id or
  another account's. ``wait`` holds the call until the task ends or N seconds pass (capped by
  ``tasks.max_wait_s``); the vendor fetch routes take it too.
- Each family in ``providers.task_vendors`` contributes its ``routes`` (submit, fetch, list), answered in its
  own shapes (``render_*``); adding a family adds its routes here without touching this module.
- ``GET /files/tasks/{task_id}/{name}``: results kept by the gateway (``tasks.store_results``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from omnirelay.api.common import client_ip, read_body
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.gateway import Gateway
from omnirelay.providers.task_vendors import vendors
from omnirelay.providers.task_vendors.base import (
    ClientRoute,
    InvalidSubmit,
    Submission,
    SubmitRefused,
    TaskVendor,
    TaskView,
)
from omnirelay.store.models import Task
from omnirelay.store.snapshot import KeyRecord
from omnirelay.tasks import store
from omnirelay.tasks.engine import TaskEngine
from omnirelay.tasks.storage import FILES_PREFIX, absolute
from omnirelay.tasks.views import UNIFIED, unified_submitted, unified_task

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_BODY = 64 * 1024 * 1024


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _unified_error(err: GatewayError) -> Response:
    headers = {"retry-after": str(max(1, round(err.retry_after)))} if err.retry_after else {}
    return Response(
        orjson.dumps({"error": err.message}), status_code=err.status, headers=headers, media_type="application/json"
    )


class TaskRoutes:
    def __init__(self, gateway: Gateway, engine: TaskEngine) -> None:
        self.gateway = gateway
        self.engine = engine

    # --- helpers -----------------------------------------------------------------------------------------------

    def _key(self, request: Request, headers: tuple[tuple[str, str], ...]) -> KeyRecord:
        secret = None
        for name, prefix in headers:
            value = request.headers.get(name)
            if value is None:
                continue
            if prefix and value[: len(prefix)].lower() == prefix.lower():
                secret = value[len(prefix) :].strip()
            elif not prefix:
                secret = value.strip()
            if secret:
                break
        return self.gateway.authenticate(secret, client_ip(request))

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await read_body(request, MAX_BODY)  # refused as soon as it passes the limit, not once read whole
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            raise GatewayError(ErrorCode.invalid_request, "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise GatewayError(ErrorCode.invalid_request, "The body must be a JSON object.")
        return body

    def _base_url(self, request: Request) -> str:
        """The gateway's address as clients know it, for answers that hold absolute URLs (FAL's status_url)."""
        return self.engine.settings.public_base_url or str(request.base_url)

    def _view(self, request: Request, row: Task) -> TaskView:
        view = store.view_of(row)
        if not any(m.url.startswith(FILES_PREFIX) for _, _, m in view.results.all_media()):
            return view
        base = self.engine.settings.public_base_url or str(request.base_url)
        return replace(view, results=absolute(view.results, base))

    async def _read(self, request: Request, key: KeyRecord, task_id: str) -> Task:
        wait = request.query_params.get("wait")
        if wait is None:
            return await self.engine.get(task_id, key)
        try:
            seconds = float(wait)
        except ValueError:
            raise GatewayError(ErrorCode.invalid_request, "'wait' must be a number of seconds.") from None
        return await self.engine.wait(task_id, key, seconds)

    # --- unified -----------------------------------------------------------------------------------------------

    async def unified_submit(self, request: Request) -> Response:
        try:
            key = self._key(request, (("authorization", "Bearer "),))
            body = await self._body(request)
            model, prompt, config = body.get("model"), body.get("prompt", ""), body.get("config") or {}
            if not isinstance(model, str) or not model:
                raise GatewayError(ErrorCode.invalid_request, "'model' is required.", param="model")
            if not isinstance(prompt, str) or not isinstance(config, dict):
                raise GatewayError(ErrorCode.invalid_request, "'prompt' must be a string and 'config' an object.")
            config = dict(config)
            hook = body.get("notify_hook") or config.pop("notify_hook", None)

            def build(vendor: TaskVendor) -> Submission:
                try:
                    return vendor.from_unified(model, prompt, config)
                except InvalidSubmit as exc:
                    raise GatewayError(ErrorCode.invalid_request, str(exc)) from None

            view = await self.engine.submit(
                key,
                model,
                build,
                surface=UNIFIED,
                parent=build_parent(config),
                notify_hook=hook if isinstance(hook, str) and hook else None,
                client_ip=client_ip(request),
            )
        except GatewayError as err:
            return _unified_error(err)
        except SubmitRefused as refused:
            return _json(refused.status, {"error": f"The upstream refused the task: {refused.message}"})
        return _json(200, unified_submitted(view))

    async def unified_get(self, request: Request) -> Response:
        try:
            key = self._key(request, (("authorization", "Bearer "),))
            row = await self._read(request, key, request.path_params["task_id"])
        except GatewayError as err:
            return _unified_error(err)
        return _json(200, unified_task(self._view(request, row)))

    async def file(self, request: Request) -> Response:
        files = self.engine.files
        path = files.path_of(request.path_params["task_id"], request.path_params["name"]) if files else None
        if path is None:
            return _json(404, {"error": "File not found"})
        return FileResponse(path)

    # --- vendor families ---------------------------------------------------------------------------------------

    def _family_endpoint(self, vendor: TaskVendor, route: ClientRoute) -> Endpoint:
        handlers = {"submit": self._family_submit, "fetch": self._family_fetch, "list": self._family_list}
        handler = handlers[route.kind]

        async def endpoint(request: Request) -> Response:
            try:
                key = self._key(request, vendor.client_auth)
                return await handler(vendor, route, key, request)
            except InvalidSubmit as exc:
                status, body = vendor.render_error(400, str(exc))
            except SubmitRefused as refused:
                status, body = vendor.render_refusal(refused)
            except GatewayError as err:
                status, body = vendor.render_error(err.status, err.message)
            return _json(status, body)

        return endpoint

    async def _family_submit(
        self, vendor: TaskVendor, route: ClientRoute, key: KeyRecord, request: Request
    ) -> Response:
        body = await self._body(request)
        parsed = vendor.parse_submit(route, body, {**request.query_params, **request.path_params})

        def build(channel_family: TaskVendor) -> Submission:
            if channel_family is vendor:
                return parsed
            config = {k: v for k, v in parsed.payload.items() if k not in ("model", "prompt")}
            try:
                return channel_family.from_unified(parsed.model, parsed.prompt, config)
            except InvalidSubmit as exc:
                raise GatewayError(ErrorCode.invalid_request, str(exc)) from None

        view = await self.engine.submit(
            key,
            parsed.model,
            build,
            surface=vendor.name,
            parent=parsed.parent,
            notify_hook=parsed.notify_hook,
            client_ip=client_ip(request),
        )
        wait = vendor.submit_wait(request.headers)
        if wait > 0:  # the client asked to hold the answer until the task ends (Replicate's Prefer: wait)
            view = self._view(request, await self.engine.wait(view.public_id, key, wait))
        status, out = vendor.render_submitted(replace(view, base_url=self._base_url(request)))
        return _json(status, out)

    async def _family_fetch(self, vendor: TaskVendor, route: ClientRoute, key: KeyRecord, request: Request) -> Response:
        row = await self._read(request, key, vendor.task_id_param(request.path_params))
        if vendor.name not in (row.vendor, row.surface):
            raise GatewayError(ErrorCode.not_found, "Task not found")
        status, out = vendor.render_fetch(route, replace(self._view(request, row), base_url=self._base_url(request)))
        return _json(status, out)

    async def _family_list(self, vendor: TaskVendor, route: ClientRoute, key: KeyRecord, request: Request) -> Response:
        ids = vendor.list_ids(await self._body(request))
        rows = [r for r in await self.engine.get_many(ids, key) if vendor.name in (r.vendor, r.surface)]
        return _json(200, vendor.render_list([self._view(request, r) for r in rows]))

    def routes(self) -> list[Route]:
        routes = [
            Route("/task/submit", self.unified_submit, methods=["POST"]),
            Route("/task/{task_id}", self.unified_get, methods=["GET"]),
            Route(FILES_PREFIX + "{task_id}/{name}", self.file, methods=["GET", "HEAD"]),
        ]
        for vendor in vendors().values():
            for route in vendor.routes:
                routes.append(Route(route.path, self._family_endpoint(vendor, route), methods=[route.method]))
        return routes


def build_parent(config: dict[str, Any]) -> str | None:
    """A unified submit that acts on an earlier task names it ``config.task_id`` (or MJ's ``taskId``)."""
    parent = config.get("taskId") or config.get("task_id")
    return parent if isinstance(parent, str) and parent else None
