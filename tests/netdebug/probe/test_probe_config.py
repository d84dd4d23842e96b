from __future__ import annotations

from pathlib import Path

import pytest

from netdebug.context import UsageError
from netdebug.probe.command import probe_config_from_mapping
from netdebug.probe.config import DEFAULT_REQUESTS, DEFAULT_RPS, build_probe_config
from tests.procs import REPO

URL = {"url": "http://echo-service/echo"}


def test_defaults() -> None:
    c = build_probe_config(URL, {})
    assert (c.requests, c.rps, c.concurrency, c.duration) == (DEFAULT_REQUESTS, DEFAULT_RPS, None, None)
    assert (c.tolerance, c.alpha, c.max_error_rate, c.timeout) == (5.0, 0.001, 0.05, 5.0)
    assert c.expected is None
    assert c.output == "text"
    assert c.wait_sidecar == "auto"


@pytest.mark.parametrize(
    ("values", "env", "attr", "expected"),
    [
        pytest.param({}, {"NETDEBUG_RPS": "0.5"}, "rps", 0.5, id="env-fractional-rps"),
        pytest.param({"rps": "20"}, {"NETDEBUG_RPS": "5"}, "rps", 20.0, id="flag-beats-env"),
        pytest.param({}, {"NETDEBUG_REQUESTS": "1000"}, "requests", 1000, id="env-requests"),
        pytest.param({"duration": "1.5m"}, {}, "duration", 90.0, id="duration-minutes"),
        pytest.param({"duration": "500ms"}, {}, "requests", None, id="duration-means-no-count"),
        pytest.param({"concurrency": "8"}, {}, "rps", None, id="closed-model"),
        pytest.param(
            {},
            {"NETDEBUG_EXPECT": "v1=3,v2=1"},
            "expected",
            (("v1", 75.0), ("v2", 25.0)),
            id="env-expect-normalised",
        ),
        pytest.param(
            {"expect": {"v1": 90, "v2": 10}},
            {},
            "expected",
            (("v1", 90.0), ("v2", 10.0)),
            id="mapping-expect",
        ),
        pytest.param({}, {"NETDEBUG_HTTP2": "true"}, "http2", True, id="env-bool"),
        pytest.param(
            {"new_connection": True},
            {"NETDEBUG_NEW_CONNECTION": "no"},
            "new_connection",
            True,
            id="flag-bool-wins",
        ),
        pytest.param(
            {"headers": ["host: echo.local", "x-a: b"]},
            {},
            "headers",
            (("host", "echo.local"), ("x-a", "b")),
            id="headers-list",
        ),
        pytest.param(
            {},
            {"NETDEBUG_HEADERS": "host: echo.local\nx-a: b"},
            "headers",
            (("host", "echo.local"), ("x-a", "b")),
            id="headers-env-lines",
        ),
        pytest.param(
            {"headers": {"host": "echo.local"}},
            {},
            "headers",
            (("host", "echo.local"),),
            id="headers-mapping",
        ),
        pytest.param(
            {"resolve": ["echo.local:80:127.0.0.1"]},
            {},
            "resolve",
            (("echo.local", 80, "127.0.0.1"),),
            id="resolve",
        ),
        pytest.param(
            {"connect_to": ["::127.0.0.1:8080"]},
            {},
            "connect_to",
            (("", None, "127.0.0.1", 8080),),
            id="connect-to-any",
        ),
        pytest.param(
            {"require_path": ["client-sidecar"]}, {}, "require_path", ("client-sidecar",), id="require-path"
        ),
        pytest.param(
            {"url": "echo-service:8080/echo"}, {}, "url", "http://echo-service:8080/echo", id="scheme-added"
        ),
        pytest.param({"data": "x=1"}, {}, "method", "POST", id="data-means-post"),
        pytest.param({"output": "JSON"}, {}, "output", "json", id="output-case"),
        pytest.param({"max_error_rate": "0"}, {}, "max_error_rate", 0.0, id="zero-error-rate"),
    ],
)
def test_values_and_precedence(
    values: dict[str, object], env: dict[str, str], attr: str, expected: object
) -> None:
    c = build_probe_config({**URL, **values}, env)
    assert getattr(c, attr) == expected


