from __future__ import annotations

from typing import Any

import pytest

from echo.mesh import (
    UNKNOWN_POD,
    PodMesh,
    mesh_info,
    parse_attempt,
    parse_b3_multi,
    parse_b3_single,
    parse_traceparent,
    parse_xfcc,
    pod_mesh,
    trace_info,
)

ISTIO_XFCC = (
    "By=spiffe://cluster.local/ns/echo/sa/echo;"
    "Hash=4f6b1c7e0d2a9b8c3e5f7a1d2c4b6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d;"
    'Subject="";URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account'
)


def cert(
    by: str | None = None,
    hash: str | None = None,
    uri: str | None = None,
    subject: str | None = None,
    dns: list[str] | None = None,
) -> dict[str, Any]:
    return {"by": by, "hash": hash, "uri": uri, "subject": subject, "dns": dns or []}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            ISTIO_XFCC,
            [
                cert(
                    by="spiffe://cluster.local/ns/echo/sa/echo",
                    hash="4f6b1c7e0d2a9b8c3e5f7a1d2c4b6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d",
                    subject="",
                    uri="spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                )
            ],
            id="istio-sidecar",
        ),
        pytest.param(
            "By=http://frontend.lyft.com;Hash=468e;"
            'Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";'
            "URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com",
            [
                cert(
                    by="http://frontend.lyft.com",
                    hash="468e",
                    subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client",
                    uri="http://testclient.lyft.com",
                    dns=["lyft.com", "www.lyft.com"],
                )
            ],
            id="envoy-doc-dns",
        ),
        pytest.param(
            "By=http://frontend.lyft.com;Hash=468e;URI=http://testclient.lyft.com,"
            "By=http://backend.lyft.com;Hash=9ba6;URI=http://frontend.lyft.com",
            [
                cert(by="http://frontend.lyft.com", hash="468e", uri="http://testclient.lyft.com"),
                cert(by="http://backend.lyft.com", hash="9ba6", uri="http://frontend.lyft.com"),
            ],
            id="two-hops",
        ),
        pytest.param(
            r'Subject="CN=a\"b, O=x;y=z";URI=spiffe://td/ns/a/sa/b',
            [cert(subject='CN=a"b, O=x;y=z', uri="spiffe://td/ns/a/sa/b")],
            id="quoted-escapes-separators",
        ),
        pytest.param(
            "by=spiffe://a;uri=spiffe://b;URI=spiffe://c",
            [cert(by="spiffe://a", uri="spiffe://b")],
            id="keys-case-insensitive-first-uri-kept",
        ),
        pytest.param(
            'Cert="-----BEGIN%20CERTIFICATE-----";Chain="x";URI=spiffe://x',
            [cert(uri="spiffe://x")],
            id="cert-and-chain-ignored",
        ),
        pytest.param(" , ,", [], id="empty-elements"),
        pytest.param("garbage", [], id="no-pairs"),
        pytest.param("Foo=bar", [], id="unknown-keys-only"),
        pytest.param(
            'Subject="unterminated;URI=x', [cert(subject='"unterminated;URI=x')], id="unterminated-quote"
        ),
    ],
)
def test_parse_xfcc(value: str, expected: list[dict[str, Any]]) -> None:
    assert parse_xfcc(value) == expected


@pytest.mark.parametrize(
    ("headers", "sidecar", "evidence"),
    [
        pytest.param({}, False, [], id="nothing"),
        pytest.param({"x-forwarded-client-cert": ISTIO_XFCC}, True, ["x-forwarded-client-cert"], id="xfcc"),
        pytest.param({"x-envoy-attempt-count": "1"}, True, ["x-envoy-attempt-count"], id="attempt-count"),
        pytest.param({"x-request-id": "r"}, True, ["x-request-id"], id="request-id-only"),
        pytest.param(
            {"x-request-id": "r", "x-envoy-attempt-count": "1", "x-forwarded-client-cert": ISTIO_XFCC},
            True,
            ["x-forwarded-client-cert", "x-envoy-attempt-count", "x-request-id"],
            id="full-istio-strongest-first",
        ),
        pytest.param(
            {"x-request-id": "r", "x-envoy-decorator-operation": "echo-route:80/echo*"},
            False,
            ["x-envoy-decorator-operation"],
            id="decorator-means-no-inbound-sidecar",
        ),
        pytest.param(
            {"x-envoy-peer-metadata": "Cg==", "x-envoy-peer-metadata-id": "sidecar~1", "x-request-id": "r"},
            False,
            ["x-envoy-peer-metadata", "x-envoy-peer-metadata-id"],
            id="peer-metadata-not-consumed",
        ),
        pytest.param({"x-forwarded-for": "1.2.3.4"}, False, [], id="xff-alone-proves-nothing"),
    ],
)
def test_sidecar_rule(headers: dict[str, str], sidecar: bool, evidence: list[str]) -> None:
    info = mesh_info(headers)
    assert info["sidecar"] is sidecar
    assert info["evidence"] == evidence


