"""Settings: a YAML file with ``${ENV}`` interpolation, read into pydantic models once at start."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

ChannelType = str  # "openai" | "anthropic" | "gemini" | a task vendor; checked against the provider table at start


class ChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: ChannelType = "openai"
    base_url: str
    api_keys: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    model_map: dict[str, str] = Field(default_factory=dict)
    priority: int = 0
    weight: int = Field(default=1, ge=0)
    enabled: bool = True
    timeout_s: float = Field(default=600.0, gt=0)
    """Total: from sending the request to the last byte of the answer."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float | None = Field(default=None, gt=0)
    """Until the response headers and, for a stream, its first chunk; a channel that stays silent this long is
    abandoned for the next one. Vendors send a non-stream answer's headers only once it is complete, so keep this
    above the longest non-stream generation. None: ``timeout_s``."""
    idle_timeout_s: float | None = Field(default=None, gt=0)
    """Streams: the longest silence between two chunks once the first arrived. None: ``timeout_s``."""
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("api_keys")
    @classmethod
    def _drop_empty(cls, keys: list[str]) -> list[str]:
        return [k for k in keys if k]


class BreakerConfig(BaseModel):
    """Circuit breakers, one per channel and one per upstream key."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failures that open a breaker..."""
    error_rate: float = Field(default=0.5, gt=0, le=1)
    """...or this share of failed calls within ``window_s``..."""
    min_calls: int = Field(default=20, ge=1)
    """...once the window holds at least this many calls."""
    window_s: float = Field(default=60.0, gt=0)
    open_s: float = Field(default=30.0, gt=0)
    """How long an open breaker turns calls away before one probe may go through (half-open)."""
    max_open_s: float = Field(default=300.0, gt=0)
    """Each failed probe doubles the open time, up to this."""
    probe_timeout_s: float = Field(default=60.0, gt=0)
    """A probe that reports nothing within this long (its client left) lets another probe go."""
    rate_limit_cooldown_s: float = Field(default=1.0, ge=0)
    """How long a key answered 429 without a ``Retry-After`` is set aside."""
    fail_fast: bool = False
    """When every candidate of a call is open or cooling down: refuse at once (503, or 429 when they are rate
    limited, with ``Retry-After``) instead of trying the one that recovers soonest."""


class KeyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    key: str
    quota_usd: str | float | None = None
    """Spend cap in USD (converted exactly to micro-USD; a string keeps every digit)."""
    models: list[str] | None = None
    account: str = "default"


class AdminTokenConfig(BaseModel):
    """A named admin API token; ``read`` tokens may only read (a write answers 403)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    token: str = Field(min_length=16)
    scope: Literal["read", "full"] = "read"


class TaskSettings(BaseModel):
    """The asynchronous task engine (Midjourney, Suno, video...)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Run the poller in this instance (every instance may: leases keep each task with one poller)."""
    poll_tick_s: float = Field(default=1.0, gt=0)
    """How often the poller looks for due tasks."""
    claim_batch: int = Field(default=200, ge=1)
    """Most tasks one instance claims per tick."""
    lease_s: float = Field(default=60.0, gt=0)
    """How long a task stays with the instance that claimed it after its next due poll; an instance that dies
    leaves its tasks to the others once this runs out."""
    poll_interval_scale: float = Field(default=1.0, gt=0)
    """Multiplies every vendor's poll delays (tests: 0.02)."""
    timeout_scale: float = Field(default=1.0, gt=0)
    """Multiplies every vendor's task timeout."""
    max_wait_s: float = Field(default=60.0, ge=0)
    """Cap of ``?wait=N`` on ``GET /task/{id}``."""
    store_results: bool = False
    """Fetch finished results into ``storage_dir`` and hand out the gateway's own URLs (they never expire)."""
    storage_dir: str = "./omnirelay-files"
    public_base_url: str | None = None
    """Base of the stored files' URLs (``https://gw.example.com``); None: the URL the client called."""
    result_max_bytes: int = 512 * 1024 * 1024
    result_fetch_timeout_s: float = Field(default=300.0, gt=0)
    """Time to fetch one result to keep, its redirects included (videos are large). Results are fetched like every
    URL the gateway fetches: no private address unless ``media_fetch_allow_private``."""
    webhook_secret: str | None = None
    """HMAC-SHA256 key of webhook signatures; None: derived from the master key."""
    webhook_allow_private: bool = False
    """Allow webhooks to private or loopback addresses (tests, closed networks)."""
    webhook_attempts: int = Field(default=5, ge=1)
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    instance_id: str | None = None
    """Name of this instance in leases and the poller's User-Agent; None: random per start."""


class AccountsSettings(BaseModel):
    """Self-service accounts (``api/users.py``): who may sign up, what a new account starts with, throttles."""

    model_config = ConfigDict(extra="forbid")

    signup: Literal["open", "invite", "closed"] = "closed"
    """open: anyone; invite: with an invitation code (admin API ``/admin/api/invitations``); closed: nobody."""
    signup_group: str = "default"
    signup_credit_usd: str | float = 0
    """Credit a new account starts with (posted to its ledger as a top-up)."""
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    signin_failures_per_window: int = Field(default=10, ge=1)
    """Refused sign-ins allowed per client address in ``throttle_window_s``; then 429."""
    signups_per_window: int = Field(default=5, ge=1)
    """Sign-ups (successful or not) allowed per client address in ``throttle_window_s``."""
    throttle_window_s: float = Field(default=300.0, gt=0)
    access_tokens_per_user: int = Field(default=50, ge=1)
    keys_per_account: int = Field(default=100, ge=1)
    """Live API keys a self-service account may hold (each one is kept in every instance's memory)."""


