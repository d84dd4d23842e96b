from __future__ import annotations

import io
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from echo import __version__
from echo.config import (
    DEFAULT_ADMIN_PREFIX,
    DEFAULT_MAX_BODY_BYTES,
    SHORT_USAGE,
    ConfigError,
    EchoConfig,
    env_var_names,
    load_config,
    usage,
)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "file.pem"
    path.write_text("not parsed here\n")
    return path


def test_defaults_match_mendhak() -> None:
    config = load_config([], {})
    assert config == EchoConfig()
    assert (config.http_port, config.https_port, config.h2c_port) == (8080, 8443, None)
    assert config.bind == "0.0.0.0"
    assert config.echo_back_to_client is True
    assert config.admin_prefix == DEFAULT_ADMIN_PREFIX == "/_echo/"
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert not config.cors_enabled


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param(
            [],
            {"HTTP_PORT": "8888", "HTTPS_PORT": "9999"},
            {"http_port": 8888, "https_port": 9999},
            id="ports",
        ),
        pytest.param([], {"HTTPS_PORT": "off"}, {"https_port": None}, id="https-off"),
        pytest.param([], {"HTTPS_PORT": "OFF"}, {"https_port": None}, id="https-off-any-case"),
        pytest.param(["--https-port", "off"], {}, {"https_port": None}, id="https-off-flag"),
        pytest.param([], {"H2C_PORT": "8081"}, {"h2c_port": 8081}, id="h2c"),
        pytest.param(["--http-port", "1"], {"HTTP_PORT": "2"}, {"http_port": 1}, id="flag-beats-env"),
        pytest.param([], {"HTTP_PORT": ""}, {"http_port": 8080}, id="empty-env-is-unset"),
        pytest.param([], {"ECHO_BIND": "127.0.0.1"}, {"bind": "127.0.0.1"}, id="bind-env"),
        pytest.param(["--bind", "::"], {"ECHO_BIND": "127.0.0.1"}, {"bind": "::"}, id="bind-flag"),
        pytest.param([], {"MTLS_ENABLE": "true"}, {"mtls_enable": True}, id="mtls"),
        pytest.param(["--mtls"], {"MTLS_ENABLE": "false"}, {"mtls_enable": True}, id="mtls-flag"),
        pytest.param([], {"ECHO_BACK_TO_CLIENT": "false"}, {"echo_back_to_client": False}, id="no-echo-back"),
        pytest.param([], {"ECHO_BACK_TO_CLIENT": "true"}, {"echo_back_to_client": True}, id="echo-back"),
        pytest.param([], {"ECHO_INCLUDE_ENV_VARS": "1"}, {"echo_include_env_vars": True}, id="include-env"),
        pytest.param([], {"JWT_HEADER": "Authentication"}, {"jwt_header": "Authentication"}, id="jwt"),
        pytest.param([], {"DISABLE_REQUEST_LOGS": "true"}, {"disable_request_logs": True}, id="no-logs"),
        pytest.param(["--no-request-logs"], {}, {"disable_request_logs": True}, id="no-logs-flag"),
        pytest.param(
            [], {"LOG_WITHOUT_NEWLINE": "yes"}, {"log_without_newline": True}, id="log-without-newline"
        ),
        pytest.param([], {"PRESERVE_HEADER_CASE": "on"}, {"preserve_header_case": True}, id="preserve-case"),
        pytest.param([], {"MAX_HEADER_SIZE": "4096"}, {"max_header_size": 4096}, id="max-header"),
        pytest.param(
            ["--max-header-size", "1_000"], {}, {"max_header_size": 1000}, id="max-header-underscore"
        ),
        pytest.param(
            [],
            {
                "CORS_ALLOW_ORIGIN": "*",
                "CORS_ALLOW_METHODS": "GET, POST",
                "CORS_ALLOW_HEADERS": "x-a",
                "CORS_ALLOW_CREDENTIALS": "true",
            },
            {
                "cors_allow_origin": "*",
                "cors_allow_methods": "GET, POST",
                "cors_allow_headers": "x-a",
                "cors_allow_credentials": True,
            },
            id="cors",
        ),
        pytest.param([], {"ECHO_MAX_DELAY_MS": "0"}, {"max_delay_ms": 0}, id="delay-cap-zero"),
        pytest.param(["--max-delay-ms", "250"], {}, {"max_delay_ms": 250}, id="delay-cap"),
        pytest.param([], {"ECHO_MAX_BODY_BYTES": "1024"}, {"max_body_bytes": 1024}, id="max-body"),
        pytest.param([], {"ECHO_DRAIN_SECONDS": "0.5"}, {"drain_seconds": 0.5}, id="drain"),
        pytest.param(["--drain-seconds", "0"], {}, {"drain_seconds": 0.0}, id="drain-zero"),
        pytest.param(
            [], {"ECHO_ADMIN_PREFIX": "/admin"}, {"admin_prefix": "/admin/"}, id="admin-prefix-slash-added"
        ),
        pytest.param(["--admin-prefix", "/x/y/"], {}, {"admin_prefix": "/x/y/"}, id="admin-prefix-flag"),
        pytest.param(
            [],
            {"ADDITIONAL_TRUSTED_PROXIES": "203.0.113.7, 10.0.0.0/255.0.0.0,,2001:db8::/32"},
            {
                "additional_trusted_proxies": (
                    ipaddress.ip_network("203.0.113.7/32"),
                    ipaddress.ip_network("10.0.0.0/8"),
                    ipaddress.ip_network("2001:db8::/32"),
                )
            },
            id="trusted-proxies",
        ),
        pytest.param(
            [],
            {"ADDITIONAL_TRUSTED_PROXIES": "::ffff:10.1.2.3"},
            {"additional_trusted_proxies": (ipaddress.ip_network("10.1.2.3/32"),)},
            id="mapped-address-is-ipv4",
        ),
        pytest.param([], {"COOKIE_SECRET": "s3"}, {"cookie_secret": "s3"}, id="cookie-secret"),
        pytest.param(
            [],
            {
                "PROMETHEUS_ENABLED": "true",
                "PROMETHEUS_METRICS_PATH": "/prom",
                "PROMETHEUS_WITH_PATH": "true",
                "PROMETHEUS_WITH_METHOD": "false",
                "PROMETHEUS_WITH_STATUS": "false",
                "PROMETHEUS_METRIC_TYPE": "Histogram",
            },
            {
                "prometheus_enabled": True,
                "prometheus_metrics_path": "/prom",
                "prometheus_with_path": True,
                "prometheus_with_method": False,
                "prometheus_with_status": False,
                "prometheus_metric_type": "histogram",
            },
            id="prometheus",
        ),
        pytest.param(["--prometheus"], {}, {"prometheus_enabled": True}, id="prometheus-flag"),
        pytest.param([], {"LOG_FORMAT": "full"}, {"log_format": "full"}, id="log-format"),
        pytest.param([], {"ECHO_READYZ_CHANGE_FROM": "any"}, {"readyz_change_from": None}, id="readyz-any"),
        pytest.param(
            ["--readyz-change-from", "10.0.0.0/8"],
            {},
            {"readyz_change_from": (ipaddress.ip_network("10.0.0.0/8"),)},
            id="readyz-list",
        ),
        pytest.param(
            [],
            {
                "ECHO_MAX_INFLIGHT_BYTES": "20000000",
                "ECHO_MAX_RESPONSE_BYTES": "1000",
                "ECHO_MAX_JSON_BYTES": "0",
            },
            {"max_inflight_bytes": 20_000_000, "max_response_bytes": 1000, "max_json_bytes": 0},
            id="memory-limits",
        ),
        pytest.param(
            ["--service-version", "v9"], {"SERVICE_VERSION": "v1"}, {"service_version": "v9"}, id="version"
        ),
    ],
)
def test_load_ok(argv: list[str], environ: dict[str, str], expected: dict[str, Any]) -> None:
    config = load_config(argv, environ)
    for field, value in expected.items():
        assert getattr(config, field) == value, field


