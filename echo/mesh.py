"""What the mesh did to a request, read from the request headers alone (pure).

The sidecar rule (see the README's echo reference, "Is there a sidecar in front of me?"):

1. ``x-envoy-decorator-operation`` is set by the *caller's* outbound route and consumed by an inbound
   sidecar; ``x-envoy-peer-metadata(-id)`` is likewise consumed by an inbound sidecar. Either one reaching
   the app proves that no inbound sidecar sits in front of it: ``sidecar = false``.
2. Otherwise, any of ``x-forwarded-client-cert`` (only an inbound sidecar adds it, after an mTLS hop),
   ``x-envoy-attempt-count`` or ``x-request-id`` (added by any Envoy HTTP connection manager) means an
   Envoy handed us the request and nothing showed it was a caller-side one: ``sidecar = true``.
   A client can fake ``x-request-id``; XFCC is the strong signal, listed first in the evidence.
3. No such header: ``sidecar = false`` with empty evidence.

``evidence`` names the headers that decided the verdict, strongest first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypedDict

XFCC = "x-forwarded-client-cert"
DECORATOR = "x-envoy-decorator-operation"
ATTEMPT = "x-envoy-attempt-count"
REQUEST_ID = "x-request-id"
PEER_METADATA = "x-envoy-peer-metadata"
PEER_METADATA_ID = "x-envoy-peer-metadata-id"

_NO_SIDECAR_HEADERS = (DECORATOR, PEER_METADATA, PEER_METADATA_ID)
_SIDECAR_HEADERS = (XFCC, ATTEMPT, REQUEST_ID)
_NO_SIDECAR_SET = frozenset(_NO_SIDECAR_HEADERS)
_B3_MULTI = frozenset({"x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"})
_TRACE_HEADERS = frozenset({"traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"})


class ClientCert(TypedDict):
    by: str | None
    hash: str | None
    uri: str | None
    subject: str | None
    dns: list[str]


class Mesh(TypedDict):
    sidecar: bool
    evidence: list[str]
    request_id: str | None
    trace: dict[str, object] | None
    attempt: int | None
    forwarded_for: list[str]
    forwarded_client_cert: list[ClientCert]
    client_identity: str | None
    decorator: str | None
    external_address: str | None


def mesh_info(headers: Mapping[str, str]) -> Mesh:
    """Summarise mesh evidence; ``headers`` has lower-case names, repeated headers joined by ', '."""
    xfcc_raw = headers.get(XFCC)
    xfcc = parse_xfcc(xfcc_raw) if xfcc_raw else []
    if _NO_SIDECAR_SET.isdisjoint(headers):
        evidence = [name for name in _SIDECAR_HEADERS if name in headers]
        sidecar = bool(evidence)
    else:
        sidecar, evidence = False, [name for name in _NO_SIDECAR_HEADERS if name in headers]
    xff = headers.get("x-forwarded-for")
    attempt = headers.get(ATTEMPT)
    return {
        "sidecar": sidecar,
        "evidence": evidence,
        "request_id": headers.get(REQUEST_ID),
        "trace": None if _TRACE_HEADERS.isdisjoint(headers) else trace_info(headers),
        "attempt": None if attempt is None else parse_attempt(attempt),
        "forwarded_for": [part.strip() for part in xff.split(",") if part.strip()] if xff else [],
        "forwarded_client_cert": xfcc,
        # APPEND_FORWARD appends the current hop last, so the last element names our direct caller.
        "client_identity": xfcc[-1]["uri"] if xfcc else None,
        "decorator": headers.get(DECORATOR),
        "external_address": headers.get("x-envoy-external-address"),
    }


def parse_attempt(value: str | None) -> int | None:
    """``x-envoy-attempt-count`` as a number; None when absent or not a plain count.

    Envoy counts attempts in a uint32; more than 10 digits is not a count (and more than 4,300
    would make int() raise), so such a value is None like any other invalid one.
    """
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        return None
    return int(value)


def _split_quoted(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes; a backslash escapes the next character."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            in_quotes = not in_quotes
        elif char == separator and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in value:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return value


def parse_xfcc(value: str) -> list[ClientCert]:
    """Parse ``x-forwarded-client-cert`` as Envoy writes it.

    Elements are comma-separated (one per hop, oldest first), each a ``;``-separated list of
    ``Key=value`` pairs; values containing ``,``, ``;`` or ``=`` are double-quoted and ``"`` inside is
    backslash-escaped. Keys are case-insensitive; ``DNS`` (and ``URI``) may repeat — the first ``URI``
    is kept as ``uri``. Unknown keys (``Cert``, ``Chain``) are ignored; an element with no known key
    is dropped.
    """
    elements: list[ClientCert] = []
    for element in _split_quoted(value, ","):
        if not element.strip():
            continue
        cert: ClientCert = {"by": None, "hash": None, "uri": None, "subject": None, "dns": []}
        known = False
        for pair in _split_quoted(element, ";"):
            key, sep, raw_value = pair.partition("=")
            if not sep:
                continue
            key = key.strip().lower()
            item = _unquote(raw_value)
            if key == "dns":
                cert["dns"].append(item)
            elif key == "uri":
                if cert["uri"] is None:
                    cert["uri"] = item
            elif key == "by":
                cert["by"] = item
            elif key == "hash":
                cert["hash"] = item
            elif key == "subject":
                cert["subject"] = item
            else:
                continue
            known = True
        if known:
            elements.append(cert)
    return elements


def _is_hex(text: str, *lengths: int) -> bool:
    if len(text) not in lengths:
        return False
    try:
        int(text, 16)
    except ValueError:
        return False
    return text.isascii() and text.isalnum()


# Version, trace id, parent id, flags; a future version may append more "-" fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse_traceparent(value: str) -> dict[str, object] | None:
    """W3C Trace Context ``traceparent``: ``version-traceid(32)-parentid(16)-flags(2)``, lower hex."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "sampled": bool(int(flags, 16) & 1),
        "flags": flags,
        "version": version,
    }


