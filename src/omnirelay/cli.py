"""Command line: ``omnirelay demo | serve | simulate | keys | migrate``."""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import secrets
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import uvicorn
import yaml
from pydantic import ValidationError

from omnirelay.config import AccountsSettings, ChannelConfig, KeyConfig, Settings, load_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="omnirelay: one base URL and one key for every model.",
)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke client API keys.")
app.add_typer(keys_app, name="keys")

# Simulated upstreams by vendor name: module:factory, imported only when asked for.
SIMULATORS: dict[str, str] = {
    "openai": "omnirelay.simulators.openai:create_openai_simulator",
    "anthropic": "omnirelay.simulators.anthropic:create_anthropic_simulator",
    "gemini": "omnirelay.simulators.gemini:create_gemini_simulator",
    "suno": "omnirelay.simulators.tasks.suno:create_suno_simulator",
    "kling": "omnirelay.simulators.tasks.kling:create_kling_simulator",
    "replicate": "omnirelay.simulators.tasks.replicate:create_replicate_simulator",
    "fal": "omnirelay.simulators.tasks.fal:create_fal_simulator",
    "midjourney": "omnirelay.simulators.tasks.midjourney:create_midjourney_simulator",
    "video": "omnirelay.simulators.tasks.video:create_video_simulator",
    "ideogram": "omnirelay.simulators.image_vendors:create_ideogram_simulator",
    "recraft": "omnirelay.simulators.image_vendors:create_recraft_simulator",
}

# What the demo serves through each simulator: (channel type, base-URL suffix, models).
DEMO_CHANNELS: dict[str, tuple[str, str, list[str]]] = {
    "openai": (
        "openai",
        "/v1",
        [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "text-embedding-3-small",
            "gpt-3.5-turbo-instruct",
            *("dall-e-2", "dall-e-3", "gpt-image-1", "whisper-1", "gpt-4o-transcribe", "tts-1", "tts-1-hd"),
            *("gpt-4o-mini-tts", "omni-moderation-latest"),
        ],
    ),
    "anthropic": ("anthropic", "", ["claude-sonnet-4-5", "claude-3-5-haiku-latest"]),
    "gemini": ("gemini", "", ["gemini-2.5-flash", "gemini-2.5-pro", "imagen-4.0-fast-generate-001"]),
    "midjourney": (
        "midjourney",
        "",
        ["mj_imagine", "mj_upscale", "mj_variation", "mj_reroll", "mj_blend", "mj_describe", "mj_modal", "mj_video"],
    ),
    "video": (
        "video",
        "",
        [
            "gen4_turbo",
            "gen3a_turbo",
            "ray-2",
            "ray-flash-2",
            "veo-3.0-generate-001",
            "veo-3.0-fast-generate-001",
            "pika-2.2",
            "MiniMax-Hailuo-02",
            "doubao-seedance-1-0-pro",
        ],
    ),
    "suno": ("suno", "", ["suno_music", "suno_lyrics"]),
    "kling": ("kling", "", ["kling-v1", "kling-v1-6", "kling-v2-1", "kling-v2-master", "kolors-virtual-try-on-v1"]),
    "replicate": (
        "replicate",
        "",
        ["flux-kontext-pro", "flux-kontext-max", "flux-pro", "flux-pro-1.1-ultra", "imagen-4.0-generate-001"],
    ),
    "fal": ("fal", "", ["flux-dev", "flux-schnell", "flux-pro-1.1", "kling-v2-1-master"]),
    "ideogram": ("ideogram", "", ["ideogram-v3", "ideogram-upscale", "ideogram-describe"]),
    "recraft": (
        "recraft",
        "/v1",
        [
            *("recraftv3", "recraftv2", "recraft-vectorize", "recraft-remove-background", "recraft-clarity-upscale"),
            *("recraft-generative-upscale", "recraft-style"),
        ],
    ),
}
DEMO_UPSTREAM_KEY = "sim-upstream-key"
DEMO_UPSTREAM_KEYS: dict[str, str] = {"kling": "sim-access-key|sim-secret-key"}
"""Vendors whose key has a shape of its own (Kling: ``access_key|secret_key``, from which the gateway signs JWTs)."""