def test_log_ignore_path_is_a_regex() -> None:
    config = load_config([], {"LOG_IGNORE_PATH": "/(ping|healthz)"})
    assert config.log_ignore_path is not None
    assert config.log_ignore_path.fullmatch("/ping")
    assert not config.log_ignore_path.fullmatch("/pingx")


def test_files_are_checked(pem: Path) -> None:
    config = load_config(
        ["--cert-file", str(pem)],
        {
            "HTTPS_KEY_FILE": str(pem),
            "MTLS_CA_FILE": str(pem),
            "OVERRIDE_RESPONSE_BODY_FILE_PATH": str(pem),
            "ECHO_LABELS_FILE": str(pem),
        },
    )
    assert config.https_cert_file == pem
    assert config.https_key_file == pem
    assert config.mtls_ca_file == pem
    assert config.override_response_body_file_path == pem
    assert config.labels_file == pem


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        pytest.param(
            [], {"HTTP_PORT": "0"}, "HTTP_PORT: expected a port 1-65535 or 'off', got '0'", id="port-zero"
        ),
        pytest.param([], {"HTTP_PORT": "65536"}, "HTTP_PORT: expected a port", id="port-high"),
        pytest.param([], {"HTTPS_PORT": "https"}, "HTTPS_PORT: expected a port", id="port-word"),
        pytest.param(["--h2c-port", "-1"], {}, "--h2c-port: expected a port", id="port-negative-flag"),
        pytest.param(
            [],
            {"HTTP_PORT": "off", "HTTPS_PORT": "off"},
            "all off: nothing to listen on",
            id="all-listeners-off",
        ),
        pytest.param([], {"HTTP_PORT": "9000", "H2C_PORT": "9000"}, "share one port", id="same-port"),
        pytest.param(
            [], {"MTLS_ENABLE": "maybe"}, "MTLS_ENABLE: expected true or false, got 'maybe'", id="bool"
        ),
        pytest.param(
            [], {"MAX_HEADER_SIZE": "0"}, "MAX_HEADER_SIZE: expected a positive number", id="size-zero"
        ),
        pytest.param(
            [], {"MAX_HEADER_SIZE": "1k"}, "MAX_HEADER_SIZE: expected a whole number", id="size-word"
        ),
        pytest.param(
            [], {"ECHO_MAX_BODY_BYTES": "-5"}, "ECHO_MAX_BODY_BYTES: expected a positive", id="body-neg"
        ),
        pytest.param(
            [], {"ECHO_MAX_DELAY_MS": "-1"}, "ECHO_MAX_DELAY_MS: expected a non-negative", id="delay-neg"
        ),
        pytest.param(
            [], {"ECHO_DRAIN_SECONDS": "soon"}, "ECHO_DRAIN_SECONDS: expected seconds", id="drain-word"
        ),
        pytest.param(
            [], {"ECHO_DRAIN_SECONDS": "7200"}, "ECHO_DRAIN_SECONDS: expected 0-3600", id="drain-long"
        ),
        pytest.param(
            [],
            {"HTTPS_CERT_FILE": "/nonexistent/cert.pem"},
            "HTTPS_CERT_FILE: no such file",
            id="cert-missing",
        ),
        pytest.param(
            [],
            {"OVERRIDE_RESPONSE_BODY_FILE_PATH": "/nonexistent"},
            "OVERRIDE_RESPONSE_BODY_FILE_PATH: no such",
            id="body",
        ),
        pytest.param(
            [], {"ECHO_LABELS_FILE": "/nonexistent"}, "ECHO_LABELS_FILE: no such file", id="labels-missing"
        ),
        pytest.param(
            [], {"LOG_IGNORE_PATH": "(unclosed"}, "LOG_IGNORE_PATH: not a regular expression", id="regex"
        ),
        pytest.param([], {"JWT_HEADER": "bad header"}, "JWT_HEADER: not a header name", id="jwt-name"),
        pytest.param(
            [], {"ECHO_ADMIN_PREFIX": "_echo"}, "ECHO_ADMIN_PREFIX: must start with '/'", id="prefix-rel"
        ),
        pytest.param([], {"ECHO_ADMIN_PREFIX": "/"}, "ECHO_ADMIN_PREFIX: '/' would hide", id="prefix-root"),
        pytest.param(["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag", id="unknown-flag"),
        pytest.param(["--http-port"], {}, "expected one argument", id="flag-missing-value"),
        pytest.param(
            [],
            {"ADDITIONAL_TRUSTED_PROXIES": "999.1.2.3"},
            "not an IP address: '999.1.2.3'",
            id="proxy-bad-ip",
        ),
        pytest.param([], {"ADDITIONAL_TRUSTED_PROXIES": "0.0.0.0/0"}, "invalid range", id="proxy-slash-zero"),
        pytest.param(
            [], {"ADDITIONAL_TRUSTED_PROXIES": "10.0.0.0/0.0.0.255"}, "invalid range", id="proxy-hostmask"
        ),
        pytest.param([], {"PROMETHEUS_METRIC_TYPE": "gauge"}, "summary or histogram", id="metric-type"),
        pytest.param([], {"PROMETHEUS_METRICS_PATH": "metrics"}, "must start with '/'", id="metrics-rel"),
        pytest.param([], {"PROMETHEUS_METRICS_PATH": "/m(x"}, "not a regular expression", id="metrics-regex"),
        pytest.param([], {"LOG_FORMAT": "xml"}, "summary or full", id="log-format"),
        pytest.param([], {"ECHO_READYZ_CHANGE_FROM": "pods"}, "not an IP address", id="readyz-word"),
        pytest.param(
            [],
            {"ECHO_MAX_INFLIGHT_BYTES": "100", "ECHO_MAX_BODY_BYTES": "1000"},
            "must be at least ECHO_MAX_BODY_BYTES",
            id="budget-below-body",
        ),
    ],
)
def test_load_errors(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, environ)
    assert message in info.value.message
    # The short usage: two lines, pointing at --help (not the whole help text).
    assert info.value.usage == SHORT_USAGE
    assert info.value.usage.count("\n") == 2
    assert "\n" not in info.value.message


