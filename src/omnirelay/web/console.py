"""The admin console: one HTML page (``pages.ADMIN``) and its ES modules, served from package data at ``/admin``.

No build step: the files in ``static/`` are what the browser runs. The page signs in through ``/admin/session``
(``api/admin_auth.py``) and then talks only to the admin API (``/admin/api``), so everything it does can be
scripted with the API too.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from omnirelay.web.pages import ADMIN, STATIC, ConsolePage

# Everything from this origin; result previews of tasks may be images, video or audio hosted elsewhere.
CSP = (
    "default-src 'self'; img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class SecuredStatic:
    """Static files with the console's security headers (a plain ASGI wrapper: no body copying)."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-cache"))  # revalidate: an upgrade ships new modules
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def page_routes(path: str, page: ConsolePage) -> list[BaseRoute]:
    """``path/`` serves the page (rendered once, here), ``path`` redirects to it."""
    body = page.render()

    async def index(request: Request) -> Response:
        return HTMLResponse(body, headers={**SECURITY_HEADERS, "cache-control": "no-store"})

    async def to_index(request: Request) -> Response:
        return RedirectResponse(path + "/", status_code=308)

    return [Route(path, to_index, methods=["GET"]), Route(path + "/", index, methods=["GET"])]


def console_routes() -> list[BaseRoute]:
    return [*page_routes("/admin", ADMIN), Mount("/admin/static", app=SecuredStatic(StaticFiles(directory=STATIC)))]
