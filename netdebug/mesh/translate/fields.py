"""Reading routing documents field by field: every read names the document and the field on error
(`Document.error`), and every field the local mesh does not emulate becomes a warning. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from netdebug.k8s.documents import Document
from netdebug.mesh.translate.model import JSON

# Go's http.StatusText knows these codes; Istio takes a number in `retryOn` as a status code only then.
_HTTP_STATUS_CODES = frozenset(int(status) for status in HTTPStatus)
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


def is_present_match(spec: object) -> bool:
    """Istio's canBeConvertedToPresentMatch (route.go): an empty StringMatch, or the regex "*" (not an
    RE2 regex: Istio reads it as "the header is present")."""
    if spec is None:
        return True
    if not isinstance(spec, Mapping):
        return False
    return not spec or dict(spec) == {"regex": "*"}


def header_matcher(name: str, spec: object, doc: Document, where: str, *, without: bool = False) -> JSON:
    """An Istio header StringMatch → an Envoy HeaderMatcher (route.go translateHeaderMatch).

    `without` (a `withoutHeaders` entry) inverts the match; a request that lacks the header then
    matches too (`treat_missing_header_as_empty`), except for a present match, where inverting
    already means "absent" (Envoy rejects the two together).
    """
    matcher: JSON = {"name": name}
    present = is_present_match(spec)
    if present:
        matcher["present_match"] = True
    else:
        matcher["string_match"] = string_match(spec, doc, where)
    if without:
        matcher["invert_match"] = True
        if not present:
            matcher["treat_missing_header_as_empty"] = True
    return matcher


def query_matcher(name: str, spec: object, doc: Document, where: str) -> JSON:
    """Istio queryParams StringMatch → Envoy QueryParameterMatcher (route.go translateQueryParamMatch)."""
    if is_present_match(spec):
        return {"name": name, "present_match": True}
    return {"name": name, "string_match": string_match(spec, doc, where)}


# Envoy's retry conditions that Istio's validation accepts in `retryOn` (pkg/config/validation
# supportedRetryOnPolicies); every other entry must be an HTTP status code.
RETRY_ON_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)


def parse_retry_on(value: str, doc: Document, where: str) -> tuple[list[str], list[int]]:
    """`retryOn` → (Envoy retry conditions, retriable status codes) as retry.go parseRetryOn splits it;
    a status code adds `retriable-status-codes`. Entries Istio's validation rejects raise ManifestError
    (it splits on "," without trimming, so "5xx, 503" is rejected for " 503")."""
    conditions: list[str] = []
    codes: list[int] = []
    for item in value.split(","):
        if item.isdigit() and int(item) in _HTTP_STATUS_CODES:
            codes.append(int(item))
        elif item in RETRY_ON_POLICIES:
            conditions.append(item)
        else:
            raise doc.error(where, f"{item!r} is not a valid retryOn policy (Istio rejects it)")
    if codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    return conditions, codes


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


def _is_internal_header(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def header_operations(
    request: Mapping[str, Any], response: Mapping[str, Any], doc: Document, where: str, *, validate: bool
) -> tuple[JSON, str | None]:
    """Istio Headers (`set`/`add` name → value, `remove` names, per direction) → Envoy header options,
    plus the authority to rewrite to (route.go TranslateHeadersOperations).

    `host`/`:authority` cannot be set as a header (Envoy refuses it in `request_headers_to_add`):
    Istio turns a request `set`/`add` of either into `host_rewrite_literal` (`set` wins over `add`)
    and drops pseudo-headers elsewhere. With `validate` (a user's VirtualService, not one Istio
    generated from an HTTPRoute) the inputs Istio's validation webhook rejects raise ManifestError
    (pkg/config/validation: ValidateHTTPHeaderWithAuthorityOperationName, ValidateHTTPHeaderOperationName).
    """
    out: JSON = {}
    authority: dict[str, str] = {}
    for direction, ops, prefix in (
        ("request", request, "request_headers"),
        ("response", response, "response_headers"),
    ):
        to_add: list[JSON] = []
        for op, action in (("set", "OVERWRITE_IF_EXISTS_OR_ADD"), ("add", "APPEND_IF_EXISTS_OR_ADD")):
            entries = field_mapping(ops.get(op), doc, f"{where}.{direction}.{op}")
            for name in sorted(str(k) for k in entries):
                value = str(entries[name])
                if validate:
                    _check_header_name(name, doc, f"{where}.{direction}.{op}.{name}", direction == "request")
                if direction == "request" and _is_authority_header(name):
                    authority.setdefault(op, value)
                if _is_internal_header(name):
                    continue
                to_add.append({"header": {"key": name, "value": value}, "append_action": action})
        if to_add:
            out[f"{prefix}_to_add"] = to_add
        remove: list[str] = []
        for k, name in enumerate(
            str(h) for h in field_list(ops.get("remove"), doc, f"{where}.{direction}.remove")
        ):
            if validate:
                _check_header_name(name, doc, f"{where}.{direction}.remove[{k}]", False)
            if not _is_internal_header(name):
                remove.append(name)
        if remove:
            out[f"{prefix}_to_remove"] = remove
    return out, authority.get("set", authority.get("add"))


def _check_header_name(name: str, doc: Document, where: str, authority_allowed: bool) -> None:
    if authority_allowed and _is_authority_header(name):
        return
    if name.lower() == "host":
        raise doc.error(where, 'invalid header "host": cannot set Host header (Istio rejects it here)')
    if name.startswith(":"):
        raise doc.error(where, f'invalid header "{name}": header cannot have ":" prefix (Istio rejects it)')