SIDECAR_POD = PodMesh(sidecar=True, ambient=False)
AMBIENT_POD = PodMesh(sidecar=False, ambient=True)
PLAIN_POD = PodMesh(sidecar=False, ambient=False)  # both files mounted: neither sidecar nor ztunnel
NO_SIDECAR_POD = PodMesh(sidecar=False, ambient=None)  # labels file only
WAYPOINT_XFCC = (
    "By=spiffe://cluster.local/ns/echo/sa/echo-waypoint;URI=spiffe://cluster.local/ns/echo/sa/netdebug"
)
# What a waypoint leaves (listener_waypoint.go; measured on mesh up's waypoint).
WAYPOINT = {"x-request-id": "r", "x-forwarded-proto": "http"}
GATEWAY = {
    "x-forwarded-for": "192.0.2.2",
    "x-envoy-external-address": "192.0.2.2",
    "x-request-id": "r",
    "x-envoy-decorator-operation": "echo~echo-gateway~istio-autogenerated-k8s-gateway~http~echo.local:80/*",
    "x-envoy-attempt-count": "1",
}
CLIENT_SIDECAR = {
    "x-request-id": "r",
    "x-envoy-attempt-count": "1",
    "x-envoy-decorator-operation": "echo-route:80/echo*",
}


@pytest.mark.parametrize(
    ("headers", "pod", "hop", "hop_evidence", "sidecar"),
    [
        pytest.param({}, UNKNOWN_POD, "none", [], False, id="nothing"),
        pytest.param(
            {"x-forwarded-client-cert": ISTIO_XFCC, "x-request-id": "r"},
            SIDECAR_POD,
            "sidecar",
            ["x-forwarded-client-cert", "x-request-id"],
            True,
            id="own-sidecar",
        ),
        pytest.param(
            WAYPOINT, UNKNOWN_POD, "sidecar", ["x-request-id"], True, id="waypoint-unknown-pod-is-sidecar"
        ),
        pytest.param(
            WAYPOINT,
            AMBIENT_POD,
            "waypoint",
            ["x-request-id", "x-forwarded-proto", "pod without sidecar"],
            False,
            id="waypoint",
        ),
        pytest.param(
            WAYPOINT,
            NO_SIDECAR_POD,
            "waypoint",
            ["x-request-id", "x-forwarded-proto", "pod without sidecar"],
            False,
            id="waypoint-labels-only",
        ),
        pytest.param(WAYPOINT, PLAIN_POD, "none", [], False, id="request-id-at-a-pod-outside-the-mesh"),
        pytest.param(
            {**WAYPOINT, "x-forwarded-client-cert": WAYPOINT_XFCC},
            AMBIENT_POD,
            "waypoint",
            ["x-forwarded-client-cert", "x-request-id", "pod without sidecar"],
            False,
            id="waypoint-xfcc-annotation",
        ),
        pytest.param(
            {**GATEWAY, "x-forwarded-client-cert": WAYPOINT_XFCC},
            AMBIENT_POD,
            "waypoint",
            ["x-forwarded-client-cert", "x-request-id", "pod without sidecar"],
            False,
            id="gateway-then-annotated-waypoint",
        ),
        pytest.param(
            GATEWAY,
            AMBIENT_POD,
            "gateway",
            ["x-forwarded-for", "x-envoy-external-address"],
            False,
            id="gateway-to-ambient-pod",
        ),
        pytest.param(
            CLIENT_SIDECAR,
            AMBIENT_POD,
            "client-sidecar",
            ["x-envoy-decorator-operation", "x-envoy-attempt-count"],
            False,
            id="sidecar-caller-to-ambient-pod",
        ),
        pytest.param(
            CLIENT_SIDECAR,
            UNKNOWN_POD,
            "client-sidecar",
            ["x-envoy-decorator-operation", "x-envoy-attempt-count"],
            False,
            id="sidecar-caller-to-pod-without-sidecar",
        ),
        pytest.param(
            {"x-envoy-attempt-count": "1", "x-request-id": "r"},
            PLAIN_POD,
            "client-sidecar",
            ["x-envoy-attempt-count"],
            False,
            id="attempt-count-at-a-pod-known-without-sidecar",
        ),
        pytest.param(
            {}, AMBIENT_POD, "ztunnel", ["no Envoy header", "pod captured by ztunnel"], False, id="ztunnel"
        ),
        pytest.param(
            {"x-forwarded-proto": "https", "user-agent": "curl"},
            AMBIENT_POD,
            "ztunnel",
            ["no Envoy header", "pod captured by ztunnel"],
            False,
            id="ztunnel-client-headers-pass",
        ),
        pytest.param({}, PLAIN_POD, "none", [], False, id="no-mesh"),
    ],
)
def test_hop_rule(
    headers: dict[str, str], pod: PodMesh, hop: str, hop_evidence: list[str], sidecar: bool
) -> None:
    info = mesh_info(headers, pod)
    assert (info["hop"], info["hop_evidence"], info["sidecar"]) == (hop, hop_evidence, sidecar)
    assert info["dataplane"] == pod.dataplane


