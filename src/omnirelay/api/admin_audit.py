"""Who may use the admin API, and the record of what they changed.

* ``admin_actor``: which configured token a bearer token is (``admin_token`` is ``admin`` with full scope; the
  ``admin_tokens`` list adds named ``read`` or ``full`` tokens), every one compared in constant time.
* ``AuditTrail``: ASGI middleware around the admin app. For every write (POST, PUT, PATCH, DELETE) by an
  authenticated actor it reads the target's admin view before and after (the same GET a client would make,
  through the same app, so upstream keys come out masked and client keys as prefixes only), and stores a row:
  who, method, path, target, status, before, after. A target without a GET of its own (a group, say) gets the
  request's body as ``after`` instead, with every field named like a secret masked. Writing the row never fails
  the admin's write.
* ``GET /admin/api/audit``: the rows, newest first.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnirelay.config import Settings
from omnirelay.gateway import Gateway
from omnirelay.store.audit import add_entry, list_entries

log = structlog.get_logger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ACTOR = "admin_actor"
"""Where the admin guard leaves the actor's name in ``scope["state"]``."""
SECRET_FIELDS = frozenset(
    {"key", "api_key", "api_keys", "token", "password", "secret", "code", "master_key", "headers"}
)
# Collections whose second path segment is not a resource id (``/prices/{model}`` is; ``/usage/export.csv`` is not
# a write). Targets are ``/<collection>/<id>``: the admin view of the thing written.
_MAX_CAPTURE = 256 * 1024


def admin_actor(settings: Settings, given: str) -> tuple[str, str] | None:
    """(name, scope) of the admin token ``given``, or None. Compares against every configured token."""
    found: tuple[str, str] | None = None
    candidates = [("admin", settings.admin_token, "full")] if settings.admin_token else []
    candidates += [(t.name, t.token, t.scope) for t in settings.admin_tokens]
    for name, token, scope in candidates:
        if hmac.compare_digest(given.encode(), token.encode()) and found is None:
            found = (name, scope)
    return found


def scrub(value: Any) -> Any:
    """A defensive pass over views that are already masked: any field named like a secret is hidden."""
    if isinstance(value, dict):
        return {k: "***" if k in SECRET_FIELDS and value[k] is not None else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


def _target(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[0] in ("session",):
        return None
    if parts[0] == "prices":  # model names may hold slashes: the whole rest is the id
        return "/" + "/".join(parts)
    return f"/{parts[0]}/{parts[1]}"


class AuditTrail:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        relative = scope["path"][len(scope.get("root_path", "")) :] or "/"
        target = _target(relative)
        before = await self._view(scope, target) if target else None
        status = 0
        body = bytearray()
        sent = bytearray()

        async def tee() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(sent) < _MAX_CAPTURE:
                sent.extend(message.get("body", b""))
            return message

        last: Message | None = None

        async def capture(message: Message) -> None:
            nonlocal status, last
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if len(body) < _MAX_CAPTURE:
                    body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    last = message  # held back until the row is stored: a client that saw the answer finds it
                    return
            await send(message)

        await self.app(scope, tee, capture)
        try:
            await self._audit(scope, relative, target, status, before, bytes(body), bytes(sent))
        finally:
            if last is not None:
                await send(last)

    async def _audit(
        self, scope: Scope, relative: str, target: str | None, status: int, before: Any, body: bytes, sent: bytes
    ) -> None:
        actor = (scope.get("state") or {}).get(ACTOR)
        if actor is None:  # refused before authentication: nobody to name, nothing changed
            return
        if target is None and status < 300 and scope["method"] == "POST":  # a create: its id is in the answer
            created = _created_id(body)
            if created is not None:
                target = f"{relative.rstrip('/')}/{created}"
        after = await self._view(scope, target) if target and status < 400 else None
        if after is None and status < 400 and scope["method"] != "DELETE":
            after = _request_body(sent)
        await self._record(scope, actor, relative, target, status, before, after)

    async def _view(self, scope: Scope, path: str) -> Any:
        """The admin GET of ``path``, through the same app with the caller's credentials; None if not there."""
        headers = [(k, v) for k, v in scope["headers"] if k in (b"authorization", b"cookie")]
        root = scope.get("root_path", "")
        inner = {**scope, "method": "GET", "path": root + path, "raw_path": (root + path).encode(), "query_string": b""}
        inner["headers"] = headers
        inner["state"] = {}
        chunks: list[bytes] = []
        status = 0

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def collect(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(inner, no_body, collect)
            return scrub(orjson.loads(b"".join(chunks))) if status == 200 else None
        except Exception as exc:  # the audit never breaks the write it records
            log.warning("audit_view_failed", error=type(exc).__name__)
            return None

    async def _record(
        self, scope: Scope, actor: str, path: str, target: str | None, status: int, before: Any, after: Any
    ) -> None:
        client = scope.get("client")
        try:
            async with self.gateway.sessions.begin() as session:
                await add_entry(
                    session,
                    created_at=time.time(),
                    actor=actor[:160],
                    method=scope["method"],
                    path=path[:512],
                    target=target[:256] if target else None,
                    status=status,
                    before=before,
                    after=after,
                    client_ip=client[0] if client else None,
                )
        except Exception as exc:
            log.error("audit_write_failed", error=type(exc).__name__, path=path, actor=actor)


def _request_body(body: bytes) -> Any:
    try:
        return {"request": scrub(orjson.loads(body))} if body else None
    except orjson.JSONDecodeError:
        return None


def _created_id(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict):
        for field in ("id", "name"):
            if isinstance(parsed.get(field), int | str):
                return str(parsed[field])
    return None


def audit_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])

    @router.get("", summary="Admin writes, newest first (who, what, when, the target before and after)")
    async def list_audit(
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[int | None, Query(ge=1, description="next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        async with gateway.sessions() as session:
            rows = await list_entries(session, limit, cursor)
        return {
            "data": [
                {
                    "id": row.id,
                    "created_at": row.created_at,
                    "actor": row.actor,
                    "method": row.method,
                    "path": row.path,
                    "target": row.target,
                    "status": row.status,
                    "before": row.before,
                    "after": row.after,
                    "client_ip": row.client_ip,
                }
                for row in rows
            ],
            "next_cursor": rows[-1].id if len(rows) == limit else None,
        }

    return router
