"""Secrets at rest: a dump of every table holds no upstream key and no client key in clear, and
``omnirelay rotate-master-key`` re-encrypts every stored upstream key, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from omnirelay.cli import app as cli
from omnirelay.config import Settings
from omnirelay.crypto import SecretBox
from omnirelay.store.db import create_engine
from omnirelay.store.models import Channel
from tests.conftest import TEST_MASTER_KEY, UPSTREAM_KEY, start_gateway
from tests.harness import ServerThread

ADMIN = "admin-token-secrets-0123456789abc"


async def dump(database_url: str) -> str:
    """Every row of every table, as text: what a stolen backup shows."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            metadata = MetaData()
            await connection.run_sync(metadata.reflect)
            rows = []
            for table in metadata.sorted_tables:
                rows += [repr(tuple(row)) for row in (await connection.execute(select(table))).all()]
        return "\n".join(rows)
    finally:
        await engine.dispose()


async def sealed(database_url: str, name: str) -> str:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            value = await connection.scalar(select(Channel.api_keys_encrypted).where(Channel.name == name))
        return str(value)
    finally:
        await engine.dispose()


def test_dump_reveals_nothing_and_rotation_reencrypts(
    database_url: str, openai_sim: ServerThread, tmp_path: Path
) -> None:
    gw = start_gateway(Settings(database_url=database_url, admin_token=ADMIN, master_key=TEST_MASTER_KEY))
    try:
        created = httpx.post(
            gw.server.url + "/admin/api/channels",
            headers={"authorization": f"Bearer {ADMIN}"},
            json={
                "name": "db-channel",
                "base_url": openai_sim.url + "/v1",
                "api_keys": [UPSTREAM_KEY],
                "models": ["gpt-4o-mini"],
            },
        )
        assert created.status_code == 201, created.text
        client_key = gw.create_key("dumped")
        reply = openai.OpenAI(base_url=gw.base_url, api_key=client_key, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices
        gw.flush_usage()
    finally:
        gw.server.stop()

    text = asyncio.run(dump(database_url))
    assert "db-channel" in text  # the dump is real...
    assert UPSTREAM_KEY not in text and UPSTREAM_KEY[3:20] not in text  # ...and holds no upstream key
    assert client_key not in text and client_key[6:] not in text  # nor a client key (hashes only)
    assert TEST_MASTER_KEY not in text

    new_key = Fernet.generate_key().decode()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database_url": database_url, "master_key": TEST_MASTER_KEY}))
    result = CliRunner().invoke(cli, ["rotate-master-key", "--new-key", new_key, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 channel(s)" in result.output

    token = asyncio.run(sealed(database_url, "db-channel"))
    assert SecretBox(new_key).open(token) == [UPSTREAM_KEY]
    with pytest.raises(ValueError):
        SecretBox(TEST_MASTER_KEY).open(token)
    assert UPSTREAM_KEY not in asyncio.run(dump(database_url))

    # A rotation run with the wrong current key refuses and changes nothing.
    config.write_text(yaml.safe_dump({"database_url": database_url, "master_key": Fernet.generate_key().decode()}))
    refused = CliRunner().invoke(cli, ["rotate-master-key", "--new-key", new_key, "--config", str(config)])
    assert refused.exit_code != 0
    assert "nothing changed" in refused.output
    assert asyncio.run(sealed(database_url, "db-channel")) == token

    # The gateway restarted with the new key serves through the re-encrypted channel.
    gw = start_gateway(Settings(database_url=database_url, master_key=new_key))
    try:
        client_key = gw.create_key("after-rotation")
        reply = openai.OpenAI(base_url=gw.base_url, api_key=client_key, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices
    finally:
        gw.server.stop()


def test_previous_master_keys_still_decrypt_during_a_rotation() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox(old).seal(["sk-a"])
    box = SecretBox(new, [old])
    assert box.open(token) == ["sk-a"]
    assert SecretBox(new).open(box.seal(["sk-b"])) == ["sk-b"]  # new rows are sealed with the new key only


def test_a_bad_new_key_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["rotate-master-key", "--new-key", "not-a-key", "--config", str(tmp_path / "missing.yaml")]
    )
    assert result.exit_code != 0
