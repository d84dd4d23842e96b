"""echo-server's command line: config → identity → app → serve. The only place that maps errors to exit codes.

Exit codes: 0 clean stop (after SIGTERM/SIGINT and the drain), 1 start-up failure (port taken, bad
certificate), 2 bad flag or environment variable (usage printed).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from echo.app import create_app
from echo.config import ConfigError, EchoConfig, load_config, usage, version_text
from echo.identity import Identity, identity_from_environ
from echo.requestlog import LogSink
from echo.serve import Hooks, ServeError, ServeOptions, run
from echo.tls import TLSOptions

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# After the listeners close, in-flight requests may still be sleeping on x-set-response-delay-ms.
GRACE_MARGIN_SECONDS = 5.0


def main() -> int:
    return main_impl(sys.argv[1:], os.environ, sys.stdout, sys.stderr)


def main_impl(argv: Sequence[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        out.write(usage())
        return EXIT_OK
    if "--version" in argv:
        out.write(version_text())
        return EXIT_OK
    try:
        config = load_config(argv, environ)
    except ConfigError as error:
        err.write(error.usage)
        err.write(f"echo-server: error: {error.message}\n")
        return EXIT_USAGE
    if config.service_version is not None:
        # --service-version wins over the variable, which identity_from_environ reads.
        environ = {**environ, "SERVICE_VERSION": config.service_version}
    hostname = socket.gethostname()
    texts: list[str | None] = []
    for name, path in (
        ("ECHO_LABELS_FILE", config.labels_file),
        ("ECHO_ANNOTATIONS_FILE", config.annotations_file),
    ):
        try:
            texts.append(path.read_text(encoding="utf-8") if path else None)
        except (OSError, UnicodeDecodeError) as error:
            err.write(f"echo-server: error: {name} {path}: {error}\n")
            return EXIT_USAGE
    identity = identity_from_environ(environ, hostname, texts[0], texts[1])
    app = create_app(config, identity, environ=environ, log_sink=_log_sink(out))
    # Not ready until every listener is up (serve.run calls on_ready), then not ready for good on SIGTERM.
    app.set_ready(False)
    hooks = Hooks(
        on_ready=lambda: app.set_ready(True),
        on_drain=app.set_draining,
        error_response=app.error_response,
    )
    try:
        return run(app, serve_options(config, identity), hooks, err)
    except ServeError as error:
        err.write(f"echo-server: error: {error}\n")
        return EXIT_FAILURE


def _log_sink(out: TextIO) -> LogSink | None:
    """The real stdout gets the app's unbuffered fd-1 writer (None = its default); tests pass a buffer."""
    if out is sys.stdout:
        return None

    def write(line: bytes) -> None:
        out.write(line.decode("utf-8", "replace"))

    return write


def serve_options(config: EchoConfig, identity: Identity) -> ServeOptions:
    """The serving layer's view of the config (pure)."""
    tls = TLSOptions(
        cert_file=str(config.https_cert_file) if config.https_cert_file else None,
        key_file=str(config.https_key_file) if config.https_key_file else None,
        mtls=config.mtls_enable,
        client_ca_file=str(config.mtls_ca_file) if config.mtls_ca_file else None,
        dns_names=tuple(dict.fromkeys(n for n in ("localhost", identity.hostname, identity.name) if n)),
        ip_addresses=tuple(dict.fromkeys(a for a in ("127.0.0.1", "::1", identity.ip) if a)),
    )
    return ServeOptions(
        bind=config.bind,
        http_port=config.http_port,
        https_port=config.https_port,
        h2c_port=config.h2c_port,
        tls=tls,
        drain_seconds=config.drain_seconds,
        grace_seconds=config.max_delay_ms / 1000 + GRACE_MARGIN_SECONDS,
        max_header_bytes=config.max_header_size,
        header_timeout_seconds=config.header_timeout_seconds,
        body_timeout_seconds=config.body_timeout_seconds,
        max_connections=config.max_connections,
        preserve_header_case=config.preserve_header_case,
    )
