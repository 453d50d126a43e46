"""Calling the client's ``notify_hook`` / ``notifyHook`` when a task ends.

The body is the task in its family's own shape (what the family's fetch route answers: a midjourney-proxy task
for ``/mj`` submits, the unified task for ``/task/submit``). Each call is signed::

    X-Omnirelay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body bytes>")>
    X-Omnirelay-Task-Id: <public task id>

so a receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant time, and
rejects old timestamps to stop replays. The secret is ``tasks.webhook_secret`` (or one derived from the master
key). A 2xx answer is a delivery; anything else is retried with exponential backoff up to ``webhook_attempts``.
Addresses that resolve to private, loopback or link-local networks are refused unless ``webhook_allow_private``,
checked when the task is submitted and again on every delivery, which connects to the address it checked
(``providers.media.open_url``: a name that resolves elsewhere by then cannot redirect the call).

Redirects are not followed: a 3xx answer is a failed delivery, retried like any other. Following one would re-send
a signed body to an address the receiver names at delivery time rather than the one the client registered (a 307
or 308 keeps the POST and its body), and a 303 would turn the call into a GET that drops the body; receivers that
moved register their new URL, as with GitHub's and Stripe's webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

import aiohttp

from omnirelay.providers.media import FetchRefused, checked_addresses, open_url

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
        await checked_addresses(parts.hostname, port, allow_private=allow_private)
    except FetchRefused as refused:
        raise HookRefused(str(refused)) from None


async def deliver(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    secret: bytes,
    task_id: str,
    timeout_s: float,
    allow_private: bool = False,
) -> bool:
    """One signed POST of ``body``; True when the receiver answered 2xx."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        TASK_ID_HEADER: task_id,
        "User-Agent": "omnirelay-webhook",
    }
    try:
        async with open_url(
            http,
            url,
            method="POST",
            data=body,
            headers=headers,
            timeout_s=timeout_s,
            allow_private=allow_private,
            max_redirects=0,
        ) as answer:
            return 200 <= answer.status < 300
    except FetchRefused:
        return False
