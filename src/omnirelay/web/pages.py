"""The two consoles' HTML pages, built from one shell (``static/shell.html``) with each console's data.

The admin console (``/admin/``) and the account console (``/account/``) share their page: head, sign-in card,
top bar, navigation and main area. What differs is data: the name shown, the ES module that runs the page, the
sign-in fields (``static/signin-<name>.html``) and the navigation's pages. Rendered once when the routes are built;
no build step, the browser still runs the files in ``static/`` as they are.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from string import Template

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class ConsolePage:
    kind: str
    """Shown after the brand (``omnirelay admin``); also names the sign-in fields' file."""
    module: str
    nav_label: str
    pages: tuple[tuple[str, str], ...]
    """(route, label) of each navigation link, in order: ``#/<route>``."""

    def render(self) -> str:
        links = "\n".join(
            f'      <a href="#/{html.escape(route)}" data-page="{html.escape(route)}">{html.escape(label)}</a>'
            for route, label in self.pages
        )
        return Template((STATIC / "shell.html").read_text()).substitute(
            kind=html.escape(self.kind),
            module=html.escape(self.module),
            nav_label=html.escape(self.nav_label),
            nav_links=links,
            signin_fields=(STATIC / f"signin-{self.kind}.html").read_text().rstrip("\n"),
        )


ADMIN = ConsolePage(
    kind="admin",
    module="app.js",
    nav_label="Console pages",
    pages=(
        ("dashboard", "Dashboard"),
        ("channels", "Channels"),
        ("keys", "Keys & accounts"),
        ("prices", "Prices & groups"),
        ("logs", "Logs"),
        ("tasks", "Tasks"),
        ("playground", "Playground"),
    ),
)

ACCOUNT = ConsolePage(
    kind="account",
    module="account.js",
    nav_label="Account pages",
    pages=(
        ("dashboard", "Dashboard"),
        ("keys", "API keys"),
        ("logs", "Logs"),
        ("tasks", "Tasks"),
        ("topup", "Top up"),
        ("models", "Models & prices"),
        ("tokens", "Access tokens"),
        ("playground", "Playground"),
    ),
)
