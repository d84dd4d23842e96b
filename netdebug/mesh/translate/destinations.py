"""Where routes send traffic: Services (and DestinationRule subsets) → Envoy upstream clusters.

`Destinations` also holds the state of one translation; the input translators (`istio.IstioRoutes`,
`gateway_api.GatewayApiRoutes`) build on it and `translator.py` sets it up. A DestinationRule's
subsets become label selectors over the inventory's pods; its simple load-balancer policy is kept;
each cluster reaches the pods' server sidecars over Istio mTLS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netdebug.k8s.documents import ISTIO_NETWORKING_GROUP, Document
from netdebug.k8s.inventory import Identity, Inventory, Pod, Service, ServicePort
from netdebug.mesh.translate.envoy import upstream_cluster
from netdebug.mesh.translate.fields import field_list, field_mapping, warn_unknown
from netdebug.mesh.translate.model import JSON, Placement
from netdebug.mesh.translate.versions import IstioVersion


@dataclass
class _DestinationRule:
    doc: Document
    subsets: dict[str, dict[str, str]]
    lb_policy: str
    subset_lb: dict[str, str] = field(default_factory=dict)


_LB_POLICIES = {
    "ROUND_ROBIN": "ROUND_ROBIN",
    "LEAST_REQUEST": "LEAST_REQUEST",
    "LEAST_CONN": "LEAST_REQUEST",
    "RANDOM": "RANDOM",
    "UNSPECIFIED": "LEAST_REQUEST",
}


class Destinations:
    """The state of one translation, and the Services and DestinationRules it routes to."""

    inv: Inventory
    placement: Placement
    istio: IstioVersion  # the release whose behaviour to follow where releases differ
    client_identity: Identity
    warnings: list[str]
    clusters: dict[str, JSON]  # by Envoy cluster name, without the caller's TLS (envoy.with_client_tls)
    destination_rules: dict[str, _DestinationRule]  # by the Service's full name
    istio_gateways: dict[tuple[str, str], Document]  # by (namespace, name)
    api_gateways: dict[tuple[str, str], Document]
    waypoint_gateways: dict[tuple[str, str], Document]  # Gateway API Gateways of class istio-waypoint

    def _destination_rules(self) -> dict[str, _DestinationRule]:
        rules: dict[str, _DestinationRule] = {}
        for doc in self.inv.of_kind("DestinationRule", f"{ISTIO_NETWORKING_GROUP}/"):
            spec = doc.spec
            host = str(spec.get("host", ""))
            svc = self.inv.service_by_host(host, doc.namespace)
            if svc is None:
                raise doc.error("spec.host", f"{host!r} is not a Service in the manifests")
            if svc.fqdn in rules:
                self.warnings.append(
                    f"{doc.where('spec.host')}: a second DestinationRule for {svc.fqdn} is ignored"
                    f" (the first is {rules[svc.fqdn].doc.where()})"
                )
                continue
            warn_unknown(self.warnings, spec, {"host", "subsets", "trafficPolicy", "exportTo"}, doc, "spec")
            lb = self._lb_policy(
                field_mapping(spec.get("trafficPolicy"), doc, "spec.trafficPolicy"), doc, "spec.trafficPolicy"
            )
            rule = _DestinationRule(doc, {}, lb or "LEAST_REQUEST")
            for i, subset in enumerate(field_list(spec.get("subsets"), doc, "spec.subsets")):
                where = f"spec.subsets[{i}]"
                subset = field_mapping(subset, doc, where)
                name = str(subset.get("name", ""))
                if not name:
                    raise doc.error(f"{where}.name", "missing")
                labels = {
                    str(k): str(v)
                    for k, v in field_mapping(subset.get("labels"), doc, f"{where}.labels").items()
                }
                if not self.inv.pods_selected(svc.namespace, {**svc.selector, **labels}):
                    self.warnings.append(
                        f"{doc.where(where + '.labels')}: subset {name!r} selects no pod of {svc.fqdn}"
                        " (a cluster answers 503 no_healthy_upstream; istioctl analyze: IST0173)"
                    )
                rule.subsets[name] = labels
                sub_lb = self._lb_policy(
                    field_mapping(subset.get("trafficPolicy"), doc, f"{where}.trafficPolicy"),
                    doc,
                    f"{where}.trafficPolicy",
                )
                if sub_lb:
                    rule.subset_lb[name] = sub_lb
                warn_unknown(self.warnings, subset, {"name", "labels", "trafficPolicy"}, doc, where)
            rules[svc.fqdn] = rule
        return rules

    def _lb_policy(self, policy: Mapping[str, Any], doc: Document, where: str) -> str | None:
        if not policy:
            return None
        tls_mode = field_mapping(policy.get("tls"), doc, f"{where}.tls").get("mode")
        if tls_mode not in (None, "ISTIO_MUTUAL"):
            self.warnings.append(
                f"{doc.where(where + '.tls.mode')}: {tls_mode} not emulated (ISTIO_MUTUAL used)"
            )
        warn_unknown(self.warnings, policy, {"loadBalancer", "tls"}, doc, where)
        lb = field_mapping(policy.get("loadBalancer"), doc, f"{where}.loadBalancer")
        if not lb:
            return None
        simple = str(lb.get("simple", "UNSPECIFIED"))
        if simple not in _LB_POLICIES or set(lb) != {"simple"}:
            self.warnings.append(
                f"{doc.where(where + '.loadBalancer')}: only simple {sorted(_LB_POLICIES)} is emulated"
            )
        return _LB_POLICIES.get(simple)

    def _target_check(self, svc: Service, index: int, port: ServicePort, pods: Sequence[Pod]) -> None:
        for pod in pods:
            target = port.target_port
            number = pod.container_ports.get(target) if isinstance(target, str) else target
            if number is None:
                raise svc.doc.error(
                    f"spec.ports[{index}].targetPort",
                    f"no container port named {target!r} in Deployment {pod.namespace}/{pod.deployment}",
                )
            if number != pod.http_port:
                raise svc.doc.error(
                    f"spec.ports[{index}].targetPort",
                    f"port {port.port} targets container port {number} of {pod.namespace}/{pod.deployment},"
                    f" but the echo serves plain HTTP on {pod.http_port}; only HTTP ports are emulated",
                )

    def service_cluster(
        self, svc: Service, port: ServicePort, subset: str | None, labels: Mapping[str, str]
    ) -> str:
        name = f"outbound|{port.port}|{subset or ''}|{svc.fqdn}"
        if name in self.clusters:
            return name
        if not svc.selector:
            self.warnings.append(
                f"{svc.doc.where('spec.selector')}: a Service without selector has no local endpoints"
            )
        pods = self.inv.pods_selected(svc.namespace, {**svc.selector, **labels}) if svc.selector else []
        self._target_check(svc, svc.ports.index(port), port, pods)
        rule = self.destination_rules.get(svc.fqdn)
        lb = "LEAST_REQUEST"
        if rule is not None:
            lb = rule.subset_lb.get(subset or "", rule.lb_policy)
        sni = f"outbound_.{port.port}_.{subset or ''}_.{svc.fqdn}"
        # Upstream SAN checks apply to the mTLS endpoints only: pods with a sidecar, ambient pods.
        sans = sorted({pod.identity.spiffe for pod in pods if pod.injection.sidecar or pod.ambient})
        self.clusters[name] = upstream_cluster(self.placement, name, pods, lb, sni, sans)
        return name

    def _service_port(self, svc: Service, number: int | None, doc: Document, where: str) -> ServicePort:
        if number is None:
            http_ports = [p for p in svc.ports if p.is_http]
            if len(svc.ports) == 1:
                candidates = list(svc.ports)
            elif len(http_ports) == 1:
                candidates = http_ports
            else:
                raise doc.error(where, f"required: Service {svc.fqdn} has several ports")
            port = candidates[0]
        else:
            found = [p for p in svc.ports if p.port == number]
            if not found:
                raise doc.error(where, f"Service {svc.fqdn} has no port {number}")
            port = found[0]
        if not port.is_http:
            raise doc.error(
                where,
                f"port {port.port} of {svc.fqdn} is not an HTTP port (name {port.name!r},"
                f" appProtocol {port.app_protocol!r}); Istio treats it as TCP (IST0118)",
            )
        return port
