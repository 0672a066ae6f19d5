"""The fleet's ledger: the host ledger's leasing, with Redis as the shared store.

A team whose services run on many hosts shares one ledger in Redis
(``REVENIUM_CB_LEDGER_URL=redis://host:port/db``). The per-call path is the
same as the host ledger's: reservations draw on an allowance leased to this
process, so a caller's thread meets the network only when its allowance
cannot cover a call, which is near a cap, or once per bucket and payload.
Completed spend and lease renewals go in batches from a background thread.

One Lua script settles a batch atomically: it adds spend, drops spend older
than the payload, forgets expired leases, and grants a lease only when the
bucket's spend plus every live allowance still fits. Each bucket is one hash
(``since``, ``s:<slot>`` spend, ``l:<holder>`` leases) expiring an hour after
its window.

Redis is optional (``pip install 'enforcement[redis]'``). Timeouts are short
and nothing is retried on the caller's thread: a failure marks the ledger
unhealthy (``healthy``, ``describe()``) and ``reserve`` raises
:class:`~enforcement._ledger.LedgerUnavailable`, which the engine catches to
fall back to the host ledger. The background flush keeps trying, and the
ledger is healthy again after its first success.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from ._leased_ledger import Grant, LeasedLedger, Settlement
from ._ledger import MAX_SLOTS, RELATIVE_TOLERANCE, SLOT_SECONDS, LedgerUnavailable

__all__ = ["RedisLedger", "RedisStore"]

DEFAULT_PREFIX = "revenium:enforcement:ledger:"
#: A bucket's key outlives its window by this much, so a late commit still lands.
EXPIRY_MARGIN_SECONDS = 3600.0
#: Per bucket in ARGV: limit, inclusive, since, expire-at (ms), lease, need, spend count.
_FIELDS = 7

# The rules of ``_leased_ledger.settle_entry``, in Lua, so a batch is atomic in Redis.
SETTLE_LUA = """
local holder, now, lease_until = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local slot_seconds, max_slots, tolerance = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function fmt(x) return string.format('%.17g', x) end
local function fits(total, limit, inclusive)
  local slack = tolerance * math.max(1.0, math.abs(limit))
  if inclusive then return total < limit - slack end
  return total <= limit + slack
end
local out, i = {}, 7
for k = 1, #KEYS do
  local key = KEYS[k]
  local limit, inclusive = tonumber(ARGV[i]), ARGV[i + 1] == '1'
  local since, expire_ms = tonumber(ARGV[i + 2]), ARGV[i + 3]
  local lease, need, n = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
  i = i + 7
  local stored = tonumber(redis.call('HGET', key, 'since') or '')
  if stored and stored > since then since = stored end
  redis.call('HSET', key, 'since', fmt(since))
  for _ = 1, n do
    redis.call('HINCRBYFLOAT', key, 's:' .. ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  local flat = redis.call('HGETALL', key)
  local slots, spent, others, live = {}, 0, 0, 1
  for j = 1, #flat, 2 do
    local field, value = flat[j], flat[j + 1]
    local kind, name = string.sub(field, 1, 2), string.sub(field, 3)
    if kind == 's:' then
      local slot = tonumber(name)
      if slot and slot * slot_seconds > since then
        slots[#slots + 1] = {slot, field}
        spent = spent + (tonumber(value) or 0)
      else
        redis.call('HDEL', key, field)
      end
    elseif kind == 'l:' then
      local allowance, expiry = string.match(value, '^([^|]+)|(.+)$')
      allowance, expiry = tonumber(allowance), tonumber(expiry)
      if name == holder or not allowance or not expiry or expiry <= now then
        redis.call('HDEL', key, field)
      else
        others, live = others + allowance, live + 1
      end
    end
  end
  if #slots > max_slots then
    table.sort(slots, function(a, b) return a[1] < b[1] end)
    for j = 1, #slots - max_slots do
      local amount = redis.call('HGET', key, slots[j][2])
      redis.call('HDEL', key, slots[j][2])
      redis.call('HINCRBYFLOAT', key, slots[j + 1][2], amount)
    end
  end
  local allowance, granted = lease, 0
  if need > 0 and fits(spent + others + need, limit, inclusive) then
    allowance = need + math.max(0, limit - spent - others - need) / (2 * live)
    granted = 1
  end
  if allowance > 0 then
    redis.call('HSET', key, 'l:' .. holder, fmt(allowance) .. '|' .. lease_until)
  end
  redis.call('PEXPIREAT', key, expire_ms)
  out[#out + 1] = {granted, fmt(allowance), fmt(spent), fmt(spent + others)}
end
return out
"""


def redacted(url: str) -> str:
    """The URL without its password, for ``describe()`` and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    """Leases and spend in Redis, settled by one Lua script per batch."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = 0.2) -> None:
        self.where = redacted(url)
        self.problems: dict[str, Any] = {}
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._connect()

    def _connect(self) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._client = redis.Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._script = self._client.register_script(SETTLE_LUA)

    def after_fork_in_child(self) -> None:
        """The parent's sockets are the parent's: a child connects anew."""
        self._connect()

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass

    def settle(
        self, holder: str, settlements: Sequence[Settlement], now: float, lease_until: float
    ) -> list[Grant]:
        keys = [self._prefix + s.bucket.key for s in settlements]
        args: list[Any] = [holder, repr(now), repr(lease_until)]
        args += [SLOT_SECONDS, MAX_SLOTS, RELATIVE_TOLERANCE]
        for s in settlements:
            bucket = s.bucket
            expire_ms = int((bucket.expires_at + EXPIRY_MARGIN_SECONDS) * 1000)
            args += [repr(bucket.limit), int(bucket.inclusive), repr(bucket.since), expire_ms]
            args += [repr(s.lease), repr(s.need), len(s.spend)]
            for slot, amount in s.spend:
                args += [slot, repr(amount)]
        try:
            answer = self._script(keys=keys, args=args)
            return [
                Grant(bool(int(granted)), float(allowance), float(spent), float(base))
                for granted, allowance, spent, base in answer
            ]
        except Exception as error:  # connection, timeout, a script error: all mean unavailable
            raise LedgerUnavailable("redis", f"{type(error).__name__}: {error}") from error


class RedisLedger(LeasedLedger):
    """Shared by every process, on every host, that names the same Redis.

    >>> ledger = RedisLedger("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """

    scope = "redis"

    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 0.2, **options: Any
    ) -> None:
        super().__init__(RedisStore(url, prefix, timeout), **options)
