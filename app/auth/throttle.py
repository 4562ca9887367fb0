"""Admission control for the login form: per-IP and per-account token buckets, and a cap on concurrent hashing.

A password check is an argon2id hash (64 MiB, tens of milliseconds of a core). Without a bound, anyone who can
reach `/login` decides how much of the server's CPU and memory goes to hashing. The buckets answer a caller over
its budget at once (429, no hash, no database), and the hashing limiter keeps the number of hashes running at a
time below the number of cores, so pages and the API keep their share of the machine during a flood.

The buckets live in the process: they are the cheap first line. The lockout after repeated failures
(`login_attempts`, in the database) is the durable per-account limit shared by every process.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """`burst` attempts at once per key, then `per_minute` more each minute; bounded memory.

    Keys idle long enough to have refilled carry no state worth keeping; beyond `max_keys` the least recently
    used key is dropped (a caller spreading over that many addresses still meets the hashing cap).
    """

    def __init__(self, burst: int, per_minute: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one attempt for `key`: 0.0 when allowed, else the seconds until the next one is."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
            else:
                bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            self._buckets[key] = bucket  # most recently used last
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate if self.rate > 0 else math.inf


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(min(seconds, 86_400.0))))


class LoginThrottle:
    """Everything `/login` checks before it may hash a password, for one app instance."""

    def __init__(self, *, ip_burst: int, ip_per_minute: float, account_burst: int, account_per_minute: float,
                 concurrent_hashes: int | None = None, max_waiting: int = 16) -> None:
        self.by_ip = TokenBucket(ip_burst, ip_per_minute)
        self.by_account = TokenBucket(account_burst, account_per_minute)
        # Leave at least one core to everything else; one hash at a time on a 2-core machine.
        self.hashing = anyio.CapacityLimiter(concurrent_hashes or max(1, (os.cpu_count() or 2) // 2))
        self.max_waiting = max_waiting

    def admit(self, ip: str, account: str) -> float:
        """0.0 when this attempt may go ahead, else the seconds the caller should wait (answered with 429)."""
        wait = self.by_ip.take(ip)
        if wait:
            return wait
        return self.by_account.take(account)

    def saturated(self) -> bool:
        """True when so many checks already queue for the hashing slots that one more should come back later."""
        return self.hashing.statistics().tasks_waiting >= self.max_waiting