def _b3_sampled(value: str | None) -> bool | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value in ("1", "true", "d"):
        return True
    if value in ("0", "false"):
        return False
    return None


def parse_b3_single(value: str) -> dict[str, object] | None:
    """B3 single header: ``traceid-spanid[-sampled[-parentspanid]]``, or only a sampling state."""
    parts = value.strip().split("-")
    if len(parts) == 1:
        sampled = _b3_sampled(parts[0])
        if sampled is None:
            return None
        return {
            "trace_id": None,
            "span_id": None,
            "parent_span_id": None,
            "sampled": sampled,
            "debug": parts[0] == "d",
        }
    if len(parts) > 4:
        return None
    trace_id, span_id = parts[0].lower(), parts[1].lower()
    if not (_is_hex(trace_id, 16, 32) and _is_hex(span_id, 16)):
        return None
    sampled_text = parts[2] if len(parts) > 2 else None
    sampled = _b3_sampled(sampled_text)
    if sampled_text is not None and sampled is None:
        return None
    parent = parts[3].lower() if len(parts) > 3 else None
    if parent is not None and not _is_hex(parent, 16):
        return None
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "sampled": sampled,
        "debug": sampled_text == "d",
    }


def parse_b3_multi(headers: Mapping[str, str]) -> dict[str, object] | None:
    trace_id = headers.get("x-b3-traceid")
    span_id = headers.get("x-b3-spanid")
    sampled_text = headers.get("x-b3-sampled")
    flags = headers.get("x-b3-flags")
    if trace_id is None and span_id is None and sampled_text is None and flags is None:
        return None
    debug = flags is not None and flags.strip() == "1"
    return {
        "trace_id": trace_id.strip().lower() if trace_id else None,
        "span_id": span_id.strip().lower() if span_id else None,
        "parent_span_id": (headers.get("x-b3-parentspanid") or "").strip().lower() or None,
        "sampled": True if debug else _b3_sampled(sampled_text),
        "debug": debug,
    }


def trace_info(headers: Mapping[str, str]) -> dict[str, object] | None:
    """Trace ids by format: ``{"w3c": {...}, "b3": {...}}``, each only when present and well-formed.

    ``b3`` comes from the single ``b3`` header when it parses, else from the ``x-b3-*`` headers.
    ``tracestate`` is passed through verbatim. None when the request carries no trace context.
    """
    out: dict[str, object] = {}
    traceparent = headers.get("traceparent")
    if traceparent is not None:
        parsed = parse_traceparent(traceparent)
        out["w3c"] = parsed if parsed is not None else {"error": "malformed traceparent", "raw": traceparent}
        state = headers.get("tracestate")
        if state is not None:
            out["tracestate"] = state
    b3_single = headers.get("b3")
    b3 = parse_b3_single(b3_single) if b3_single is not None else None
    if b3 is None and not _B3_MULTI.isdisjoint(headers):
        b3 = parse_b3_multi(headers)
    if b3 is not None:
        out["b3"] = b3
    return out or None
