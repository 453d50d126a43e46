"""The task-vendor contract: one asynchronous vendor family (midjourney-proxy, Suno, Kling, ...) as data plus a few
hooks.

The engine (``omnirelay.tasks``) owns everything that is the same for every vendor: client authentication, the
budget check and the durable charge, channel failover on submit, task rows, polling with leases and backoff,
timeouts, settlement and refunds, webhooks, result storage, ``GET /task/{id}`` and ``?wait=``. A family only says
how its wire looks. Nothing here does I/O: every hook is a pure function of its arguments.

How to add a vendor family
==========================
1. Subclass :class:`TaskVendor` in ``providers/task_vendors/<family>.py`` and fill in the class attributes:

   - ``name`` (the family, stored on every task row) and ``channel_types`` (the ``type:`` of the channels that
     speak it, e.g. ``("suno",)``);
   - ``auth_header`` / ``auth_scheme`` for the upstream key (override :meth:`TaskVendor.auth_headers` when the key
     must be transformed, e.g. Kling signs a JWT from ``access_key|secret_key``);
   - ``client_auth``: the headers the family's clients put the *gateway* key in (``mj-api-secret``, ``Key ...``);
   - ``submit_paths`` (action → upstream path template; ``{model}`` is the upstream model name, ``{parent}`` the
     upstream id of the task acted on), ``upstream_id_field`` (dotted path to the upstream task id in the
     submit answer), ``fetch_path`` (``{id}`` is the upstream id), ``status_field`` + ``status_map`` (vendor
     status → :data:`TaskStatus`), ``progress_field``, ``error_field``;
   - ``batch_path`` + ``batch_size`` when the vendor can report several tasks in one call (then override
     :meth:`TaskVendor.batch_body` and, if the answer is not a list of task objects, :meth:`TaskVendor.read_batch`);
   - ``poll``: a :class:`PollPolicy` (first poll, backoff, ceiling, timeout);
   - ``price_unit`` (``"task"``, ``"second"`` or ``"image"``, the ``prices.json`` field the models are sold by);
   - ``routes``: the client-facing routes (:class:`ClientRoute`): each is a submit, a fetch of one task, or a
     list; the engine mounts them.
2. Override the hooks whose default does not fit: :meth:`TaskVendor.parse_submit` (client body → :class:`Submission`),
   :meth:`TaskVendor.results_of` (vendor task object → :class:`TaskResults`), the ``render_*`` methods (task →
   the family's client-facing JSON), :meth:`TaskVendor.read_submit` when acceptance is not "HTTP 2xx with an id".
3. Register an instance in ``providers/task_vendors/__init__.py`` (``VENDORS``), add the models to
   ``data/prices.json`` and a simulator in ``simulators/tasks/``.

Ids: clients only ever see the gateway's public id (``TaskView.public_id``); the upstream id and the raw upstream
payload (``TaskView.raw``) are for the family's own use and must never be copied into a client answer as they are.
A renderer builds a fresh object from the normalized fields (and may pick harmless fields such as MJ ``buttons``
from ``raw``).

Billing: when the upstream accepts the submit the engine charges the model's price (``per_task`` with
``Submission.option`` as key and ``quantity`` as count, ``per_second`` x ``seconds`` x ``quantity``, or ``per_image``
with ``option`` as size and ``quantity`` images), re-prices on success when :meth:`TaskVendor.billed_quantity`
returns the vendor's real figures (seconds produced, images made; the difference is posted), and refunds the
whole charge once on failure or timeout. A submit the upstream refuses is never charged.

Cross-family calls: a route's family parses the client's body, but the *channel's* family speaks upstream. When
they differ (``mj_video`` asked on ``/v1/video/generations`` and served by a midjourney-proxy channel), the engine
rebuilds the submission with the channel family's :meth:`TaskVendor.from_unified`, so every family must accept
``prompt`` plus a flat config there.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Literal

import orjson

TaskStatus = Literal["SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS", "FAILURE"]
"""The unified vocabulary (``GET /task/{id}``); families map their own onto it."""

FINAL_STATUSES: frozenset[str] = frozenset({"SUCCESS", "FAILURE"})
ACTIVE_STATUSES: tuple[str, ...] = ("SUBMITTED", "QUEUED", "IN_PROGRESS")

PriceUnit = Literal["task", "second", "image"]
Quantity = int | Fraction
RouteKind = Literal["submit", "fetch", "list"]


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    content_type: str
    duration: float | None = None
    """Seconds, for audio and video."""
    width: int | None = None
    height: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "content_type": self.content_type}
        for name in ("duration", "width", "height"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Media:
        return cls(
            str(data["url"]),
            str(data.get("content_type") or "application/octet-stream"),
            data.get("duration"),
            data.get("width"),
            data.get("height"),
        )


@dataclass(frozen=True, slots=True)
class TaskResults:
    images: tuple[Media, ...] = ()
    videos: tuple[Media, ...] = ()
    audio: tuple[Media, ...] = ()
    text: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The unified ``task_result`` object (also how results are stored on the task row)."""
        out: dict[str, Any] = {}
        for kind in ("images", "videos", "audio"):
            items: tuple[Media, ...] = getattr(self, kind)
            if items:
                out[kind] = [m.to_json() for m in items]
        if self.text is not None:
            out["text"] = self.text
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TaskResults:
        if not data:
            return cls()
        return cls(
            tuple(Media.from_json(m) for m in data.get("images") or ()),
            tuple(Media.from_json(m) for m in data.get("videos") or ()),
            tuple(Media.from_json(m) for m in data.get("audio") or ()),
            data.get("text"),
        )

    def all_media(self) -> list[tuple[str, int, Media]]:
        return [(kind, i, m) for kind in ("images", "videos", "audio") for i, m in enumerate(getattr(self, kind))]

    def replace_urls(self, urls: Mapping[tuple[str, int], str]) -> TaskResults:
        """The same results with some URLs swapped (the gateway's stored copies)."""

        def swap(kind: str, items: tuple[Media, ...]) -> tuple[Media, ...]:
            return tuple(
                Media(urls.get((kind, i), m.url), m.content_type, m.duration, m.width, m.height)
                for i, m in enumerate(items)
            )

        return TaskResults(
            swap("images", self.images), swap("videos", self.videos), swap("audio", self.audio), self.text
        )


