"""The version split the routes give a request, and the plans' expectations checked against it. Pure.

Weights are relative (Istio and the Gateway API both normalise them), so they are compared as
percentages of their route's total. A version is named by the `version` label its pods carry: the
DestinationRule subset's labels (Istio), or the backend Service's selector (Gateway API).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from netdebug.k8s.ambient import Ambient
from netdebug.k8s.documents import (
    GATEWAY_API_GROUP,
    ISTIO_NETWORKING_GROUP,
    Doc,
    ManifestError,
    name_of,
    namespace_of,
    of_kind,
)
from netdebug.k8s.hosts import expand_short_name, service_host
from netdebug.k8s.index import Finding, Index, vs_gateways
from netdebug.k8s.load import YamlSyntaxError, yaml_document


def parse_expect(value: object) -> dict[str, float]:
    """A probe step's `expect`: a mapping {v1: 75} or the flag form "v1=75,v2=25"."""
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            key, sep, number = part.partition("=")
            if not sep:
                raise ManifestError(f"expect {value!r}: {part!r} is not version=weight")
            items.append((key.strip(), number.strip()))
    else:
        raise ManifestError(f"expect {value!r}: not a mapping or 'v1=75,v2=25'")
    try:
        weights = {key: float(number) for key, number in items}
    except (TypeError, ValueError):
        raise ManifestError(f"expect {value!r}: weights must be numbers") from None
    return weights


def to_percent(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {key: 100.0 * w / total for key, w in weights.items() if w > 0}


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: variables.get(m.group(1), m.group(0)), text)


def _http_match(match: Mapping[str, Any], path: str) -> bool:
    uri = match.get("uri")
    if not uri:
        return True
    if "prefix" in uri:
        return path.startswith(str(uri["prefix"]))
    if "exact" in uri:
        return path == str(uri["exact"])
    if "regex" in uri:
        return re.fullmatch(str(uri["regex"]), path) is not None
    return False


def _version_of(labels: Mapping[str, str] | None, fallback: str) -> str:
    return (labels or {}).get("version", fallback)


def istio_weights(
    index: Index, host: str, path: str, namespace: str, gateway: str
) -> dict[str, float] | None:
    """The version split Istio applies to `host` + `path` on `gateway` ("mesh" or a Gateway name),
    as version → percent; None when no VirtualService routes that host on that gateway."""
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        vs_ns = namespace_of(vs)
        hosts = {expand_short_name(h, vs_ns) for h in map(str, vs.get("spec", {}).get("hosts") or [])}
        bound = {g.rpartition("/")[2] for g in vs_gateways(vs)}
        if host not in hosts or gateway not in bound:
            continue
        for route in vs.get("spec", {}).get("http") or []:
            if route.get("match") and not any(_http_match(m, path) for m in route["match"]):
                continue
            weights: dict[str, float] = {}
            destinations = route.get("route") or []
            for dest in destinations:
                target = dest.get("destination") or {}
                subset = target.get("subset")
                labels = (
                    index.subset_labels(str(target.get("host", "")), str(subset), vs_ns) if subset else None
                )
                version = _version_of(labels, str(subset or target.get("host", "")))
                default = 100 if len(destinations) == 1 else 0
                weights[version] = weights.get(version, 0.0) + float(dest.get("weight", default))
            return to_percent(weights)
        return {}  # the host is routed, but no route matches this path: a 404 local reply
    return None


def _gateway_api_rule_matches(rule: Mapping[str, Any], path: str) -> bool:
    matches = rule.get("matches") or [{}]
    for match in matches:
        spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
        kind, value = spec.get("type", "PathPrefix"), str(spec.get("value", "/"))
        if kind == "Exact" and path == value:
            return True
        if kind == "RegularExpression" and re.fullmatch(value, path):
            return True
        # PathPrefix matches whole path elements: /echo matches /echo and /echo/x, not /echoes.
        if kind == "PathPrefix" and (
            value == "/" or path == value or path.startswith(value.rstrip("/") + "/")
        ):
            return True
    return False


def gateway_api_weights(
    index: Index, host: str, path: str, namespace: str, ingress: bool
) -> dict[str, float] | None:
    """The version split HTTPRoutes apply: GAMMA routes (parent: the Service) for mesh callers, routes
    on a Gateway listener with a matching hostname for ingress. Longest path prefix wins.

    Ambient mode (k8s/ambient.py): a GAMMA route of a Service that uses no waypoint is not applied; an
    ingress backend Service with istio.io/ingress-use-waypoint passes its waypoint, which applies that
    Service's GAMMA route."""
    ambient = Ambient(index)
    candidates: list[tuple[int, Mapping[str, Any], str]] = []
    for route in of_kind(index.docs, "HTTPRoute", GATEWAY_API_GROUP):
        spec = route.get("spec", {})
        route_ns = namespace_of(route)
        attached = False
        for parent in spec.get("parentRefs") or []:
            is_service = parent.get("kind") == "Service"
            if ingress and not is_service:
                attached = attached or host in (spec.get("hostnames") or [host])
            elif not ingress and is_service:
                parent_ns = str(parent.get("namespace") or route_ns)
                attached = attached or (
                    service_host(str(parent.get("name")), parent_ns) == host
                    and ambient.route_applies(str(parent.get("name")), parent_ns)
                )
        if not attached:
            continue
        for rule in spec.get("rules") or []:
            if _gateway_api_rule_matches(rule, path):
                lengths = [
                    len(str((m.get("path") or {}).get("value", "/"))) for m in rule.get("matches") or [{}]
                ]
                candidates.append((max(lengths), rule, route_ns))
    if not candidates:
        return None
    _, rule, route_ns = max(candidates, key=lambda c: c[0])
    weights: dict[str, float] = {}
    for backend in rule.get("backendRefs") or []:
        backend_ns = str(backend.get("namespace") or route_ns)
        service = index.service(str(backend.get("name")), backend_ns)
        weight = float(backend.get("weight", 1))
        if ingress and service is not None and ambient.ingress_reaches_waypoint(service):
            behind = gateway_api_weights(
                index, service_host(name_of(service), backend_ns), path, backend_ns, False
            )
            if behind:
                for version, percent in behind.items():
                    weights[version] = weights.get(version, 0.0) + weight * percent / 100.0
                continue
        selector = (service or {}).get("spec", {}).get("selector") or {}
        version = _version_of(selector, str(backend.get("name")))
        weights[version] = weights.get(version, 0.0) + weight
    return to_percent(weights)


