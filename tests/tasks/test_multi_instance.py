"""Two gateway instances on one PostgreSQL database: each task polled by one instance, each charge and refund once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from omnirelay.store.models import Task
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread
from tests.tasks.conftest import books, gateway_settings, new_client, task_row, wait_until
from tests.tasks.test_engine import IMAGINE_MICROS, imagine, mj, polled_by


def _settled(gws: list[GatewayHarness], ids: list[str]) -> bool:
    async def count(gw: GatewayHarness) -> int:
        async with gw.gateway.sessions() as session:
            rows = await session.scalars(
                select(Task.public_id).where(Task.public_id.in_(ids), Task.status.in_(("SUCCESS", "FAILURE")))
            )
            return len(list(rows))

    return bool(gws[0].run(count(gws[0])) == len(ids))


def test_two_instances_poll_each_task_once(database_url: str, mj_sim: ServerThread, video_sim: ServerThread) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several instances share PostgreSQL; SQLite is the single-instance set-up")
    one = start_gateway(gateway_settings(database_url, mj_sim, video_sim, instance_id="one", claim_batch=10))
    two = start_gateway(gateway_settings(database_url, mj_sim, video_sim, instance_id="two", claim_batch=10))
    try:
        client = new_client(one, "fleet")
        two.run(two.gateway.reload())
        ids: list[str] = []
        failing: set[str] = set()
        with mj(client, one) as a, mj(client, two) as b:
            for i in range(100):
                fail = i % 5 == 0
                task_id = imagine(a if i % 2 else b, f"fleet {i} [sim duration=0.4 fail={int(fail)}]")
                ids.append(task_id)
                if fail:
                    failing.add(task_id)
        wait_until(lambda: _settled([one, two], ids), timeout=60)
        time.sleep(0.3)
        rows = {pid: task_row(one, pid) for pid in ids}
        by_upstream = {row.upstream_id: pid for pid, row in rows.items()}
        seen = polled_by(mj_sim, set(by_upstream))
        assert set(seen) == set(by_upstream)  # every task was polled...
        assert all(len(agents) == 1 for agents in seen.values()), seen  # ...by one instance only
        assert {a for agents in seen.values() for a in agents} == {"omnirelay-tasks/one", "omnirelay-tasks/two"}
        entries = books(one, client.account_id)["entries"]
        for pid in ids:
            expected = [-IMAGINE_MICROS, IMAGINE_MICROS] if pid in failing else [-IMAGINE_MICROS]
            assert entries[pid] == expected, pid
            assert rows[pid].status == ("FAILURE" if pid in failing else "SUCCESS")
        assert books(one, client.account_id)["debits"] == IMAGINE_MICROS * (100 - len(failing))
    finally:
        one.server.stop()
        two.server.stop()
