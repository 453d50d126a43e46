"""Redis limiter: every instance sharing one Redis sees one set of limits (the sum, not each).

Semantics are those of ``base`` (the same test suite runs against both backends). Each operation is one round
trip. A limiter made by ``from_url`` sends its scripts through ``resp.PipelinedRedis`` (one pipelined connection,
hiredis packing and parsing: a fraction of redis-py's CPU per command); pub/sub and the rarely used plain commands
go through redis-py. Operations that read and then write are Lua scripts, called by EVALSHA (and loaded on
NOSCRIPT), which Redis runs alone, so check and record are atomic across instances. The rate
script gets the caller's clock as an argument (not Redis ``TIME``), which makes ``now`` injectable; instances
therefore need synced clocks (NTP). Per limited scope it costs Redis about five commands in the steady state
(HMGET, prune by ZRANGEBYSCORE/ZREMRANGEBYSCORE, ZADD, HSET; PEXPIRE only every half window).

Keys (all under ``omnirelay:{<namespace>}:``; the braces make the namespace a Redis Cluster hash tag, so one
script's keys always share a slot)::

    rl:<scope>:log   sorted set of the window's entries, score = ms timestamp; members "r:<id>:<tokens>" for
                     requests, "a:<id>:<delta>" for ``adjust_tokens`` corrections
    rl:<scope>:sums  hash {n: requests, t: tokens} over the log, kept in step as entries are added and leave,
                     and x: when the keys' expiry was last extended
    slot:<scope>     sorted set of slot holders, score = lease expiry (ms)
    ctr:<name>       integer spend counter
    hold             hash hold_id -> JSON ``[counter key, "amount", ...]`` (amounts as strings: exact integers)
    hold:lease       sorted set of hold ids, score = lease expiry (ms)
    bus:<channel>    pub/sub channel

Window keys expire between 1.5 and 2 windows after their last write, slot keys after their last lease, so idle
scopes cost nothing. Connection failures and timeouts surface as ``LimiterUnavailable``.

The hold scripts of ``settle`` and ``release_expired`` touch counter keys read from the hold rather than passed
in ``KEYS``; they share the namespace's hash tag (one cluster slot), so this holds on Redis Cluster too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Self

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from omnirelay.limits.base import (
    DEFAULT_HOLD_LEASE_S,
    DEFAULT_LEASE_S,
    WINDOW_MS,
    Charge,
    Finish,
    Limiter,
    LimiterUnavailable,
    RateDecision,
    ScopeLimits,
    Slot,
    build_decision,
    check_actual,
    check_charges,
    check_scopes,
    to_ms,
)
from omnirelay.limits.resp import PipelinedRedis, Script

# KEYS: per scope i: log zset, sums hash.
# ARGV: now_ms, window_ms, tokens, request id, then per scope: rpm, tpm (-1 = not limited).
# Returns: {allowed, then per scope: req_used, req_reset_ms, req_retry_ms, tok_used, tok_reset_ms,
# tok_retry_ms} with retry -1 = fits, -2 = never fits (base.FITS / base.NEVER).
_RATE_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local cutoff = now - window
local n = #KEYS / 2
local state = {}
local allowed = 1

local function amount(member)
  return tonumber(string.match(member, ':(%-?%d+)$'))
end

-- ms until enough of the oldest entries have left for `need` requests (or tokens) to be freed. Entries with
-- one timestamp leave together, so the check is made only where the timestamp changes.
local function retry_after(log, need, requests)
  local freed, start, last = 0, 0, nil
  while true do
    local page = redis.call('ZRANGE', log, start, start + 127, 'WITHSCORES')
    for j = 1, #page, 2 do
      local score = tonumber(page[j + 1])
      if last ~= nil and score ~= last and freed >= need then
        return last + window - now
      end
      last = score
      if requests then
        if string.byte(page[j], 1) == 114 then freed = freed + 1 end
      else
        freed = freed + amount(page[j])
      end
    end
    if #page < 256 then
      if last ~= nil and freed >= need then return last + window - now end
      return window
    end
    start = start + 128
  end
end

for i = 1, n do
  local log, sums = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local held = redis.call('HMGET', sums, 'n', 't', 'x')
  local rused, tused = tonumber(held[1]) or 0, tonumber(held[2]) or 0
  local expired = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  for j = 1, #expired do
    if string.byte(expired[j], 1) == 114 then rused = rused - 1 end
    tused = tused - amount(expired[j])
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
  end
  local rretry, tretry = -1, -1
  if rpm >= 0 and rused + 1 > rpm then
    allowed = 0
    if rpm == 0 then rretry = -2 else rretry = retry_after(log, rused - rpm + 1, true) end
  end
  if tpm >= 0 and tused + tokens > tpm then
    allowed = 0
    if tokens > tpm then tretry = -2 else tretry = retry_after(log, tused + tokens - tpm, false) end
  end
  state[i] = {rused, tused, #expired > 0, rretry, tretry, tonumber(held[3]) or 0}
end

local out = {allowed}
for i = 1, n do
  local log, sums = KEYS[2 * i - 1], KEYS[2 * i]
  local rused, tused, pruned, rretry, tretry, extended = unpack(state[i])
  local rreset, treset = 0, 0
  if allowed == 1 then
    rused, tused = rused + 1, tused + tokens
    redis.call('ZADD', log, ARGV[1], 'r:' .. ARGV[4] .. ':' .. ARGV[3])
    -- Keys live two windows past their last extension, which is renewed every half window (field x), so a
    -- key in use never expires and an idle one goes away.
    if now - extended >= window / 2 or now < extended then
      redis.call('HSET', sums, 'n', rused, 't', tused, 'x', ARGV[1])
      redis.call('PEXPIRE', log, 2 * window)
      redis.call('PEXPIRE', sums, 2 * window)
    else
      redis.call('HSET', sums, 'n', rused, 't', tused)
    end
    rreset = window
    if tused > 0 then treset = window end
  else
    if pruned then redis.call('HSET', sums, 'n', rused, 't', tused) end
    local newest = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')[2]
    if newest then
      newest = tonumber(newest) + window - now
      if rused > 0 then rreset = newest end
      if tused > 0 then treset = newest end
    end
  end
  local k = #out
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] =
    rused, rreset, rretry, tused, treset, tretry
end
return out
"""