def plans_in(docs: Iterable[Doc]) -> Iterator[tuple[Doc, str, Mapping[str, Any]]]:
    """(ConfigMap, key, plan) for every ConfigMap entry that is a netdebug plan (a mapping with steps)."""
    for cm in of_kind(docs, "ConfigMap", ""):
        for key, text in (cm.get("data") or {}).items():
            if not str(key).endswith((".yaml", ".yml")):
                continue
            try:
                plan = yaml_document(str(text), str(key))
            except YamlSyntaxError:
                continue
            if isinstance(plan, Mapping) and isinstance(plan.get("steps"), list):
                yield cm, str(key), plan


def check_plan_expectations(
    docs: Sequence[Doc], plan: Mapping[str, Any], namespace: str, where: tuple[str, str, str] | None = None
) -> list[Finding]:
    """A plan's expectations agree with the routes: each probe step's `expect` equals the split the
    routes apply to its URL (±0.5 points), and an http step expecting a 404 local reply targets a path
    no route matches.

    A step is a mesh call when its URL's host is a Service of these manifests, else an ingress call
    (through a gateway); either way Istio routes by the Host header when the step sets one. Steps whose
    host no route knows are left alone: they test something else. `where` is (kind, name, field
    prefix) for the findings; by default the plan itself.
    """
    index = Index(docs)
    kind, name, prefix = where or ("Plan", "plan", "")
    variables = {str(k): str(v) for k, v in (plan.get("vars") or {}).items()}
    findings: list[Finding] = []
    for i, step in enumerate(plan.get("steps") or []):
        if not isinstance(step, Mapping):
            continue
        label = f"step {step.get('name', i)!r}"
        for step_kind in ("probe", "http"):
            action = step.get(step_kind)
            if not isinstance(action, Mapping) or "expect" not in action or "url" not in action:
                continue
            field = f"{prefix}steps[{i}].{step_kind}.expect"
            host, path, actual = _routed_split(index, action, variables, namespace)
            if actual is None:
                continue
            if step_kind == "http":
                expect = action["expect"]
                wants_local_404 = isinstance(expect, Mapping) and expect.get("status") == 404
                if wants_local_404 and expect.get("local_reply") and actual:
                    sent_to = _fmt(actual)
                    message = (
                        f"{label} expects a 404 local reply but the routes send {host}{path} to {sent_to}"
                    )
                    findings.append(Finding(kind, name, field, message, "", namespace))
                continue
            try:
                expected = to_percent(parse_expect(action["expect"]))
            except ManifestError as exc:
                findings.append(Finding(kind, name, field, f"{label}: {exc}", "", namespace))
                continue
            if not _same_split(expected, actual):
                routed = _fmt(actual) or "no route (404)"
                message = f"{label} expects {_fmt(expected)} but the routes for {host}{path} give {routed}"
                findings.append(Finding(kind, name, field, message, "", namespace))
    return findings


def _routed_split(
    index: Index, action: Mapping[str, Any], variables: Mapping[str, str], namespace: str
) -> tuple[str, str, dict[str, float] | None]:
    """(host, path, version -> percent) for a step's request; None when no route knows the host."""
    url = urlsplit(_substitute(str(action["url"]), variables))
    headers = {
        str(k).lower(): _substitute(str(v), variables) for k, v in (action.get("headers") or {}).items()
    }
    path = url.path or "/"
    url_host = url.hostname or ""
    mesh = index.service_for_host(url_host, namespace) is not None
    host = headers["host"].partition(":")[0] if "host" in headers else url_host
    host = expand_short_name(host, namespace)
    if mesh:
        actual = istio_weights(index, host, path, namespace, "mesh")
    else:
        actual = _istio_any_gateway(index, host, path, namespace)
    if actual is None:
        actual = gateway_api_weights(index, host, path, namespace, ingress=not mesh)
    return host, path, actual


def _istio_any_gateway(index: Index, host: str, path: str, namespace: str) -> dict[str, float] | None:
    for vs in of_kind(index.docs, "VirtualService", ISTIO_NETWORKING_GROUP):
        for gateway in vs_gateways(vs):
            if gateway != "mesh":
                found = istio_weights(index, host, path, namespace, gateway.rpartition("/")[2])
                if found is not None:
                    return found
    return None


def _same_split(expected: Mapping[str, float], actual: Mapping[str, float], tolerance: float = 0.5) -> bool:
    keys = set(expected) | set(actual)
    return all(abs(expected.get(k, 0.0) - actual.get(k, 0.0)) <= tolerance for k in keys)


def _fmt(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(weights.items()))


def check_plans(index: Index) -> list[Finding]:
    """Every plan shipped in a ConfigMap expects the split the VirtualService/HTTPRoutes apply."""
    findings: list[Finding] = []
    for cm, key, plan in plans_in(index.docs):
        where = ("ConfigMap", name_of(cm), f"data[{key}].")
        findings.extend(check_plan_expectations(index.docs, plan, namespace_of(cm), where))
    return findings
