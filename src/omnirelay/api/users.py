"""Self-service accounts: sign-up, sign-in (a user session cookie), password change, access tokens, and the
principal every System API route runs as. Mounted inside the System API (``api/system.py``) under ``/api/v1``.

* ``POST /auth/signup``: allowed by ``accounts.signup`` (``open``; ``invite`` with an invitation code; ``closed``
  refuses with 403). Creates the user and its own account (group ``accounts.signup_group``, starting credit
  ``accounts.signup_credit_usd``) and signs in.
* ``POST /auth/session`` signs in (user name or email and password, argon2id hashes); ``GET`` gives the session's
  CSRF token again; ``DELETE`` signs out. The cookie ``omnirelay_user`` is ``HttpOnly; SameSite=Strict;
  Path=/api/v1`` (``Secure`` over https) and is unrelated to the admin console's cookie: each is looked up in its
  own table, so neither can pass for the other.
* Every other route takes ``Authorization: Bearer <access token>`` or the session cookie; with the cookie, every
  method but GET/HEAD/OPTIONS also needs ``X-CSRF-Token``, else 403.
* Throttles per client address (this instance's memory): refused sign-ins, and sign-up attempts; then 429 with
  ``Retry-After``.
* Email verification is a hook: ``UserRoutes.on_signup`` is awaited with each new user (the default does nothing);
  a verifier sets ``users.email_verified_at``.
"""

import asyncio
import functools
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError

from omnirelay.api.admin import AdminError, Store, conflict, invalid, not_found
from omnirelay.api.system_models import (
    NewTokenOut,
    PasswordIn,
    ProfilePatch,
    SessionOut,
    SignInIn,
    SignUpIn,
    TokenIn,
    TokenOut,
    UserOut,
)
from omnirelay.billing.money import usd_to_micros
from omnirelay.crypto import hash_key
from omnirelay.store import repo, user_repo
from omnirelay.store.user_models import User

