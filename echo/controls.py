"""Response controls a client sends as request headers or query parameters (pure).

mendhak's controls keep their names and meaning; a header wins over a query parameter of the same
name, as in mendhak. Beyond mendhak: extra response headers, a weighted status mix and "fail the first
N attempts". Every invalid value raises ``ControlError`` naming the control; the app answers 400.

Status precedence when several apply: fail-attempts, then status mix, then the fixed status code.
"""

from __future__ import annotations

import mimetypes
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


def _shown(text: str, limit: int = 64) -> str:
    """A value quoted for an error message, cut short: an error must not echo 1 MiB back."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _first(name: str, headers: Mapping[str, Sequence[str]], query: Mapping[str, Sequence[str]]) -> str | None:
    values = headers.get(name) or query.get(name)
    return values[0] if values else None


# Digits are counted before int(): Python refuses to convert more than 4,300 of them, and no value
# needs more than these.
_MAX_STATUS_DIGITS = 3
_MAX_COUNT_DIGITS = 9
_PERCENT = re.compile(r"\d{1,3}(?:\.\d{1,9})?")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_status(control: str, text: str) -> int:
    text = text.strip()
    if not _digits(text) or len(text) > _MAX_STATUS_DIGITS:
        raise ControlError(control, f"expected a status code {MIN_STATUS}-{MAX_STATUS}, got {_shown(text)}")
    status = int(text)
    if not MIN_STATUS <= status <= MAX_STATUS:
        raise ControlError(control, f"expected a status code {MIN_STATUS}-{MAX_STATUS}, got {text!r}")
    return status


def parse_delay(text: str, max_delay_ms: int) -> tuple[int, bool]:
    """Milliseconds to wait, clamped to ``max_delay_ms``; returns (delay, was_capped)."""
    text = text.strip()
    if not _digits(text):
        raise ControlError(DELAY_MS, f"expected whole milliseconds >= 0, got {_shown(text)}")
    if len(text.lstrip("0")) > len(str(max_delay_ms)):
        return max_delay_ms, True
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
        percent_text = percent_text.strip()
        if not (percent_text.isascii() and _PERCENT.fullmatch(percent_text)):
            raise ControlError(STATUS_MIX, f"expected a percentage, got {_shown(percent_text)}")
        percent = float(percent_text)
        if not 0 <= percent <= 100:
            raise ControlError(STATUS_MIX, f"percentage must be 0-100, got {percent_text!r}")
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
    count_text = count_text.strip().lstrip("0") or "0"
    if not _digits(count_text) or len(count_text) > _MAX_COUNT_DIGITS:
        raise ControlError(
            FAIL_ATTEMPTS, f"expected N (at most 9 digits) or N:STATUS, got {_shown(text.strip())}"
        )
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


# RFC 9110 §8.3.1: media-type = type "/" subtype parameters, parameters = *( OWS ";" OWS [ parameter ] ),
# parameter = token "=" ( token / quoted-string ).
_TOKEN_TEXT = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN_TEXT}/{_TOKEN_TEXT}(?:[ \t]*;[ \t]*(?:{_TOKEN_TEXT}=(?:{_TOKEN_TEXT}|{_QUOTED}))?)*"
)


_EXTENSION = re.compile(r"\.?[0-9A-Za-z]{1,16}")


def express_content_type(media_type: str) -> str:
    """Express's res.set('Content-Type'): text types and JSON/JavaScript get ``; charset=utf-8`` added.

    (mime 1.x's charsets.lookup, which Express 4 calls, answers UTF-8 for ``text/*``,
    ``application/json`` and ``application/javascript``.)
    """
    if "charset=" in media_type.lower():
        return media_type
    essence = media_type.split(";", 1)[0].strip().lower()
    if essence.startswith("text/") or essence in ("application/json", "application/javascript"):
        return f"{media_type}; charset=utf-8"
    return media_type


def parse_media_type(text: str) -> str:
    """``x-set-response-content-type`` → the response Content-Type, as Express's res.type() sets it.

    A media type as RFC 9110 writes it (``text/html; charset=utf-8``), or, as in Express, a file
    extension (``json``, ``.html``) that names one. Anything else is refused, where mendhak would
    have sent ``application/octet-stream``.
    """
    text = text.strip()
    if "/" not in text and _EXTENSION.fullmatch(text):
        guessed = mimetypes.types_map.get("." + text.lstrip(".").lower())
        if guessed is not None:
            return express_content_type(guessed)
    if not _MEDIA_TYPE.fullmatch(text):
        raise ControlError(
            CONTENT_TYPE, f"not a media type (type/subtype[; name=value]) or known extension: {_shown(text)}"
        )
    return express_content_type(text)


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
        content_type = parse_media_type(content_type)

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
