"""The http step's expectations (pure): status patterns, headers, body, Envoy local replies."""

from __future__ import annotations

import pytest

from netdebug.plan.model import HttpExpect, check_http
from netdebug.probe.fingerprint import is_local_reply

ENVOY_UPSTREAM = {"server": "envoy", "x-envoy-upstream-service-time": "3"}
ENVOY_LOCAL = {"server": "envoy"}
GATEWAY_LOCAL = {"server": "istio-envoy", "content-length": "0"}
APP = {"server": "uvicorn", "x-echo-version": "v1"}

LOCAL_REPLY_CASES = [
    pytest.param(ENVOY_LOCAL, True, id="client-sidecar-404"),
    pytest.param(GATEWAY_LOCAL, True, id="gateway-local"),
    pytest.param({"server": " Envoy "}, True, id="case-and-space-insensitive"),
    pytest.param(ENVOY_UPSTREAM, False, id="upstream-answered"),
    pytest.param(APP, False, id="no-envoy"),
    pytest.param({}, False, id="no-server-header"),
]


@pytest.mark.parametrize(("headers", "expected"), LOCAL_REPLY_CASES)
def test_is_local_reply(headers: dict[str, str], expected: bool) -> None:
    assert is_local_reply(headers) is expected


CHECK_CASES = [
    pytest.param(HttpExpect(), 200, APP, "", [], id="default-accepts-2xx"),
    pytest.param(HttpExpect(), 302, APP, "", [], id="default-accepts-3xx"),
    pytest.param(
        HttpExpect(),
        503,
        APP,
        "",
        ["status 503, expected < 400 (set expect.status to check for another)"],
        id="default-rejects-5xx",
    ),
    pytest.param(HttpExpect(local_reply=True), 404, ENVOY_LOCAL, "", [], id="local-reply-any-status"),
    pytest.param(HttpExpect(status=("404",)), 404, ENVOY_LOCAL, "", [], id="exact-status"),
    pytest.param(HttpExpect(status=("2xx",)), 204, APP, "", [], id="status-class"),
    pytest.param(HttpExpect(status=("301", "302")), 302, APP, "", [], id="status-list"),
    pytest.param(
        HttpExpect(status=("2xx", "404")), 503, APP, "", ["status 503, expected 2xx or 404"], id="status-miss"
    ),
    pytest.param(HttpExpect(status=("5x3",)), 503, APP, "", [], id="status-pattern-middle"),
    pytest.param(HttpExpect(headers=(("x-echo-version", "v1"),)), 200, APP, "", [], id="header-value"),
    pytest.param(
        HttpExpect(headers=(("x-echo-version", "v2"),)),
        200,
        APP,
        "",
        ["header x-echo-version: 'v1', expected 'v2'"],
        id="header-wrong",
    ),
    pytest.param(
        HttpExpect(headers=(("x-echo-pod", "p"),)),
        200,
        APP,
        "",
        ["header x-echo-pod missing, expected 'p'"],
        id="header-missing",
    ),
    pytest.param(HttpExpect(headers_present=("server",)), 200, APP, "", [], id="present"),
    pytest.param(
        HttpExpect(headers_present=("x-request-id",)),
        200,
        APP,
        "",
        ["header x-request-id missing"],
        id="present-missing",
    ),
    pytest.param(
        HttpExpect(headers_absent=("x-envoy-upstream-service-time",)),
        200,
        ENVOY_UPSTREAM,
        "",
        ["header x-envoy-upstream-service-time present ('3'), expected absent"],
        id="absent-but-present",
    ),
    pytest.param(HttpExpect(body_contains=("v1", "echo")), 200, APP, "echo v1", [], id="body-contains"),
    pytest.param(
        HttpExpect(body_contains=("v2",)), 200, APP, "echo v1", ["body lacks 'v2'"], id="body-lacks"
    ),
    pytest.param(
        HttpExpect(body_regex=r'"version":\s*"v[12]"'), 200, APP, '{"version": "v2"}', [], id="regex"
    ),
    pytest.param(
        HttpExpect(body_regex="^v3$"), 200, APP, "v1", ["body does not match /^v3$/"], id="regex-miss"
    ),
    pytest.param(
        HttpExpect(status=("404",), local_reply=True),
        404,
        {"server": "envoy", "x-envoy-upstream-service-time": "1"},
        "",
        [
            "expected an Envoy local reply, got server 'envoy' "
            "with x-envoy-upstream-service-time (an upstream answered)"
        ],
        id="404-from-the-app-is-no-local-reply",
    ),
    pytest.param(
        HttpExpect(local_reply=True),
        404,
        APP,
        "",
        ["expected an Envoy local reply, got server 'uvicorn'"],
        id="no-envoy-at-all",
    ),
    pytest.param(
        HttpExpect(local_reply=False),
        404,
        ENVOY_LOCAL,
        "",
        [
            "status 404, expected < 400 (set expect.status to check for another)",
            "got an Envoy local reply (no x-envoy-upstream-service-time), expected an upstream",
        ],
        id="unexpected-local-reply",
    ),
    pytest.param(HttpExpect(local_reply=False), 200, ENVOY_UPSTREAM, "", [], id="upstream-as-expected"),
]


@pytest.mark.parametrize(("expect", "status", "headers", "body", "failures"), CHECK_CASES)
def test_check_http(
    expect: HttpExpect, status: int, headers: dict[str, str], body: str, failures: list[str]
) -> None:
    assert check_http(expect, status, headers, body) == failures