COOKIE = "omnirelay_user"
COOKIE_PATH = "/api/v1"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FAILURE_DELAY_S = 0.25
"""Every refused sign-in waits this long: guessing gets slow without slowing the user."""
MAX_TRACKED_CLIENTS = 10_000

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class Throttle:
    """Events per client address in a sliding window (one instance's memory: a cluster multiplies the limit)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.events: dict[str, deque[float]] = {}

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until the client may try again, or None when it may now."""
        if len(self.events) > MAX_TRACKED_CLIENTS:  # many addresses: forget the quiet ones
            for quiet in [c for c, times in self.events.items() if not times or times[-1] < now - self.window_s]:
                del self.events[quiet]
        recent = self.events.setdefault(client, deque())
        while recent and recent[0] < now - self.window_s:
            recent.popleft()
        return recent[0] + self.window_s - now if len(recent) >= self.limit else None

    def hit(self, client: str, now: float) -> None:
        self.events.setdefault(client, deque()).append(now)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _too_many(wait: float, what: str) -> AdminError:
    return AdminError(
        429,
        "too_many_attempts",
        f"too many {what} from this address; try again later",
        headers={"Retry-After": str(max(1, int(wait + 0.999)))},
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a System API call runs as: always one user and its one account."""

    user: User
    via: str
    """``token`` or ``session``."""
    session_hash: str | None = None

    @property
    def account_id(self) -> int:
        return self.user.account_id


_BEARER = HTTPBearer(auto_error=False, description="An account access token (``ort-...``).")


def principal_dependency(store: Store) -> Callable[..., Awaitable[Principal]]:
    async def current_principal(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
    ) -> Principal:
        if credentials is not None:
            async with store.gateway.sessions.begin() as session:
                token = await user_repo.live_token(session, hash_key(credentials.credentials))
                user = None if token is None else await session.get(User, token.user_id)
                if token is not None:
                    await user_repo.touch_token(session, token)
            if user is None:
                raise AdminError(
                    401,
                    "unauthorized",
                    "missing, wrong, expired or revoked access token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return Principal(user, "token")
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise AdminError(
                401,
                "unauthorized",
                "sign in, or send an access token as a bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        async with store.read() as session:
            row = await user_repo.live_session(session, hash_key(cookie))
            user = None if row is None else await session.get(User, row.user_id)
        if row is None or user is None:
            raise AdminError(401, "unauthorized", "the session ended: sign in again")
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not given or not hmac.compare_digest(given.encode(), row.csrf_token.encode()):
                raise AdminError(403, "csrf_failed", f"a change needs the session's {CSRF_HEADER} header")
        return Principal(user, "session", hash_key(cookie))

    return current_principal


class UserRoutes:
    """``/auth/*`` and ``/tokens``: the routes about the person rather than the account's resources."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.gateway.settings.accounts
        self.signin_failures = Throttle(self.settings.signin_failures_per_window, self.settings.throttle_window_s)
        self.signups = Throttle(self.settings.signups_per_window, self.settings.throttle_window_s)
        self.on_signup: Callable[[User], Awaitable[None]] | None = None
        """The email-verification hook: awaited with each new user after its account exists."""
        self.principal = principal_dependency(store)

    def _json_only(self, request: Request) -> None:
        # JSON only: a cross-site form cannot post it without a CORS preflight, which these routes never allow.
        if "application/json" not in request.headers.get("content-type", ""):
            raise AdminError(415, "unsupported_media_type", "send the body as application/json")

    async def _open_session(self, request: Request, user: User) -> JSONResponse:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with self.store.write() as session:
            row = await user_repo.create_session(
                session, token_hash=hash_key(token), csrf_token=csrf, user_id=user.id, ttl_s=self.settings.session_ttl_s
            )
        body = SessionOut(user=UserOut.from_row(user), csrf_token=csrf, expires_at=int(row.expires_at))
        response = JSONResponse(body.model_dump(mode="json"), 201 if request.url.path.endswith("signup") else 200)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.settings.session_ttl_s),
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def auth_router(self) -> APIRouter:
        router = APIRouter(prefix="/auth", tags=["sign-up and sign-in"])
        Me = Annotated[Principal, Depends(self.principal)]

        @router.post("/signup", status_code=201, summary="Create an account and sign in", response_model=SessionOut)
        async def signup(request: Request, body: SignUpIn) -> Response:
            self._json_only(request)
            client, now = _client(request), time.time()
            if (wait := self.signups.retry_after(client, now)) is not None:
                raise _too_many(wait, "sign-ups")
            self.signups.hit(client, now)
            mode = self.store.gateway.settings.accounts.signup  # read per call: an operator may switch it
            if mode == "closed":
                raise AdminError(403, "signup_closed", "sign-up is closed on this gateway: ask its operator")
            if mode == "invite" and not body.invitation_code:
                raise invalid("invitation_code", "sign-up on this gateway needs an invitation code")
            username, email = body.username.lower(), body.email.lower() if body.email else None
            password_hash = await asyncio.to_thread(hash_password, body.password)
            credit = usd_to_micros(self.settings.signup_credit_usd)
            try:
                async with self.store.write() as session:
                    if await user_repo.user_named(session, username) is not None:
                        raise conflict(f"the user name '{username}' is taken", "username")
                    if email is not None and await user_repo.email_taken(session, email):
                        raise conflict("that email belongs to another account", "email")
                    invitation = None
                    if mode == "invite":
                        invitation = await user_repo.use_invitation(session, body.invitation_code or "")
                        if invitation is None:
                            raise AdminError(
                                403, "invalid_invitation", "unknown or used invitation code", "invitation_code"
                            )
                    user = await user_repo.create_user(
                        session,
                        username=username,
                        email=email,
                        display_name=body.display_name or body.username,
                        password_hash=password_hash,
                        group=self.settings.signup_group,
                    )
                    if invitation is not None:
                        await user_repo.invitation_used_by(session, invitation, user.id)
                    if credit > 0:
                        await repo.post_entry(session, user.account_id, credit, kind="topup", reason="sign-up credit")
            except IntegrityError:  # a concurrent sign-up took the name (or an admin made account 'user:<name>')
                raise conflict(f"the user name '{username}' is taken", "username") from None
            if self.on_signup is not None:
                await self.on_signup(user)
            return await self._open_session(request, user)

        @router.post("/session", summary="Sign in: sets the session cookie", response_model=SessionOut)
        async def sign_in(request: Request, body: SignInIn) -> Response:
            self._json_only(request)
            client, now = _client(request), time.time()
            if (wait := self.signin_failures.retry_after(client, now)) is not None:
                raise _too_many(wait, "failed sign-ins")
            name = body.username.strip().lower()
            async with self.store.read() as session:
                if "@" in name:
                    user = await session.scalar(user_repo.select_user_by_email(name))
                else:
                    user = await user_repo.user_named(session, name)
            # Unknown names are hashed too, so the answer's timing does not tell which names exist.
            stored = user.password_hash if user is not None else _dummy_hash()
            ok = await asyncio.to_thread(verify_password, body.password, stored)
            if user is None or not ok:
                self.signin_failures.hit(client, now)
                await asyncio.sleep(FAILURE_DELAY_S)
                raise AdminError(401, "unauthorized", "wrong user name or password")
            return await self._open_session(request, user)

        @router.get("/session", summary="The signed-in user and the session's CSRF token")
        async def current(request: Request, me: Me) -> SessionOut:
            if me.session_hash is None:
                raise AdminError(400, "not_a_session", "this route describes a session: call it with the cookie")
            async with self.store.read() as session:
                row = await user_repo.live_session(session, me.session_hash)
            assert row is not None
            return SessionOut(user=UserOut.from_row(me.user), csrf_token=row.csrf_token, expires_at=int(row.expires_at))

        @router.delete("/session", status_code=204, summary="Sign out")
        async def sign_out(me: Me) -> Response:
            if me.session_hash is not None:
                async with self.store.write() as session:
                    await user_repo.end_session(session, me.session_hash)
            response = Response(status_code=204)
            response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
            return response

        @router.put("/password", status_code=204, summary="Change the password; other sessions are signed out")
        async def change_password(body: PasswordIn, me: Me) -> Response:
            if not await asyncio.to_thread(verify_password, body.current_password, me.user.password_hash):
                await asyncio.sleep(FAILURE_DELAY_S)
                raise invalid("current_password", "wrong password")
            new_hash = await asyncio.to_thread(hash_password, body.new_password)
            async with self.store.write() as session:
                user = await session.get(User, me.user.id)
                assert user is not None
                user.password_hash = new_hash
                await user_repo.end_other_sessions(session, user.id, me.session_hash)
            return Response(status_code=204)

        @router.patch("/profile", summary="Change the display name")
        async def profile(body: ProfilePatch, me: Me) -> UserOut:
            async with self.store.write() as session:
                user = await session.get(User, me.user.id)
                assert user is not None
                user.display_name = body.display_name
            return UserOut.from_row(user)

        return router

    def token_router(self) -> APIRouter:
        router = APIRouter(prefix="/tokens", tags=["access tokens"], dependencies=[Depends(self.principal)])
        Me = Annotated[Principal, Depends(self.principal)]

        @router.get("", summary="The user's access tokens (prefixes only)")
        async def list_tokens(me: Me) -> list[TokenOut]:
            async with self.store.read() as session:
                rows = await user_repo.list_tokens(session, me.user.id)
            return [TokenOut.from_row(r) for r in rows]

        @router.post("", status_code=201, summary="Mint an access token; the answer holds it, shown this once")
        async def create_token(body: TokenIn, me: Me) -> NewTokenOut:
            async with self.store.write() as session:
                if await user_repo.count_live_tokens(session, me.user.id) >= self.settings.access_tokens_per_user:
                    raise conflict("too many access tokens: revoke some first")
                row, secret = await user_repo.create_token(session, me.user, body.name, body.expires_at)
            return NewTokenOut(token=secret, **TokenOut.from_row(row).model_dump())

        @router.delete("/{token_id}", summary="Revoke an access token: refused at once")
        async def revoke_token(token_id: int, me: Me) -> TokenOut:
            async with self.store.write() as session:
                row = await user_repo.own_token(session, me.user.id, token_id)
                if row is None:
                    raise not_found("access token", token_id)
                if row.revoked_at is None:
                    row.revoked_at = user_repo.now()
            return TokenOut.from_row(row)

        return router


def routers(store: Store) -> tuple[UserRoutes, list[APIRouter]]:
    routes = UserRoutes(store)
    return routes, [routes.auth_router(), routes.token_router()]


__all__ = ["COOKIE", "Principal", "UserRoutes", "hash_password", "principal_dependency", "routers", "verify_password"]