# KEYS: per scope: log zset, sums hash. ARGV: at_ms, delta, id, ttl_ms.
_ADJUST_LUA = """
for i = 1, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], ARGV[1], 'a:' .. ARGV[3] .. ':' .. ARGV[2])
  redis.call('HINCRBY', KEYS[i + 1], 't', ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[4])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[4])
end
return 1
"""

# KEYS: slot zset. ARGV: now_ms, expires_ms, limit, holder.
_ACQUIRE_LUA = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[1], math.max(last - tonumber(ARGV[1]), 1000))
return 1
"""

# KEYS: slot zset. ARGV: now_ms, expires_ms, holder.
_RENEW_LUA = """
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[3])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[1], math.max(last - tonumber(ARGV[1]), 1000))
return 1
"""

# KEYS: counter. ARGV: amount, cap, ttl_ms ('' = none). Returns {ok, value}.
_TRY_ADD_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, current}
end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[3] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, value}
"""

# KEYS: counter. ARGV: delta, ttl_ms. Returns the new value.
_ADD_TTL_LUA = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# Holds. Amounts travel and are stored as decimal strings and only ever reach INCRBY/DECRBY as such, so they
# stay exact integers (Lua numbers are doubles, printed with 14 digits); only cap checks compare as numbers,
# like _TRY_ADD_LUA.

# KEYS: hold hash, lease zset, then the charges' counters. ARGV: hold id, expires_ms, hold JSON, then per
# charge: amount, cap ('' = none), ttl_ms ('' = none). Returns -1 reserved, -2 id taken, else the 0-based index
# of the first charge over its cap.
_RESERVE_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return -2
end
local n = #KEYS - 2
for i = 1, n do
  local cap = ARGV[3 * i + 2]
  if cap ~= '' then
    local current = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
    if current + tonumber(ARGV[3 * i + 1]) > tonumber(cap) then
      return i - 1
    end
  end
end
for i = 1, n do
  local key, ttl = KEYS[i + 2], ARGV[3 * i + 3]
  redis.call('INCRBY', key, ARGV[3 * i + 1])
  if ttl ~= '' and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ttl)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return -1
"""

# KEYS: hold hash, lease zset, then the counters of `actual`. ARGV: hold id, then their amounts (non-zero).
# Returns 1 if the hold was registered (and is now settled), 0 if it was gone. Missing counters are not created.
_SETTLE_LUA = """
local actual = {}
for i = 3, #KEYS do actual[KEYS[i]] = ARGV[i - 1] end
local data = redis.call('HGET', KEYS[1], ARGV[1])
if data then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  local held = cjson.decode(data)
  for j = 1, #held, 2 do
    local key, amount = held[j], actual[held[j]]
    actual[key] = nil
    if redis.call('EXISTS', key) == 1 then
      if amount then redis.call('INCRBY', key, amount) end
      redis.call('DECRBY', key, held[j + 1])
    end
  end
