"""Schemathesis against the admin API's own OpenAPI schema, with the admin token, over a real socket: whatever
the generated inputs, no 500. Bounded (five examples per operation, every operation) so it stays a CI test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from omnirelay.api.admin import create_admin_api
from omnirelay.config import ChannelConfig, Settings
from omnirelay.gateway import Gateway
from tests.conftest import TEST_MASTER_KEY, UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread

ADMIN = "admin-token-fuzz-0123456789abcdef"


def _schema() -> dict[str, object]:
    """The schema as the app generates it (no server needed to collect the tests)."""
    gateway = Gateway(Settings(database_url="sqlite:///:memory:", master_key=TEST_MASTER_KEY, admin_token=ADMIN))
    return create_admin_api(gateway).openapi()


# The CSV export is left out: schemathesis stalls on it (no request reached the gateway in 60 s; a plain GET answers
# in 0.2 s), and it is the same filters and page query as GET /usage, which is fuzzed.
schema = schemathesis.openapi.from_dict(_schema()).exclude(path="/usage/export.csv")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    harness = start_gateway(
        Settings(
            database_url=database_url_for("sqlite", path),
            admin_token=ADMIN,
            channels=[
                ChannelConfig(
                    name="sim", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"]
                )
            ],
        )
    )
    yield harness
    harness.server.stop()


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
def test_no_input_makes_a_500(case: schemathesis.Case, gw: GatewayHarness) -> None:
    if case.path.endswith("/test"):
        pytest.skip("health-checks reach upstreams: covered by tests/routing/test_health_checks.py")
    response = case.call(
        base_url=gw.server.url + "/admin/api", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
