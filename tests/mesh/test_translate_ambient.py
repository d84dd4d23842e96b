"""Ambient mode in the local mesh, pure: who is captured, which Service goes through which waypoint,
and what the ztunnel, waypoint and gateway bootstraps contain (translate/ambient.py, waypoint.py).

The Istio behaviour each case follows is cited in docs/ambient.md; real-Envoy checks are in
tests/mesh/test_mesh_ambient.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from netdebug.k8s.inventory import Injection, ambient_capture
from netdebug.mesh import ambient
from netdebug.mesh.translate.ambient import CALLER_ADDRESS, GATEWAY_ADDRESS, ambient_layout
from netdebug.mesh.translate.model import MeshConfig
from netdebug.mesh.translate.translator import translate
from tests.mesh.fixtures import (
    AMBIENT_NAMESPACE,
    WAYPOINT,
    ambient_docs,
    clusters,
    inventory,
    mesh_config,
    placement,
    virtual_service,
)

FQDN = "echo-service.echo.svc.cluster.local"
PLAIN_NAMESPACE = (
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: echo, labels: {istio-injection: enabled}}\n"
)
NO_SIDECAR = Injection(False, "no injection label")
SIDECAR = Injection(True, "namespace echo has istio-injection: enabled")


def _without_waypoint() -> list[str]:
    return [d for d in ambient_docs() if d != WAYPOINT]


def _envoy(config: MeshConfig, role: str) -> Any:
    found = [e for e in config.envoys if e.role == role]
    assert len(found) == 1, [e.name for e in config.envoys]
    return found[0]


def _listeners(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in bootstrap["static_resources"]["listeners"]}


def _clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in bootstrap["static_resources"]["clusters"]}


def _filters(listener: dict[str, Any]) -> list[str]:
    return [f["name"] for chain in listener["filter_chains"] for f in chain["filters"]]


def _typed(listener: dict[str, Any], chain: int = 0) -> dict[str, Any]:
    config: dict[str, Any] = listener["filter_chains"][chain]["filters"][-1]["typed_config"]
    return config


# --------------------------------------------------------------------------------------------
# Capture (istio.io docs ambient/usage/add-workloads, "Pod selection logic")


@pytest.mark.parametrize(
    ("namespace", "ns_labels", "pod_labels", "injection", "host_network", "captured"),
    [
        pytest.param(
            "echo", {"istio.io/dataplane-mode": "ambient"}, {}, NO_SIDECAR, False, True, id="namespace"
        ),
        pytest.param(
            "echo", {}, {"istio.io/dataplane-mode": "ambient"}, NO_SIDECAR, False, True, id="pod-label"
        ),
        pytest.param(
            "echo", None, {"istio.io/dataplane-mode": "ambient"}, NO_SIDECAR, False, True, id="pod-only"
        ),
        pytest.param(
            "echo",
            {"istio.io/dataplane-mode": "ambient"},
            {"istio.io/dataplane-mode": "none"},
            NO_SIDECAR,
            False,
            False,
            id="pod-opts-out",
        ),
        pytest.param(
            "echo", {"istio.io/dataplane-mode": "ambient"}, {}, SIDECAR, False, False, id="sidecar-wins"
        ),
        pytest.param(
            "echo", {"istio.io/dataplane-mode": "ambient"}, {}, NO_SIDECAR, True, False, id="host-network"
        ),
        pytest.param(
            "kube-system",
            {"istio.io/dataplane-mode": "ambient"},
            {},
            NO_SIDECAR,
            False,
            False,
            id="kube-system",
        ),
        pytest.param("echo", {}, {}, NO_SIDECAR, False, False, id="no-label"),
        pytest.param("echo", {"istio.io/dataplane-mode": "none"}, {}, NO_SIDECAR, False, False, id="ns-none"),
    ],
)
def test_ambient_capture(
    namespace: str,
    ns_labels: dict[str, str] | None,
    pod_labels: dict[str, str],
    injection: Injection,
    host_network: bool,
    captured: bool,
) -> None:
    decision = ambient_capture(namespace, ns_labels, pod_labels, injection, host_network)
    assert decision.ambient is captured
    assert decision.reason


def test_injection_label_in_an_ambient_namespace_gives_sidecars_not_ztunnel() -> None:
    ns = AMBIENT_NAMESPACE.replace("labels: {", "labels: {istio-injection: enabled, ")
    inv = inventory(*ambient_docs(ns))
    assert all(pod.injection.sidecar and not pod.ambient for pod in inv.pods)


# --------------------------------------------------------------------------------------------
# Layout: which Service port goes where


def _layout(*docs: str, caller: str = "echo") -> dict[str, tuple[str | None, str | None]]:
    layout = ambient_layout(inventory(*docs), caller)
    return {s.key: (s.waypoint, s.ingress_waypoint) for s in layout.services}


def test_every_service_of_the_enrolled_namespace_uses_the_waypoint() -> None:
    assert _layout(*ambient_docs()) == {
        f"{FQDN}:80": ("echo/echo-waypoint", None),
        "echo-v1.echo.svc.cluster.local:80": ("echo/echo-waypoint", None),
        "echo-v2.echo.svc.cluster.local:80": ("echo/echo-waypoint", None),
    }


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda docs: [d for d in docs if d != WAYPOINT], id="waypoint-missing"),
        pytest.param(
            lambda docs: [
                d.replace("istio.io/waypoint-for: service", "istio.io/waypoint-for: workload") for d in docs
            ],
            id="waypoint-for-workload",
        ),
        pytest.param(
            lambda docs: [
                d.replace("gatewayClassName: istio-waypoint", "gatewayClassName: istio") for d in docs
            ],
            id="not-a-waypoint-class",
        ),
        pytest.param(
            lambda docs: [d.replace(", istio.io/use-waypoint: echo-waypoint", "") for d in docs],
            id="no-label",
        ),
    ],
)
def test_without_a_usable_waypoint_ztunnel_goes_to_the_pods(change: Any) -> None:
    docs = change(ambient_docs())
    assert set(_layout(*docs).values()) == {(None, None)}
    assert ambient_layout(inventory(*docs), "echo").waypoints == ()


def test_service_label_none_opts_one_service_out() -> None:
    docs = [
        d.replace(
            "metadata: {name: echo-v2, namespace: echo}",
            "metadata: {name: echo-v2, namespace: echo, labels: {istio.io/use-waypoint: none}}",
        )
        for d in ambient_docs()
    ]
    layout = _layout(*docs)
    assert layout["echo-v2.echo.svc.cluster.local:80"] == (None, None)
    assert layout[f"{FQDN}:80"] == ("echo/echo-waypoint", None)


def test_ingress_use_waypoint_sends_ingress_through_the_waypoint() -> None:
    ns = AMBIENT_NAMESPACE.replace("labels: {", "labels: {istio.io/ingress-use-waypoint: 'true', ")
    layout = _layout(*ambient_docs(ns))
    assert layout["echo-v1.echo.svc.cluster.local:80"] == ("echo/echo-waypoint", "echo/echo-waypoint")
    # A caller outside ambient reaches no ClusterIP; only the ingress-bound Services stay.
    assert set(_layout(*ambient_docs(ns), caller="elsewhere")) == set(layout)
    assert _layout(*ambient_docs(), caller="elsewhere") == {}


def test_layout_of_a_sidecar_rendering_is_empty() -> None:
    layout = ambient_layout(inventory(PLAIN_NAMESPACE, *ambient_docs()[1:]), "echo")
    assert not layout.caller
    assert not layout.pods
    assert not layout.needs_ztunnel
    assert layout.waypoints == ()


# --------------------------------------------------------------------------------------------
# What runs


def test_an_ambient_caller_gets_ztunnel_and_the_waypoint_not_a_client_sidecar() -> None:
    config = mesh_config(*ambient_docs())
    assert sorted(e.role for e in config.envoys) == ["gateway", "waypoint", "ztunnel"]
    ztunnel = _envoy(config, "ztunnel")
    assert ztunnel.identity.spiffe == "spiffe://cluster.local/ns/echo/sa/netdebug"
    assert {i.spiffe for i in ztunnel.extra_identities} == {
        "spiffe://cluster.local/ns/echo/sa/echo-v1",
        "spiffe://cluster.local/ns/echo/sa/echo-v2",
    }
    waypoint = _envoy(config, "waypoint")
    # istiod deploys the waypoint with a service account named after the Gateway.
    assert waypoint.identity.spiffe == "spiffe://cluster.local/ns/echo/sa/echo-waypoint"
    assert set(config.identities) >= {ztunnel.identity, waypoint.identity, *ztunnel.extra_identities}
    assert config.ambient is not None
    assert config.ambient.caller
    assert FQDN in config.mesh_hosts
    assert "echo-service" in config.mesh_hosts


def test_a_mesh_virtual_service_is_reported_unapplied_for_an_ambient_caller() -> None:
    config = mesh_config(
        *ambient_docs(),
        virtual_service("- route: [{destination: {host: echo-v1}}]", gateways="[mesh]", hosts="[echo-v1]"),
    )
    assert any("not applied by the local mesh: the caller is in ambient mode" in w for w in config.warnings)


def test_a_route_attached_to_the_waypoint_gateway_is_a_warning() -> None:
    route = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata: {name: producer, namespace: echo}\nspec:\n  parentRefs: [{name: echo-waypoint}]\n"
        "  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]\n"
    )
    config = mesh_config(*ambient_docs(), route)
    assert any("attached to waypoint echo/echo-waypoint is not emulated" in w for w in config.warnings)


# --------------------------------------------------------------------------------------------
# ztunnel: L4 only


def test_ztunnel_inbound_is_mtls_tcp_from_each_origin() -> None:
    inv = inventory(*ambient_docs())
    where = placement(inv)
    config = translate(inv, where)
    bootstrap = _envoy(config, "ztunnel").bootstrap
    for pod in inv.pods:
        listener = _listeners(bootstrap)[f"ztunnel-inbound|{pod.name}"]
        assert listener["address"]["socket_address"]["port_value"] == where.pods[pod.name].sidecar_port
        # No HTTP connection manager anywhere on the inbound side: no header can be added.
        assert set(_filters(listener)) == {"envoy.filters.network.tcp_proxy"}
        tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]
        assert tls["require_client_certificate"] is True
        sources = [
            chain["filter_chain_match"]["source_prefix_ranges"][0]["address_prefix"]
            for chain in listener["filter_chains"]
            if "filter_chain_match" in chain
        ]
        assert sources == [CALLER_ADDRESS, GATEWAY_ADDRESS, "127.0.10.3"]
        for chain, source in zip(listener["filter_chains"], sources, strict=False):
            cluster = _clusters(bootstrap)[_typed({"filter_chains": [chain]})["cluster"]]
            assert cluster["upstream_bind_config"]["source_address"]["address"] == source
            assert (
                cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
                    "socket_address"
                ]["port_value"]
                == where.pods[pod.name].echo_port
            )


def test_ztunnel_sends_a_waypoint_service_into_an_hbone_tunnel() -> None:
    inv = inventory(*ambient_docs())
    where = placement(inv)
    assert where.ambient is not None
    bootstrap = _envoy(translate(inv, where), "ztunnel").bootstrap
    listeners, by_name = _listeners(bootstrap), _clusters(bootstrap)
    clusterip = listeners[f"ztunnel-outbound|{FQDN}:80"]
    assert clusterip["address"]["socket_address"]["port_value"] == where.ambient.service_ports[f"{FQDN}:80"]
    assert _filters(clusterip) == ["envoy.filters.network.tcp_proxy"]
    proxy = _typed(clusterip)
    assert proxy["tunneling_config"] == {"hostname": f"{FQDN}:80"}  # HBONE: CONNECT <fqdn>:<port>
    hbone = by_name[proxy["cluster"]]
    assert "http2_protocol_options" in str(hbone["typed_extension_protocol_options"])
    tls = hbone["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["alpn_protocols"] == ["h2"]
    assert tls["tls_certificates"][0]["certificate_chain"]["filename"].endswith("echo.netdebug.crt")
    assert tls["validation_context"]["match_typed_subject_alt_names"][0]["matcher"] == {
        "exact": "spiffe://cluster.local/ns/echo/sa/echo-waypoint"
    }
    assert hbone["upstream_bind_config"]["source_address"]["address"] == CALLER_ADDRESS
    # No Envoy internal listener anywhere: their connections lose the last bytes on close.
    assert not any("internal_listener" in listener for listener in listeners.values())
    assert "bootstrap_extensions" not in bootstrap


def test_without_waypoint_ztunnel_balances_connections_over_every_pod() -> None:
    inv = inventory(*_without_waypoint())
    where = placement(inv)
    config = translate(inv, where)
    assert sorted(e.role for e in config.envoys) == ["gateway", "ztunnel"]
    bootstrap = _envoy(config, "ztunnel").bootstrap
    cluster = _clusters(bootstrap)[f"ztunnel|80||{FQDN}"]
    assert cluster["lb_policy"] == "RANDOM"  # ztunnel picks an endpoint at random per connection
    ports = sorted(
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for lb in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    )
    assert ports == sorted(p.sidecar_port for p in where.pods.values())  # both pods: weights ignored
    assert cluster["upstream_bind_config"]["source_address"]["address"] == CALLER_ADDRESS
    assert "listeners" in bootstrap["static_resources"]
    assert not any("tunnel|" in name for name in _listeners(bootstrap))


def test_connect_entry_resolves_the_services_names() -> None:
    bootstrap = _envoy(mesh_config(*ambient_docs()), "ztunnel").bootstrap
    entry = _listeners(bootstrap)["ztunnel-outbound-connect"]
    vhosts = {vh["name"]: vh for vh in _typed(entry)["route_config"]["virtual_hosts"]}
    vhost = vhosts[f"clusterip|{FQDN}:80"]  # through the waypoint: on to the ClusterIP, which tunnels
    assert {"echo-service:80", "echo-service.echo:80", f"{FQDN}:80"} <= set(vhost["domains"])
    (route,) = vhost["routes"]
    assert route["match"] == {"connect_matcher": {}}
    assert route["route"]["upgrade_configs"] == [{"upgrade_type": "CONNECT", "connect_config": {}}]
    refused = vhosts["not-connect"]["routes"][0]["direct_response"]
    assert refused["status"] == 400
    assert "CONNECT" in refused["body"]["inline_string"]


def test_ipv6_bind_keeps_the_origin_addresses_off() -> None:
    inv = inventory(*ambient_docs())
    config = translate(inv, placement(inv, bind="::1"))
    bootstrap = _envoy(config, "ztunnel").bootstrap
    for name, listener in _listeners(bootstrap).items():
        if name.startswith("ztunnel-inbound|"):
            assert [c.get("filter_chain_match") for c in listener["filter_chains"]] == [None]
    assert all(
        "upstream_bind_config" not in c for n, c in _clusters(bootstrap).items() if n.startswith("hbone|")
    )


# --------------------------------------------------------------------------------------------
# The waypoint (listener_waypoint.go)


def _waypoint(*docs: str) -> dict[str, Any]:
    bootstrap: dict[str, Any] = _envoy(mesh_config(*docs), "waypoint").bootstrap
    return bootstrap


def test_waypoint_terminates_hbone_per_service_port() -> None:
    bootstrap = _waypoint(*ambient_docs())
    front = _listeners(bootstrap)["connect_terminate"]
    tls = front["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    assert tls["common_tls_context"]["alpn_protocols"] == ["h2"]
    hcm = _typed(front)
    assert hcm["http2_protocol_options"] == {"allow_connect": True}
    domains = sorted(d for vh in hcm["route_config"]["virtual_hosts"] for d in vh["domains"])
    assert domains == [
        "echo-service.echo.svc.cluster.local:80",
        "echo-v1.echo.svc.cluster.local:80",
        "echo-v2.echo.svc.cluster.local:80",
    ]
    assert [f["name"] for f in hcm["http_filters"]] == ["connect_authority", "envoy.filters.http.router"]


def test_waypoint_applies_the_service_routes_on_an_inbound_listener() -> None:
    bootstrap = _waypoint(*ambient_docs())
    inner = _listeners(bootstrap)[f"main_internal|{FQDN}:80"]
    assert inner["traffic_direction"] == "INBOUND"  # consumes the decorator, does not forward one
    hcm = _typed(inner)
    assert hcm["server_name"] == "istio-envoy"
    assert hcm["use_remote_address"] is False  # appends no x-forwarded-for
    assert "forward_client_cert_details" not in hcm  # Envoy's default SANITIZE: no XFCC reaches the app
    assert hcm["generate_request_id"] is True
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    assert vhost["name"] == "inbound|http|80"
    assert vhost["domains"] == ["*"]
    assert "include_request_attempt_count" not in vhost
    assert "request_headers_to_add" not in vhost
    split, rest = vhost["routes"]
    assert split["route"]["weighted_clusters"]["clusters"] == [
        {"name": "outbound|80||echo-v1.echo.svc.cluster.local", "weight": 75},
        {"name": "outbound|80||echo-v2.echo.svc.cluster.local", "weight": 25},
    ]
    assert split["decorator"]["operation"] == f"echo~80~{FQDN}:80/*"
    assert rest["route"]["cluster"] == f"outbound|80||{FQDN}"
    # A Service port without a route gets Istio's default inbound route (with its retry policy).
    (default,) = _typed(_listeners(bootstrap)["main_internal|echo-v1.echo.svc.cluster.local:80"])[
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    assert default["name"] == "default"
    assert default["route"]["retry_policy"] == {"retry_on": "reset-before-request", "num_retries": 2}


def test_waypoint_reaches_pods_through_their_ztunnel_with_its_own_identity() -> None:
    inv = inventory(*ambient_docs())
    where = placement(inv)
    bootstrap = _envoy(translate(inv, where), "waypoint").bootstrap
    cluster = _clusters(bootstrap)["outbound|80||echo-v1.echo.svc.cluster.local"]
    (pod,) = [p for p in inv.pods if p.version == "v1"]
    (lb,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert lb["endpoint"]["address"]["socket_address"]["port_value"] == where.pods[pod.name].sidecar_port
    assert lb["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
    assert cluster["upstream_bind_config"]["source_address"]["address"] == "127.0.10.3"
    (match,) = [m for m in cluster["transport_socket_matches"] if m["match"]]
    common = match["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificates"][0]["certificate_chain"]["filename"].endswith("echo.echo-waypoint.crt")
    assert common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"].endswith(
        "sa/echo-v1"
    )


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_xfcc_annotation_synthesises_the_source_identity(value: str) -> None:
    annotated = WAYPOINT.replace(
        "labels: {istio.io/waypoint-for: service}",
        "labels: {istio.io/waypoint-for: service},"
        f" annotations: {{ambient.istio.io/xfcc-include-client-identity: '{value}'}}",
    )
    docs = [annotated if d == WAYPOINT else d for d in ambient_docs()]
    bootstrap = _waypoint(*docs)
    listener = _listeners(bootstrap)[f"main_internal|{FQDN}:80"]
    (vhost,) = _typed(listener)["route_config"]["virtual_hosts"]
    (header,) = vhost["request_headers_to_add"]
    peer = "%FILTER_STATE(envoy.network.proxy_protocol.tlv:FIELD:peer_principal)%"
    assert header["header"] == {
        "key": "x-forwarded-client-cert",
        "value": f"By=spiffe://cluster.local/ns/echo/sa/echo-waypoint;URI={peer}",
    }
    assert header["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    # The HBONE peer's SPIFFE id reaches the inner listener in a PROXY protocol TLV.
    inner = _clusters(bootstrap)[f"main_internal|{FQDN}:80"]
    (tlv,) = inner["transport_socket"]["typed_config"]["config"]["added_tlvs"]
    source = tlv["format_string"]["text_format_source"]["inline_string"]
    assert source == "%FILTER_STATE(io.istio.peer_principal:PLAIN)%"
    assert listener["listener_filters"][0]["typed_config"]["rules"] == [
        {"tlv_type": tlv["type"], "on_tlv_present": {"key": "peer_principal"}}
    ]


def test_xfcc_annotation_on_the_gateway_class() -> None:
    gateway_class = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: istio-waypoint\n"
        "  annotations: {ambient.istio.io/xfcc-include-client-identity: 'true'}\n"
        "spec: {controllerName: istio.io/mesh-controller}\n"
    )
    layout = ambient_layout(inventory(*ambient_docs(AMBIENT_NAMESPACE, gateway_class)), "echo")
    assert layout.waypoints[0].xfcc_client_identity
    assert not ambient_layout(inventory(*ambient_docs()), "echo").waypoints[0].xfcc_client_identity


# --------------------------------------------------------------------------------------------
# The gateway


def test_gateway_reaches_ambient_pods_through_ztunnel_from_its_address() -> None:
    inv = inventory(*ambient_docs())
    where = placement(inv)
    config = translate(inv, where)
    cluster = clusters(config, "gateway")["outbound|80||echo-v2.echo.svc.cluster.local"]
    (pod,) = [p for p in inv.pods if p.version == "v2"]
    (lb,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert lb["endpoint"]["address"]["socket_address"]["port_value"] == where.pods[pod.name].sidecar_port
    assert cluster["upstream_bind_config"]["source_address"]["address"] == GATEWAY_ADDRESS
    assert not any(n.startswith("tunnel|") for n in _listeners(_envoy(config, "gateway").bootstrap))


def test_ingress_use_waypoint_tunnels_the_gateway_into_the_waypoint() -> None:
    ns = AMBIENT_NAMESPACE.replace("labels: {", "labels: {istio.io/ingress-use-waypoint: 'true', ")
    inv = inventory(*ambient_docs(ns))
    where = placement(inv)
    assert where.ambient is not None
    bootstrap = _envoy(translate(inv, where), "gateway").bootstrap
    port = where.ambient.gateway_tunnel_ports["echo-v1.echo.svc.cluster.local:80"]
    cluster = _clusters(bootstrap)["outbound|80||echo-v1.echo.svc.cluster.local"]
    (lb,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert lb["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": port}
    tunnel = _listeners(bootstrap)["tunnel|echo-v1.echo.svc.cluster.local:80"]
    assert tunnel["address"]["socket_address"]["port_value"] == port
    assert _typed(tunnel)["tunneling_config"] == {"hostname": "echo-v1.echo.svc.cluster.local:80"}
    hbone = _clusters(bootstrap)[_typed(tunnel)["cluster"]]
    common = hbone["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificates"][0]["certificate_chain"]["filename"].endswith(
        "echo.echo-gateway-istio.crt"
    )
    assert hbone["upstream_bind_config"]["source_address"]["address"] == GATEWAY_ADDRESS


def test_sidecar_rendering_has_no_ambient_part_and_no_source_binds() -> None:
    config = mesh_config(PLAIN_NAMESPACE, *ambient_docs()[1:])
    assert config.ambient is None
    assert sorted(e.role for e in config.envoys) == [
        "client-sidecar",
        "gateway",
        "server-sidecar",
        "server-sidecar",
    ]
    for role in ("gateway", "client-sidecar"):
        assert all("upstream_bind_config" not in c for c in clusters(config, role).values())


# --------------------------------------------------------------------------------------------
# What the pods and the printout show


def test_downward_files_carry_istios_marks() -> None:
    ambient_pod = inventory(*ambient_docs()).pods[0]
    sidecar_pod = inventory(PLAIN_NAMESPACE, *ambient_docs()[1:]).pods[0]
    assert ambient.pod_annotations(ambient_pod) == {"ambient.istio.io/redirection": "enabled"}
    assert "security.istio.io/tlsMode" not in ambient.pod_labels(ambient_pod)
    assert ambient.pod_labels(sidecar_pod)["security.istio.io/tlsMode"] == "istio"
    assert ambient.pod_labels(sidecar_pod)["service.istio.io/canonical-name"] == "echo"
    assert ambient.pod_labels(sidecar_pod)["service.istio.io/canonical-revision"] == "v1"
    assert '"containers":["istio-proxy"]' in ambient.pod_annotations(sidecar_pod)["sidecar.istio.io/status"]


def test_state_and_printout_name_how_each_service_is_served() -> None:
    inv = inventory(*_without_waypoint())
    where = placement(inv)
    config = translate(inv, where)
    state = ambient.ambient_state(config, where, "127.0.0.1", {"ztunnel": 42})
    assert state is not None
    assert state["client"]["url"] == f"http://127.0.0.1:{where.client_port}"
    assert state["ztunnel"]["pid"] == 42
    service = next(s for s in state["services"] if s["host"] == FQDN)
    assert service["waypoint"] is None
    assert "echo-service" in service["names"]
    lines = ambient.summary_lines({"ambient": state})
    assert lines[0].startswith(f"ambient client  http://127.0.0.1:{where.client_port}  (CONNECT proxy")
    clusterip = f"127.0.0.1:{service['local_port']}"
    at = lines.index(f"  service {FQDN}:80  (ztunnel only: routes NOT applied)")
    assert lines[at + 1] == f"    ClusterIP {clusterip}"
