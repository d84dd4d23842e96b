"""Reading routing documents field by field: every read names the document and the field on error
(`Document.error`), and every field the local mesh does not emulate becomes a warning. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from netdebug.k8s.documents import Document
from netdebug.mesh.translate.model import JSON

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: object) -> float:
    """A Go/protobuf duration ("5s", "250ms", "1m30s") in seconds; ValueError when malformed."""
    text = str(value).strip()
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"not a duration: {value!r} (expected e.g. 5s, 250ms, 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def string_match(spec: object, doc: Document, where: str) -> JSON:
    """Istio StringMatch {exact|prefix|regex} → Envoy StringMatcher."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise doc.error(where, "expected exactly one of exact, prefix, regex")
    ((kind, value),) = spec.items()
    if kind == "exact":
        return {"exact": str(value)}
    if kind == "prefix":
        return {"prefix": str(value)}
    if kind == "regex":
        return {"safe_regex": {"regex": checked_regex(str(value), doc, where)}}
    raise doc.error(where, f"unknown match type {kind!r} (expected exact, prefix or regex)")


def checked_regex(value: str, doc: Document, where: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise doc.error(where, f"invalid regular expression {value!r}: {exc}") from None
    return value


def field_mapping(value: object, doc: Document, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise doc.error(where, "expected a mapping")
    return value


def field_list(value: object, doc: Document, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise doc.error(where, "expected a list")
    return value


def warn_unknown(
    warnings: list[str], spec: Mapping[str, Any], supported: Iterable[str], doc: Document, where: str
) -> None:
    for key in sorted(set(spec) - set(supported)):
        path = f"{where}.{key}" if where else key
        warnings.append(f"{doc.where(path)}: not emulated by the local mesh (ignored)")


def checked_duration(doc: Document, value: object, where: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise doc.error(where, str(exc)) from None
