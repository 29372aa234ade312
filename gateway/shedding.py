"""Load shedding per model: a bounded number of requests at Triton, a bounded number waiting, none waiting long.

Triton's own queue cannot be bounded here (in 2.51 any queue policy stalls the dynamic batcher, see docs/export.md, "Configs"), so
an overload would otherwise queue without bound and every request's latency would grow with it. The gateway answers
what it cannot serve soon with 503 and Retry-After, at once, and keeps the latency of what it admits bounded.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

from gateway.options import Shedding
from gateway.problems import Overloaded


class ModelGate:
    def __init__(self, model: str, shedding: Shedding):
        self.model = model
        self.shedding = shedding
        self.in_flight = 0
        self.pending = 0
        self.shed = 0
        self._slots = asyncio.Semaphore(shedding.max_in_flight)

    def _overloaded(self, why: str) -> Overloaded:
        self.shed += 1
        return Overloaded(f"{self.model}: {why}", self.shedding.retry_after_s)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        s = self.shedding
        if self._slots.locked():
            if self.pending >= s.max_pending:
                raise self._overloaded(f"{self.in_flight} requests in flight and {self.pending} waiting, the most "
                                       f"this gateway allows (--max-in-flight {s.max_in_flight}, --max-pending "
                                       f"{s.max_pending})")
            self.pending += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), s.max_wait_s)
            except TimeoutError:
                raise self._overloaded(f"no free slot within {s.max_wait_s:g} s (--max-wait)") from None
            finally:
                self.pending -= 1
        else:
            await self._slots.acquire()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