@dataclass(frozen=True, slots=True)
class TaskUpdate:
    """What one poll learned about one upstream task."""

    status: TaskStatus
    progress: int = 0
    """0..100."""
    results: TaskResults = field(default_factory=TaskResults)
    error: str | None = None
    """Why it failed, in words fit for the client (no upstream key, no internal address)."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The vendor's task object as it came (kept privately on the row)."""


@dataclass(frozen=True, slots=True)
class Submission:
    """A client's submit as a family's route parsed it."""

    model: str
    """The public model name, routed and priced like a chat model."""
    action: str
    """A key of ``submit_paths`` (``imagine``, ``music``, ``text2video``...)."""
    payload: dict[str, Any]
    """The body to send upstream (the engine never looks inside; :meth:`TaskVendor.submit_call` may rewrite it)."""
    prompt: str = ""
    notify_hook: str | None = None
    """The client's webhook (``notify_hook`` / ``notifyHook``), taken out of ``payload`` by the parser."""
    option: str | None = None
    """``per_task`` / ``per_image`` price key (``"relax"``, ``"pro/10s"``, ``"1024x1024"``); None → default."""
    quantity: Quantity = 1
    """How many: tasks (``per_task``), images (``per_image``), videos (multiplies ``seconds``)."""
    seconds: Quantity | None = None
    """Requested duration, for models sold ``per_second`` (None: the vendor's default, ``default_seconds``)."""
    parent: str | None = None
    """Public id of the task this one acts on (MJ change/action, Suno continuation): the engine sends it to the
    same channel and key and passes that task's upstream id to :meth:`TaskVendor.submit_call` as ``parent``."""


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    method: str
    path: str
    """Relative to the channel's ``base_url`` (which has no trailing slash)."""
    body: Any = None
    """JSON-able, or None for no body."""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    first_s: float = 2.0
    """Delay between the submit and the first poll."""
    backoff: float = 1.5
    """Each poll that finds the task unfinished multiplies the delay by this..."""
    max_interval_s: float = 30.0
    """...up to this."""
    timeout_s: float = 3600.0
    """A task not finished this long after its submit fails (and is refunded)."""

    def next_delay(self, polls: int) -> float:
        return min(self.first_s * self.backoff**polls, self.max_interval_s)


