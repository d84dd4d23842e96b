"""The memory budget of requests in flight: pure bookkeeping, and the estimates the app charges to it.

Requests reserve bytes before they hold them (body chunks as they arrive, the decoded body, the echo
document about to be built) and release everything when they end. A reservation that does not fit
is refused, and the request is answered 503 with Retry-After (413 when it could never fit): memory
stays bounded under any number of concurrent large requests, and the requests already admitted
finish.
"""

from __future__ import annotations

# Up-front memory estimate per body byte: the raw bytes, the decoded text, the serialised document.
# Escapes and parsed JSON are added when the document is built, once their size is known.
COST_PER_BODY_BYTE = 3
_JSON_OBJECTS_PER_BYTE = 25  # measured: 10 MiB of [{"a":1},...] parses into ~220 MB of objects
_DOCUMENT_OVERHEAD = 16 * 1024
# JSON escapes: most control characters take 6 bytes (\u0001); these take 2 (\n, \", \\).
_CONTROL_BYTES = bytes(range(0x20))
_SHORT_CONTROLS = (b"\n", b"\t", b"\r", b"\b", b"\f")
RETRY_AFTER_SECONDS = 1


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


class Refused(Exception):
    """A request that must be answered early with ``status`` and a JSON error (the budget's 413 and
    503, and the app's other early answers)."""

    def __init__(
        self, status: int, error: dict[str, object], headers: list[tuple[bytes, bytes]] | None = None
    ):
        super().__init__(error.get("error"))
        self.status = status
        self.error = error
        self.headers = headers or []


def upfront_cost(size: int, parse_json: bool) -> int:
    """What a body of ``size`` announced bytes is charged before it is read."""
    return COST_PER_BODY_BYTE * size + (_json_cost(size) if parse_json else 0)


def document_estimate(body: bytes, parse_json: bool) -> int:
    """Bytes the echo document of ``body`` may take while it is built: text, escapes, parsed JSON."""
    size = len(body)
    if size <= 4096:
        short, long = 0, size  # not worth counting: assume the worst
    else:
        controls = size - len(body.translate(None, _CONTROL_BYTES))
        short_controls = sum(body.count(byte) for byte in _SHORT_CONTROLS)
        short = short_controls + body.count(b'"') + body.count(b"\\")
        long = controls - short_controls
    # The text (or its base64, 4/3), then the serialised document: every byte plus its escapes.
    return 2 * size + short + 5 * long + _DOCUMENT_OVERHEAD + (_json_cost(size) if parse_json else 0)


def _json_cost(size: int) -> int:
    """The objects a JSON body of ``size`` bytes parses into, and their share of the document."""
    return (_JSON_OBJECTS_PER_BYTE + 6) * size


class RequestShare:
    """Bytes one request holds in the shared budget; released when the request ends."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, amount: int) -> None:
        if amount <= 0:
            return
        if self.budget.reserve(amount):
            self.held += amount
            return
        if self.held + amount > self.budget.limit:
            raise Refused(
                413,
                {
                    "error": f"this request needs about {self.held + amount} bytes of memory, more than "
                    f"ECHO_MAX_INFLIGHT_BYTES ({self.budget.limit})",
                    "limit": self.budget.limit,
                },
            )
        raise Refused(
            503,
            {
                "error": "too many large requests in flight (ECHO_MAX_INFLIGHT_BYTES); retry later",
                "retry_after": RETRY_AFTER_SECONDS,
            },
            [(b"Retry-After", str(RETRY_AFTER_SECONDS).encode())],
        )

    def release(self) -> None:
        self.budget.release(self.held)
        self.held = 0
