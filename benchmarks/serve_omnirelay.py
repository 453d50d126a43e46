"""omnirelay as the benchmark runs it: ``create_app(settings)`` from a YAML config under uvicorn, one worker,
uvloop + httptools (what ``omnirelay serve`` does), in this process so its CPU and memory are this process's.

    python -m benchmarks.serve_omnirelay --config bench.yaml --port 9300 [--key-rpm N] [--key-tpm N]
                                         [--profile out.prof]

``--key-rpm`` / ``--key-tpm``: the config file's ``keys:`` entries carry a spend cap (``quota_usd``) but no rate
limits, so with either option the config's bootstrap keys are created here first, through
``omnirelay.store.repo.create_key`` with those limits (and the entry's cap, models and account), before the
gateway starts; its own bootstrap then finds them by hash and leaves them alone.

``--profile`` runs the server under cProfile and writes the stats when it stops (SIGTERM/SIGINT); read them
with ``python -m pstats out.prof`` (``sort tottime``, ``stats 30``). Profiling slows the server several times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import signal
import sys
from pathlib import Path

import uvicorn
from sqlalchemy import select

from omnirelay.app import create_app
from omnirelay.billing.money import usd_to_micros
from omnirelay.config import Settings, load_settings
from omnirelay.crypto import hash_key
from omnirelay.store import repo
from omnirelay.store.db import bootstrap_lock, create_engine, migrate, sessionmaker
from omnirelay.store.models import ApiKey


async def create_limited_keys(settings: Settings, *, rpm: int | None, tpm: int | None) -> int:
    """Create the config's bootstrap keys with rate limits (those that do not exist yet); returns how many."""
    engine = create_engine(settings.database_url)
    created = 0
    try:
        async with bootstrap_lock(engine):
            await migrate(engine)
            async with sessionmaker(engine).begin() as session:
                for spec in settings.keys:
                    if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(spec.key))):
                        continue
                    cap = None if spec.quota_usd is None else usd_to_micros(spec.quota_usd)
                    await repo.create_key(
                        session,
                        spec.name,
                        account=spec.account,
                        models=spec.models,
                        key=spec.key,
                        spend_cap_micros=cap,
                        rpm=rpm,
                        tpm=tpm,
                    )
                    created += 1
    finally:
        await engine.dispose()
    return created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-rpm", type=int, default=None, help="Requests-per-minute limit of the config's keys.")
    parser.add_argument("--key-tpm", type=int, default=None, help="Tokens-per-minute limit of the config's keys.")
    parser.add_argument("--profile", type=Path, default=None, help="Write cProfile stats here on exit.")
    args = parser.parse_args()
    settings = load_settings(args.config)
    if args.key_rpm is not None or args.key_tpm is not None:
        asyncio.run(create_limited_keys(settings, rpm=args.key_rpm, tpm=args.key_tpm))
    app = create_app(settings)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through SystemExit lets ``finally`` run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            lifespan="on",
        )
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
