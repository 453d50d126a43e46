"""omnirelay as the benchmark runs it: ``create_app(settings)`` from a YAML config under uvicorn, one worker,
uvloop + httptools (what ``omnirelay serve`` does), in this process so its CPU and memory are this process's.

    python -m benchmarks.serve_omnirelay --config bench.yaml --port 9300 [--profile out.prof]

``--profile`` runs the server under cProfile and writes the stats when it stops (SIGTERM/SIGINT); read them
with ``python -m pstats out.prof`` (``sort tottime``, ``stats 30``). Profiling slows the server several times.
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import sys
from pathlib import Path

import uvicorn

from omnirelay.app import create_app
from omnirelay.config import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--profile", type=Path, default=None, help="Write cProfile stats here on exit.")
    args = parser.parse_args()
    app = create_app(load_settings(args.config))
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
