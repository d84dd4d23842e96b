"""The echo server's one configuration object: flags > environment > defaults, validated once.

Environment variable names that mendhak/http-https-echo defines keep their meaning, so existing
deployments can swap images without changing their manifests. Our own additions are namespaced
``ECHO_*`` (plus ``H2C_PORT``, named like its ``HTTP_PORT``/``HTTPS_PORT`` siblings).

Booleans accept ``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case); an empty value counts as
unset. Anything else is a configuration error rather than a silent guess.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

from echo import __version__
from echo.trust import Network, TrustedProxies, TrustError, parse_networks

DEFAULT_HTTP_PORT = 8080
DEFAULT_HTTPS_PORT = 8443
DEFAULT_BIND = "0.0.0.0"
DEFAULT_ADMIN_PREFIX = "/_echo/"
# Node's own default limit that mendhak inherits is far lower; 1 MiB keeps large-JWT demos working.
DEFAULT_MAX_HEADER_SIZE = 1_048_576
DEFAULT_MAX_BODY_BYTES = 10 * 1_048_576
DEFAULT_MAX_DELAY_MS = 60_000
DEFAULT_DRAIN_SECONDS = 5.0
# Serving limits (docs/echo-serving.md has the table of every limit and timeout).
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_CONNECTIONS = 10_000
# The largest MAX_HEADER_SIZE accepted: Envoy's own ceiling (max_request_headers_kb 8192), so no
# proxy in front could forward a larger head anyway; it also bounds HTTP/2 header blocks.
MAX_HEADER_SIZE_CEILING = 8 * 1_048_576
# Memory: request bytes held at once by all requests together, what one echo document may grow to,
# and the largest body whose `json` is parsed (parsing builds objects worth up to ~25x the text).
DEFAULT_MAX_INFLIGHT_BYTES = 64 * 1_048_576
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1_048_576
DEFAULT_MAX_JSON_BYTES = 1_048_576
DEFAULT_PROMETHEUS_METRICS_PATH = "/metrics"
# mendhak resolves OVERRIDE_RESPONSE_BODY_FILE_PATH against its app directory (Express res.sendFile
# with root __dirname, /app in its image).
MENDHAK_APP_DIR = Path("/app")
LOG_FORMATS = ("summary", "full")
METRIC_TYPES = ("summary", "histogram")


class ConfigError(Exception):
    """A bad flag or environment value; the CLI prints ``message`` and ``usage`` and exits 2."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass(frozen=True, slots=True)
class EchoConfig:
    http_port: int | None = DEFAULT_HTTP_PORT
    https_port: int | None = DEFAULT_HTTPS_PORT
    h2c_port: int | None = None
    bind: str = DEFAULT_BIND
    https_cert_file: Path | None = None
    https_key_file: Path | None = None
    mtls_enable: bool = False
    mtls_ca_file: Path | None = None
    echo_back_to_client: bool = True
    echo_include_env_vars: bool = False
    jwt_header: str | None = None
    log_ignore_path: re.Pattern[str] | None = None
    disable_request_logs: bool = False
    log_without_newline: bool = False
    preserve_header_case: bool = False
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    cors_allow_origin: str | None = None
    cors_allow_methods: str | None = None
    cors_allow_headers: str | None = None
    cors_allow_credentials: bool = False
    override_response_body_file_path: Path | None = None
    max_delay_ms: int = DEFAULT_MAX_DELAY_MS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    labels_file: Path | None = None
    annotations_file: Path | None = None
    admin_prefix: str = DEFAULT_ADMIN_PREFIX
    additional_trusted_proxies: tuple[Network, ...] = ()
    cookie_secret: str | None = field(default=None, repr=False)
    prometheus_enabled: bool = False
    prometheus_metrics_path: str = DEFAULT_PROMETHEUS_METRICS_PATH
    prometheus_with_path: bool = False
    prometheus_with_method: bool = True
    prometheus_with_status: bool = True
    prometheus_metric_type: Literal["summary", "histogram"] = "summary"
    log_format: Literal["summary", "full"] = "summary"
    # None = anyone may flip readiness; else only peers in these networks (default: loopback).
    readyz_change_from: tuple[Network, ...] | None = TrustedProxies.LOOPBACK
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    service_version: str | None = None

    @property
    def cors_enabled(self) -> bool:
        return self.cors_allow_origin is not None


