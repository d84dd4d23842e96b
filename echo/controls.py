"""Response controls a client sends as request headers or query parameters (pure).

mendhak's controls keep their names and meaning; a header wins over a query parameter of the same
name, as in mendhak. Beyond mendhak: extra response headers, a weighted status mix and "fail the first
N attempts". Every invalid value raises ``ControlError`` naming the control; the app answers 400.

Status precedence when several apply: fail-attempts, then status mix, then the fixed status code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

STATUS_CODE = "x-set-response-status-code"
DELAY_MS = "x-set-response-delay-ms"
CONTENT_TYPE = "x-set-response-content-type"
BODY_ONLY = "response_body_only"
RESPONSE_HEADER = "x-set-response-header"
STATUS_MIX = "x-set-response-status-mix"
FAIL_ATTEMPTS = "x-fail-attempts"

ALL_CONTROLS = (STATUS_CODE, DELAY_MS, CONTENT_TYPE, BODY_ONLY, RESPONSE_HEADER, STATUS_MIX, FAIL_ATTEMPTS)
# Cheap pre-check for the hot path: no control header and no query string = no parsing at all.
CONTROL_HEADERS = frozenset(ALL_CONTROLS)

DEFAULT_FAIL_STATUS = 503
MIN_STATUS, MAX_STATUS = 200, 599

# Headers a control may not set: they would corrupt framing, or they are ours to set.
_FORBIDDEN_RESPONSE_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "x-echo-pod",
        "x-echo-version",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class ControlError(Exception):
    def __init__(self, control: str, message: str) -> None:
        super().__init__(f"{control}: {message}")
        self.control = control
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": f"{self.control}: {self.message}", "control": self.control}


@dataclass(frozen=True, slots=True)
class Controls:
    status: int | None = None
    delay_ms: int = 0
    delay_capped: bool = False
    content_type: str | None = None
    body_only: bool = False
    headers: tuple[tuple[str, str], ...] = ()


NO_CONTROLS = Controls()


def _first(name: str, headers: Mapping[str, Sequence[str]], query: Mapping[str, Sequence[str]]) -> str | None:
    values = headers.get(name) or query.get(name)
    return values[0] if values else None


def parse_status(control: str, text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ControlError(control, f"expected a status code {MIN_STATUS}-{MAX_STATUS}, got {text!r}")
    status = int(text)
    if not MIN_STATUS <= status <= MAX_STATUS:
        raise ControlError(control, f"expected a status code {MIN_STATUS}-{MAX_STATUS}, got {text!r}")
    return status


def parse_delay(text: str, max_delay_ms: int) -> tuple[int, bool]:
    """Milliseconds to wait, clamped to ``max_delay_ms``; returns (delay, was_capped)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ControlError(DELAY_MS, f"expected whole milliseconds >= 0, got {text!r}")
    delay = int(text)
    if delay > max_delay_ms:
        return max_delay_ms, True
    return delay, False


def parse_status_mix(text: str) -> tuple[tuple[int, float], ...]:
    """``503:25,404:5`` → ((503, 25.0), (404, 5.0)): percent of requests answered with each status."""
    mix: list[tuple[int, float]] = []
    total = 0.0
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        status_text, sep, percent_text = item.partition(":")
        if not sep:
            raise ControlError(STATUS_MIX, f"expected STATUS:PERCENT items, got {item!r}")
        status = parse_status(STATUS_MIX, status_text)
        try:
            percent = float(percent_text)
        except ValueError:
            raise ControlError(STATUS_MIX, f"expected a percentage, got {percent_text.strip()!r}") from None
        if not 0 <= percent <= 100:
            raise ControlError(STATUS_MIX, f"percentage must be 0-100, got {percent_text.strip()!r}")
        total += percent
        mix.append((status, percent))
    if not mix:
        raise ControlError(STATUS_MIX, "expected STATUS:PERCENT items, got nothing")
    if total > 100 + 1e-9:
        raise ControlError(STATUS_MIX, f"percentages add up to {total:g}, more than 100")
    return tuple(mix)


