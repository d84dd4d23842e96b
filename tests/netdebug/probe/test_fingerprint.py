from __future__ import annotations

import pytest

from netdebug.probe.attribution import MISSING
from netdebug.probe.fingerprint import RULES, classify, decide, gather

XFCC = {
    "forwarded_client_cert": [{"uri": "spiffe://cluster.local/ns/echo/sa/netdebug"}],
    "client_identity": "spiffe://cluster.local/ns/echo/sa/netdebug",
    "attempt": 1,
    "sidecar": True,
}
NO_XFCC: dict[str, object] = {
    "forwarded_client_cert": [],
    "client_identity": None,
    "attempt": None,
    "sidecar": True,
}
UPSTREAM = {"x-envoy-upstream-service-time": "3"}
# What the echo reports when a gateway routed to it and no sidecar sits in front of it (a pod without
# injection, or an ambient pod without a waypoint): the gateway route's decorator reached the app (an
# inbound sidecar consumes it), with the gateway's attempt count and forwarded-for; no XFCC.
NO_SIDECAR_BEHIND_GATEWAY: dict[str, object] = {
    "forwarded_client_cert": [],
    "client_identity": None,
    "attempt": 1,
    "sidecar": False,
    "decorator": "echo-route:80/echo*",
    "forwarded_for": ["192.0.2.10"],
    "external_address": None,
    "request_id": "r",
}
# A caller without a sidecar calling a server sidecar: only the inbound sidecar's request id.
INBOUND_ONLY: dict[str, object] = {
    "forwarded_client_cert": [],
    "client_identity": None,
    "attempt": None,
    "sidecar": True,
    "decorator": None,
    "forwarded_for": [],
    "request_id": "r",
}

# What the echo reports in ambient mode (as mesh up's waypoint and ztunnel produce it; echo/mesh.py).
THROUGH_WAYPOINT: dict[str, object] = {
    **INBOUND_ONLY,
    "sidecar": False,
    "hop": "waypoint",
    "hop_evidence": ["x-request-id", "x-forwarded-proto", "pod without sidecar"],
    "dataplane": "ambient",
}
ZTUNNEL_ONLY: dict[str, object] = {
    "forwarded_client_cert": [],
    "client_identity": None,
    "attempt": None,
    "sidecar": False,
    "request_id": None,
    "hop": "ztunnel",
    "hop_evidence": ["no Envoy header", "pod captured by ztunnel"],
    "dataplane": "ambient",
}
# The waypoint with ambient.istio.io/xfcc-include-client-identity: XFCC naming the caller.
ANNOTATED_WAYPOINT: dict[str, object] = {
    **THROUGH_WAYPOINT,
    "forwarded_client_cert": [{"by": "spiffe://cluster.local/ns/echo/sa/echo-waypoint", "uri": "spiffe://x"}],
    "client_identity": "spiffe://x",
    "hop_evidence": ["x-forwarded-client-cert", "x-request-id", "pod without sidecar"],
}