@dataclass(frozen=True)
class _Setting:
    env: str
    flag: str | None
    help: str  # for the variable: says what a value means
    metavar: str = "VALUE"
    is_bool: bool = False
    flag_help: str | None = None  # for the flag, when it reads differently (a switch takes no value)


# One table drives the argument parser, the environment lookup and the --help text, so the three
# cannot drift apart. Order = order in --help.
_SETTINGS: dict[str, _Setting] = {
    "http_port": _Setting(
        "HTTP_PORT", "--http-port", f"plain HTTP/1.1 port, or 'off' (default {DEFAULT_HTTP_PORT})", "PORT"
    ),
    "https_port": _Setting(
        "HTTPS_PORT",
        "--https-port",
        f"HTTPS port (ALPN h2, http/1.1), or 'off' (default {DEFAULT_HTTPS_PORT})",
        "PORT",
    ),
    "h2c_port": _Setting("H2C_PORT", "--h2c-port", "cleartext HTTP/2 port, or 'off' (default off)", "PORT"),
    "bind": _Setting(
        "ECHO_BIND", "--bind", f"address every listener binds (default {DEFAULT_BIND})", "ADDRESS"
    ),
    "https_cert_file": _Setting(
        "HTTPS_CERT_FILE",
        "--cert-file",
        "PEM certificate chain; unset = self-signed ECDSA P-256 made at start",
        "FILE",
    ),
    "https_key_file": _Setting("HTTPS_KEY_FILE", "--key-file", "PEM private key for the certificate", "FILE"),
    "mtls_enable": _Setting(
        "MTLS_ENABLE",
        "--mtls",
        "true = ask HTTPS clients for a certificate and report it (default false)",
        is_bool=True,
        flag_help="ask HTTPS clients for a certificate and report it",
    ),
    "mtls_ca_file": _Setting(
        "MTLS_CA_FILE",
        "--mtls-ca-file",
        "PEM CA bundle: with mTLS on, client certificates must verify against it",
        "FILE",
    ),
    "echo_back_to_client": _Setting(
        "ECHO_BACK_TO_CLIENT",
        None,
        "false = send an empty body instead of the echo document (default true)",
        is_bool=True,
    ),
    "echo_include_env_vars": _Setting(
        "ECHO_INCLUDE_ENV_VARS",
        None,
        "true = add an 'env' field (secret-looking values redacted) (default false)",
        is_bool=True,
    ),
    "jwt_header": _Setting(
        "JWT_HEADER", "--jwt-header", "request header holding a JWT to decode into 'jwt'", "NAME"
    ),
    "cookie_secret": _Setting(
        "COOKIE_SECRET",
        None,
        "secret for signed cookies (cookie-parser's s: cookies) shown in 'signedCookies'",
        "SECRET",
    ),
    "additional_trusted_proxies": _Setting(
        "ADDITIONAL_TRUSTED_PROXIES",
        "--additional-trusted-proxies",
        "addresses/CIDRs trusted as proxies besides loopback, link-local and private ones",
        "LIST",
    ),
    "log_ignore_path": _Setting(
        "LOG_IGNORE_PATH", None, "path, or regular expression matching whole paths, not to log", "REGEX"
    ),
    "disable_request_logs": _Setting(
        "DISABLE_REQUEST_LOGS",
        "--no-request-logs",
        "true = no per-request log line (default false)",
        is_bool=True,
        flag_help="no per-request log line",
    ),
    "log_format": _Setting(
        "LOG_FORMAT",
        "--log-format",
        "'summary' (one line per request) or 'full' (the whole request, body included) (default summary)",
        "FORMAT",
    ),
    "log_without_newline": _Setting(
        "LOG_WITHOUT_NEWLINE",
        None,
        "accepted for compatibility: every log record is already one line",
        is_bool=True,
    ),
    "preserve_header_case": _Setting(
        "PRESERVE_HEADER_CASE",
        None,
        "true = header names in 'headers' keep their wire case, as mendhak shows them (default false)",
        is_bool=True,
    ),
    "max_header_size": _Setting(
        "MAX_HEADER_SIZE",
        "--max-header-size",
        f"largest total of header name+value bytes; more = 431 (default {DEFAULT_MAX_HEADER_SIZE})",
        "BYTES",
    ),
    "cors_allow_origin": _Setting(
        "CORS_ALLOW_ORIGIN", None, "Access-Control-Allow-Origin; set = CORS on", "ORIGIN"
    ),
    "cors_allow_methods": _Setting("CORS_ALLOW_METHODS", None, "Access-Control-Allow-Methods", "METHODS"),
    "cors_allow_headers": _Setting("CORS_ALLOW_HEADERS", None, "Access-Control-Allow-Headers", "HEADERS"),
    "cors_allow_credentials": _Setting(
        "CORS_ALLOW_CREDENTIALS", None, "true = Access-Control-Allow-Credentials: true", is_bool=True
    ),
    "override_response_body_file_path": _Setting(
        "OVERRIDE_RESPONSE_BODY_FILE_PATH",
        None,
        "serve this file as every echo response body (relative to /app as in mendhak, else as given)",
        "FILE",
    ),
    "prometheus_enabled": _Setting(
        "PROMETHEUS_ENABLED",
        "--prometheus",
        "true = mendhak's Prometheus metrics (express-prom-bundle series) at PROMETHEUS_METRICS_PATH "
        "(default false)",
        is_bool=True,
        flag_help="serve mendhak's Prometheus metrics (express-prom-bundle series) at the metrics path",
    ),
    "prometheus_metrics_path": _Setting(
        "PROMETHEUS_METRICS_PATH",
        "--prometheus-metrics-path",
        "path of those metrics, a regular expression as in mendhak "
        f"(default {DEFAULT_PROMETHEUS_METRICS_PATH})",
        "PATH",
    ),
    "prometheus_with_path": _Setting(
        "PROMETHEUS_WITH_PATH",
        None,
        "true = a 'path' label (ids replaced by #val) (default false)",
        is_bool=True,
    ),
    "prometheus_with_method": _Setting(
        "PROMETHEUS_WITH_METHOD", None, "false = no 'method' label (default true)", is_bool=True
    ),
    "prometheus_with_status": _Setting(
        "PROMETHEUS_WITH_STATUS", None, "false = no 'status_code' label (default true)", is_bool=True
    ),
    "prometheus_metric_type": _Setting(
        "PROMETHEUS_METRIC_TYPE",
        None,
        "'summary' or 'histogram' for http_request_duration_seconds (default summary)",
        "TYPE",
    ),
    "max_delay_ms": _Setting(
        "ECHO_MAX_DELAY_MS",
        "--max-delay-ms",
        f"cap for x-set-response-delay-ms (default {DEFAULT_MAX_DELAY_MS})",
        "MS",
    ),
    "max_body_bytes": _Setting(
        "ECHO_MAX_BODY_BYTES",
        "--max-body-bytes",
        "largest request body, after Content-Encoding decoding; more = 413 "
        f"(default {DEFAULT_MAX_BODY_BYTES})",
        "BYTES",
    ),
    "max_inflight_bytes": _Setting(
        "ECHO_MAX_INFLIGHT_BYTES",
        "--max-inflight-bytes",
        "request bytes all requests may hold at once, echo documents included; more = 503 with "
        f"Retry-After (default {DEFAULT_MAX_INFLIGHT_BYTES})",
        "BYTES",
    ),
    "max_response_bytes": _Setting(
        "ECHO_MAX_RESPONSE_BYTES",
        "--max-response-bytes",
        f"largest echo document one request may produce; more = 413 (default {DEFAULT_MAX_RESPONSE_BYTES})",
        "BYTES",
    ),
    "max_json_bytes": _Setting(
        "ECHO_MAX_JSON_BYTES",
        "--max-json-bytes",
        f"largest JSON body parsed into 'json' (default {DEFAULT_MAX_JSON_BYTES})",
        "BYTES",
    ),
    "drain_seconds": _Setting(
        "ECHO_DRAIN_SECONDS",
        "--drain-seconds",
        f"after SIGTERM: not ready, still serving, for this long (default {DEFAULT_DRAIN_SECONDS:g})",
        "SECONDS",
    ),
    "header_timeout_seconds": _Setting(
        "ECHO_HEADER_TIMEOUT_SECONDS",
        "--header-timeout",
        "a request's line and headers must arrive within this; else 408 "
        f"(default {DEFAULT_HEADER_TIMEOUT_SECONDS:g})",
        "SECONDS",
    ),
    "body_timeout_seconds": _Setting(
        "ECHO_BODY_TIMEOUT_SECONDS",
        "--body-timeout",
        f"longest pause inside a request body; else 408 (default {DEFAULT_BODY_TIMEOUT_SECONDS:g})",
        "SECONDS",
    ),
    "max_connections": _Setting(
        "ECHO_MAX_CONNECTIONS",
        "--max-connections",
        f"open connections over all listeners; more are closed at once (default {DEFAULT_MAX_CONNECTIONS})",
        "COUNT",
    ),
    "labels_file": _Setting(
        "ECHO_LABELS_FILE", "--labels-file", 'Downward API labels file (key="value" per line)', "FILE"
    ),
    "annotations_file": _Setting(
        "ECHO_ANNOTATIONS_FILE",
        "--annotations-file",
        "Downward API annotations file: tells the mesh block whether ztunnel captures this pod",
        "FILE",
    ),
    "admin_prefix": _Setting(
        "ECHO_ADMIN_PREFIX",
        "--admin-prefix",
        f"path prefix of the admin endpoints (default {DEFAULT_ADMIN_PREFIX})",
        "PATH",
    ),
    "readyz_change_from": _Setting(
        "ECHO_READYZ_CHANGE_FROM",
        "--readyz-change-from",
        "who may POST to the readyz endpoint: 'loopback' (default), 'any', or addresses/CIDRs",
        "LIST",
    ),
    "service_version": _Setting(
        "SERVICE_VERSION",
        "--service-version",
        "x-echo-version and pod.version (default: label 'version', else 'unknown')",
        "VERSION",
    ),
}

