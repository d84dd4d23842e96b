"""The Istio input: VirtualServices (and the Istio Gateways they bind to) → Envoy routes and virtual
hosts, as istiod translates them (pilot/pkg/networking/core/route).

Relative weights become `weighted_clusters` (zero-weight destinations dropped), a subset becomes
its DestinationRule's labels, route timeouts default to 0 (off), retries default to Istio's policy,
and each route gets Istio's decorator operation. A VirtualService bound to `mesh` serves the client
sidecar; one bound to a Gateway serves the gateway, for the hosts both name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from netdebug.k8s.documents import ISTIO_NETWORKING_GROUP, Document
from netdebug.k8s.hosts import host_matches, more_specific
from netdebug.mesh.translate.destinations import Destinations
from netdebug.mesh.translate.envoy import (
    REDIRECT_RESPONSE_CODES,
    VirtualHost,
    add_virtual_host,
    envoy_duration,
    istio_default_retry_policy,
    route_action,
    route_operation,
)
from netdebug.mesh.translate.fields import (
    checked_duration,
    checked_regex,
    field_list,
    field_mapping,
    header_matcher,
    header_operations,
    parse_retry_on,
    query_matcher,
    string_match,
    warn_unknown,
)
from netdebug.mesh.translate.model import JSON


class IstioRoutes(Destinations):
    """VirtualServices and Istio Gateways → routes and virtual hosts."""

    def _resolve_istio_gateway(
        self, ref: str, doc: Document, where: str
    ) -> tuple[str, str] | Literal["mesh"]:
        if ref == "mesh":
            return "mesh"
        ns, _, name = ref.rpartition("/")
        key = (ns or doc.namespace, name)
        if key not in self.istio_gateways:
            raise doc.error(where, f"Gateway {key[0]}/{key[1]} does not exist in the manifests (IST0101)")
        return key

    def _vs_gateways(self, doc: Document) -> list[tuple[str, str] | Literal["mesh"]]:
        refs = field_list(doc.spec.get("gateways"), doc, "spec.gateways") or ["mesh"]
        return [self._resolve_istio_gateway(str(r), doc, f"spec.gateways[{i}]") for i, r in enumerate(refs)]

    def istio_routes(
        self, doc: Document, context: tuple[str, str] | Literal["mesh"], port: int
    ) -> list[JSON]:
        spec = doc.spec
        routes: list[JSON] = []
        for i, http in enumerate(field_list(spec.get("http"), doc, "spec.http")):
            where = f"spec.http[{i}]"
            http = field_mapping(http, doc, where)
            warn_unknown(
                self.warnings,
                http,
                {
                    "name",
                    "match",
                    "route",
                    "redirect",
                    "directResponse",
                    "rewrite",
                    "timeout",
                    "retries",
                    "headers",
                },
                doc,
                where,
            )
            action = self._istio_action(doc, http, where)
            matches = field_list(http.get("match"), doc, f"{where}.match") or [{}]
            for j, match in enumerate(matches):
                mwhere = f"{where}.match[{j}]"
                match = field_mapping(match, doc, mwhere)
                gateways = [
                    self._resolve_istio_gateway(str(g), doc, f"{mwhere}.gateways[{k}]")
                    for k, g in enumerate(field_list(match.get("gateways"), doc, f"{mwhere}.gateways"))
                ]
                if gateways and context not in gateways:
                    continue
                route: JSON = {
                    "name": str(http.get("name") or f"{doc.name}.{i}"),
                    "match": self._istio_match(doc, match, mwhere),
                }
                route.update(action)
                route["decorator"] = {"operation": route_operation(route, doc.name, port)}
                routes.append(route)
        for key in ("tcp", "tls"):
            if spec.get(key):
                self.warnings.append(f"{doc.where('spec.' + key)}: only HTTP routes are emulated (ignored)")
        return routes

    def _istio_match(self, doc: Document, match: Mapping[str, Any], where: str) -> JSON:
        """One HTTPMatchRequest → an Envoy RouteMatch, as route.go TranslateRouteMatch builds it."""
        warn_unknown(
            self.warnings,
            match,
            {
                "name",
                "uri",
                "scheme",
                "headers",
                "withoutHeaders",
                "method",
                "authority",
                "queryParams",
                "ignoreUriCase",
                "gateways",
            },
            doc,
            where,
        )
        out: JSON = {}
        uri = match.get("uri")
        if uri is None:
            out["prefix"] = "/"
        else:
            sm = string_match(uri, doc, f"{where}.uri")
            if "exact" in sm:
                out["path"] = sm["exact"]
            elif "prefix" in sm:
                out["prefix"] = sm["prefix"]
            else:
                out["safe_regex"] = sm["safe_regex"]
        if match.get("ignoreUriCase"):
            out["case_sensitive"] = False
        headers = [
            header_matcher(str(name), spec, doc, f"{where}.headers.{name}")
            for name, spec in field_mapping(match.get("headers"), doc, f"{where}.headers").items()
        ] + [
            header_matcher(str(name), spec, doc, f"{where}.withoutHeaders.{name}", without=True)
            for name, spec in field_mapping(
                match.get("withoutHeaders"), doc, f"{where}.withoutHeaders"
            ).items()
        ]
        # Istio sorts the header matchers by name, then appends the pseudo-header matches.
        headers.sort(key=lambda h: str(h["name"]))
        for field, pseudo in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
            if match.get(field) is not None:
                headers.append(header_matcher(pseudo, match[field], doc, f"{where}.{field}"))
        if headers:
            out["headers"] = headers
        params = [
            query_matcher(str(name), spec, doc, f"{where}.queryParams.{name}")
            for name, spec in field_mapping(match.get("queryParams"), doc, f"{where}.queryParams").items()
        ]
        if params:
            out["query_parameters"] = params
        return out

    def _istio_action(self, doc: Document, http: Mapping[str, Any], where: str) -> JSON:
        """The action of one HTTPRoute, shared by all of its matches (route.go translateRoute)."""
        kinds = [k for k in ("route", "redirect", "directResponse") if http.get(k)]
        if len(kinds) != 1:
            raise doc.error(where, "exactly one of route, redirect, directResponse is required")
        headers = field_mapping(http.get("headers"), doc, f"{where}.headers")
        for direction in ("request", "response"):
            warn_unknown(
                self.warnings,
                field_mapping(headers.get(direction), doc, f"{where}.headers.{direction}"),
                {"set", "add", "remove"},
                doc,
                f"{where}.headers.{direction}",
            )
        out, authority = header_operations(
            field_mapping(headers.get("request"), doc, f"{where}.headers.request"),
            field_mapping(headers.get("response"), doc, f"{where}.headers.response"),
            doc,
            f"{where}.headers",
            validate=True,
        )
        if kinds[0] == "redirect":
            out["redirect"] = self._istio_redirect(doc, http, where)
            return out
        if kinds[0] == "directResponse":
            direct = field_mapping(http["directResponse"], doc, f"{where}.directResponse")
            body = field_mapping(direct.get("body"), doc, f"{where}.directResponse.body")
            response: JSON = {"status": int(direct.get("status", 200))}
            if "string" in body:
                response["body"] = {"inline_string": str(body["string"])}
            out["direct_response"] = response
            return out
        destinations = field_list(http["route"], doc, f"{where}.route")
        weighted: list[tuple[str, int]] = []
        for k, dest in enumerate(destinations):
            dwhere = f"{where}.route[{k}]"
            dest = field_mapping(dest, doc, dwhere)
            warn_unknown(self.warnings, dest, {"destination", "weight", "headers"}, doc, dwhere)
            target = field_mapping(dest.get("destination"), doc, f"{dwhere}.destination")
            cluster = self._istio_destination(doc, target, f"{dwhere}.destination")
            weight = dest.get("weight", 100 if len(destinations) == 1 else 0)
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise doc.error(f"{dwhere}.weight", f"expected a non-negative integer, got {weight!r}")
            if dest.get("headers"):
                self.warnings.append(
                    f"{doc.where(dwhere + '.headers')}: per-destination headers not emulated (ignored)"
                )
            # Istio drops zero-weight destinations (and a missing weight among several is zero).
            if weight > 0 or len(destinations) == 1:
                weighted.append((cluster, weight))
        if not weighted:
            raise doc.error(f"{where}.route", "every destination has weight 0: no traffic could be routed")
        action: JSON = route_action(weighted, self.istio)
        if "timeout" in http:
            action["timeout"] = envoy_duration(checked_duration(doc, http["timeout"], f"{where}.timeout"))
        if "retries" in http:
            retries = field_mapping(http.get("retries"), doc, f"{where}.retries")
            policy = self._istio_retries(doc, retries, f"{where}.retries")
            if policy is None:
                action.pop("retry_policy")
            else:
                action["retry_policy"] = policy
        rewrite = field_mapping(http.get("rewrite"), doc, f"{where}.rewrite")
        warn_unknown(self.warnings, rewrite, {"uri", "uriRegexRewrite", "authority"}, doc, f"{where}.rewrite")
        regex_rewrite = field_mapping(rewrite.get("uriRegexRewrite"), doc, f"{where}.rewrite.uriRegexRewrite")
        if regex_rewrite:
            action["regex_rewrite"] = {
                "pattern": {
                    "regex": checked_regex(
                        str(regex_rewrite.get("match", "")), doc, f"{where}.rewrite.uriRegexRewrite.match"
                    )
                },
                "substitution": str(regex_rewrite.get("rewrite", "")),
            }
        elif rewrite.get("uri"):
            # Envoy swaps the matched prefix, or the whole path for exact and regex matches.
            action["prefix_rewrite"] = str(rewrite["uri"])
        # A rewrite's authority wins over a `host` header operation (route.go applyHTTPRouteDestination).
        authority = str(rewrite["authority"]) if rewrite.get("authority") else authority
        if authority:
            action["host_rewrite_literal"] = authority
        out["route"] = action
        return out

    def _istio_redirect(self, doc: Document, http: Mapping[str, Any], where: str) -> JSON:
        redirect = field_mapping(http["redirect"], doc, f"{where}.redirect")
        warn_unknown(
            self.warnings,
            redirect,
            {"uri", "authority", "scheme", "redirectCode", "port"},
            doc,
            f"{where}.redirect",
        )
        envoy_redirect: JSON = {}
        if "uri" in redirect:
            envoy_redirect["path_redirect"] = str(redirect["uri"])
        if "authority" in redirect:
            envoy_redirect["host_redirect"] = str(redirect["authority"])
        if "scheme" in redirect:
            envoy_redirect["scheme_redirect"] = str(redirect["scheme"])
        if "port" in redirect:
            envoy_redirect["port_redirect"] = int(redirect["port"])
        code = int(redirect.get("redirectCode", 301))
        if code not in REDIRECT_RESPONSE_CODES:
            raise doc.error(f"{where}.redirect.redirectCode", f"{code} is not a redirect status")
        envoy_redirect["response_code"] = REDIRECT_RESPONSE_CODES[code]
        return envoy_redirect

    def _istio_retries(self, doc: Document, retries: Mapping[str, Any], where: str) -> JSON | None:
        """HTTPRetry → Envoy retry policy (retry.go ConvertPolicy), after Istio's validation
        (pkg/config/validation validateHTTPRetry)."""
        warn_unknown(
            self.warnings,
            retries,
            {"attempts", "perTryTimeout", "retryOn", "retryIgnorePreviousHosts", "backoff"},
            doc,
            where,
        )
        # `attempts` has no default inside a retries block: unset is 0, which disables retries.
        attempts = retries.get("attempts", 0)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise doc.error(f"{where}.attempts", f"expected a non-negative integer, got {attempts!r}")
        if attempts == 0:
            configured = [k for k in ("perTryTimeout", "retryOn", "retryRemoteLocalities") if k in retries]
            if configured:
                raise doc.error(
                    f"{where}.attempts",
                    f"{'missing' if 'attempts' not in retries else '0'}: Istio rejects a retry policy"
                    f" ({', '.join(configured)}) when attempts are 0 (retries disabled); set attempts",
                )
            return None
        policy = istio_default_retry_policy(self.istio)
        policy["num_retries"] = attempts
        if "retryOn" in retries:
            conditions, codes = parse_retry_on(str(retries["retryOn"]), doc, f"{where}.retryOn")
            policy["retry_on"] = ",".join(conditions)
            policy.pop("retriable_status_codes", None)
            if codes:
                policy["retriable_status_codes"] = codes
        if "perTryTimeout" in retries:
            policy["per_try_timeout"] = envoy_duration(
                checked_duration(doc, retries["perTryTimeout"], f"{where}.perTryTimeout")
            )
        if retries.get("retryIgnorePreviousHosts") is False:
            policy.pop("retry_host_predicate")
        if "backoff" in retries:
            base = checked_duration(doc, retries["backoff"], f"{where}.backoff")
            policy["retry_back_off"] = {"base_interval": envoy_duration(base)}
        return policy

    def _istio_destination(self, doc: Document, target: Mapping[str, Any], where: str) -> str:
        host = str(target.get("host", ""))
        svc = self.inv.service_by_host(host, doc.namespace)
        if svc is None:
            raise doc.error(
                f"{where}.host", f"{host!r} is not a Service in the manifests (ServiceEntry is not emulated)"
            )
        if host != svc.fqdn:
            self.warnings.append(
                f"{doc.where(where + '.host')}: short name {host!r}; prefer the FQDN {svc.fqdn} (IST0174)"
            )
        port_spec = field_mapping(target.get("port"), doc, f"{where}.port")
        number = port_spec.get("number")
        port = self._service_port(svc, int(number) if number is not None else None, doc, f"{where}.port")
        subset = target.get("subset")
        labels: Mapping[str, str] = {}
        if subset is not None:
            rule = self.destination_rules.get(svc.fqdn)
            if rule is None:
                raise doc.error(
                    f"{where}.subset", f"subset {subset!r}: no DestinationRule for {svc.fqdn} (IST0101)"
                )
            if str(subset) not in rule.subsets:
                raise doc.error(
                    f"{where}.subset",
                    f"subset {subset!r} is not defined in {rule.doc.where()}"
                    f" (defined: {', '.join(sorted(rule.subsets)) or 'none'})",
                )
            labels = rule.subsets[str(subset)]
        return self.service_cluster(svc, port, str(subset) if subset is not None else None, labels)

    def istio_gateway_vhosts(
        self, table: dict[str, VirtualHost], served: list[str], ports: list[int]
    ) -> None:
        """The gateway's virtual hosts from Istio Gateways and the VirtualServices bound to them."""
        # Istio Gateways: server hosts per gateway key.
        gw_hosts: dict[tuple[str, str], list[str]] = {}
        for key, gw in self.istio_gateways.items():
            warn_unknown(self.warnings, gw.spec, {"selector", "servers"}, gw, "spec")
            hosts: list[str] = []
            for i, server in enumerate(field_list(gw.spec.get("servers"), gw, "spec.servers")):
                server = field_mapping(server, gw, f"spec.servers[{i}]")
                server_port = field_mapping(server.get("port"), gw, f"spec.servers[{i}].port")
                protocol = str(server_port.get("protocol", "HTTP")).upper()
                if protocol not in ("HTTP", "HTTP2"):
                    self.warnings.append(
                        f"{gw.where(f'spec.servers[{i}].port.protocol')}: {protocol} not emulated (HTTP only)"
                    )
                    continue
                if server.get("tls"):
                    self.warnings.append(f"{gw.where(f'spec.servers[{i}].tls')}: not emulated (ignored)")
                ports.append(int(server_port.get("number", 80)))
                for host in field_list(server.get("hosts"), gw, f"spec.servers[{i}].hosts"):
                    # "namespace/host": the namespace part restricts which VirtualServices bind; dropped here.
                    hosts.append(str(host).rpartition("/")[2])
            gw_hosts[key] = hosts
        port = ports[0] if ports else 80
        for vs in self.inv.of_kind("VirtualService", f"{ISTIO_NETWORKING_GROUP}/"):
            bound = [g for g in self._vs_gateways(vs) if isinstance(g, tuple)]
            if not bound:
                continue
            domains: list[str] = []
            for gkey in bound:
                for host in field_list(vs.spec.get("hosts"), vs, "spec.hosts"):
                    for gw_host in gw_hosts.get(gkey, []):
                        if host_matches(gw_host, str(host)) or host_matches(str(host), gw_host):
                            domain = more_specific(str(host), gw_host)
                            if domain not in domains:
                                domains.append(domain)
            if not domains:
                self.warnings.append(
                    f"{vs.where('spec.hosts')}: no host matches its Gateways' hosts (not served there)"
                )
                continue
            routes: list[JSON] = []
            for gkey in bound:
                routes.extend(r for r in self.istio_routes(vs, gkey, port) if r not in routes)
            add_virtual_host(table, VirtualHost(f"{domains[0]}:{port}", domains, routes, vs.where()))
            served.extend(domains)

    def istio_mesh_vhosts(self, table: dict[str, VirtualHost], claimed: set[str]) -> None:
        """The client sidecar's virtual hosts from VirtualServices bound to `mesh`; their Services are
        added to `claimed` (they get no default route)."""
        caller_ns = self.client_identity.namespace
        for vs in self.inv.of_kind("VirtualService", f"{ISTIO_NETWORKING_GROUP}/"):
            if "mesh" not in self._vs_gateways(vs):
                continue
            hosts = [str(h) for h in field_list(vs.spec.get("hosts"), vs, "spec.hosts")]
            if "*" in hosts:
                raise vs.error(
                    "spec.hosts", "'*' together with the mesh gateway is rejected by Istio (IST0106)"
                )
            domains: list[str] = []
            vs_port = 80
            for host in hosts:
                svc = self.inv.service_by_host(host, vs.namespace)
                if svc is None:
                    domains.append(host)
                    continue
                http_ports = [p for p in svc.ports if p.is_http]
                vs_port = http_ports[0].port if http_ports else vs_port
                names = svc.host_names(caller_ns)
                domains.extend(names + [f"{n}:{p.port}" for p in http_ports for n in names])
                claimed.add(svc.fqdn)
            routes = self.istio_routes(vs, "mesh", vs_port)
            add_virtual_host(table, VirtualHost(f"{vs.namespace}/{vs.name}", domains, routes, vs.where()))
