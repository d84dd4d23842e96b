"""A byte budget shared by all requests in flight (pure bookkeeping; the app decides what to count).

Requests reserve bytes before they hold them (body chunks as they arrive, the decoded body, the echo
document about to be built) and release everything when they end. A reservation that does not fit
is refused, and the request is answered 503 with Retry-After: memory stays bounded under any number
of concurrent large requests, and the requests already admitted finish.
"""

from __future__ import annotations


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0

    def reserve(self, amount: int) -> bool:
        if self.in_use + amount > self.limit:
            return False
        self.in_use += amount
        if self.in_use > self.peak:
            self.peak = self.in_use
        return True

    def release(self, amount: int) -> None:
        self.in_use -= amount