class TracingSettings(BaseModel):
    """OpenTelemetry traces (``pip install omnirelay[otel]``): a server span per relayed call and a client span per
    upstream attempt, named after the GenAI semantic conventions. Off by default; off costs a None check."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: str | None = None
    """OTLP/HTTP traces URL (``http://collector:4318/v1/traces``); None: the SDK's default or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``."""
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Share of calls traced (head sampling by trace id)."""
    service_name: str = "omnirelay"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = "sqlite:///./omnirelay.db"
    redis_url: str | None = None
    redis_namespace: str = "default"
    """Prefix of every Redis key, so several gateways (or test runs) can share one Redis."""
    admin_token: str | None = None
    admin_users: dict[str, str] = Field(default_factory=dict)
    admin_tokens: list[AdminTokenConfig] = Field(default_factory=list)
    """Named admin tokens besides ``admin_token`` (which is ``admin``, full scope); the audit log names them."""
    """Console sign-in by name and password: name -> scrypt hash (``omnirelay admin-password`` prints one)."""
    master_key: str | None = None
    """Fernet key that encrypts upstream keys at rest; generated beside a SQLite file when absent."""
    previous_master_keys: list[str] = Field(default_factory=list)
    """Older master keys, for decryption only: set during a rotation, dropped once ``rotate-master-key`` ran."""
    channels: list[ChannelConfig] = Field(default_factory=list)
    keys: list[KeyConfig] = Field(default_factory=list)
    prices: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_body_bytes: int = 32 * 1024 * 1024
    media_fetch_max_bytes: int = 20 * 1024 * 1024
    """Largest image fetched from a URL when an upstream only takes inline bytes."""
    media_fetch_timeout_s: float = 10.0
    media_fetch_allow_private: bool = False
    """Allow fetching images and results to keep (``tasks.store_results``) from private/loopback addresses (tests,
    closed networks). Off: a client or a vendor cannot make the gateway reach into its own network."""
    audio_upload_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    """Largest body of ``/v1/audio/transcriptions`` and ``/translations`` (OpenAI's own limit is 25 MB a file)."""
    image_upload_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    """Largest body of ``/v1/images/edits`` and ``/variations``, every image and the mask together (OpenAI takes
    up to 50 MB an image for gpt-image-1, 4 MB for dall-e-2)."""
    usage_flush_interval_s: float = 0.5
    usage_batch_size: int = 500
    rollup_compact_interval_s: float = Field(default=600.0, gt=0)
    """How often each instance rebuilds the recent days' daily usage rollups from the hourly ones (and once at
    start); the console's long windows read settled days from them."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    config_poll_s: float = 0.5
    """How often each instance checks the shared config version (a one-row read) for changes."""
    cache_refresh_s: float = 300.0
    hold_lease_s: float = 900.0
    """How long a budget reservation outlives an instance that died holding it."""
    hold_sweep_s: float = 30.0
    """How often each instance releases budget reservations whose lease expired (their instance died)."""
    max_attempts: int = Field(default=3, ge=1)
    """Upstream attempts per call (the first plus failovers), all before any byte reached the client."""
    request_deadline_s: float = Field(default=600.0, gt=0)
    """No attempt starts, and none waits for its first byte, later than this after the call arrived."""
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    auto_disable_after: int = Field(default=2, ge=0)
    """Consecutive permanent errors (invalid key, no credit, account deactivated) that disable an upstream key;
    0 never disables."""
    health_check_interval_s: float | None = Field(default=None, gt=0)
    """Check every enabled channel this often (a minimal request per model); None: only on demand."""
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    accounts: AccountsSettings = Field(default_factory=AccountsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """``serve``: after SIGTERM, how long in-flight calls and streams may take to finish."""
    body_read_timeout_s: float = Field(default=60.0, gt=0)
    """A relay request's body must arrive within this long (slow-loris protection); later: 408."""
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    """``serve``: an idle keep-alive connection is closed after this long."""
    metrics_token: str | None = None
    """Bearer token ``GET /metrics`` wants; None: open (as Prometheus scrapers on a private network expect)."""
    auth_failures_per_minute: int = Field(default=20, ge=1)
    """Failed client-key authentications one IP may make within a minute before it is answered 429 until its
    failures age out of the window."""
    """Safety net: reload keys and channels this often even if no invalidation message arrived."""


def interpolate_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}``; an unset variable without default becomes empty."""
    environ = os.environ if env is None else env

    def value(match: re.Match[str]) -> str:
        return environ.get(match.group(1), match.group(2) or "")

    return _ENV_REF.sub(value, text)


def load_settings(path: str | Path, env: dict[str, str] | None = None) -> Settings:
    raw = yaml.safe_load(interpolate_env(Path(path).read_text(), env)) or {}
    return Settings.model_validate(raw)


def async_database_url(url: str) -> str:
    """Accept the plain URLs operators write and pick the async driver."""
    for plain, driver in _ASYNC_DRIVERS.items():
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


_ASYNC_DRIVERS = {
    "sqlite:///": "sqlite+aiosqlite:///",
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
}
