from __future__ import annotations

import pytest

from netdebug.probe.attribution import MISSING
from netdebug.probe.fingerprint import classify

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
        pytest.param({"server": "envoy"}, None, "local-reply", False, False, id="local-reply-404"),
        pytest.param({"server": "istio-envoy"}, None, "local-reply", False, False, id="local-reply-gateway"),
        pytest.param({"server": "uvicorn"}, {"sidecar": False}, "bypass", False, False, id="bypass"),
        pytest.param({}, None, "bypass", False, False, id="bypass-no-json"),
        pytest.param({}, NO_XFCC, "server-sidecar-only", False, False, id="echo-saw-envoy-only"),
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