@pytest.mark.parametrize(
    ("headers", "mesh", "kind", "mtls", "retried"),
    [
        pytest.param(
            {"server": "envoy", **UPSTREAM}, XFCC, "client-sidecar", True, False, id="client-sidecar"
        ),
        pytest.param({"server": "envoy", **UPSTREAM}, None, "client-sidecar", False, False, id="local-envoy"),
        pytest.param({"server": "istio-envoy", **UPSTREAM}, XFCC, "gateway", True, False, id="gateway"),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            NO_XFCC,
            "server-sidecar-only",
            False,
            False,
            id="server-sidecar-only",
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            NO_SIDECAR_BEHIND_GATEWAY,
            "gateway",
            False,
            False,
            id="gateway-to-pod-without-sidecar",
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            {**NO_SIDECAR_BEHIND_GATEWAY, "decorator": None, "attempt": 2},
            "gateway",
            False,
            True,
            id="gateway-attempt-count-only-retried",
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            {**INBOUND_ONLY, "external_address": "192.0.2.10"},
            "gateway",
            False,
            False,
            id="gateway-external-address",
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            INBOUND_ONLY,
            "server-sidecar-only",
            False,
            False,
            id="inbound-sidecar-only-request-id",
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            {**INBOUND_ONLY, "forwarded_for": ["192.0.2.10"]},
            "server-sidecar-only",
            False,
            False,
            id="forwarded-for-alone-is-not-routing",  # any HTTP proxy adds it
        ),
        pytest.param(
            {"server": "istio-envoy"},
            NO_SIDECAR_BEHIND_GATEWAY,
            "local-reply",
            False,
            False,
            id="local-first",
        ),
        pytest.param({"server": "envoy"}, None, "local-reply", False, False, id="local-reply-404"),
        pytest.param({"server": "istio-envoy"}, None, "local-reply", False, False, id="local-reply-gateway"),
        pytest.param({"server": "uvicorn"}, {"sidecar": False}, "bypass", False, False, id="bypass"),
        pytest.param({}, None, "bypass", False, False, id="bypass-no-json"),
        pytest.param({}, NO_XFCC, "server-sidecar-only", False, False, id="echo-saw-envoy-only"),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM}, THROUGH_WAYPOINT, "waypoint", False, False, id="waypoint"
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            ANNOTATED_WAYPOINT,
            "waypoint",
            True,
            False,
            id="waypoint-xfcc-annotation-before-gateway",
        ),
        pytest.param(
            {"server": "istio-envoy"},
            THROUGH_WAYPOINT,
            "local-reply",
            False,
            False,
            id="waypoint-local-reply",
        ),
        pytest.param(
            {"server": "envoy", **UPSTREAM},
            THROUGH_WAYPOINT,
            "client-sidecar",
            False,
            False,
            id="waypoint-hop-needs-istio-envoy",
        ),
        pytest.param({}, ZTUNNEL_ONLY, "ztunnel", False, False, id="ztunnel"),
        pytest.param({"server": "uvicorn"}, ZTUNNEL_ONLY, "ztunnel", False, False, id="ztunnel-other-server"),
        pytest.param({}, {**ZTUNNEL_ONLY, "hop": "none"}, "bypass", False, False, id="no-mesh-is-bypass"),
        pytest.param(
            {"server": "Envoy", **UPSTREAM},
            {**XFCC, "attempt": 2},
            "client-sidecar",
            True,
            True,
            id="retried-case-insensitive",
        ),
    ],
)
def test_classify(
    headers: dict[str, str], mesh: dict[str, object] | None, kind: str, mtls: bool, retried: bool
) -> None:
    document: object = MISSING if mesh is None else {"mesh": mesh}
    fp = classify(headers, document)
    assert (fp.kind, fp.mtls, fp.retried) == (kind, mtls, retried)


def test_identity_is_the_callers_spiffe_id() -> None:
    fp = classify({"server": "envoy", **UPSTREAM}, {"mesh": XFCC})
    assert fp.identity == "spiffe://cluster.local/ns/echo/sa/netdebug"


def test_attempt_bool_is_not_a_retry() -> None:
    assert not classify({}, {"mesh": {"attempt": True}}).retried


@pytest.mark.parametrize(
    ("headers", "mesh", "evidence"),
    [
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            NO_SIDECAR_BEHIND_GATEWAY,
            ("server: istio-envoy", "x-envoy-decorator-operation", "x-envoy-attempt-count"),
            id="caller-side",
        ),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            XFCC,
            ("server: istio-envoy", "x-forwarded-client-cert"),
            id="mtls",
        ),
        pytest.param(
            {"server": "envoy"}, None, ("server: envoy", "no x-envoy-upstream-service-time"), id="local"
        ),
        pytest.param({}, None, (), id="bypass"),
        pytest.param(
            {"server": "istio-envoy", **UPSTREAM},
            THROUGH_WAYPOINT,
            (
                "server: istio-envoy",
                "mesh.hop: waypoint",
                "x-request-id",
                "x-forwarded-proto",
                "pod without sidecar",
            ),
            id="waypoint",
        ),
        pytest.param(
            {},
            ZTUNNEL_ONLY,
            ("no Envoy server header", "mesh.hop: ztunnel", "no Envoy header", "pod captured by ztunnel"),
            id="ztunnel",
        ),
    ],
)
def test_evidence_names_what_decided(
    headers: dict[str, str], mesh: dict[str, object] | None, evidence: tuple[str, ...]
) -> None:
    document: object = MISSING if mesh is None else {"mesh": mesh}
    assert classify(headers, document).evidence == evidence


def test_routed_follows_the_kind() -> None:
    routed = classify({"server": "istio-envoy", **UPSTREAM}, {"mesh": NO_SIDECAR_BEHIND_GATEWAY})
    unrouted = classify({"server": "istio-envoy", **UPSTREAM}, {"mesh": INBOUND_ONLY})
    assert routed.routed
    assert not unrouted.routed
    assert classify({"server": "istio-envoy", **UPSTREAM}, {"mesh": THROUGH_WAYPOINT}).routed
    assert not classify({}, {"mesh": ZTUNNEL_ONLY}).routed


def test_rules_are_an_ordered_table() -> None:
    # A new path kind is a new row; rows are tried in order, so an earlier row wins.
    evidence = gather({"server": "istio-envoy", **UPSTREAM}, {"mesh": NO_SIDECAR_BEHIND_GATEWAY})
    assert decide(evidence).kind == "gateway"
    without_gateway_row = tuple(rule for rule in RULES if rule[0] != "gateway")
    assert decide(evidence, without_gateway_row).kind == "server-sidecar-only"
    assert RULES[-1][0] == "bypass"
