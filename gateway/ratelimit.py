"""Per-key token buckets: `rate_per_s` tokens a second up to `burst`; a request takes one or waits for Retry-After."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from gateway.options import RateLimit

MAX_BUCKETS = 10_000  # without auth buckets are per client address: forget the least recent beyond this


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """0 when `cost` tokens were taken, else the seconds until they are there (cost 0: only look)."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        need = cost if cost > 0 else 1.0
        if self.tokens >= need:
            self.tokens -= cost
            return 0.0
        return (need - self.tokens) / self.rate_per_s


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, who: str, limit: RateLimit, cost: float = 1.0) -> float:
        now = self._clock()
        bucket = self._buckets.get(who)
        if bucket is None or (bucket.rate_per_s, bucket.burst) != (limit.rate_per_s, limit.burst):
            bucket = self._buckets[who] = TokenBucket(limit.rate_per_s, limit.burst, float(limit.burst), now)
        self._buckets.move_to_end(who)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return bucket.take(now, cost)