def import_factory(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def settings_from(config: Path | None) -> Settings:
    """The config file's settings; a bad file ends the command with a readable message, not a traceback."""
    path = config or (Path(os.environ["OMNIRELAY_CONFIG"]) if "OMNIRELAY_CONFIG" in os.environ else None)
    if path is None:
        return Settings()
    try:
        return load_settings(path)
    except FileNotFoundError:
        raise typer.BadParameter(f"config file {path} does not exist") from None
    except (ValidationError, yaml.YAMLError) as exc:
        typer.echo(f"error: {path} is not a valid omnirelay config:\n{exc}", err=True)
        raise typer.Exit(2) from None


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
    admin_token: Annotated[
        str | None, typer.Option("--admin-token", help="Admin token for /admin (default: a new random one).")
    ] = None,
) -> None:
    """Gateway + simulated upstreams for every vendor, SQLite, no network needed."""
    from omnirelay.app import create_app
    from omnirelay.crypto import new_api_key

    directory = data_dir or Path(tempfile.mkdtemp(prefix="omnirelay-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    key = api_key or new_api_key()
    factories = {vendor: f for vendor, f in available_simulators().items() if vendor in DEMO_CHANNELS}
    sim_ports = {vendor: free_port() for vendor in factories}
    channels = [
        ChannelConfig(
            name=f"sim-{vendor}",
            type=DEMO_CHANNELS[vendor][0],
            base_url=f"http://127.0.0.1:{sim_ports[vendor]}{DEMO_CHANNELS[vendor][1]}",
            api_keys=[DEMO_UPSTREAM_KEYS.get(vendor, DEMO_UPSTREAM_KEY)],
            models=DEMO_CHANNELS[vendor][2],
        )
        for vendor in factories
    ]
    settings = Settings(
        database_url=f"sqlite:///{directory / 'omnirelay.db'}",
        channels=channels,
        keys=[KeyConfig(name="demo", key=key)],
        admin_token=admin_token or secrets.token_urlsafe(24),
        accounts=AccountsSettings(signup="open", signup_credit_usd=5),  # try the account console at /account
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
            typer.echo(f"  console  : {base_url.removesuffix('/v1')}/admin (admin token: {settings.admin_token})")
            typer.echo(f"  accounts : {base_url.removesuffix('/v1')}/account (sign-up is open, $5 to start)")
            typer.echo(
                f"  try      : curl {base_url}/chat/completions -H 'Authorization: Bearer {key}' "
                f"-H 'Content-Type: application/json' "
                f'-d \'{{"model":"{model}","messages":[{{"role":"user","content":"Hello!"}}]}}\''
            )
            if "midjourney" in factories:
                root = base_url.removesuffix("/v1")
                typer.echo(
                    f"  a task   : curl {root}/task/submit -H 'Authorization: Bearer {key}' "
                    f'-H \'Content-Type: application/json\' -d \'{{"model":"mj_imagine","prompt":"a red fox"}}\''
                    f"  then: curl '{root}/task/<task_id>?wait=30' -H 'Authorization: Bearer {key}'"
                )
        await asyncio.gather(*tasks)

    asyncio.run(run())


@app.command()
def serve(
    config: Annotated[Path, typer.Option(help="YAML config file.")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8080,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    graceful_timeout: Annotated[
        float | None,
        typer.Option(help="After SIGTERM, seconds in-flight calls may take to finish (default: shutdown_grace_s)."),
    ] = None,
) -> None:
    """Run the gateway from a config file. SIGTERM stops taking connections, lets running calls and streams finish
    (up to the graceful timeout), writes the last usage rows and ledger entries, then exits."""
    settings = settings_from(config)  # fail fast on a bad file, before any worker starts
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
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout_s),
        h11_max_incomplete_event_size=64 * 1024,  # h11 only: headers beyond 64 KiB are refused
        timeout_graceful_shutdown=math.ceil(
            graceful_timeout if graceful_timeout is not None else settings.shutdown_grace_s
        ),
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
    cap = _usd_option(None if quota_usd is None else str(quota_usd), "--quota-usd")

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


# --- accounts, channels, top-ups -------------------------------------------------------------------------------

accounts_app = typer.Typer(no_args_is_help=True, help="Create, list and show accounts and their balances.")
channels_app = typer.Typer(
    no_args_is_help=True, help="List channels; take one out of routing or put it back; health-check them."
)
app.add_typer(accounts_app, name="accounts")
app.add_typer(channels_app, name="channels")


def _usd_option(value: str | None, name: str) -> int | None:
    from omnirelay.billing.money import usd_to_micros

    if value is None:
        return None
    try:
        return usd_to_micros(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Argument()],
    group: Annotated[str, typer.Option(help="Price group (must exist, except 'default').")] = "default",
    unlimited: Annotated[bool, typer.Option(help="Postpaid: no balance check.")] = False,
    rpm: Annotated[int | None, typer.Option(min=0)] = None,
    tpm: Annotated[int | None, typer.Option(min=0)] = None,
    monthly_budget_usd: Annotated[str | None, typer.Option(help="Monthly spend budget in USD.")] = None,
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Create an account (its balance starts at 0: add credit with `omnirelay topup`)."""
    from omnirelay.store import admin_repo, repo
    from omnirelay.store.models import Group

    budget = _usd_option(monthly_budget_usd, "--monthly-budget-usd")

    async def work(session: Any) -> Any:
        if await admin_repo.account_named(session, name) is not None:
            return f"an account named '{name}' exists"
        if group != "default" and await session.get(Group, group) is None:
            return f"unknown group '{group}'"
        await repo.ensure_group(session, group)
        return await admin_repo.create_account(
            session, name, group_name=group, unlimited=unlimited, rpm=rpm, tpm=tpm, monthly_budget_micros=budget
        )

    created = _with_session(config, work)
    if isinstance(created, str):
        _fail(created)
    typer.echo(f"account {created.id} '{created.name}' created (group {created.group_name})")


@accounts_app.command("list")
def accounts_list(config: Annotated[Path | None, typer.Option()] = None) -> None:
    """List accounts with their balances (credits - settled usage)."""
    from omnirelay.billing.money import micros_to_usd_str
    from omnirelay.store import admin_repo

    async def work(session: Any) -> Any:
        return await admin_repo.list_accounts(session, limit=100_000)

    typer.echo(f"{'id':>5}  {'name':<24} {'group':<12} {'balance_usd':>16} {'month_usd':>14}  status")
    for row in _with_session(config, work):
        status = "disabled" if row.disabled else "unlimited" if row.unlimited else "active"
        balance = micros_to_usd_str(row.credits_micros - row.debits_micros)
        month = micros_to_usd_str(admin_repo.month_spend(row))
        typer.echo(f"{row.id:>5}  {row.name:<24} {row.group_name:<12} {balance:>16} {month:>14}  {status}")


@accounts_app.command("show")
def accounts_show(
    account: Annotated[str, typer.Argument(help="Account name or id.")],
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """One account: balance, limits, keys and its latest ledger entries."""
    from omnirelay.billing.money import micros_to_usd_str as usd
    from omnirelay.store import admin_repo

    async def work(session: Any) -> Any:
        row = await admin_repo.find_account(session, account)
        if row is None:
            return None
        keys = await admin_repo.key_counts(session, [row.id])
        return row, keys.get(row.id, 0), await admin_repo.ledger_page(session, row.id, limit=10)

    found = _with_session(config, work)
    if found is None:
        _fail(f"no account '{account}'")
    row, keys, entries = found
    budget = "none" if row.monthly_budget_micros is None else usd(row.monthly_budget_micros)
    typer.echo(f"account     : {row.id} '{row.name}' (group {row.group_name})")
    typer.echo(f"status      : {'disabled' if row.disabled else 'active'}{', unlimited' if row.unlimited else ''}")
    typer.echo(f"balance_usd : {usd(row.credits_micros - row.debits_micros)}")
    typer.echo(f"credits_usd : {usd(row.credits_micros)}   debits_usd: {usd(row.debits_micros)}")
    typer.echo(f"month_usd   : {usd(admin_repo.month_spend(row))} of budget {budget}")
    typer.echo(f"limits      : rpm {row.rpm or '-'}  tpm {row.tpm or '-'}   active keys: {keys}")
    for entry in entries:
        typer.echo(f"  {entry.id:>6}  {entry.kind:<11} {usd(entry.amount_micros):>14}  {entry.reason or ''}")


@app.command()
def topup(
    account: Annotated[str, typer.Argument(help="Account name or id.")],
    amount_usd: Annotated[str, typer.Argument(help="USD, e.g. 25 or 9.99 (at most 6 decimals).")],
    reason: Annotated[str | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Add credit to an account (a ledger entry); running gateways see it within a second."""
    from omnirelay.billing.money import micros_to_usd_str
    from omnirelay.store import admin_repo, repo

    amount = _usd_option(amount_usd, "AMOUNT_USD")
    if not amount:
        raise typer.BadParameter("must be more than 0", param_hint="AMOUNT_USD")

    async def work(session: Any) -> Any:
        row = await admin_repo.find_account(session, account)
        if row is None:
            return None
        await repo.post_entry(session, row.id, amount, kind="topup", reason=reason)
        await session.refresh(row)
        return row

    row = _with_session(config, work)
    if row is None:
        _fail(f"no account '{account}'")
    balance = micros_to_usd_str(row.credits_micros - row.debits_micros)
    typer.echo(f"account {row.id} '{row.name}' topped up by {micros_to_usd_str(amount)}: balance {balance} USD")


@channels_app.command("list")
def channels_list(config: Annotated[Path | None, typer.Option()] = None) -> None:
    """List channels (upstream keys are counted, never shown)."""
    from omnirelay.crypto import SecretBox
    from omnirelay.gateway import master_key_for
    from omnirelay.store import admin_repo

    settings = settings_from(config)

    def key_count(sealed: str) -> str:
        try:
            return str(len(SecretBox(master_key_for(settings)).open(sealed)))
        except ValueError:
            return "?"

    async def work(session: Any) -> Any:
        return await admin_repo.list_channels(session)

    typer.echo(f"{'id':>5}  {'name':<20} {'type':<10} {'state':<9} {'keys':>4}  {'source':<7} models")
    for row in _with_session(config, work):
        state = "enabled" if row.enabled else "disabled"
        source = "config" if row.from_config else "admin"
        models = ",".join([*row.models, *row.model_map]) or "-"
        note = f"  ({row.disabled_reason})" if not row.enabled and row.disabled_reason else ""
        typer.echo(
            f"{row.id:>5}  {row.name:<20} {row.type:<10} {state:<9} {key_count(row.api_keys_encrypted):>4}  "
            f"{source:<7} {models}{note}"
        )


def _set_channel(channel: str, enabled: bool, reason: str | None, config: Path | None) -> None:
    from omnirelay.store import admin_repo

    async def work(session: Any) -> Any:
        row = await admin_repo.find_channel(session, channel)
        if row is not None:
            await admin_repo.set_channel_enabled(session, row, enabled, reason)
        return row

    row = _with_session(config, work)
    if row is None:
        _fail(f"no channel '{channel}'")
    typer.echo(f"channel {row.id} '{row.name}' {'enabled' if enabled else 'disabled'}")


@channels_app.command("disable")
def channels_disable(
    channel: Annotated[str, typer.Argument(help="Channel name or id.")],
    reason: Annotated[str | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Take a channel out of routing; running gateways stop using it within a second."""
    _set_channel(channel, False, reason, config)


@channels_app.command("test")
def channels_test(
    channel: Annotated[str | None, typer.Argument(help="Channel name or id (default: every enabled channel).")] = None,
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Send a minimal request to every model (and with every key) of a channel; show each result and latency, and
    record them (admin API: ``/channels/{id}/checks``). Exits 1 if any check failed."""
    from omnirelay.gateway import Gateway

    settings = settings_from(config)

    async def run() -> tuple[list[Any], dict[int, str]]:
        gateway = Gateway(settings)
        await gateway.start()
        try:
            results = await gateway.check_channels(channel)
            return results, {c.id: c.name for c in gateway.snapshot.channels}
        finally:
            await gateway.stop()

    try:
        results, names = asyncio.run(run())
    except LookupError:
        _fail(f"no channel '{channel}'")
    except ValueError as exc:  # no master key for a shared database
        _fail(str(exc))
    if not results:
        typer.echo("nothing to check (no enabled channel, or every key disabled)")
        return
    typer.echo(f"{'channel':<20} {'model':<28} {'key':<12} {'result':<20} {'latency':>8}")
    for result in results:
        outcome = "ok" if result.ok else f"{result.error_code} {result.status_code or ''}".strip()
        typer.echo(
            f"{names.get(result.channel_id, result.channel_id)!s:<20} {result.model:<28} {result.key_id or '-':<12} "
            f"{outcome:<20} {result.latency_ms:>6}ms"
        )
        if not result.ok and result.message:
            typer.echo(f"    {result.message}")
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@channels_app.command("enable")
def channels_enable(
    channel: Annotated[str, typer.Argument(help="Channel name or id.")],
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Put a channel back into routing."""
    _set_channel(channel, True, None, config)


@app.command("admin-password")
def admin_password(
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Asked for when not given.")
    ],
) -> None:
    """Print the scrypt hash of a console password, for ``admin_users: {name: <hash>}`` in the config file."""
    from omnirelay.api.admin_auth import hash_password

    if len(password) < 12:
        _fail("use at least 12 characters")
    typer.echo(hash_password(password))


@app.command("rotate-master-key")
def rotate_master_key(
    new_key: Annotated[str, typer.Option(help="The new Fernet master key (Fernet.generate_key()).")],
    config: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Re-encrypt every stored upstream key with a new master key, in one transaction. Then put the new key in
    every instance's ``master_key`` (keep the old one in ``previous_master_keys`` while instances restart)."""
    from cryptography.fernet import Fernet

    from omnirelay.crypto import SecretBox
    from omnirelay.gateway import master_key_for
    from omnirelay.store.rotation import reencrypt_upstream_keys

    settings = settings_from(config)
    try:
        Fernet(new_key.encode())
    except ValueError:
        _fail("--new-key is not a Fernet key (32 url-safe base64-encoded bytes)")
    try:
        current = master_key_for(settings)
    except ValueError as exc:
        _fail(str(exc))
    old_box = SecretBox(current, settings.previous_master_keys)
    new_box = SecretBox(new_key)

    async def work(session: Any) -> int:
        return await reencrypt_upstream_keys(session, old_box, new_box)

    try:
        count = _with_session(config, work)
    except ValueError as exc:
        _fail(f"nothing changed: {exc}")
    if not settings.master_key:  # a single-machine install keeps its key beside the SQLite file
        from omnirelay.config import async_database_url

        key_file = Path(async_database_url(settings.database_url).removeprefix("sqlite+aiosqlite:///") + ".masterkey")
        key_file.write_text(new_key)
        typer.echo(f"re-encrypted {count} channel(s); the new key is in {key_file}")
    else:
        typer.echo(f"re-encrypted {count} channel(s); set master_key to the new key in every instance's config")


def main() -> None:
    app()
