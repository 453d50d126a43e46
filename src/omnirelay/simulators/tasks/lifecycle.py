"""What the asynchronous-task simulators share: a task's life on a clock, its knobs, and the files it produces.

A simulated task is born at submit and then only *reads* the clock: for the first ``queue`` share of ``duration``
it is queued, then it runs with progress growing in step with time, and at ``duration`` it has succeeded (its
output files appear) or failed. Nothing runs in the background, so a simulator holds no timers and a test that
waits 0.3 s sees exactly what a vendor would show 0.3 s after the submit.

Task knobs come, later ones winning, from the simulator's defaults, ``x-sim-<knob>`` headers and a
``[sim duration=0.2 fail=1]`` directive anywhere in the prompt (the one that survives the gateway):

- ``duration``: seconds from submit to the end (``0`` finishes at once);
- ``queue``: share of ``duration`` spent queued before progress starts;
- ``fail`` (``1``) makes the task fail at its end; ``fail_rate`` fails that share of tasks (seeded, reproducible);
- ``fail_reason``: the failure message;
- ``length``: seconds of audio or video produced (vendors that take a duration from the request ignore it).

Submit-time faults (``fault=429``...) are the common ones of :mod:`omnirelay.simulators.common`.

Files are registered when a task is created, made on first download and kept: ``GET /files/{name}``.

A vendor's simulator subclasses :class:`TaskSimulator` (state, knobs, book, the gate every call passes, the app with
the file and ``/_sim`` routes) and adds only its own wire shape.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnirelay.simulators.common import STATUS_FAULTS, SimulatorState, control_routes, directives_in, hang_forever


class Phase(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELED)


@dataclass(frozen=True, slots=True)
class TaskKnobs:
    duration: float = 3.0
    queue: float = 0.2
    fail: bool = False
    fail_rate: float = 0.0
    fail_reason: str = "The generation failed on the simulated upstream."
    length: float = 5.0

    def merged(self, overrides: Mapping[str, str]) -> TaskKnobs:
        values: dict[str, Any] = {}
        for raw, value in overrides.items():
            name = raw.replace("-", "_")
            if name not in _TASK_KNOBS:
                continue
            try:
                if name == "fail":
                    values[name] = value.lower() in {"1", "true", "yes", ""}
                elif name == "fail_reason":
                    values[name] = value
                else:
                    values[name] = max(0.0, float(value))
            except ValueError:
                continue
        return replace(self, **values) if values else self


_TASK_KNOBS = frozenset(f.name for f in fields(TaskKnobs))


def task_knobs(state: SimulatorState, defaults: TaskKnobs, request: Request, text: str) -> TaskKnobs:
    """The knobs of one submit; ``fail_rate`` is decided here, once, so a task's fate never changes."""
    overrides = {k[len("x-sim-") :]: v for k, v in request.headers.items() if k.startswith("x-sim-")}
    overrides.update(directives_in(text))
    knobs = defaults.merged(overrides)
    if not knobs.fail and knobs.fail_rate > 0 and state.rng.random() < knobs.fail_rate:
        knobs = replace(knobs, fail=True)
    return knobs


@dataclass
class SimTask:
    """One submitted task; its phase is a function of the clock."""

    id: str
    action: str
    model: str
    input: dict[str, Any]
    knobs: TaskKnobs
    created_at: float = field(default_factory=time.time)
    """Wall clock (what the vendor prints); the lifecycle itself runs on ``_born`` (monotonic)."""
    outputs: list[str] = field(default_factory=list)
    """Names of the files the task makes (served at ``/files/{name}`` once it succeeded)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Whatever else a vendor's shape needs to remember (clip ids, webhook, ...)."""
    canceled_at: float | None = None
    _born: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self._born

    def phase(self) -> Phase:
        if self.canceled_at is not None:
            return Phase.CANCELED
        elapsed = self.elapsed()
        if elapsed >= self.knobs.duration:
            return Phase.FAILED if self.knobs.fail else Phase.SUCCEEDED
        if elapsed < self.knobs.duration * self.knobs.queue:
            return Phase.QUEUED
        return Phase.RUNNING

    def awaiting_queue(self) -> bool:
        """In the first half of its queued time: accepted but not yet in the vendor's queue (midjourney-proxy's
        ``NOT_START``, suno-api's ``SUBMITTED``)."""
        return self.phase() is Phase.QUEUED and self.elapsed() < self.knobs.duration * self.knobs.queue / 2

    def progress(self) -> int:
        """0..100: 0 while queued, growing while running, 100 once succeeded."""
        phase = self.phase()
        if phase is Phase.SUCCEEDED:
            return 100
        if phase is Phase.QUEUED or self.knobs.duration <= 0:
            return 0
        start = self.knobs.duration * self.knobs.queue
        share = (self.elapsed() - start) / max(1e-9, self.knobs.duration - start)
        return max(1, min(99, int(share * 100)))

    @property
    def started_at(self) -> float | None:
        """Wall clock of the start of work, once it has started."""
        if self.phase() is Phase.QUEUED:
            return None
        return self.created_at + self.knobs.duration * self.knobs.queue

    @property
    def finished_at(self) -> float | None:
        phase = self.phase()
        if phase is Phase.CANCELED and self.canceled_at is not None:
            return self.canceled_at
        return self.created_at + self.knobs.duration if phase.final else None

    def cancel(self) -> bool:
        """Cancel an unfinished task; False when it had already ended."""
        if self.phase().final:
            return False
        self.canceled_at = time.time()
        return True


FileMaker = Callable[[], bytes]


