from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from echo.config import (
    DEFAULT_ADMIN_PREFIX,
    DEFAULT_MAX_BODY_BYTES,
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
    ],
)
def test_load_errors(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, environ)
    assert message in info.value.message
    assert info.value.usage.startswith("usage: echo-server")
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