def pick_status(mix: Sequence[tuple[int, float]], draw: float) -> int | None:
    """``draw`` is uniform in [0, 1); None = the rest of the requests (no status from the mix)."""
    point = draw * 100
    cumulative = 0.0
    for status, percent in mix:
        cumulative += percent
        if point < cumulative:
            return status
    return None


def parse_fail_attempts(text: str) -> tuple[int, int]:
    """``N`` or ``N:STATUS`` → (N, status): attempts 1..N fail with STATUS (default 503)."""
    count_text, sep, status_text = text.strip().partition(":")
    count_text = count_text.strip()
    if not (count_text.isascii() and count_text.isdigit()):
        raise ControlError(FAIL_ATTEMPTS, f"expected N or N:STATUS, got {text.strip()!r}")
    status = parse_status(FAIL_ATTEMPTS, status_text) if sep else DEFAULT_FAIL_STATUS
    return int(count_text), status


def parse_response_header(text: str) -> tuple[str, str]:
    """``Name: value`` (``Name=value`` also accepted, for query strings) → (name, value)."""
    colon = text.find(":")
    equals = text.find("=")
    cut = colon if colon >= 0 and (equals < 0 or colon < equals) else equals
    if cut <= 0:
        raise ControlError(RESPONSE_HEADER, f"expected 'Name: value', got {text!r}")
    name, value = text[:cut].strip(), text[cut + 1 :].strip()
    if not _TOKEN.fullmatch(name):
        raise ControlError(RESPONSE_HEADER, f"not a header name: {name!r}")
    if name.lower() in _FORBIDDEN_RESPONSE_HEADERS:
        raise ControlError(RESPONSE_HEADER, f"{name!r} cannot be set")
    if not _FIELD_VALUE.fullmatch(value):
        raise ControlError(RESPONSE_HEADER, f"value of {name!r} has control characters")
    return name, value


def parse_bool(control: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise ControlError(control, f"expected true or false, got {text!r}")


def parse_controls(
    headers: Mapping[str, Sequence[str]],
    query: Mapping[str, Sequence[str]],
    *,
    max_delay_ms: int,
    attempt: int | None,
    rng: Callable[[], float],
) -> Controls:
    """Read every control; ``headers``/``query`` map lower-case names to all their values.

    ``attempt`` is Envoy's ``x-envoy-attempt-count`` (None when absent: the first attempt).
    ``rng`` returns uniform floats in [0, 1); it is called only when a status mix is present.
    """
    status: int | None = None
    text = _first(STATUS_CODE, headers, query)
    if text is not None:
        status = parse_status(STATUS_CODE, text)

    text = _first(STATUS_MIX, headers, query)
    if text is not None:
        mixed = pick_status(parse_status_mix(text), rng())
        if mixed is not None:
            status = mixed

    text = _first(FAIL_ATTEMPTS, headers, query)
    if text is not None:
        count, fail_status = parse_fail_attempts(text)
        if (attempt if attempt is not None else 1) <= count:
            status = fail_status

    delay_ms, capped = 0, False
    text = _first(DELAY_MS, headers, query)
    if text is not None:
        delay_ms, capped = parse_delay(text, max_delay_ms)

    content_type = _first(CONTENT_TYPE, headers, query)
    if content_type is not None:
        content_type = content_type.strip()
        if not content_type or not _FIELD_VALUE.fullmatch(content_type):
            raise ControlError(CONTENT_TYPE, f"not a usable content type: {content_type!r}")

    text = _first(BODY_ONLY, headers, query)
    body_only = parse_bool(BODY_ONLY, text) if text is not None else False

    extra = tuple(
        parse_response_header(item)
        for item in (*headers.get(RESPONSE_HEADER, ()), *query.get(RESPONSE_HEADER, ()))
    )
    return Controls(
        status=status,
        delay_ms=delay_ms,
        delay_capped=capped,
        content_type=content_type,
        body_only=body_only,
        headers=extra,
    )
