"""Retry inference that failed for a passing reason, with exponential backoff and jitter.

Retried: the server is unreachable or overloaded (ServerUnavailable: connection refused/reset, HTTP 429, 502 and
503, gRPC UNAVAILABLE and RESOURCE_EXHAUSTED) and a crashed Python backend process ("Stub process ... is not
healthy", HTTP 500 / gRPC INTERNAL), which another model instance or a reload can serve. Never retried: anything the
caller must fix (the other 4xx: bad input, unknown model, access), and timeouts, because a request that timed out
may still be running and a retry would add load exactly when the server is slow. Only stateless inference goes
through here, so a retry cannot apply twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, List, Sequence, TypeVar, Union

from .errors import ModelportError, ServerError, ServerUnavailable

T = TypeVar("T")
C = TypeVar("C")
Outcome = Union[T, ModelportError]

_CRASHED_BACKEND = ("is not healthy", "Stub process", "connection reset", "Connection reset")


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` extra attempts after the first; the n-th wait is uniform in [cap/2, cap], cap = min(max, base*2^n)."""

    retries: int = 3
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def __post_init__(self):
        if self.retries < 0:
            raise ValueError(f"RetryPolicy.retries must be >= 0, got {self.retries}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"RetryPolicy needs 0 <= base_delay_s <= max_delay_s, got base_delay_s="
                             f"{self.base_delay_s}, max_delay_s={self.max_delay_s}")

    def delay_s(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** attempt))
        return cap / 2 + rng() * cap / 2


NO_RETRY = RetryPolicy(retries=0)


def is_retryable(error: ModelportError) -> bool:
    if isinstance(error, ServerUnavailable):
        return True
    if isinstance(error, ServerError):
        return any(marker in error.message for marker in _CRASHED_BACKEND)
    return False


def _settle(pending: List[int], outcomes: Sequence[Outcome], results: list, policy: RetryPolicy,
            attempt: int) -> List[int]:
    """Store successes; return the chunks to try again, or raise the first error that must not be retried."""
    failed = []
    for index, outcome in zip(pending, outcomes):
        if isinstance(outcome, ModelportError):
            failed.append((index, outcome))
        else:
            results[index] = outcome
    for _, error in failed:
        if not is_retryable(error) or attempt == policy.retries:
            error.attempts = attempt + 1
            if attempt and is_retryable(error):
                error.message = error.args[0] + f" (gave up after {attempt + 1} attempts)"
                error.args = (error.message,)
            raise error
    return [index for index, _ in failed]


def send_with_retry(send: Callable[[Sequence[C]], Sequence[Outcome]], chunks: Sequence[C], policy: RetryPolicy,
                    sleep: Callable[[float], None] = time.sleep) -> list:
    """Send every chunk; resend only the ones that failed for a retryable reason. Results keep the chunks' order."""
    results: list = [None] * len(chunks)
    pending = list(range(len(chunks)))
    for attempt in range(policy.retries + 1):
        pending = _settle(pending, send([chunks[i] for i in pending]), results, policy, attempt)
        if not pending:
            break
        sleep(policy.delay_s(attempt))
    return results


async def send_with_retry_async(send: Callable[[Sequence[C]], Awaitable[Sequence[Outcome]]], chunks: Sequence[C],
                                policy: RetryPolicy,
                                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> list:
    results: list = [None] * len(chunks)
    pending = list(range(len(chunks)))
    for attempt in range(policy.retries + 1):
        pending = _settle(pending, await send([chunks[i] for i in pending]), results, policy, attempt)
        if not pending:
            break
        await sleep(policy.delay_s(attempt))
    return results