@pytest.mark.parametrize(
    ("values", "env", "message"),
    [
        pytest.param({"url": None}, {}, "URL is required", id="no-url"),
        pytest.param({"url": "ftp://x/"}, {}, "not an http", id="bad-scheme"),
        pytest.param({"url": "http://x:99999/"}, {}, "invalid port", id="bad-port"),
        pytest.param({"url": "http://exa mple/"}, {}, "invalid host name", id="space-in-host"),
        pytest.param({"url": "http://a_b!/"}, {}, "invalid host name", id="bad-host-char"),
        pytest.param({"rps": "0"}, {}, "must be > 0", id="zero-rps"),
        pytest.param({"rps": "fast"}, {}, "not a valid number", id="rps-word"),
        pytest.param({}, {"NETDEBUG_REQUESTS": "-3"}, "NETDEBUG_REQUESTS: -3 must be >= 1", id="env-named"),
        pytest.param({"rps": "5", "concurrency": "2"}, {}, "exclude each other", id="open-and-closed"),
        pytest.param(
            {"expect": "v1=75,v2=x"}, {}, "--expect: weight in 'v2=x' is not a number", id="bad-expect"
        ),
        pytest.param({"expect": "v1=1", "expect_from": "f.yaml"}, {}, "not both", id="both-expects"),
        pytest.param(
            {"expect_from": "/nonexistent/vs.yaml"}, {}, "no such file or directory", id="expect-from-missing"
        ),
        pytest.param({"headers": ["no-colon"]}, {}, "not 'Name: value'", id="bad-header"),
        pytest.param({"resolve": ["echo.local:80"]}, {}, "HOST:PORT:ADDRESS", id="bad-resolve"),
        pytest.param({"by": "cookie:x"}, {}, "unknown kind", id="bad-by"),
        pytest.param({"require_path": ["sidecar"]}, {}, "unknown path kind", id="bad-kind"),
        pytest.param({"tolerance": "0"}, {}, "must be > 0", id="zero-tolerance"),
        pytest.param({"http2": "maybe"}, {}, "not a boolean", id="bad-bool"),
        pytest.param({"output": "xml"}, {}, "not one of text, json", id="bad-output"),
        pytest.param({"key": "k.pem"}, {}, "--key needs --cert", id="key-without-cert"),
        pytest.param({"cacert": "/nonexistent/ca.pem"}, {}, "no such file", id="missing-ca"),
        pytest.param({"early_stop": True, "duration": "10s"}, {}, "needs -n", id="early-stop-needs-n"),
    ],
)
def test_usage_errors(values: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_probe_config({**URL, **values}, env)


def test_expect_from_file(tmp_path: Path) -> None:
    vs = tmp_path / "vs.yaml"
    vs.write_text(
        "kind: VirtualService\nspec:\n  hosts: [echo.local]\n  http:\n  - route:\n"
        "    - {destination: {host: echo, subset: v1}, weight: 60}\n"
        "    - {destination: {host: echo, subset: v2}, weight: 40}\n"
    )
    c = build_probe_config(
        {"url": "http://127.0.0.1:8080/echo", "headers": ["Host: echo.local"], "expect_from": str(vs)}, {}
    )
    assert c.expected == (("v1", 60.0), ("v2", 40.0))
    assert c.expect_source == str(vs)


def test_plan_mapping_api() -> None:
    c = probe_config_from_mapping(
        {
            "url": "http://echo-service/echo",
            "requests": 1000,
            "rps": 50,
            "expect": {"v1": 75, "v2": 25},
            "require_path": ["client-sidecar"],
            "headers": {"host": "echo.local"},
            "tolerance": 5,
            "new_connection": True,
            "http2": False,
            "timeout": 2,
        },
        {"NETDEBUG_ALPHA": "0.01"},
    )
    assert c.requests == 1000
    assert c.rps == 50.0
    assert c.alpha == 0.01
    assert c.live == "never"
    assert c.expected == (("v1", 75.0), ("v2", 25.0))
    assert c.new_connection
    with pytest.raises(UsageError, match="unknown probe option"):
        probe_config_from_mapping({"url": "http://x/", "rsp": 5}, {})


def test_expect_from_takes_what_mesh_up_takes(tmp_path: Path, kubectl: str) -> None:
    """A directory of YAML files, or a kustomization (rendered by kubectl), as `mesh up DIR`."""
    url = "http://echo-service.echo.svc.cluster.local/echo"
    overlay = REPO / "k8s" / "overlays" / "istio"
    config = build_probe_config({"url": url, "expect_from": str(overlay)}, {})
    assert config.expected == (("v1", 75.0), ("v2", 25.0))
    assert config.expect_source == str(overlay)
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    (rendered / "a-other.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: echo}\n")
    (rendered / "b-vs.yml").write_text(
        "kind: VirtualService\nspec:\n  hosts: [echo.local]\n  http:\n  - route:\n"
        "    - {destination: {host: e, subset: v1}, weight: 9}\n"
        "    - {destination: {host: e, subset: v2}, weight: 1}\n"
    )
    (rendered / "notes.txt").write_text("not read")
    config = build_probe_config({"url": "http://echo.local/", "expect_from": str(rendered)}, {})
    assert config.expected == (("v1", 90.0), ("v2", 10.0))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=r"no kustomization and no \.yaml files"):
        build_probe_config({"url": url, "expect_from": str(empty)}, {})