@dataclass(frozen=True, slots=True)
class ClientRoute:
    method: str
    path: str
    """Starlette path; a fetch route names the task ``{task_id}``; other params go to ``parse_submit``."""
    kind: RouteKind
    action: str | None = None
    """The submit's action (``parse_submit`` may refine it from the body)."""


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task row as renderers see it."""

    public_id: str
    vendor: str
    model: str
    action: str
    status: TaskStatus
    progress: int
    results: TaskResults
    error: str | None
    prompt: str
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    request: dict[str, Any]
    """The client's submit body (after ``parse_submit`` took the webhook out)."""
    raw: dict[str, Any]
    """The vendor's last task object: private, see the module docstring."""
    parent: str | None = None
    cost_micros: int = 0
    base_url: str = ""
    """Where the client reached the gateway (``http://host:port/``, with the slash), for families whose answers
    hold absolute URLs of the gateway (FAL's ``status_url``); empty when not known (webhooks)."""


class SubmitRefused(Exception):
    """An upstream answered a submit with a refusal written in its body (MJ ``code`` 23/24, Kling ``code`` != 0)
    rather than an HTTP error status. ``status`` is what that refusal means in HTTP terms (429 queue full, 400
    banned prompt, 5xx a broken upstream), which decides whether the next channel is tried."""

    def __init__(self, status: int, message: str, vendor_code: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.vendor_code = vendor_code


class InvalidSubmit(ValueError):
    """The client's submit cannot be understood; answered 400 in the family's error shape."""


def dig(data: Any, path: str | None) -> Any:
    """``dig({"a": {"b": [1]}}, "a.b.0") == 1``; None when any step is missing."""
    if path is None:
        return None
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def parse_progress(value: Any) -> int:
    """``"45%"``, ``45``, ``0.45`` → 45."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, str):
        value = value.strip().rstrip("%")
        try:
            value = float(value)
        except ValueError:
            return 0
    if isinstance(value, int | float):
        number = float(value)
        if 0 < number < 1:
            number *= 100
        return max(0, min(100, int(number)))
    return 0


def new_public_id(prefix: str = "task_") -> str:
    return prefix + secrets.token_hex(12)


def text_of(value: Any) -> str:
    """A client field that should be a string (a prompt), or "" when it is anything else."""
    return value if isinstance(value, str) else ""


def pop_hook(payload: dict[str, Any], *names: str) -> str | None:
    """The client's webhook from the first of ``names`` that holds a non-empty string (the families' parsers
    list their own field first). Every one of ``names`` leaves ``payload``: the upstream must never learn a
    client's address, so a second hook field is not forwarded either."""
    hook = None
    for name in names:
        value = payload.pop(name, None)
        if hook is None and isinstance(value, str) and value:
            hook = value
    return hook


def images_made(update: TaskUpdate, unit: PriceUnit = "image") -> Mapping[PriceUnit, Quantity] | None:
    """:meth:`TaskVendor.billed_quantity` of families that bill what they made per image: the images returned."""
    made = len(update.results.images)
    return {unit: made} if made else None


