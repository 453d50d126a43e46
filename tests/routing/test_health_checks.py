"""``omnirelay channels test [NAME]``: a minimal request per model and key, results and latency, exit status."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import TEST_MASTER_KEY, UPSTREAM_KEY
from tests.routing.conftest import REVOKED_KEY, Sims


def test_channels_test_checks_every_model_and_key(tmp_path: Path, sims: Sims) -> None:
    from omnirelay.cli import app

    config = tmp_path / "omnirelay.yaml"
    config.write_text(
        f"""
database_url: sqlite:///{tmp_path / "cli.db"}
master_key: {TEST_MASTER_KEY}
channels:
  - name: good
    base_url: {sims.healthy.url}/v1
    api_keys: [{UPSTREAM_KEY}]
    models: [gpt-4o-mini, text-embedding-3-small]
  - name: revoked
    base_url: {sims.healthy.url}/v1
    api_keys: [{REVOKED_KEY}]
    models: [gpt-4o-mini]
"""
    )
    runner = CliRunner()

    def run(*args: str, code: int) -> str:
        result = runner.invoke(app, ["channels", "test", *args, "--config", str(config)])
        assert result.exit_code == code, result.output
        return result.output

    good = run("good", code=0)
    assert "gpt-4o-mini" in good and "text-embedding-3-small" in good
    assert good.count(" ok ") == 2 and "ms" in good
    revoked = run("revoked", code=1)
    assert "upstream_auth 401" in revoked and REVOKED_KEY not in revoked
    everything = run(code=1)
    assert "good" in everything and "revoked" in everything
    assert "no channel 'missing'" in run("missing", code=1)


def test_periodic_checks_record_results_and_feed_the_breakers(tmp_path: Path, sims: Sims) -> None:
    import time

    from sqlalchemy import select

    from omnirelay.config import BreakerConfig, ChannelConfig, Settings
    from omnirelay.store.models import ChannelCheck
    from tests.conftest import start_gateway

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'periodic.db'}",
        health_check_interval_s=0.2,
        breaker=BreakerConfig(failure_threshold=2),
        channels=[
            ChannelConfig(
                name="up", base_url=sims.healthy.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"]
            ),
            ChannelConfig(
                name="silent",
                base_url=sims.hanging.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                models=["gpt-4o-mini"],
                first_byte_timeout_s=0.1,
            ),
        ],
    )
    gw = start_gateway(settings)
    try:
        silent = next(c.id for c in gw.gateway.snapshot.channels if c.name == "silent")

        async def checks() -> list[ChannelCheck]:
            async with gw.gateway.sessions() as session:
                return list((await session.scalars(select(ChannelCheck))).all())

        deadline = time.monotonic() + 10
        while len({(c.channel_id, c.ok) for c in gw.run(checks())}) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        results = gw.run(checks())
        assert all(c.ok for c in results if c.channel_id != silent)
        assert {c.error_code for c in results if c.channel_id == silent} == {"upstream_timeout"}
        while gw.gateway.board.state_of(f"channel:{silent}", time.time()).state != "open":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        gw.server.stop()
