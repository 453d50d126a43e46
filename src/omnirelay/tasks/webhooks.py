"""Calling the client's ``notify_hook`` / ``notifyHook`` when a task ends.

The body is the task in its family's own shape (what the family's fetch route answers: a midjourney-proxy task
for ``/mj`` submits, the unified task for ``/task/submit``). Each call is signed::

    X-Omnirelay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body bytes>")>
    X-Omnirelay-Task-Id: <public task id>

so a receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant time, and
rejects old timestamps to stop replays. The secret is ``tasks.webhook_secret`` (or one derived from the master
key). A 2xx answer is a delivery; anything else is retried with exponential backoff up to ``webhook_attempts``.
Addresses that resolve to private, loopback or link-local networks are refused unless ``webhook_allow_private``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

import aiohttp

SIGNATURE_HEADER = "X-Omnirelay-Signature"
TASK_ID_HEADER = "X-Omnirelay-Task-Id"


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, *, tolerance_s: float = 300.0) -> bool:
    """What a receiver does (and what the tests use)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class HookRefused(Exception):
    """The address may not be called; not retried."""


async def check_address(url: str, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HookRefused("the webhook must be an http or https URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError:
        raise HookRefused("the webhook host cannot be resolved") from None
    for info in infos:
        if not allow_private and not ipaddress.ip_address(info[4][0]).is_global:
            raise HookRefused("the webhook points at a non-public address")


async def deliver(
    http: aiohttp.ClientSession, url: str, body: bytes, *, secret: bytes, task_id: str, timeout_s: float
) -> bool:
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        TASK_ID_HEADER: task_id,
        "User-Agent": "omnirelay-webhook",
    }
    try:
        async with http.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
        ) as answer:
            return 200 <= answer.status < 300
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False
