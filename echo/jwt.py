"""Decode (never verify) a JWT the way mendhak's ``jsonwebtoken.decode(token, {complete: true})`` shows it.

Pure. The header value may carry a scheme (``Bearer eyJ...``): like mendhak, the last space-separated
word is the token. Anything that is not three base64url parts with JSON header and payload gives
``{"error": "..."}`` instead of a crash.
"""

from __future__ import annotations

import base64
import binascii
import re

import orjson

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _b64url(part: str) -> bytes:
    if not _B64URL.fullmatch(part):
        raise ValueError("not base64url")
    padded = part + "=" * (-len(part) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def decode_jwt(header_value: str) -> dict[str, object]:
    token = header_value.strip().split(" ")[-1]
    parts = token.split(".")
    if len(parts) != 3:
        return {"error": f"malformed JWT: expected 3 dot-separated parts, got {len(parts)}"}
    decoded: dict[str, object] = {}
    for name, part in (("header", parts[0]), ("payload", parts[1])):
        try:
            raw = _b64url(part)
        except (binascii.Error, ValueError):
            return {"error": f"malformed JWT: {name} is not base64url"}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"error": f"malformed JWT: {name} is not JSON"}
        if not isinstance(value, dict):
            return {"error": f"malformed JWT: {name} is not a JSON object"}
        decoded[name] = value
    decoded["signature"] = parts[2]
    return decoded