class TaskVendor:
    """One vendor family. Class attributes are the data; methods are hooks with data-driven defaults."""

    name: ClassVar[str] = ""
    channel_types: ClassVar[tuple[str, ...]] = ()
    auth_header: ClassVar[str] = "Authorization"
    auth_scheme: ClassVar[str] = "Bearer "
    client_auth: ClassVar[tuple[tuple[str, str], ...]] = (("authorization", "Bearer "),)
    """(lower-case header, value prefix) pairs that may carry the gateway key, tried in order."""
    submit_paths: ClassVar[Mapping[str, str]] = {}
    parent_field: ClassVar[str | None] = None
    """The submit body's field for the upstream id of the task acted on (MJ ``taskId``, Suno ``task_id``)."""
    upstream_id_field: ClassVar[str] = "id"
    fetch_path: ClassVar[str] = ""
    fetch_method: ClassVar[str] = "GET"
    batch_path: ClassVar[str | None] = None
    batch_size: ClassVar[int] = 1
    status_field: ClassVar[str] = "status"
    status_map: ClassVar[Mapping[str, TaskStatus]] = {}
    progress_field: ClassVar[str | None] = "progress"
    error_field: ClassVar[str | None] = "error"
    poll: ClassVar[PollPolicy] = PollPolicy()
    price_unit: ClassVar[PriceUnit] = "task"
    """The unit to bill by when a model's price has several; otherwise the one its price has."""
    default_seconds: ClassVar[int] = 5
    """Duration charged at submit for a ``per_second`` model when the client gave none."""
    public_id_prefix: ClassVar[str] = "task_"
    routes: ClassVar[tuple[ClientRoute, ...]] = ()
    default_action: ClassVar[str] = ""
    """The action of a unified ``POST /task/submit`` for this family's models."""

    # --- the upstream side -------------------------------------------------------------------------------------

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Headers that carry the channel's upstream key on every call (submit and poll)."""
        return {self.auth_header: self.auth_scheme + api_key} if api_key else {}

    def submit_call(self, submission: Submission, upstream_model: str, parent: str | None) -> UpstreamCall:
        """The upstream request of a submit; ``parent`` is the upstream id of ``submission.parent``."""
        template = self.submit_paths[submission.action]
        path = template.format(model=upstream_model, parent=parent or "")
        body = dict(submission.payload)
        if "model" in body:
            body["model"] = upstream_model
        if parent is not None and self.parent_field:
            body[self.parent_field] = parent  # the client named the gateway's id; the upstream knows its own
        return UpstreamCall("POST", path, body)

    def read_submit(self, status: int, body: bytes) -> str:
        """The upstream task id from a 2xx submit answer; raise :class:`SubmitRefused` if the body refuses."""
        data = orjson.loads(body) if body else {}
        upstream_id = dig(data, self.upstream_id_field)
        if upstream_id is None or upstream_id == "":
            raise SubmitRefused(502, "The upstream accepted the task but gave no task id.")
        return str(upstream_id)

    def task_ref(self, submission: Submission, upstream_id: str) -> str:
        """What the engine stores as the task's upstream id, and later hands to :meth:`fetch_call`: the vendor's id
        as it is by default. A family whose poll URL depends on the submit (Kling's path per kind, FAL's model path)
        folds that in here."""
        return upstream_id

    def fetch_call(self, upstream_id: str) -> UpstreamCall:
        return UpstreamCall(self.fetch_method, self.fetch_path.format(id=upstream_id))

    def batch_body(self, upstream_ids: Sequence[str]) -> Any:
        """The body of a ``batch_path`` call for these ids."""
        return {"ids": list(upstream_ids)}

    def read_batch(self, body: bytes) -> list[dict[str, Any]]:
        """The task objects of a batch answer (default: a JSON list of them)."""
        data = orjson.loads(body)
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    def upstream_id_of(self, task: Mapping[str, Any]) -> str | None:
        """The upstream id inside a task object of a batch answer."""
        value = task.get("id")
        return None if value is None else str(value)

    def read_fetch(self, body: bytes) -> dict[str, Any]:
        """The task object inside a single fetch answer (default: the body itself)."""
        data = orjson.loads(body)
        return data if isinstance(data, dict) else {}

    def result_call(self, upstream_id: str, update: TaskUpdate) -> UpstreamCall | None:
        """A second request for the results of a task a poll found finished, when the vendor keeps them apart from
        the status (FAL's ``response_url``); None (the default) when the poll's answer holds them."""
        return None

    def read_result(self, update: TaskUpdate, status: int, body: bytes) -> TaskUpdate | None:
        """The finished task completed with :meth:`result_call`'s answer; None to ask again at the next poll."""
        return update

    def read_task(self, task: Mapping[str, Any]) -> TaskUpdate:
        """A vendor task object → :class:`TaskUpdate`, driven by the field names and ``status_map``."""
        raw_status = dig(task, self.status_field)
        status = self.status_map.get(str(raw_status), "IN_PROGRESS") if raw_status is not None else "SUBMITTED"
        progress = 100 if status == "SUCCESS" else parse_progress(dig(task, self.progress_field))
        error = None
        if status == "FAILURE":
            detail = dig(task, self.error_field)
            error = str(detail) if detail else "The upstream reported the task as failed."
        results = self.results_of(task) if status == "SUCCESS" else TaskResults()
        return TaskUpdate(status, progress, results, error, dict(task))

    def results_of(self, task: Mapping[str, Any]) -> TaskResults:
        """The finished task's images, videos, audio and text."""
        return TaskResults()

    def billed_quantity(self, task: TaskView, update: TaskUpdate) -> Mapping[PriceUnit, Quantity] | None:
        """The vendor's real figures once the task succeeded, by unit (``{"second": 3.2}`` for the seconds of
        video produced, ``{"image": 4}`` for images made); the engine re-prices with the one the model is sold by,
        and keeps what was charged when that unit is missing or the answer is None."""
        return None

    # --- the client side ---------------------------------------------------------------------------------------

    def parse_submit(self, route: ClientRoute, body: dict[str, Any], params: Mapping[str, str]) -> Submission:
        """A client's body on a submit route → :class:`Submission`. Raise :class:`InvalidSubmit` for a 400.
        ``params`` are the route's path parameters over the query string's (FAL's ``?fal_webhook=``)."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidSubmit("'model' is required.")
        payload = dict(body)
        hook = pop_hook(payload, "notify_hook", "notifyHook")
        return Submission(
            model=model,
            action=route.action or self.default_action,
            payload=payload,
            prompt=text_of(payload.get("prompt")),
            notify_hook=hook,
        )

    def from_unified(self, model: str, prompt: str, config: Mapping[str, Any]) -> Submission:
        """A unified ``POST /task/submit`` → this family's :class:`Submission`."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, **config}
        return self.parse_submit(ClientRoute("POST", "/task/submit", "submit", self.default_action), body, {})

    def submit_wait(self, headers: Mapping[str, str]) -> float:
        """Seconds a submit route may hold its answer for the task to end (Replicate's ``Prefer: wait``), capped
        like ``?wait=``; 0 (the default) answers at once."""
        return 0.0

    def render_submitted(self, task: TaskView) -> tuple[int, Any]:
        """The answer to an accepted submit."""
        return 200, {"task_id": task.public_id, "status": task.status}

    def render_task(self, task: TaskView) -> Any:
        """A fetch route's answer."""
        return {"task_id": task.public_id, "status": task.status, "progress": f"{task.progress}%"}

    def render_fetch(self, route: ClientRoute, task: TaskView) -> tuple[int, Any]:
        """A fetch route's status and answer; families with several fetch routes of one task (FAL's ``/status``
        and result) or statuses that follow the task (FAL's 202 while queued) override this."""
        return 200, self.render_task(task)

    def render_list(self, tasks: Sequence[TaskView]) -> Any:
        return [self.render_task(t) for t in tasks]

    def list_ids(self, body: Any) -> list[str]:
        """The public ids a list route asks for."""
        ids = body.get("ids") if isinstance(body, dict) else None
        return [str(i) for i in ids] if isinstance(ids, list) else []

    def render_error(self, status: int, message: str) -> tuple[int, Any]:
        """An error in the family's own shape (status may be changed: midjourney-proxy answers refusals 200)."""
        return status, {"error": {"message": message, "code": status}}

    def render_refusal(self, refused: SubmitRefused) -> tuple[int, Any]:
        """The upstream refused the submit itself (banned prompt, validation): how the family tells its client.
        Default: :meth:`render_error` with the refusal's status and message."""
        return self.render_error(refused.status, f"The upstream refused the task: {refused.message}")

    def task_id_param(self, params: Mapping[str, str]) -> str:
        return params.get("task_id", "")
