"""Wiring: ``create_app(settings)`` builds one gateway instance as an ASGI app."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from omnirelay import heap
from omnirelay.api.account import account_routes
from omnirelay.api.admin import create_admin_api
from omnirelay.api.admin_audit import AuditTrail
from omnirelay.api.admin_auth import SessionRoutes
from omnirelay.api.anthropic import AnthropicSurface
from omnirelay.api.errors import error_response
from omnirelay.api.front import Handler, RelayFront
from omnirelay.api.gemini import GeminiSurface
from omnirelay.api.image_vendors import ImageVendorSurface
from omnirelay.api.openai import OpenAISurface
from omnirelay.api.ops import OpsRoutes
from omnirelay.api.relay import Relay
from omnirelay.api.system import create_system_api
from omnirelay.api.tasks import TaskRoutes
from omnirelay.config import Settings, load_settings
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.gateway import Gateway
from omnirelay.logs import configure_logging
from omnirelay.tasks.engine import TaskEngine
from omnirelay.tasks.poller import Poller
from omnirelay.web.account_console import account_console_routes
from omnirelay.web.console import console_routes


def relay_front(app: Starlette, routes: list[Route]) -> RelayFront:
    """Every POST relay route also goes to the raw front: exact paths, and ``.../{target:path}`` as a prefix."""
    exact: dict[tuple[str, str], Handler] = {}
    prefixes: list[tuple[str, str, Handler]] = []
    for route in routes:
        if "POST" not in (route.methods or ()):
            continue
        if "{" not in route.path:
            exact[("POST", route.path)] = route.endpoint
        elif route.path.endswith("{target:path}"):
            prefixes.append(("POST", route.path.removesuffix("{target:path}"), route.endpoint))
    return RelayFront(app, exact, prefixes)


def create_app(settings: Settings) -> RelayFront:
    configure_logging(settings.log_level)
    gateway = Gateway(settings)
    relay = Relay(gateway)
    gemini_surface = GeminiSurface(gateway, relay)
    openai_surface = OpenAISurface(gateway, relay, gemini_surface)
    anthropic_surface = AnthropicSurface(gateway, relay)
    image_vendors = ImageVendorSurface(gateway, relay)
    task_engine = TaskEngine(gateway)
    poller = Poller(task_engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        if settings.tasks.enabled:
            poller.start()
        heap.settle()
        try:
            yield
        finally:
            heap.release()
            await poller.stop()
            await gateway.stop(drain=relay.admission.drain)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Last line of defence: a bug answers a clean 500, never a stack trace.
        return error_response("openai", GatewayError(ErrorCode.internal, "The gateway hit an internal error."))

    app = Starlette(
        routes=[
            Route("/health", health),
            *OpsRoutes(gateway, relay).routes(),
            *openai_surface.routes(),
            *anthropic_surface.routes(),
            *gemini_surface.routes(),
            *image_vendors.routes(),
            *account_routes(gateway),
            *TaskRoutes(gateway, task_engine).routes(),
            Mount("/admin/api", app=AuditTrail(create_admin_api(gateway), gateway)),
            Mount("/api/v1", app=create_system_api(gateway)[0]),
            *SessionRoutes(gateway).routes(),
            *console_routes(),
            *account_console_routes(),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: internal_error},
    )
    app.state.gateway = gateway
    app.state.relay = relay
    app.state.tasks = task_engine
    app.state.poller = poller
    front = relay_front(
        app,
        [*openai_surface.routes(), *anthropic_surface.routes(), *gemini_surface.routes(), *image_vendors.routes()],
    )
    front.deadlines.timeout_s = settings.body_read_timeout_s
    front.on_refusal = relay.stats.refused
    task_engine.counts = relay.stats.tasks  # one /metrics page for calls and tasks
    return front


def app_from_env() -> RelayFront:
    """Factory for ``uvicorn --factory`` and multi-worker serving: the config path comes from the environment."""
    return create_app(load_settings(os.environ["OMNIRELAY_CONFIG"]))