@dataclass
class TaskBook:
    """A simulator's tasks and files."""

    tasks: dict[str, SimTask] = field(default_factory=dict)
    _makers: dict[str, tuple[str, FileMaker]] = field(default_factory=dict)
    _made: dict[str, bytes] = field(default_factory=dict)
    _owners: dict[str, str] = field(default_factory=dict)

    def add(self, task: SimTask) -> SimTask:
        self.tasks[task.id] = task
        return task

    def get(self, task_id: str) -> SimTask | None:
        return self.tasks.get(task_id)

    def add_file(self, task: SimTask, extension: str, content_type: str, maker: FileMaker) -> str:
        # A name of its own, not the task id: like a vendor's CDN, a file URL tells nothing about the task.
        name = f"{secrets.token_hex(12)}.{extension}"
        self._makers[name] = (content_type, maker)
        self._owners[name] = task.id
        task.outputs.append(name)
        return name

    def file_route(self) -> Route:
        async def serve(request: Request) -> Response:
            name = request.path_params["name"]
            found = self._makers.get(name)
            owner = self.tasks.get(self._owners.get(name, ""))
            if found is None or owner is None or owner.phase() is not Phase.SUCCEEDED:
                return Response(b"Not Found", 404, media_type="text/plain")
            content_type, maker = found
            if name not in self._made:
                self._made[name] = maker()
            return Response(self._made[name], media_type=content_type)

        return Route("/files/{name}", serve, methods=["GET", "HEAD"])


def file_url(request: Request, name: str) -> str:
    """An absolute URL of a task file, on the host the client reached this simulator by."""
    return f"{str(request.base_url).rstrip('/')}/files/{name}"


def new_id(kind: str = "hex", size: int = 16) -> str:
    if kind == "digits":
        return str(secrets.randbelow(9 * 10 ** (size - 1)) + 10 ** (size - 1))
    if kind == "uuid":
        raw = secrets.token_hex(16)
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    if kind == "base32":
        alphabet = "abcdefghijklmnopqrstuvwxyz234567"
        return "".join(secrets.choice(alphabet) for _ in range(size))
    return secrets.token_hex(size // 2)


ErrorMaker = Callable[[int, str], Response]


async def gate(
    state: SimulatorState, request: Request, body: bytes, text: str, authorized: bool, error: ErrorMaker
) -> Response | None:
    """What every simulated call goes through first: the request log, the key, then latency and status faults.
    Returns the error response to send, or None to go on."""
    state.record(request, body)
    if not authorized:
        return error(401, "")
    knobs = state.knobs_for(request, text)
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if knobs.fault == "hang":
        await hang_forever()
    if knobs.fault in STATUS_FAULTS:
        return error(int(knobs.fault or 500), f"Simulated fault {knobs.fault}.")
    return None


def bearer(request: Request, scheme: str = "bearer") -> str | None:
    found, _, key = request.headers.get("authorization", "").partition(" ")
    return (key.strip() or None) if found.lower() == scheme else None


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=dict(headers or {}), media_type="application/json")


def parse_json(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text a submit's knobs and directives are read from, for vendors that take a top-level ``prompt``."""
    return str(body.get("prompt") or "")


def invalid_url(request: Request) -> str:
    return f"Invalid URL ({request.method} {request.url.path})"


class TaskSimulator:
    """What every task simulator is built on: the shared state (keys, faults, request log), the default knobs, the
    book of tasks and files, the vendor's error shape, and the gate every call passes first. A vendor's simulator
    subclasses it with its handlers, overriding :meth:`authorized` (where the key travels) and :meth:`find` (how a
    fetch names its task) when the default does not fit."""

    def __init__(self, state: SimulatorState, defaults: TaskKnobs, error: ErrorMaker) -> None:
        self.state = state
        self.defaults = defaults
        self.error = error
        self.book = TaskBook()

    def authorized(self, request: Request) -> bool:
        return self.state.key_ok(bearer(request))

    async def gate(self, request: Request, raw: bytes = b"", text: str = "") -> Response | None:
        return await gate(self.state, request, raw, text, self.authorized(request), self.error)

    async def admit(
        self, request: Request, text_of: Callable[[Mapping[str, Any]], str] = prompt_text
    ) -> tuple[dict[str, Any] | None, str] | Response:
        """A submit through the gate: its body (None when not a JSON object, for the vendor to refuse in its own
        words) and the text its knobs come from; or the gate's error response."""
        raw = await request.body()
        body = parse_json(raw)
        text = text_of(body or {})
        refused = await self.gate(request, raw, text)
        return refused if refused is not None else (body, text)

    def find(self, request: Request) -> SimTask | None:
        """The task a fetch route names."""
        return self.book.get(request.path_params["task_id"])

    async def gated_task(self, request: Request, missing: str) -> SimTask | Response:
        """A fetch through the gate: the task it names, or the error to answer (the vendor's 404 with ``missing``)."""
        refused = await self.gate(request)
        if refused is not None:
            return refused
        task = self.find(request)
        return task if task is not None else self.error(404, missing)

    def app(self, routes: Sequence[BaseRoute], not_found: Callable[[Request], Response] | None = None) -> Starlette:
        """The simulator's ASGI app: its ``routes`` after the task files and ``/_sim`` controls; an unknown path or
        method answers ``not_found`` (default: the vendor's 404 saying "Invalid URL")."""

        async def unknown(request: Request, exc: Exception) -> Response:
            return not_found(request) if not_found is not None else self.error(404, invalid_url(request))

        every = [self.book.file_route(), *control_routes(self.state), *routes]
        return Starlette(routes=every, exception_handlers={404: unknown, 405: unknown})
