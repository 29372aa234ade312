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

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, who: str, limit: RateLimit) -> float:
        now = self._clock()
        bucket = self._buckets.get(who)
        if bucket is None or (bucket.rate_per_s, bucket.burst) != (limit.rate_per_s, limit.burst):
            bucket = self._buckets[who] = TokenBucket(limit.rate_per_s, limit.burst, float(limit.burst), now)
        self._buckets.move_to_end(who)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return bucket.take(now)