end
for i = 3, #KEYS do
  if actual[KEYS[i]] and redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], actual[KEYS[i]]) end
end
if data then return 1 end
return 0
"""

# KEYS: hold hash, lease zset. ARGV: now_ms, limit. Returns how many holds were released.
_RELEASE_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for i = 1, #ids do
  local data = redis.call('HGET', KEYS[1], ids[i])
  redis.call('HDEL', KEYS[1], ids[i])
  redis.call('ZREM', KEYS[2], ids[i])
  if data then
    local held = cjson.decode(data)
    for j = 1, #held, 2 do
      if redis.call('EXISTS', held[j]) == 1 then
        redis.call('DECRBY', held[j], held[j + 1])
      end
    end
  end
end
return #ids
"""

# KEYS: counters. ARGV: per counter: value, ttl_ms ('' = none). Returns how many were set.
_SEED_LUA = """
local seeded = 0
for i = 1, #KEYS do
  local ok
  if ARGV[2 * i] == '' then
    ok = redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'NX')
  else
    ok = redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i], 'NX')
  end
  if ok then seeded = seeded + 1 end
end
return seeded
"""


def _as_function(name: str, body: str) -> str:
    """A script's body as a local Lua function of its own ``KEYS`` and ``ARGV``, to call from another script."""
    return f"local function {name}(KEYS, ARGV)\n{body}\nend\n"


# One budgeted call's admission: the rate script, then (if admitted) the reserve script, and if the reservation is
# refused the call's tokens taken back out of the windows. KEYS: the rate script's, then the reserve script's.
# ARGV: how many of KEYS and of ARGV are the rate script's, its ARGV, then the reserve script's ARGV.
# Returns {rate script's reply or {}, -3 rejected by rate | -1 reserved or nothing to reserve | -2 | refused index}.
_ADMIT_LUA = (
    _as_function("rate", _RATE_LUA)
    + _as_function("reserve", _RESERVE_LUA)
    + _as_function("adjust", _ADJUST_LUA)
    + """
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local rk, ra, hk, ha = {}, {}, {}, {}
for i = 1, #KEYS do
  if i <= nk then rk[#rk + 1] = KEYS[i] else hk[#hk + 1] = KEYS[i] end
end
for i = 3, #ARGV do
  if i <= na + 2 then ra[#ra + 1] = ARGV[i] else ha[#ha + 1] = ARGV[i] end
end
local decided = {}
if nk > 0 then
  decided = rate(rk, ra)
  if decided[1] == 0 then return {decided, -3} end
end
if #hk == 0 then return {decided, -1} end
local held = reserve(hk, ha)
if held >= 0 and nk > 0 and tonumber(ra[3]) > 0 then
  adjust(rk, {ra[1], '-' .. ra[3], ra[4], 2 * tonumber(ra[2])})
end
return {decided, held}
"""
)

# The end of a batch of calls. KEYS: hold hash, lease zset. ARGV[1]: JSON list of calls, each
# {h: hold id or "", a: [[counter key, "amount"], ...], l: [log, sums, ...], d: "token delta", t: at_ms,
#  i: entry id, s: [slot key, holder] or []}. Returns how many calls were ended.
_FINISH_LUA = (
    _as_function("settle", _SETTLE_LUA)
    + _as_function("adjust", _ADJUST_LUA)
    + """
local calls = cjson.decode(ARGV[1])
for n = 1, #calls do
  local call = calls[n]
  if call.h ~= '' then
    local keys, args = {KEYS[1], KEYS[2]}, {call.h}
    for j = 1, #call.a do
      keys[#keys + 1] = call.a[j][1]
      args[#args + 1] = call.a[j][2]
    end
    settle(keys, args)
  end
  if call.d ~= '0' and #call.l > 0 then
    adjust(call.l, {call.t, call.d, call.i, ARGV[2]})
  end
  if #call.s == 2 then redis.call('ZREM', call.s[1], call.s[2]) end
end
return #calls
"""
)


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise LimiterUnavailable(f"redis unreachable: {exc}") from exc