_IDENTITY_ENV_HELP = (
    ("POD_NAME", "pod name: x-echo-pod and pod.name (default: the hostname)"),
    ("POD_NAMESPACE", "pod.namespace"),
    ("POD_IP", "pod.ip"),
    ("NODE_NAME", "pod.node"),
    ("POD_SERVICE_ACCOUNT", "pod.service_account"),
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
PROG = "echo-server"
SHORT_USAGE = f"usage: {PROG} [options]\nTry '{PROG} --help' for every flag and environment variable.\n"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main_impl owns the exit code."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message, SHORT_USAGE)


def _epilog() -> str:
    lines = ["environment (a flag wins over its variable):"]
    for setting in _SETTINGS.values():
        flag = f" ({setting.flag})" if setting.flag else ""
        lines.append(f"  {setting.env}{flag}: {setting.help}")
    lines.append("pod identity (Kubernetes Downward API):")
    lines.extend(f"  {name}: {text}" for name, text in _IDENTITY_ENV_HELP)
    return "\n".join(lines)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        usage="%(prog)s [options]",
        description="A fast, mesh-aware HTTP/HTTPS/WebSocket echo server (mendhak/http-https-echo drop-in).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for field_name, setting in _SETTINGS.items():
        if setting.flag is None:
            continue
        text = setting.flag_help or setting.help
        if setting.is_bool:
            parser.add_argument(setting.flag, dest=field_name, action="store_const", const="true", help=text)
        else:
            parser.add_argument(setting.flag, dest=field_name, metavar=setting.metavar, help=text)
    return parser


def usage() -> str:
    """The full --help text, listing every flag and environment variable."""
    return build_parser().format_help()


def version_text() -> str:
    return f"{PROG} {__version__}\n"


def env_var_names() -> tuple[str, ...]:
    return tuple(s.env for s in _SETTINGS.values()) + tuple(name for name, _ in _IDENTITY_ENV_HELP)


def load_config(
    argv: Sequence[str], environ: Mapping[str, str], *, app_dir: Path = MENDHAK_APP_DIR
) -> EchoConfig:
    """Build and validate the config; raises ConfigError on any bad flag or variable.

    ``app_dir`` is where a relative or ``/``-rooted OVERRIDE_RESPONSE_BODY_FILE_PATH is looked up
    first, as mendhak does; tests pass their own.
    """
    parser = build_parser()
    args = parser.parse_args(list(argv))
    text = SHORT_USAGE

    def raw(field: str) -> tuple[str, str] | None:
        setting = _SETTINGS[field]
        flag_value = getattr(args, field, None)
        if flag_value is not None:
            return str(flag_value), setting.flag or setting.env
        env_value = environ.get(setting.env)
        if env_value is None or env_value.strip() == "":
            return None
        return env_value.strip(), setting.env

    def fail(source: str, message: str) -> NoReturn:
        raise ConfigError(f"{source}: {message}", text)

    def port(field: str, default: int | None) -> int | None:
        got = raw(field)
        if got is None:
            return default
        value, source = got
        if value.lower() == "off":
            return None
        try:
            number = int(value)
        except ValueError:
            fail(source, f"expected a port 1-65535 or 'off', got {value!r}")
        if not 1 <= number <= 65535:
            fail(source, f"expected a port 1-65535 or 'off', got {value!r}")
        return number

    def boolean(field: str, default: bool) -> bool:
        got = raw(field)
        if got is None:
            return default
        value, source = got
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        fail(source, f"expected true or false, got {value!r}")

    def positive_int(field: str, default: int, *, allow_zero: bool = False) -> int:
        got = raw(field)
        if got is None:
            return default
        value, source = got
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            fail(source, f"expected a whole number, got {value!r}")
        if number < 0 or (number == 0 and not allow_zero):
            fail(source, f"expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
        return number

    def seconds(field: str, default: float) -> float:
        got = raw(field)
        if got is None:
            return default
        value, source = got
        try:
            number = float(value)
        except ValueError:
            fail(source, f"expected seconds, got {value!r}")
        if not 0 <= number <= 3600:
            fail(source, f"expected 0-3600 seconds, got {value!r}")
        return number

    def readable_file(field: str) -> Path | None:
        got = raw(field)
        if got is None:
            return None
        value, source = got
        path = Path(value)
        if not path.is_file():
            fail(source, f"no such file: {value}")
        if not os.access(path, os.R_OK):
            fail(source, f"file not readable: {value}")
        return path

    def choice(field: str, choices: tuple[str, ...], default: str) -> str:
        got = raw(field)
        if got is None:
            return default
        value, source = got
        if value.lower() not in choices:
            fail(source, f"expected {' or '.join(choices)}, got {value!r}")
        return value.lower()

    def networks(field: str) -> tuple[Network, ...] | None:
        got = raw(field)
        if got is None:
            return None
        value, source = got
        try:
            return parse_networks(value)
        except TrustError as exc:
            fail(source, str(exc))

    def override_file(field: str) -> Path | None:
        got = raw(field)
        if got is None:
            return None
        value, source = got
        path = resolve_override_path(value, app_dir)
        if path is None:
            under = app_dir / value.lstrip("/")
            fail(source, f"no such file: {under} (mendhak's app directory) nor {value}")
        if not os.access(path, os.R_OK):
            fail(source, f"file not readable: {path}")
        return path

    def string(field: str) -> str | None:
        got = raw(field)
        if got is None:
            return None
        value, source = got
        if "\r" in value or "\n" in value:
            fail(source, "must be one line")
        return value

    http_port = port("http_port", DEFAULT_HTTP_PORT)
    https_port = port("https_port", DEFAULT_HTTPS_PORT)
    h2c_port = port("h2c_port", None)
    enabled = [p for p in (http_port, https_port, h2c_port) if p is not None]
    if not enabled:
        raise ConfigError("HTTP_PORT, HTTPS_PORT and H2C_PORT are all off: nothing to listen on", text)
    if len(set(enabled)) != len(enabled):
        raise ConfigError(f"two listeners share one port: {sorted(enabled)}", text)

    bind = string("bind") or DEFAULT_BIND

    cert = readable_file("https_cert_file")
    key = readable_file("https_key_file")
    if (cert is None) != (key is None):
        raise ConfigError("HTTPS_CERT_FILE and HTTPS_KEY_FILE must be set together", text)

    mtls_enable = boolean("mtls_enable", False)
    mtls_ca_file = readable_file("mtls_ca_file")

    jwt_header = string("jwt_header")
    if jwt_header is not None and not _TOKEN.fullmatch(jwt_header):
        raise ConfigError(f"JWT_HEADER: not a header name: {jwt_header!r}", text)

    log_ignore_path: re.Pattern[str] | None = None
    got = raw("log_ignore_path")
    if got is not None:
        try:
            log_ignore_path = re.compile(got[0])
        except re.error as exc:
            raise ConfigError(f"LOG_IGNORE_PATH: not a regular expression: {exc}", text) from None

    admin_prefix = string("admin_prefix") or DEFAULT_ADMIN_PREFIX
    if not admin_prefix.startswith("/"):
        raise ConfigError(f"ECHO_ADMIN_PREFIX: must start with '/', got {admin_prefix!r}", text)
    if not admin_prefix.endswith("/"):
        admin_prefix += "/"
    if admin_prefix == "/":
        raise ConfigError("ECHO_ADMIN_PREFIX: '/' would hide every echo path", text)

    # Serving limits: one header limit for HTTP/1.x and HTTP/2, bounded; timeouts must be positive.
    def _source(field: str) -> str:
        got = raw(field)
        return got[1] if got is not None else _SETTINGS[field].env

    max_header_size = positive_int("max_header_size", DEFAULT_MAX_HEADER_SIZE)
    if max_header_size > MAX_HEADER_SIZE_CEILING:
        fail(_source("max_header_size"), f"at most {MAX_HEADER_SIZE_CEILING}, got {max_header_size}")

    def timeout(field: str, default: float) -> float:
        value = seconds(field, default)
        if value <= 0:
            fail(_source(field), "expected a positive number of seconds")
        return value

    readyz_from: tuple[Network, ...] | None = TrustedProxies.LOOPBACK
    got = raw("readyz_change_from")
    if got is not None and got[0].lower() == "any":
        readyz_from = None
    elif got is not None:
        readyz_from = networks("readyz_change_from")

    prometheus_path = string("prometheus_metrics_path") or DEFAULT_PROMETHEUS_METRICS_PATH
    if not prometheus_path.startswith("/"):
        raise ConfigError(f"PROMETHEUS_METRICS_PATH: must start with '/', got {prometheus_path!r}", text)
    try:
        re.compile(prometheus_path)
    except re.error as exc:
        raise ConfigError(f"PROMETHEUS_METRICS_PATH: not a regular expression: {exc}", text) from None

    max_body_bytes = positive_int("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    max_inflight_bytes = positive_int("max_inflight_bytes", DEFAULT_MAX_INFLIGHT_BYTES)
    if max_inflight_bytes < max_body_bytes:
        raise ConfigError(
            f"ECHO_MAX_INFLIGHT_BYTES ({max_inflight_bytes}) must be at least ECHO_MAX_BODY_BYTES "
            f"({max_body_bytes}), or no request with the largest body could ever be served",
            text,
        )
    cookie_secret = raw("cookie_secret")

    return EchoConfig(
        http_port=http_port,
        https_port=https_port,
        h2c_port=h2c_port,
        bind=bind,
        https_cert_file=cert,
        https_key_file=key,
        mtls_enable=mtls_enable,
        mtls_ca_file=mtls_ca_file,
        echo_back_to_client=boolean("echo_back_to_client", True),
        echo_include_env_vars=boolean("echo_include_env_vars", False),
        jwt_header=jwt_header,
        log_ignore_path=log_ignore_path,
        disable_request_logs=boolean("disable_request_logs", False),
        log_without_newline=boolean("log_without_newline", False),
        preserve_header_case=boolean("preserve_header_case", False),
        max_header_size=max_header_size,
        cors_allow_origin=string("cors_allow_origin"),
        cors_allow_methods=string("cors_allow_methods"),
        cors_allow_headers=string("cors_allow_headers"),
        cors_allow_credentials=boolean("cors_allow_credentials", False),
        override_response_body_file_path=override_file("override_response_body_file_path"),
        max_delay_ms=positive_int("max_delay_ms", DEFAULT_MAX_DELAY_MS, allow_zero=True),
        max_body_bytes=max_body_bytes,
        drain_seconds=seconds("drain_seconds", DEFAULT_DRAIN_SECONDS),
        header_timeout_seconds=timeout("header_timeout_seconds", DEFAULT_HEADER_TIMEOUT_SECONDS),
        body_timeout_seconds=timeout("body_timeout_seconds", DEFAULT_BODY_TIMEOUT_SECONDS),
        max_connections=positive_int("max_connections", DEFAULT_MAX_CONNECTIONS),
        labels_file=readable_file("labels_file"),
        annotations_file=readable_file("annotations_file"),
        admin_prefix=admin_prefix,
        additional_trusted_proxies=networks("additional_trusted_proxies") or (),
        cookie_secret=cookie_secret[0] if cookie_secret else None,
        prometheus_enabled=boolean("prometheus_enabled", False),
        prometheus_metrics_path=prometheus_path,
        prometheus_with_path=boolean("prometheus_with_path", False),
        prometheus_with_method=boolean("prometheus_with_method", True),
        prometheus_with_status=boolean("prometheus_with_status", True),
        prometheus_metric_type="histogram"
        if choice("prometheus_metric_type", METRIC_TYPES, "summary") == "histogram"
        else "summary",
        log_format="full" if choice("log_format", LOG_FORMATS, "summary") == "full" else "summary",
        readyz_change_from=readyz_from,
        max_inflight_bytes=max_inflight_bytes,
        max_response_bytes=positive_int("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
        max_json_bytes=positive_int("max_json_bytes", DEFAULT_MAX_JSON_BYTES, allow_zero=True),
        service_version=string("service_version"),
    )


def resolve_override_path(value: str, app_dir: Path) -> Path | None:
    """OVERRIDE_RESPONSE_BODY_FILE_PATH → the file to serve, or None when there is none.

    mendhak calls Express's ``res.sendFile(value, {root: __dirname})``: the value, absolute or not, is
    taken relative to the app directory (``/test.html`` → ``/app/test.html``), and ``..`` may not
    leave it. That is tried first, so mendhak's documented ``-v $PWD/test.html:/app/test.html`` works
    unchanged. Otherwise the value is an ordinary path (absolute, or relative to the current
    directory), so ``echo-server`` outside a container can serve ``./page.html``.
    """
    parts = [part for part in Path(value).parts if part not in ("/", "")]
    if ".." not in parts:
        under = app_dir.joinpath(*parts) if parts else app_dir
        if under.is_file():
            return under
    plain = Path(value)
    return plain if plain.is_file() else None


# RFC 9110 token characters: what a header name may contain.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
