"""Command line: ``omnirelay demo | serve | simulate | keys | migrate``."""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from omnirelay.config import ChannelConfig, KeyConfig, Settings, load_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="omnirelay: one base URL and one key for every model."
)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke client API keys.")
app.add_typer(keys_app, name="keys")

# Simulated upstreams by vendor name: module:factory, imported only when asked for.
SIMULATORS: dict[str, str] = {
    "openai": "omnirelay.simulators.openai:create_openai_simulator",
    "anthropic": "omnirelay.simulators.anthropic:create_anthropic_simulator",
    "gemini": "omnirelay.simulators.gemini:create_gemini_simulator",
}

# What the demo serves through each simulator: (channel type, base-URL suffix, models).
DEMO_CHANNELS: dict[str, tuple[str, str, list[str]]] = {
    "openai": (
        "openai",
        "/v1",
        ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct"],
    ),
    "anthropic": ("anthropic", "", ["claude-sonnet-4-5", "claude-3-5-haiku-latest"]),
    "gemini": ("gemini", "", ["gemini-2.5-flash", "gemini-2.5-pro"]),
}
DEMO_UPSTREAM_KEY = "sim-upstream-key"


def import_factory(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def settings_from(config: Path | None) -> Settings:
    path = config or (Path(os.environ["OMNIRELAY_CONFIG"]) if "OMNIRELAY_CONFIG" in os.environ else None)
    return load_settings(path) if path else Settings()


def _server(app_obj: Any, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app_obj, host=host, port=port, log_level="warning", loop="uvloop", http="httptools", lifespan="on"
    )
    return uvicorn.Server(config)


def available_simulators() -> dict[str, Any]:
    found = {}
    for vendor, target in SIMULATORS.items():
        try:
            found[vendor] = import_factory(target)
        except (ImportError, AttributeError):
            continue
    return found


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface for the gateway.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the gateway.")] = 8080,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Use this client key instead of a new one.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where the SQLite file lives (default: a temp dir).")] = None,
) -> None:
    """Gateway + simulated upstreams for every vendor, SQLite, no network needed."""
    from omnirelay.app import create_app
    from omnirelay.crypto import new_api_key

    directory = data_dir or Path(tempfile.mkdtemp(prefix="omnirelay-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    key = api_key or new_api_key()
    factories = available_simulators()
    sim_ports = {vendor: free_port() for vendor in factories}
    channels = [
        ChannelConfig(
            name=f"sim-{vendor}",
            type=DEMO_CHANNELS[vendor][0],
            base_url=f"http://127.0.0.1:{sim_ports[vendor]}{DEMO_CHANNELS[vendor][1]}",
            api_keys=[DEMO_UPSTREAM_KEY],
            models=DEMO_CHANNELS[vendor][2],
        )
        for vendor in factories
    ]
    settings = Settings(
        database_url=f"sqlite:///{directory / 'omnirelay.db'}",
        channels=channels,
        keys=[KeyConfig(name="demo", key=key)],
    )
    base_url = f"http://{host}:{port}/v1"
    servers = [_server(factory(), "127.0.0.1", sim_ports[vendor]) for vendor, factory in factories.items()]
    servers.append(_server(create_app(settings), host, port))

    async def run() -> None:
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        while not servers[-1].started:
            if servers[-1].should_exit or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        if servers[-1].started:
            model = "gpt-4o-mini"
            typer.echo(f"omnirelay demo is running (data in {directory})")
            typer.echo(f"  base URL : {base_url}")
            typer.echo(f"  API key  : {key}")
            typer.echo(f"  models   : {', '.join(m for c in channels for m in c.models)}")
            typer.echo(
                f"  try      : curl {base_url}/chat/completions -H 'Authorization: Bearer {key}' "
                f"-H 'Content-Type: application/json' "
                f'-d \'{{"model":"{model}","messages":[{{"role":"user","content":"Hello!"}}]}}\''
            )
        await asyncio.gather(*tasks)

    asyncio.run(run())


@app.command()
def serve(
    config: Annotated[Path, typer.Option(help="YAML config file.")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Run the gateway from a config file."""
    load_settings(config)  # fail fast on a bad file, before any worker starts
    os.environ["OMNIRELAY_CONFIG"] = str(config.resolve())
    uvicorn.run(
        "omnirelay.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
    )


@app.command()
def simulate(
    vendor: Annotated[str, typer.Argument(help=f"One of: {', '.join(SIMULATORS)}")],
    port: Annotated[int, typer.Option()] = 9000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Run one simulated upstream alone."""
    if vendor not in SIMULATORS:
        raise typer.BadParameter(f"unknown vendor '{vendor}'; choose from {', '.join(SIMULATORS)}")
    factory = import_factory(SIMULATORS[vendor])
    typer.echo(f"{vendor} simulator on http://{host}:{port}")
    uvicorn.run(factory(), host=host, port=port, loop="uvloop", http="httptools", log_level="warning")


@app.command()
def migrate(config: Annotated[Path | None, typer.Option()] = None) -> None:
    """Apply database migrations (also done automatically on start)."""
    from omnirelay.store.db import create_engine
    from omnirelay.store.db import migrate as run_migrations

    async def run() -> None:
        engine = create_engine(settings_from(config).database_url)
        await run_migrations(engine)
        await engine.dispose()

    asyncio.run(run())
    typer.echo("database is at the newest schema")


def _with_session(config: Path | None, work: Any) -> Any:
    from omnirelay.store.db import create_engine, sessionmaker
    from omnirelay.store.db import migrate as run_migrations

    async def run() -> Any:
        engine = create_engine(settings_from(config).database_url)
        try:
            await run_migrations(engine)
            async with sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _parse_expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    if value[-1] in "dh" and value[:-1].isdigit():
        from datetime import timedelta

        amount = int(value[:-1])
        return datetime.now(UTC) + (timedelta(days=amount) if value[-1] == "d" else timedelta(hours=amount))
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option()],
    models: Annotated[str | None, typer.Option(help="Comma-separated allowed models (default: all).")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO date/time, or a duration like 30d or 12h.")] = None,
    quota_usd: Annotated[float | None, typer.Option(help="Spend cap in USD.")] = None,
    account: Annotated[str, typer.Option()] = "default",
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Create a key. It is printed once and stored only as a hash."""
    from omnirelay.store import repo

    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    expires_at = _parse_expiry(expires)
    cap = None if quota_usd is None else round(quota_usd * 1_000_000)

    async def work(session: Any) -> Any:
        return await repo.create_key(
            session, name, account=account, models=model_list, expires_at=expires_at, spend_cap_micros=cap
        )

    created = _with_session(config, work)
    typer.echo(f"id   : {created.id}")
    typer.echo(f"name : {created.name}")
    typer.echo(f"key  : {created.key}")
    typer.echo("Store this key now: it cannot be shown again.")


@keys_app.command("list")
def keys_list(config: Annotated[Path | None, typer.Option()] = None) -> None:
    """List keys (prefixes only; full keys are never stored)."""
    from omnirelay.store import repo

    async def work(session: Any) -> Any:
        return await repo.list_keys(session)

    rows = _with_session(config, work)
    typer.echo(f"{'id':>5}  {'name':<20} {'prefix':<12} {'status':<8} models")
    for row in rows:
        status = "revoked" if row.revoked_at else "active"
        if row.expires_at and row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC) < datetime.now(UTC):
            status = "expired"
        typer.echo(
            f"{row.id:>5}  {row.name:<20} {row.key_prefix + '…':<12} {status:<8} {','.join(row.models or ['*'])}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument()], config: Annotated[Path | None, typer.Option()] = None
) -> None:
    """Revoke a key; running gateways refuse it within a second."""
    from omnirelay.store import repo

    async def work(session: Any) -> Any:
        return await repo.revoke_key(session, key_id)

    if not _with_session(config, work):
        typer.echo(f"no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {key_id} revoked")


def main() -> None:
    app()