class RedisSubscription:
    def __init__(self, pubsub: PubSub, channel: str, registry: set[RedisSubscription]) -> None:
        self._pubsub = pubsub
        self._channel = channel
        self._registry = registry
        self._active = False
        self._closed = False
        registry.add(self)

    async def _start(self) -> None:
        if not self._active:
            with _unavailable_on_failure():
                await self._pubsub.subscribe(self._channel)
            self._active = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        await self._start()
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                raise LimiterUnavailable(f"redis unreachable: {exc}") from exc
            if self._closed:
                raise StopAsyncIteration
            if message is not None and message["type"] == "message":
                data: bytes = message["data"]
                return data

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._registry.discard(self)
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisLimiter(Limiter):
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "default",
        clock: Callable[[], float] = time.time,
        pipe: PipelinedRedis | None = None,
    ) -> None:
        """``pipe``: send the scripts over this pipelined connection instead of ``client``."""
        if "{" in namespace or "}" in namespace:
            raise ValueError(f"namespace must not contain braces: {namespace!r}")
        self._client = client
        self._clock = clock
        self._prefix = f"omnirelay:{{{namespace}}}:"
        # Members must be unique across instances: a per-process random prefix and a counter.
        self._instance = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._subscriptions: set[RedisSubscription] = set()
        self._pipe = pipe
        self._rate = self._script(_RATE_LUA)
        self._adjust = self._script(_ADJUST_LUA)
        self._acquire = self._script(_ACQUIRE_LUA)
        self._renew = self._script(_RENEW_LUA)
        self._try_add = self._script(_TRY_ADD_LUA)
        self._add_ttl = self._script(_ADD_TTL_LUA)
        self._reserve = self._script(_RESERVE_LUA)
        self._settle = self._script(_SETTLE_LUA)
        self._release_expired = self._script(_RELEASE_LUA)
        self._seed = self._script(_SEED_LUA)
        self._admit = self._script(_ADMIT_LUA)
        self._finish = self._script(_FINISH_LUA)
        self._holds_key = self._prefix + "hold"
        self._leases_key = self._prefix + "hold:lease"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "default",
        max_connections: int = 64,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> Self:
        """A client with a bounded pool: callers beyond ``max_connections`` wait (up to ``timeout_s``) for a
        connection instead of opening one each; a Redis that does not answer within ``timeout_s`` raises
        ``LimiterUnavailable`` rather than stalling the request."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        pipe = PipelinedRedis(url, timeout_s=timeout_s)
        return cls(aioredis.Redis.from_pool(pool), namespace=namespace, clock=clock, pipe=pipe)

    def _script(self, source: str) -> Callable[..., Awaitable[Any]]:
        """A script as ``await run(keys=[...], args=[...])``, over the pipe when there is one."""
        pipe = self._pipe
        if pipe is None:
            return self._client.register_script(source)  # type: ignore[return-value]
        script = Script(source)

        async def run(keys: Sequence[str], args: Sequence[int | str]) -> Any:
            return await pipe.evalsha(script, keys, args)

        return run

    def _id(self) -> str:
        return f"{self._instance}:{next(self._ids)}"

    def _now_ms(self, now: float | None) -> int:
        return to_ms(self._clock() if now is None else now)

    # -- rate limits --------------------------------------------------------------------------------------

    def _rate_call(
        self, scopes: Sequence[ScopeLimits], tokens: int, now_ms: int
    ) -> tuple[list[ScopeLimits], list[str], list[int | str]]:
        """The limited scopes, and the rate script's KEYS and ARGV for them."""
        tracked = [sl for sl in scopes if sl.rpm is not None or sl.tpm is not None]
        keys: list[str] = []
        args: list[int | str] = [now_ms, WINDOW_MS, tokens, self._id()]
        for sl in tracked:
            base = f"{self._prefix}rl:{sl.scope}:"
            keys += (base + "log", base + "sums")
            args += (-1 if sl.rpm is None else sl.rpm, -1 if sl.tpm is None else sl.tpm)
        return tracked, keys, args

    @staticmethod
    def _decision(tracked: list[ScopeLimits], out: list[int], now_ms: int) -> RateDecision:
        return build_decision(tracked, out[1:], out[0] == 1, now_ms)

    async def check_and_consume(
        self, scopes: Sequence[ScopeLimits], tokens: int, now: float | None = None
    ) -> RateDecision:
        check_scopes(scopes, tokens)
        now_ms = self._now_ms(now)
        tracked, keys, args = self._rate_call(scopes, tokens, now_ms)
        if not tracked:
            return build_decision(tracked, [], True, now_ms)
        with _unavailable_on_failure():
            out: list[int] = await self._rate(keys=keys, args=args)
        return self._decision(tracked, out, now_ms)

    async def adjust_tokens(
        self, scopes: Sequence[ScopeLimits], delta: int, at: float, now: float | None = None
    ) -> None:
        at_ms = to_ms(at)
        if not delta or at_ms <= self._now_ms(now) - WINDOW_MS:
            return
        keys: list[str] = []
        for sl in scopes:
            if sl.rpm is not None or sl.tpm is not None:
                base = f"{self._prefix}rl:{sl.scope}:"
                keys += (base + "log", base + "sums")
        if keys:
            with _unavailable_on_failure():
                await self._adjust(keys=keys, args=[at_ms, delta, self._id(), 2 * WINDOW_MS])

    # -- concurrency slots ----------------------------------------------------------------------------------

    async def acquire_slot(
        self, scope: str, limit: int, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None
    ) -> Slot | None:
        if limit <= 0:
            return None
        now_ms = self._now_ms(now)
        expires_ms = now_ms + to_ms(lease_s)
        holder = self._id()
        with _unavailable_on_failure():
            ok = await self._acquire(keys=[self._prefix + "slot:" + scope], args=[now_ms, expires_ms, limit, holder])
        return Slot(scope=scope, holder=holder, expires_at=expires_ms / 1000) if ok else None

    async def renew_slot(
        self, slot: Slot, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None
    ) -> Slot | None:
        now_ms = self._now_ms(now)
        expires_ms = now_ms + to_ms(lease_s)
        with _unavailable_on_failure():
            ok = await self._renew(keys=[self._prefix + "slot:" + slot.scope], args=[now_ms, expires_ms, slot.holder])
        return Slot(scope=slot.scope, holder=slot.holder, expires_at=expires_ms / 1000) if ok else None

    async def release(self, slot: Slot) -> None:
        key = self._prefix + "slot:" + slot.scope
        with _unavailable_on_failure():
            if self._pipe is not None:
                await self._pipe.call("ZREM", key, slot.holder)
            else:
                await self._client.zrem(key, slot.holder)

    # -- spend counters -------------------------------------------------------------------------------------

    async def try_add(self, name: str, amount: int, cap: int, *, ttl_s: float | None = None) -> tuple[bool, int]:
        ttl: int | str = "" if ttl_s is None else to_ms(ttl_s)
        with _unavailable_on_failure():
            ok, value = await self._try_add(keys=[self._prefix + "ctr:" + name], args=[amount, cap, ttl])
        return ok == 1, int(value)

    async def add(self, name: str, delta: int, *, ttl_s: float | None = None) -> int:
        key = self._prefix + "ctr:" + name
        with _unavailable_on_failure():
            if ttl_s is None:
                return int(await self._client.incrby(key, delta))
            return int(await self._add_ttl(keys=[key], args=[delta, to_ms(ttl_s)]))

    async def get(self, name: str) -> int:
        with _unavailable_on_failure():
            raw: Any = await self._client.get(self._prefix + "ctr:" + name)
        return 0 if raw is None else int(raw)

    async def set(self, name: str, value: int, *, ttl_s: float | None = None) -> None:
        with _unavailable_on_failure():
            await self._client.set(self._prefix + "ctr:" + name, value, px=None if ttl_s is None else to_ms(ttl_s))

    # -- holds ----------------------------------------------------------------------------------------------

    def _reserve_call(
        self, hold_id: str, charges: Sequence[Charge], expires_ms: int
    ) -> tuple[list[str], list[int | str]]:
        """The reserve script's KEYS and ARGV."""
        check_charges(hold_id, charges)
        keys = [self._holds_key, self._leases_key]
        held: list[str] = []
        args: list[int | str] = [hold_id, expires_ms, ""]
        for c in charges:
            key = self._prefix + "ctr:" + c.counter
            keys.append(key)
            held += (key, str(c.amount))
            args += (c.amount, "" if c.cap is None else c.cap, "" if c.ttl_s is None else to_ms(c.ttl_s))
        args[2] = orjson.dumps(held).decode()
        return keys, args

    @staticmethod
    def _reserved(hold_id: str, out: int) -> int | None:
        if out == -2:
            raise ValueError(f"hold {hold_id!r} is already registered")
        return None if out == -1 else out

    async def reserve(
        self,
        hold_id: str,
        charges: Sequence[Charge],
        *,
        lease_s: float = DEFAULT_HOLD_LEASE_S,
        now: float | None = None,
    ) -> int | None:
        keys, args = self._reserve_call(hold_id, charges, self._now_ms(now) + to_ms(lease_s))
        with _unavailable_on_failure():
            out = int(await self._reserve(keys=keys, args=args))
        return self._reserved(hold_id, out)

    async def admit(
        self,
        scopes: Sequence[ScopeLimits],
        tokens: int,
        hold_id: str | None = None,
        charges: Sequence[Charge] = (),
        *,
        lease_s: float = DEFAULT_HOLD_LEASE_S,
        now: float | None = None,
    ) -> tuple[RateDecision | None, int | None]:
        check_scopes(scopes, tokens)
        now_ms = self._now_ms(now)
        tracked, keys, args = self._rate_call(scopes, tokens, now_ms)
        if not tracked:
            keys, args = [], []
        if hold_id is not None:
            hold_keys, hold_args = self._reserve_call(hold_id, charges, now_ms + to_ms(lease_s))
        elif not tracked:
            return None, None
        else:
            hold_keys, hold_args = [], []
        with _unavailable_on_failure():
            decided, held = await self._admit(keys=[*keys, *hold_keys], args=[len(keys), len(args), *args, *hold_args])
        decision = self._decision(tracked, decided, now_ms) if tracked else None
        if int(held) == -3:
            return decision, None
        return decision, (self._reserved(hold_id, int(held)) if hold_id is not None else None)

    async def finish(self, calls: Sequence[Finish], now: float | None = None) -> None:
        if not calls:
            return
        window_start = self._now_ms(now) - WINDOW_MS
        batch = []
        for call in calls:
            if call.hold_id is not None:
                check_actual(call.actual)
            at_ms = to_ms(call.at)
            logs: list[str] = []
            if call.token_delta and at_ms > window_start:
                for sl in call.scopes:
                    if sl.rpm is not None or sl.tpm is not None:
                        base = f"{self._prefix}rl:{sl.scope}:"
                        logs += (base + "log", base + "sums")
            batch.append(
                {
                    "h": call.hold_id or "",
                    "a": [[self._prefix + "ctr:" + name, str(v)] for name, v in call.actual.items() if v],
                    "l": logs,
                    "d": str(call.token_delta) if logs else "0",
                    "t": str(at_ms),
                    "i": self._id(),
                    "s": [self._prefix + "slot:" + call.slot.scope, call.slot.holder] if call.slot else [],
                }
            )
        payload = orjson.dumps(batch)
        with _unavailable_on_failure():
            await self._finish(keys=[self._holds_key, self._leases_key], args=[payload, 2 * WINDOW_MS])

    async def settle(self, hold_id: str, actual: Mapping[str, int]) -> bool:
        check_actual(actual)
        keys = [self._holds_key, self._leases_key]
        args: list[int | str] = [hold_id]
        for name, amount in actual.items():
            if amount:
                keys.append(self._prefix + "ctr:" + name)
                args.append(amount)
        with _unavailable_on_failure():
            return int(await self._settle(keys=keys, args=args)) == 1

    async def release_expired(self, *, now: float | None = None, limit: int = 1000) -> int:
        if limit <= 0:
            return 0
        with _unavailable_on_failure():
            return int(
                await self._release_expired(keys=[self._holds_key, self._leases_key], args=[self._now_ms(now), limit])
            )

    async def seed(self, values: Mapping[str, int], *, ttl_s: Mapping[str, float] | None = None) -> int:
        if not values:
            return 0
        ttls = ttl_s or {}
        keys: list[str] = []
        args: list[int | str] = []
        for name, value in values.items():
            ttl = ttls.get(name)
            keys.append(self._prefix + "ctr:" + name)
            args += (value, "" if ttl is None else to_ms(ttl))
        with _unavailable_on_failure():
            return int(await self._seed(keys=keys, args=args))

    async def open_holds(self) -> int:
        with _unavailable_on_failure():
            return int(await self._client.hlen(self._holds_key))

    # -- invalidation bus -----------------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        with _unavailable_on_failure():
            await self._client.publish(self._prefix + "bus:" + channel, message)

    def subscribe(self, channel: str) -> RedisSubscription:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        return RedisSubscription(pubsub, self._prefix + "bus:" + channel, self._subscriptions)

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        if self._pipe is not None:
            await self._pipe.close()
        await self._client.aclose()


def from_url(url: str | None, namespace: str) -> RedisLimiter:
    if url is None:
        raise ValueError("the Redis backend needs a URL")
    return RedisLimiter.from_url(url, namespace=namespace)
