"""The account console: one HTML page at ``/account/`` whose modules (``static/account.js`` and the admin
console's shared ``core.js``, ``charts.js``, ``console.css``) come from ``/admin/static``. It signs in and talks
only to the System API (``/api/v1``), so everything it does can be scripted with an access token too.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from omnirelay.web.console import SECURITY_HEADERS, STATIC


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "account.html", headers={**SECURITY_HEADERS, "cache-control": "no-store"})


async def to_index(request: Request) -> Response:
    return RedirectResponse("/account/", status_code=308)


def account_console_routes() -> list[BaseRoute]:
    return [Route("/account", to_index, methods=["GET"]), Route("/account/", index, methods=["GET"])]