@pytest.mark.parametrize(
    ("labels", "annotations", "pod", "dataplane"),
    [
        pytest.param(None, None, UNKNOWN_POD, None, id="no-files"),
        pytest.param({"app": "echo"}, None, NO_SIDECAR_POD, None, id="labels-without-tls-mode"),
        pytest.param(
            {"security.istio.io/tlsMode": "istio"}, None, SIDECAR_POD, "sidecar", id="injected-label"
        ),
        pytest.param(
            None, {"sidecar.istio.io/status": "{}"}, SIDECAR_POD, "sidecar", id="injected-annotation"
        ),
        pytest.param({}, {"ambient.istio.io/redirection": "enabled"}, AMBIENT_POD, "ambient", id="captured"),
        pytest.param({}, {"ambient.istio.io/redirection": "disabled"}, PLAIN_POD, "none", id="opted-out"),
        pytest.param({}, {}, PLAIN_POD, "none", id="neither"),
        pytest.param(
            {"security.istio.io/tlsMode": "istio"},
            {"ambient.istio.io/redirection": "enabled"},
            SIDECAR_POD,
            "sidecar",
            id="sidecar-wins",
        ),
    ],
)
def test_pod_mesh(
    labels: dict[str, str] | None, annotations: dict[str, str] | None, pod: PodMesh, dataplane: str | None
) -> None:
    assert pod_mesh(labels, annotations) == pod
    assert pod.dataplane == dataplane


def test_mesh_info_fields() -> None:
    two_hops = "By=spiffe://td/ns/gw/sa/gw;URI=spiffe://td/ns/a/sa/client,By=spiffe://td/ns/echo/sa/echo;URI=spiffe://td/ns/gw/sa/gw"
    info = mesh_info(
        {
            "x-forwarded-client-cert": two_hops,
            "x-request-id": "abc-123",
            "x-envoy-attempt-count": "2",
            "x-forwarded-for": "203.0.113.9, 10.0.0.5 ,",
            "x-envoy-external-address": "203.0.113.9",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        }
    )
    assert info["request_id"] == "abc-123"
    assert info["attempt"] == 2
    assert info["forwarded_for"] == ["203.0.113.9", "10.0.0.5"]
    assert info["external_address"] == "203.0.113.9"
    # The last element was appended by the sidecar in front of us: its URI is our direct caller.
    assert info["client_identity"] == "spiffe://td/ns/gw/sa/gw"
    assert len(info["forwarded_client_cert"]) == 2
    assert info["decorator"] is None
    assert info["trace"] == {
        "w3c": {
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "sampled": False,
            "flags": "00",
            "version": "00",
        }
    }


