"""The Gateway API input: HTTPRoutes → Envoy routes and virtual hosts. A route whose parent is a
Gateway listener serves the gateway (per hostname); a route whose parent is a Service (GAMMA)
replaces that Service's default route in the client sidecar.

Matches are sorted by Gateway API precedence (exact path, longest prefix, method, most headers, most
query parameters, then the oldest route); PathPrefix matches whole path segments; a rule with no
usable backend answers 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netdebug.k8s.documents import GATEWAY_API_GROUP, Document, ManifestError
from netdebug.k8s.hosts import host_matches, more_specific, service_host
from netdebug.k8s.inventory import Service
from netdebug.mesh.translate.destinations import Destinations
from netdebug.mesh.translate.envoy import (
    REDIRECT_RESPONSE_CODES,
    VirtualHost,
    add_virtual_host,
    envoy_duration,
    route_action,
    route_operation,
)
from netdebug.mesh.translate.fields import (
    checked_duration,
    checked_regex,
    field_list,
    field_mapping,
    warn_unknown,
)
from netdebug.mesh.translate.model import JSON


def _gateway_api_name_matches(match: Mapping[str, Any], field: str, doc: Document, where: str) -> list[JSON]:
    """A Gateway API match's `headers` or `queryParams` list as Envoy name + string_match entries.

    Each item has `name`, `value` and `type`: Exact (the default) gives an exact match, any other type
    a checked regex. Headers and query parameters follow the same rule, so one function does both.
    """
    out: list[JSON] = []
    for k, item in enumerate(field_list(match.get(field), doc, f"{where}.{field}")):
        item = field_mapping(item, doc, f"{where}.{field}[{k}]")
        value = str(item.get("value", ""))
        string_match: JSON = (
            {"exact": value}
            if str(item.get("type", "Exact")) == "Exact"
            else {"safe_regex": {"regex": checked_regex(value, doc, f"{where}.{field}[{k}].value")}}
        )
        out.append({"name": str(item.get("name", "")), "string_match": string_match})
    return out


@dataclass(frozen=True)
class _GatewayApiMatch:
    """One HTTPRoute match, with what Gateway API precedence sorts on."""

    route: JSON
    precedence: tuple[int, int, int, int, int]
    tie: tuple[str, int, int]


class GatewayApiRoutes(Destinations):
    """HTTPRoutes and Gateway API Gateways → routes and virtual hosts."""

    def _backend_cluster(self, doc: Document, ref: Mapping[str, Any], where: str) -> str:
        kind = str(ref.get("kind", "Service"))
        group = str(ref.get("group", ""))
        if kind != "Service" or group not in ("", "core"):
            raise doc.error(where, f"backend kind {group or 'core'}/{kind} is not emulated (only Services)")
        name = str(ref.get("name", ""))
        namespace = str(ref.get("namespace", doc.namespace))
        svc = self.inv.service_by_host(service_host(name, namespace), namespace)
        if svc is None:
            raise doc.error(f"{where}.name", f"Service {namespace}/{name} does not exist in the manifests")
        if ref.get("port") is None:
            raise doc.error(f"{where}.port", "required for a Service backend")
        port = self._service_port(svc, int(ref["port"]), doc, f"{where}.port")
        return self.service_cluster(svc, port, None, {})

    def _gateway_api_match(
        self, doc: Document, match: Mapping[str, Any], where: str
    ) -> tuple[JSON, tuple[int, int, int, int, int]]:
        warn_unknown(self.warnings, match, {"path", "headers", "queryParams", "method"}, doc, where)
        path = field_mapping(match.get("path"), doc, f"{where}.path")
        path_type = str(path.get("type", "PathPrefix"))
        value = str(path.get("value", "/"))
        out: JSON = {}
        if path_type == "Exact":
            out["path"] = value
            rank = 0
        elif path_type == "PathPrefix":
            trimmed = value.rstrip("/")
            # Gateway API prefixes match whole path segments ("/echo" matches "/echo/x", not "/echoes").
            if trimmed:
                out["path_separated_prefix"] = trimmed
            else:
                out["prefix"] = "/"
            rank = 2
        elif path_type == "RegularExpression":
            out["safe_regex"] = {"regex": checked_regex(value, doc, f"{where}.path.value")}
            rank = 1
        else:
            raise doc.error(f"{where}.path.type", f"unknown path match type {path_type!r}")
        headers = _gateway_api_name_matches(match, "headers", doc, where)
        if match.get("method"):
            headers.append({"name": ":method", "string_match": {"exact": str(match["method"])}})
        if headers:
            out["headers"] = headers
        params = _gateway_api_name_matches(match, "queryParams", doc, where)
        if params:
            out["query_parameters"] = params
        # Gateway API precedence: exact path, longest prefix, method, most headers, most query params.
        header_count = len(headers) - (1 if match.get("method") else 0)
        return out, (rank, -len(value), 0 if match.get("method") else 1, -header_count, -len(params))

    def gateway_api_routes(self, doc: Document, port: int) -> list[_GatewayApiMatch]:
        spec = doc.spec
        out: list[_GatewayApiMatch] = []
        for i, rule in enumerate(field_list(spec.get("rules"), doc, "spec.rules") or [{}]):
            where = f"spec.rules[{i}]"
            rule = field_mapping(rule, doc, where)
            warn_unknown(
                self.warnings, rule, {"name", "matches", "backendRefs", "filters", "timeouts"}, doc, where
            )
            action: JSON = {}
            weighted: list[tuple[str, int]] = []
            for k, ref in enumerate(field_list(rule.get("backendRefs"), doc, f"{where}.backendRefs")):
                bwhere = f"{where}.backendRefs[{k}]"
                ref = field_mapping(ref, doc, bwhere)
                if ref.get("filters"):
                    self.warnings.append(
                        f"{doc.where(bwhere + '.filters')}: per-backend filters not emulated (ignored)"
                    )
                weight = ref.get("weight", 1)
                if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                    raise doc.error(f"{bwhere}.weight", f"expected a non-negative integer, got {weight!r}")
                cluster = self._backend_cluster(doc, ref, bwhere)
                if weight > 0:
                    weighted.append((cluster, weight))
            filters = self._gateway_api_filters(
                doc, field_list(rule.get("filters"), doc, f"{where}.filters"), f"{where}.filters"
            )
            if "redirect" in filters:
                action = {"redirect": filters.pop("redirect")}
            elif weighted:
                action = {"route": route_action(weighted)}
                timeouts = field_mapping(rule.get("timeouts"), doc, f"{where}.timeouts")
                warn_unknown(self.warnings, timeouts, {"request", "backendRequest"}, doc, f"{where}.timeouts")
                if "request" in timeouts:
                    action["route"]["timeout"] = envoy_duration(
                        checked_duration(doc, timeouts["request"], f"{where}.timeouts.request")
                    )
                if "backendRequest" in timeouts:
                    action["route"]["retry_policy"]["per_try_timeout"] = envoy_duration(
                        checked_duration(doc, timeouts["backendRequest"], f"{where}.timeouts.backendRequest")
                    )
            else:
                # Gateway API: a rule with no usable backend answers 500.
                action = {"direct_response": {"status": 500}}
            rewrite = filters.pop("rewrite", {})
            for j, match in enumerate(field_list(rule.get("matches"), doc, f"{where}.matches") or [{}]):
                mwhere = f"{where}.matches[{j}]"
                envoy_match, precedence = self._gateway_api_match(
                    doc, field_mapping(match, doc, mwhere), mwhere
                )
                route: JSON = {"name": f"{doc.namespace}.{doc.name}.{i}.{j}", "match": envoy_match}
                route.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in action.items()})
                route.update(filters)
                if rewrite and "route" in route:
                    route["route"] = {**route["route"], **rewrite}
                    if (
                        "prefix_rewrite" in rewrite
                        and "path_separated_prefix" not in envoy_match
                        and "prefix" not in envoy_match
                    ):
                        raise doc.error(f"{where}.filters", "ReplacePrefixMatch needs a PathPrefix match")
                route["decorator"] = {"operation": route_operation(route, doc.name, port)}
                out.append(_GatewayApiMatch(route, precedence, (f"{doc.namespace}/{doc.name}", i, j)))
        return out

    def _gateway_api_filters(self, doc: Document, filters: list[Any], where: str) -> JSON:
        out: JSON = {}
        for k, item in enumerate(filters):
            fwhere = f"{where}[{k}]"
            item = field_mapping(item, doc, fwhere)
            ftype = str(item.get("type", ""))
            if ftype in ("RequestHeaderModifier", "ResponseHeaderModifier"):
                key = "requestHeaderModifier" if ftype.startswith("Request") else "responseHeaderModifier"
                prefix = "request_headers" if ftype.startswith("Request") else "response_headers"
                spec = field_mapping(item.get(key), doc, f"{fwhere}.{key}")
                adds = []
                for op, action in (("set", "OVERWRITE_IF_EXISTS_OR_ADD"), ("add", "APPEND_IF_EXISTS_OR_ADD")):
                    for h in field_list(spec.get(op), doc, f"{fwhere}.{key}.{op}"):
                        h = field_mapping(h, doc, f"{fwhere}.{key}.{op}")
                        adds.append(
                            {
                                "header": {"key": str(h.get("name")), "value": str(h.get("value"))},
                                "append_action": action,
                            }
                        )
                if adds:
                    out[f"{prefix}_to_add"] = adds
                if spec.get("remove"):
                    out[f"{prefix}_to_remove"] = [
                        str(h) for h in field_list(spec["remove"], doc, f"{fwhere}.{key}.remove")
                    ]
            elif ftype == "URLRewrite":
                spec = field_mapping(item.get("urlRewrite"), doc, f"{fwhere}.urlRewrite")
                rewrite: JSON = {}
                if spec.get("hostname"):
                    rewrite["host_rewrite_literal"] = str(spec["hostname"])
                path = field_mapping(spec.get("path"), doc, f"{fwhere}.urlRewrite.path")
                if path.get("type") == "ReplacePrefixMatch":
                    rewrite["prefix_rewrite"] = str(path.get("replacePrefixMatch", "/"))
                elif path.get("type") == "ReplaceFullPath":
                    rewrite["regex_rewrite"] = {
                        "pattern": {"regex": "^.*$"},
                        "substitution": str(path.get("replaceFullPath", "/")),
                    }
                elif path:
                    raise doc.error(f"{fwhere}.urlRewrite.path.type", f"unknown type {path.get('type')!r}")
                out["rewrite"] = rewrite
            elif ftype == "RequestRedirect":
                spec = field_mapping(item.get("requestRedirect"), doc, f"{fwhere}.requestRedirect")
                status = int(spec.get("statusCode", 302))
                redirect: JSON = {"response_code": REDIRECT_RESPONSE_CODES.get(status, "FOUND")}
                if spec.get("scheme"):
                    redirect["scheme_redirect"] = str(spec["scheme"])
                if spec.get("hostname"):
                    redirect["host_redirect"] = str(spec["hostname"])
                if spec.get("port"):
                    redirect["port_redirect"] = int(spec["port"])
                path = field_mapping(spec.get("path"), doc, f"{fwhere}.requestRedirect.path")
                if path.get("type") == "ReplaceFullPath":
                    redirect["path_redirect"] = str(path.get("replaceFullPath", "/"))
                elif path.get("type") == "ReplacePrefixMatch":
                    redirect["prefix_rewrite"] = str(path.get("replacePrefixMatch", "/"))
                out["redirect"] = redirect
            else:
                self.warnings.append(f"{doc.where(fwhere)}: filter {ftype or '?'} not emulated (ignored)")
        return out

    @staticmethod
    def _sorted_gateway_api(matches: Iterable[_GatewayApiMatch]) -> list[JSON]:
        return [m.route for m in sorted(matches, key=lambda m: (m.precedence, m.tie))]

    def _api_parents(
        self, doc: Document
    ) -> tuple[list[tuple[Document, str | None]], list[tuple[Service, int | None]]]:
        gateways: list[tuple[Document, str | None]] = []
        services: list[tuple[Service, int | None]] = []
        for i, ref in enumerate(field_list(doc.spec.get("parentRefs"), doc, "spec.parentRefs")):
            where = f"spec.parentRefs[{i}]"
            ref = field_mapping(ref, doc, where)
            kind = str(ref.get("kind", "Gateway"))
            group = str(ref.get("group", GATEWAY_API_GROUP if kind == "Gateway" else ""))
            name = str(ref.get("name", ""))
            namespace = str(ref.get("namespace", doc.namespace))
            if kind == "Gateway" and group == GATEWAY_API_GROUP:
                gw = self.api_gateways.get((namespace, name))
                if gw is None:
                    raise doc.error(
                        f"{where}.name", f"Gateway {namespace}/{name} does not exist in the manifests"
                    )
                section = ref.get("sectionName")
                if section is not None:
                    listeners = [
                        str(field_mapping(item, gw, "spec.listeners").get("name"))
                        for item in field_list(gw.spec.get("listeners"), gw, "spec.listeners")
                    ]
                    if str(section) not in listeners:
                        raise doc.error(
                            f"{where}.sectionName", f"Gateway {namespace}/{name} has no listener {section!r}"
                        )
                gateways.append((gw, str(section) if section is not None else None))
            elif kind == "Service" and group in ("", "core"):
                svc = self.inv.service_by_host(service_host(name, namespace), namespace)
                if svc is None:
                    raise doc.error(
                        f"{where}.name", f"Service {namespace}/{name} does not exist in the manifests"
                    )
                port = ref.get("port")
                services.append((svc, int(port) if port is not None else None))
            else:
                raise doc.error(where, f"parent {group or 'core'}/{kind} is not emulated")
        return gateways, services

    def gateway_api_gateway_vhosts(
        self, table: dict[str, VirtualHost], served: list[str], ports: list[int]
    ) -> None:
        """The gateway's virtual hosts from Gateway API Gateways and the HTTPRoutes attached to them."""
        # Gateway API: listeners of each Gateway, HTTPRoutes attached to them, merged per hostname.
        by_host: dict[str, list[_GatewayApiMatch]] = {}
        origins: dict[str, str] = {}
        for route_doc in self.inv.of_kind("HTTPRoute", GATEWAY_API_GROUP + "/"):
            parents, _ = self._api_parents(route_doc)
            route_hosts = [
                str(h) for h in field_list(route_doc.spec.get("hostnames"), route_doc, "spec.hostnames")
            ]
            for gw, section in parents:
                for k, listener in enumerate(field_list(gw.spec.get("listeners"), gw, "spec.listeners")):
                    listener = field_mapping(listener, gw, f"spec.listeners[{k}]")
                    if section is not None and str(listener.get("name")) != section:
                        continue
                    protocol = str(listener.get("protocol", "HTTP"))
                    if protocol != "HTTP":
                        self.warnings.append(
                            f"{gw.where(f'spec.listeners[{k}].protocol')}: {protocol} not emulated"
                        )
                        continue
                    ports.append(int(listener.get("port", 80)))
                    listener_host = str(listener["hostname"]) if listener.get("hostname") else "*"
                    hosts = [
                        more_specific(h, listener_host)
                        for h in (route_hosts or [listener_host])
                        if host_matches(listener_host, h) or host_matches(h, listener_host)
                    ]
                    for host in hosts:
                        matches = self.gateway_api_routes(route_doc, int(listener.get("port", 80)))
                        by_host.setdefault(host, []).extend(matches)
                        origins.setdefault(host, route_doc.where())
        for host, matches in by_host.items():
            add_virtual_host(
                table,
                VirtualHost(f"{host}:gateway-api", [host], self._sorted_gateway_api(matches), origins[host]),
            )
            served.append(host)

    def gamma_vhosts(self, table: dict[str, VirtualHost], claimed: set[str]) -> None:
        """The client sidecar's virtual hosts from GAMMA HTTPRoutes; a Service already routed by a
        VirtualService (in `claimed`) is a conflict."""
        caller_ns = self.client_identity.namespace
        # GAMMA: HTTPRoutes whose parent is a Service replace that Service's default route.
        gamma: dict[str, list[_GatewayApiMatch]] = {}
        gamma_origin: dict[str, str] = {}
        gamma_service: dict[str, Service] = {}
        for route_doc in self.inv.of_kind("HTTPRoute", GATEWAY_API_GROUP + "/"):
            _, services = self._api_parents(route_doc)
            for svc, port_number in services:
                parent_port = self._service_port(svc, port_number, route_doc, "spec.parentRefs")
                gamma.setdefault(svc.fqdn, []).extend(self.gateway_api_routes(route_doc, parent_port.port))
                gamma_origin.setdefault(svc.fqdn, route_doc.where())
                gamma_service[svc.fqdn] = svc
        for host, matches in gamma.items():
            svc = gamma_service[host]
            if host in claimed:
                raise ManifestError(
                    f"{gamma_origin[host]}: {host} is also routed by a VirtualService (conflict)"
                )
            names = svc.host_names(caller_ns)
            http_ports = [p for p in svc.ports if p.is_http]
            domains = names + [f"{n}:{p.port}" for p in http_ports for n in names]
            add_virtual_host(
                table,
                VirtualHost(f"gamma/{host}", domains, self._sorted_gateway_api(matches), gamma_origin[host]),
            )
            claimed.add(host)
