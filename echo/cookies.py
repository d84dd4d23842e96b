"""The Cookie header as mendhak's cookie-parser middleware shows it (pure).

Rules, from the code of cookie-parser 1.4 and the ``cookie`` module it calls (``cookie.parse``) and
of cookie-signature's ``unsign``:

- pairs are split on ``;``, name and value on the first ``=``; spaces and tabs around both are
  trimmed; a pair without ``=`` is skipped; the first occurrence of a name wins;
- a value wrapped in double quotes loses them; a value containing ``%`` is percent-decoded as
  JavaScript's ``decodeURIComponent`` does, and kept as it was when that fails;
- with a secret, every value starting ``s:`` moves from ``cookies`` to ``signedCookies``: the text
  after ``s:`` is ``value.signature``, where the signature is the unpadded base64 HMAC-SHA256 of
  ``value`` under the secret, compared in constant time; a bad signature gives ``false``;
- then, in both, a value starting ``j:`` whose rest is JSON becomes that JSON when it is truthy in
  JavaScript (``j:0``, ``j:""``, ``j:null`` and ``j:false`` stay strings).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import lru_cache

import orjson

_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def decode_uri_component(text: str) -> str | None:
    """JavaScript's decodeURIComponent; None where it would throw (a bad % escape, invalid UTF-8)."""
    if _PERCENT.search(text):
        return None
    try:
        return _ESCAPE.sub(lambda match: bytes.fromhex(match.group(0).replace("%", "")).decode(), text)
    except UnicodeDecodeError:
        return None


def _trimmed(text: str) -> str:
    return text.strip(" \t")


def _value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        raw = raw[1:-1]
    if "%" not in raw:
        return raw
    decoded = decode_uri_component(raw)
    return raw if decoded is None else decoded


def parse_cookie_header(header: str) -> dict[str, str]:
    """``cookie.parse``: name → decoded value, first occurrence wins."""
    cookies: dict[str, str] = {}
    for item in header.split(";"):
        name, sep, value = item.partition("=")
        if not sep:
            continue
        name = _trimmed(name)
        if name not in cookies:
            cookies[name] = _value(_trimmed(value))
    return cookies


def _js_truthy(value: object) -> bool:
    if value is None or value is False or value == "":
        return False
    return not (isinstance(value, int | float) and not isinstance(value, bool) and value == 0)


def json_cookie(value: object) -> object:
    """cookie-parser's JSONCookie: ``j:{...}`` → the JSON when it parses and is truthy, else the value."""
    if not isinstance(value, str) or not value.startswith("j:"):
        return value
    try:
        parsed = orjson.loads(value[2:])
    except orjson.JSONDecodeError:
        return value
    return parsed if _js_truthy(parsed) else value


def sign(value: str, secret: str) -> str:
    """cookie-signature's ``sign``: ``value.`` + unpadded base64 HMAC-SHA256 (used by the tests)."""
    mac = hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()
    return f"{value}.{base64.b64encode(mac).decode().rstrip('=')}"


def unsign(signed: str, secret: str) -> str | None:
    """cookie-signature's ``unsign``: the value when the signature matches, else None."""
    dot = signed.rfind(".")
    value = signed[:dot] if dot >= 0 else signed[:-1]  # JavaScript's slice(0, -1) when there is no dot
    expected = sign(value, secret).encode()
    return value if hmac.compare_digest(expected, signed.encode()) else None


def parse_cookies(header: str | None, secret: str | None) -> tuple[dict[str, object], dict[str, object]]:
    """(``cookies``, ``signedCookies``) for a Cookie header. Shared between requests: do not mutate."""
    if not header:
        return _EMPTY, _EMPTY
    return _parse(header, secret)


_EMPTY: dict[str, object] = {}


@lru_cache(maxsize=512)
def _parse(header: str, secret: str | None) -> tuple[dict[str, object], dict[str, object]]:
    cookies: dict[str, object] = dict(parse_cookie_header(header))
    signed: dict[str, object] = {}
    if secret:
        for name, value in list(cookies.items()):
            if isinstance(value, str) and value.startswith("s:"):
                unsigned = unsign(value[2:], secret)
                signed[name] = False if unsigned is None else json_cookie(unsigned)
                del cookies[name]
    for name, value in cookies.items():
        if isinstance(value, str) and value.startswith("j:"):
            cookies[name] = json_cookie(value)
    return cookies, signed