def test_cert_and_key_go_together(pem: Path) -> None:
    with pytest.raises(ConfigError, match="must be set together"):
        load_config([], {"HTTPS_CERT_FILE": str(pem)})


def test_unreadable_file(pem: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root can read any file, so the permission check is exercised through os.access itself.
    monkeypatch.setattr("echo.config.os.access", lambda path, mode: False)
    with pytest.raises(ConfigError, match="MTLS_CA_FILE: file not readable"):
        load_config([], {"MTLS_CA_FILE": str(pem)})


def test_help_documents_every_variable_and_flag() -> None:
    text = usage()
    for name in env_var_names():
        assert re.search(rf"^  {name}\b", text, re.MULTILINE), name
    for name in (
        "HTTP_PORT",
        "HTTPS_PORT",
        "H2C_PORT",
        "ECHO_BIND",
        "MTLS_CA_FILE",
        "CORS_ALLOW_CREDENTIALS",
    ):
        assert name in text
    for flag in (
        "--http-port",
        "--https-port",
        "--h2c-port",
        "--bind",
        "--cert-file",
        "--key-file",
        "--mtls",
    ):
        assert flag in text


def test_flag_help_names_flags_and_switches_take_no_value() -> None:
    text = usage()
    flags_part = text.split("environment (a flag wins")[0]
    assert "--no-request-logs     no per-request log line" in flags_part
    assert "with mTLS on" in flags_part
    assert "MTLS_ENABLE" not in flags_part
    assert "--version" in flags_part
    assert "--service-version VERSION" in flags_part


def test_cli_version_and_short_usage_on_error() -> None:
    from echo.cli import main_impl

    out, err = io.StringIO(), io.StringIO()
    assert main_impl(["--version"], {}, out, err) == 0
    assert out.getvalue() == f"echo-server {__version__}\n"
    out, err = io.StringIO(), io.StringIO()
    assert main_impl([], {"MAX_HEADER_SIZE": "1k"}, out, err) == 2
    assert (
        err.getvalue()
        == SHORT_USAGE + "echo-server: error: MAX_HEADER_SIZE: expected a whole number, got '1k'\n"
    )
