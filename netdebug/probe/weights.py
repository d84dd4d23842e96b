"""Expected split: parse "v1=75,v2=25", or read the weights of the route a URL would take from a
VirtualService or HTTPRoute YAML. Pure: takes text, returns data; raises ValueError with a message.
The YAML is read, and hosts are matched, by the manifest model's rules (netdebug/k8s/).

Weights are relative (Istio's need not sum to 100); callers normalise them.
Version names: a VirtualService destination's `subset` (else its host); an HTTPRoute backendRef's
Service name after its last "-" when that part looks like a version (`echo-v1` -> `v1`), else the name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from netdebug.k8s.hosts import caller_host_matches
from netdebug.k8s.load import YamlSyntaxError, yaml_mappings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
_VERSION_SUFFIX = re.compile(r"-(v\d+[a-z0-9]*)$")


def parse_weights(text: str) -> dict[str, float]:
    """'v1=75,v2=25' -> {'v1': 75.0, 'v2': 25.0}; also accepts ':' and spaces."""
    result: dict[str, float] = {}
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError("empty expectation; use e.g. v1=75,v2=25")
    for part in parts:
        sep = "=" if "=" in part else ":" if ":" in part else None
        if sep is None:
            raise ValueError(f"'{part}' is not NAME=WEIGHT (e.g. v1=75,v2=25)")
        name, _, raw = part.rpartition(sep)
        name = name.strip()
        if not _NAME.match(name):
            raise ValueError(f"bad version name '{name}' in '{part}'")
        if name in result:
            raise ValueError(f"version '{name}' given twice")
        result[name] = _weight(raw.strip(), part)
    if sum(result.values()) <= 0:
        raise ValueError("weights must not all be zero")
    return result


def weights_from_mapping(mapping: Mapping[str, object]) -> dict[str, float]:
    """{'v1': 75, 'v2': 25} (as a plan file writes it) -> weights, validated like parse_weights."""
    result: dict[str, float] = {}
    for name, raw in mapping.items():
        name = str(name)
        if not _NAME.match(name):
            raise ValueError(f"bad version name '{name}'")
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"weight of '{name}' is not a number")
        result[name] = _weight(str(raw), f"{name}={raw}")
    if not result or sum(result.values()) <= 0:
        raise ValueError("weights must not all be zero")
    return result


def _weight(raw: str, part: str) -> float:
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise ValueError(f"weight in '{part}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"weight in '{part}' must be a finite number >= 0")
    return value


def _vs_uri_matches(match: Mapping[str, Any], path: str) -> bool:
    uri = match.get("uri")
    if not isinstance(uri, Mapping):
        return True
    if "exact" in uri:
        return path == str(uri["exact"])
    if "prefix" in uri:
        return path.startswith(str(uri["prefix"]))
    if "regex" in uri:
        return re.fullmatch(str(uri["regex"]), path) is not None
    return True


def _route_path_matches(match: Mapping[str, Any], path: str) -> bool:
    spec = match.get("path")
    if not isinstance(spec, Mapping):
        return True  # Gateway API default: PathPrefix "/"
    kind = str(spec.get("type", "PathPrefix"))
    value = str(spec.get("value", "/"))
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        return re.fullmatch(value, path) is not None
    # PathPrefix matches whole path elements: /echo matches /echo and /echo/x, not /echoes.
    prefix = value.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def _version_of_backend(name: str) -> str:
    m = _VERSION_SUFFIX.search(name)
    return m.group(1) if m else name


def _virtual_service_weights(spec: Mapping[str, Any], path: str) -> dict[str, float] | None:
    for http in spec.get("http") or []:
        matches = http.get("match") or [{}]
        if not any(_vs_uri_matches(m, path) for m in matches):
            continue
        routes = http.get("route") or []
        if not routes:
            return None  # a redirect or direct response: no split
        result: dict[str, float] = {}
        for r in routes:
            dest = r.get("destination") or {}
            name = str(dest.get("subset") or dest.get("host") or "")
            weight = r.get("weight")
            w = float(weight) if weight is not None else (100.0 if len(routes) == 1 else 0.0)
            result[name] = result.get(name, 0.0) + w
        return result
    return None


def _http_route_weights(spec: Mapping[str, Any], path: str) -> dict[str, float] | None:
    for rule in spec.get("rules") or []:
        matches = rule.get("matches") or [{}]
        if not any(_route_path_matches(m, path) for m in matches):
            continue
        refs = rule.get("backendRefs") or []
        if not refs:
            return None
        result: dict[str, float] = {}
        for ref in refs:
            name = _version_of_backend(str(ref.get("name", "")))
            w = float(ref.get("weight", 1))
            result[name] = result.get(name, 0.0) + w
        return result
    return None


def weights_from_routes(text: str, url: str, host_header: str | None = None) -> dict[str, float]:
    """Weights of the first VirtualService/HTTPRoute rule matching the URL's host (or the Host
    header, which is what Envoy routes on) and path."""
    parts = urlsplit(url)
    host = (host_header or parts.hostname or "").split(":")[0]
    path = parts.path or "/"
    try:
        docs = yaml_mappings(text, "--expect-from")
    except YamlSyntaxError as exc:
        raise ValueError(f"not valid YAML: {exc.summary}") from None
    seen_kinds = False
    for doc in docs:
        kind = doc.get("kind")
        spec = doc.get("spec") or {}
        if kind == "VirtualService":
            seen_kinds = True
            hosts = [str(h) for h in spec.get("hosts") or []]
            if any(caller_host_matches(host, h) for h in hosts):
                weights = _virtual_service_weights(spec, path)
                if weights:
                    return weights
        elif kind == "HTTPRoute":
            seen_kinds = True
            hostnames = [str(h) for h in spec.get("hostnames") or []]
            if not hostnames or any(caller_host_matches(host, h) for h in hostnames):
                weights = _http_route_weights(spec, path)
                if weights:
                    return weights
    if not seen_kinds:
        raise ValueError("no VirtualService or HTTPRoute in the file")
    raise ValueError(f"no weighted route matches host '{host}' and path '{path}'")
