"""The account console: one HTML page at ``/account/`` (``pages.ACCOUNT``, the admin console's shell with the
account's data) whose modules (``static/account.js`` and the admin console's shared ``core.js``, ``charts.js``,
``console.css``) come from ``/admin/static``. It signs in and talks only to the System API (``/api/v1``), so
everything it does can be scripted with an access token too.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from omnirelay.web.console import page_routes
from omnirelay.web.pages import ACCOUNT


def account_console_routes() -> list[BaseRoute]:
    return page_routes("/account", ACCOUNT)
