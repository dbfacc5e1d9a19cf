"""Requests paced to each ERP credential's published limit, shared by every worker.

Each worker used to back off on its own after a 429; several workers (or machines) on one
tenant then collide. Here every request first takes a slot in one sliding window per
credential, kept where all workers see it: Redis when there is one (the production broker),
else the database (the embedded default; integrations/pacing.py). A request that finds the
window full waits for the oldest slot to leave it, so steady state sends no 429 (issue 13
item 8). The limits: docs/erp/business-central.md and docs/erp/xledger.md, "Errors and
limits" / "Errors, limits and credits".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Rate:
    """At most `requests` in any `per_seconds` window."""

    requests: int
    per_seconds: float


# Business Central online: 6,000 requests per 5-minute sliding window per user or service
# principal (Microsoft's operational limits). Xledger: about 20 requests per 5 seconds per
# credential (public client code, not official: an assumption, the sandbox's burst_limit).
BUSINESS_CENTRAL_RATE = Rate(6000, 300)
XLEDGER_RATE = Rate(20, 5)


class Limiter(Protocol):
    def admit(self, key: str, rate: Rate) -> float:
        """Take a slot for one request now and answer 0, or answer how many seconds until
        a slot frees (taking nothing)."""
        ...


class LimitReached(Exception):
    """The window stays full longer than a request may wait; nothing was sent."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limit: next slot in {wait:.1f} s")
        self.wait = wait


@dataclass
class Pacer:
    """Paces one credential's requests through a shared limiter."""

    limiter: Limiter
    key: str
    rate: Rate
    # Longer than this and the request is not sent: the engine's own rate-limit handling
    # (retry after `wait`) takes over instead of a worker sleeping for minutes.
    max_wait: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def before_request(self) -> float:
        """Wait for a slot; answer the seconds waited. Raises LimitReached past max_wait."""
        window = _with_margin(self.rate)
        waited = 0.0
        while (wait := self.limiter.admit(self.key, window)) > 0:
            if waited + wait > self.max_wait:
                raise LimitReached(wait)
            self.sleep(wait)
            waited += wait
        return waited


def _with_margin(rate: Rate) -> Rate:
    """The ERP counts a request when it arrives, we when it leaves: a connection set up
    or a slow network between the two can put one more request into the ERP's window than
    into ours. A window longer by a tenth, and by at least half a second, absorbs that: the
    skew is the difference between two requests' ways to the ERP (a TLS handshake, a busy
    network): milliseconds to a few hundred, not a second (the platform night measures it:
    bench/night_bench.py, `night_shortest_span_s`)."""
    return Rate(rate.requests, rate.per_seconds + max(0.5, rate.per_seconds / 10))


# Trim the window, count it, and take a slot if one is free: atomic in Redis, and on
# Redis's clock, so workers on machines whose clocks differ share one window.
_ADMIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], t, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - t)
"""


class RedisLimiter:
    """One sorted set of admitted request times per credential."""

    PREFIX = "voluntary-ledger:erp-rate:"

    def __init__(self, url: str) -> None:
        import redis  # only where Redis is configured

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._admit = self._client.register_script(_ADMIT)

    def admit(self, key: str, rate: Rate) -> float:
        answer = self._admit(
            keys=[self.PREFIX + key], args=[rate.per_seconds, rate.requests, uuid.uuid4().hex]
        )
        return max(0.0, float(answer))
