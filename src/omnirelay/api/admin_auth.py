"""Console sign-in: server-side sessions behind an HttpOnly cookie, with a CSRF token for every change.

* ``POST /admin/session`` with ``{"token": ...}`` (the ``admin_token``) or ``{"username", "password"}`` (one of
  ``admin_users``, stored as scrypt hashes: see :func:`hash_password`) signs in: the answer sets the cookie
  ``omnirelay_admin`` (``HttpOnly; SameSite=Strict; Path=/admin``, ``Secure`` over https) and carries the session's
  ``csrf_token``. ``GET /admin/session`` gives the token again to a page holding the cookie (a cross-site page
  cannot read the answer); ``DELETE /admin/session`` signs out.
* The admin API (``api/admin.py``) takes either the bearer admin token, as before, or this cookie; with the cookie
  every method but GET/HEAD/OPTIONS also needs the header ``X-CSRF-Token`` equal to the session's token, else 403.
* Sessions are rows of ``admin_sessions`` (only the cookie's hash is kept), so every instance and worker honours
  them and signing out ends them everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

import orjson
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omnirelay.crypto import hash_key
from omnirelay.gateway import Gateway
from omnirelay.store import console_repo

COOKIE = "omnirelay_admin"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_TTL_S = 12 * 3600.0
FAILURE_DELAY_S = 0.25
"""Every refused sign-in waits this long: guessing gets slow without slowing the operator."""
FAILURES_PER_WINDOW, FAILURE_WINDOW_S = 10, 300.0
"""Refused sign-ins allowed per client address in the window; then 429 until the oldest leaves it."""
MAX_TRACKED_CLIENTS = 10_000
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): what ``admin_users`` holds (``omnirelay admin-password`` prints one)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:  # a malformed hash in the config refuses, it does not crash the sign-in
        return False
    return hmac.compare_digest(given, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("", salt=bytes(16))


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    subject: str
    csrf_token: str
    expires_at: float

    def allows(self, request: Request) -> bool:
        """Reads always; a change only with the session's CSRF token in its header."""
        if request.method in SAFE_METHODS:
            return True
        given = request.headers.get(CSRF_HEADER, "")
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf_token.encode())


async def session_of(gateway: Gateway, request: Request) -> ConsoleSession | None:
    """The live session the request's cookie names, if any (one primary-key read)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    async with gateway.sessions() as session:
        row = await console_repo.live_session(session, hash_key(token))
    return None if row is None else ConsoleSession(row.subject, row.csrf_token, row.expires_at)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status)


def _session_body(session: ConsoleSession) -> dict[str, object]:
    return {"subject": session.subject, "csrf_token": session.csrf_token, "expires_at": int(session.expires_at)}


class SessionRoutes:
    """``/admin/session``: sign in, who am I (and the CSRF token), sign out."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.failures: dict[str, deque[float]] = {}

    def routes(self) -> list[Route]:
        return [Route("/admin/session", self.dispatch, methods=["GET", "POST", "DELETE"])]

    async def dispatch(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return await self.sign_in(request)
            return await self.current(request)
        except (OperationalError, InterfaceError, PoolTimeout, OSError):
            return _error(503, "database_unavailable", "the database is unavailable; sessions need it")

    async def current(self, request: Request) -> Response:
        """GET: the session's subject and CSRF token; DELETE: sign out."""
        session = await session_of(self.gateway, request)
        if session is None:
            return _error(401, "unauthorized", "not signed in")
        if request.method == "GET":
            return JSONResponse(_session_body(session))
        if not session.allows(request):
            return _error(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header")
        async with self.gateway.sessions.begin() as db:
            await console_repo.end_session(db, hash_key(request.cookies[COOKIE]))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
        return response

    def _throttled(self, client: str, now: float) -> bool:
        if len(self.failures) > MAX_TRACKED_CLIENTS:  # many addresses guessing: forget the quiet ones
            for quiet in [c for c, times in self.failures.items() if not times or times[-1] < now - FAILURE_WINDOW_S]:
                del self.failures[quiet]
        recent = self.failures.setdefault(client, deque())
        while recent and recent[0] < now - FAILURE_WINDOW_S:
            recent.popleft()
        return len(recent) >= FAILURES_PER_WINDOW

    async def _subject(self, body: dict[str, object]) -> str | None:
        """Who the credentials name, or None when they are wrong."""
        settings = self.gateway.settings
        token = body.get("token")
        if isinstance(token, str) and token:
            expected = settings.admin_token or ""
            return "token" if expected and hmac.compare_digest(token.encode(), expected.encode()) else None
        username, password = body.get("username"), body.get("password")
        if isinstance(username, str) and isinstance(password, str):
            stored = settings.admin_users.get(username)
            # Unknown users are hashed too, so the answer's timing does not tell which names exist.
            ok = await asyncio.to_thread(verify_password, password, stored or _dummy_hash())
            return username if ok and stored is not None else None
        return None

    async def sign_in(self, request: Request) -> Response:
        settings = self.gateway.settings
        if not settings.admin_token and not settings.admin_users:
            return _error(503, "admin_disabled", "admin console disabled: set admin_token or admin_users")
        if "application/json" not in request.headers.get("content-type", ""):
            # JSON only: a cross-site form cannot send it without a CORS preflight, which this route never allows.
            return _error(415, "unsupported_media_type", "send the credentials as application/json")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_json", "the body must be a JSON object")
        client, now = request.client.host if request.client else "?", time.time()
        if self._throttled(client, now):
            return _error(429, "too_many_attempts", "too many failed sign-ins; wait a few minutes")
        subject = await self._subject(body)
        if subject is None:
            self.failures[client].append(now)
            await asyncio.sleep(FAILURE_DELAY_S)
            return _error(401, "unauthorized", "wrong admin token, or wrong user name or password")
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with self.gateway.sessions.begin() as db:
            row = await console_repo.create_session(
                db, token_hash=hash_key(token), csrf_token=csrf, subject=subject, ttl_s=SESSION_TTL_S
            )
        response = JSONResponse(_session_body(ConsoleSession(subject, csrf, row.expires_at)))
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(SESSION_TTL_S),
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response