def test_mesh_info_empty() -> None:
    assert mesh_info({}) == {
        "sidecar": False,
        "evidence": [],
        "hop": "none",
        "hop_evidence": [],
        "dataplane": None,
        "request_id": None,
        "trace": None,
        "attempt": None,
        "forwarded_for": [],
        "forwarded_client_cert": [],
        "client_identity": None,
        "decorator": None,
        "external_address": None,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("1", 1, id="one"),
        pytest.param(" 3 ", 3, id="spaces"),
        pytest.param("0", 0, id="zero"),
        pytest.param("-1", None, id="negative"),
        pytest.param("two", None, id="word"),
        pytest.param("", None, id="empty"),
        pytest.param("²", None, id="unicode-digit"),
    ],
)
def test_parse_attempt(value: str | None, expected: int | None) -> None:
    assert parse_attempt(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            {
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "sampled": True,
                "flags": "01",
                "version": "00",
            },
            id="sampled",
        ),
        pytest.param(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-future",
            {
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "sampled": True,
                "flags": "03",
                "version": "01",
            },
            id="future-version-extra-field",
        ),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", None, id="v00-extra-field"),
        pytest.param("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None, id="version-ff"),
        pytest.param("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None, id="zero-trace"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None, id="zero-span"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None, id="short-trace"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", None, id="non-hex"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736", None, id="too-few"),
    ],
)
def test_parse_traceparent(value: str, expected: dict[str, Any] | None) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            {
                "trace_id": "80f198ee56343ba864fe8b2a57d3eff7",
                "span_id": "e457b5a2e4d86bd1",
                "parent_span_id": "05e3ac9a4f6e3b90",
                "sampled": True,
                "debug": False,
            },
            id="full",
        ),
        pytest.param(
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1",
            {
                "trace_id": "64fe8b2a57d3eff7",
                "span_id": "e457b5a2e4d86bd1",
                "parent_span_id": None,
                "sampled": None,
                "debug": False,
            },
            id="64-bit-no-sampling",
        ),
        pytest.param(
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
            {
                "trace_id": "64fe8b2a57d3eff7",
                "span_id": "e457b5a2e4d86bd1",
                "parent_span_id": None,
                "sampled": True,
                "debug": True,
            },
            id="debug",
        ),
        pytest.param(
            "0",
            {"trace_id": None, "span_id": None, "parent_span_id": None, "sampled": False, "debug": False},
            id="deny",
        ),
        pytest.param("x", None, id="bad-sampling-only"),
        pytest.param("64fe8b2a57d3eff7-e457b5a2e4d86bd1-7", None, id="bad-sampled"),
        pytest.param("64fe8b2a57d3eff7-e457", None, id="short-span"),
        pytest.param("64fe8b2a57d3eff7-zzzzzzzzzzzzzzzz", None, id="non-hex-span"),
        pytest.param("64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-zz", None, id="bad-parent"),
        pytest.param("a-b-c-d-e", None, id="too-many"),
    ],
)
def test_parse_b3_single(value: str, expected: dict[str, Any] | None) -> None:
    assert parse_b3_single(value) == expected


def test_b3_multi_and_precedence() -> None:
    multi = {
        "x-b3-traceid": "80F198EE56343BA864FE8B2A57D3EFF7",
        "x-b3-spanid": "e457b5a2e4d86bd1",
        "x-b3-parentspanid": "05e3ac9a4f6e3b90",
        "x-b3-sampled": "1",
    }
    assert parse_b3_multi(multi) == {
        "trace_id": "80f198ee56343ba864fe8b2a57d3eff7",
        "span_id": "e457b5a2e4d86bd1",
        "parent_span_id": "05e3ac9a4f6e3b90",
        "sampled": True,
        "debug": False,
    }
    assert parse_b3_multi({"x-b3-flags": "1"}) == {
        "trace_id": None,
        "span_id": None,
        "parent_span_id": None,
        "sampled": True,
        "debug": True,
    }
    assert parse_b3_multi({}) is None
    # A well-formed single header wins over the multi headers; a malformed one falls back to them.
    single = trace_info({**multi, "b3": "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0"})
    assert single is not None
    assert single["b3"] == parse_b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")
    fallback = trace_info({**multi, "b3": "junk"})
    assert fallback is not None
    assert fallback["b3"] == parse_b3_multi(multi)


def test_trace_info_both_formats_and_malformed() -> None:
    info = trace_info(
        {
            "traceparent": "junk",
            "tracestate": "vendor=1",
            "b3": "64fe8b2a57d3eff7-e457b5a2e4d86bd1",
        }
    )
    assert info == {
        "w3c": {"error": "malformed traceparent", "raw": "junk"},
        "tracestate": "vendor=1",
        "b3": parse_b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1"),
    }
    assert trace_info({}) is None
