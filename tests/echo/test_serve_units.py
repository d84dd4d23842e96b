"""In-process tests of the serving layer's pure parts: certificates, TLS context, listener binding, CLI."""

from __future__ import annotations

import datetime
import io
import os
import re
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from echo.cli import main_impl, serve_options
from echo.config import load_config
from echo.connections import Limits, Notices
from echo.http1 import escape_high_bytes, split_target
from echo.identity import Identity
from echo.serve import ServeError, ServeOptions, bound_listeners, describe, fit_descriptor_limit
from echo.tls import (
    ServerCertificate,
    SNIRecorder,
    TLSOptions,
    TLSSetupError,
    generate_self_signed,
    load_certificate_pair,
    server_certificate,
    server_context,
    tls_facts,
)

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
NO_TLS_FILES = TLSOptions(
    None, None, mtls=False, client_ca_file=None, dns_names=("localhost",), ip_addresses=()
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pair")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    other = ca.issue_cert("other.test")
    files = {
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
        "other_key": directory / "other-key.pem",
        "garbage": directory / "garbage.pem",
        "encrypted_key": directory / "encrypted.pem",
        "ca": directory / "ca.pem",
    }
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    files["garbage"].write_text("not a pem\n")
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    files["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    ca.cert_pem.write_to_path(str(files["ca"]))
    return files


# --- certificates ---------------------------------------------------------------------------------------


def test_generated_certificate_names_key_and_validity() -> None:
    made = generate_self_signed(
        ["localhost", "Echo-7D9F", "localhost", "bad name!", "ünïcode", ""],
        ["127.0.0.1", "not-an-ip", "::1"],
        NOW,
    )
    cert = x509.load_pem_x509_certificate(made.cert_pem)
    key = serialization.load_pem_private_key(made.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert made.key_type == "ECDSA P-256"
    assert made.source == "generated"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "echo-7d9f"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert cert.not_valid_before_utc == NOW - datetime.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=365)
    assert cert.issuer == cert.subject


def test_given_pair_loads(pair: dict[str, Path]) -> None:
    loaded = load_certificate_pair(str(pair["cert"]), str(pair["key"]))
    assert loaded.source == str(pair["cert"])
    assert loaded.key_type.startswith(("ECDSA", "RSA"))


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        pytest.param(
            "missing", "key", "HTTPS_CERT_FILE {missing}: No such file or directory", id="cert-missing"
        ),
        pytest.param(
            "garbage", "key", "HTTPS_CERT_FILE {garbage}: no PEM certificate found", id="cert-not-pem"
        ),
        pytest.param(
            "cert", "garbage", "HTTPS_KEY_FILE {garbage}: no usable PEM private key found", id="key-not-pem"
        ),
        pytest.param(
            "cert",
            "encrypted_key",
            "HTTPS_KEY_FILE {encrypted_key}: encrypted private keys are not supported",
            id="key-encrypted",
        ),
        pytest.param(
            "cert",
            "other_key",
            "HTTPS_KEY_FILE {other_key} does not match the (first) certificate in HTTPS_CERT_FILE {cert}",
            id="key-mismatch",
        ),
    ],
)
def test_bad_pairs_are_one_line_errors(
    pair: dict[str, Path], tmp_path: Path, cert: str, key: str, message: str
) -> None:
    paths = {name: str(path) for name, path in pair.items()} | {"missing": str(tmp_path / "missing.pem")}
    with pytest.raises(TLSSetupError) as caught:
        load_certificate_pair(paths[cert], paths[key])
    assert str(caught.value) == message.format(**paths)


@pytest.mark.parametrize(
    ("cert_file", "key_file", "message"),
    [
        pytest.param("c.pem", None, "HTTPS_KEY_FILE is required", id="key-missing"),
        pytest.param(None, "k.pem", "HTTPS_CERT_FILE is required", id="cert-missing"),
    ],
)
def test_half_a_pair_is_an_error(cert_file: str | None, key_file: str | None, message: str) -> None:
    options = TLSOptions(cert_file, key_file, mtls=False, client_ca_file=None, dns_names=(), ip_addresses=())
    with pytest.raises(TLSSetupError, match=message):
        server_certificate(options, NOW)


# --- the server context ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mtls", "with_ca", "verify_mode", "client_auth"),
    [
        pytest.param(False, False, ssl.CERT_NONE, "off", id="no-mtls"),
        pytest.param(True, True, ssl.CERT_REQUIRED, "verified", id="mtls-with-ca"),
        pytest.param(True, False, ssl.CERT_OPTIONAL, "unverified", id="mtls-without-ca"),
    ],
)
def test_server_context_modes(
    pair: dict[str, Path], mtls: bool, with_ca: bool, verify_mode: ssl.VerifyMode, client_auth: str
) -> None:
    options = TLSOptions(
        None,
        None,
        mtls=mtls,
        client_ca_file=str(pair["ca"]) if with_ca else None,
        dns_names=(),
        ip_addresses=(),
    )
    tls = server_context(options, generate_self_signed(["localhost"], [], NOW))
    assert tls.context.verify_mode == verify_mode
    assert tls.client_auth == client_auth
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_bad_client_ca_bundle_is_a_one_line_error(pair: dict[str, Path]) -> None:
    options = TLSOptions(
        None, None, mtls=True, client_ca_file=str(pair["garbage"]), dns_names=(), ip_addresses=()
    )
    with pytest.raises(TLSSetupError, match="^" + re.escape(f"client CA bundle {pair['garbage']}: ")):
        server_context(options, generate_self_signed(["localhost"], [], NOW))


@pytest.mark.parametrize(
    "memfd", [pytest.param(True, id="memfd"), pytest.param(False, id="temp-dir-fallback")]
)
def test_generated_certificate_loads_without_a_writable_root(
    monkeypatch: pytest.MonkeyPatch, memfd: bool
) -> None:
    if not memfd:
        monkeypatch.setattr(os, "memfd_create", _no_memfd, raising=False)
    tls = server_context(NO_TLS_FILES, generate_self_signed(["localhost"], [], NOW))
    assert tls.context.cert_store_stats() is not None


def test_nowhere_to_stage_the_certificate_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "memfd_create", _no_memfd, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/echo-test-tmp")
    with pytest.raises(TLSSetupError, match="mount a writable /tmp"):
        server_context(NO_TLS_FILES, generate_self_signed(["localhost"], [], NOW))


def test_mismatched_pem_bytes_are_a_one_line_error() -> None:
    one = generate_self_signed(["localhost"], [], NOW)
    other = generate_self_signed(["localhost"], [], NOW)
    mixed = ServerCertificate(cert_pem=one.cert_pem, key_pem=other.key_pem, source="mixed.pem", key_type="x")
    with pytest.raises(TLSSetupError, match=r"^certificate mixed\.pem: key values mismatch"):
        server_context(NO_TLS_FILES, mixed)


def _no_memfd(name: str, flags: int = 0) -> int:
    raise OSError(38, "Function not implemented")


class FakeSSLObject:
    def __init__(self, peer: bytes | None) -> None:
        self._peer = peer

    def version(self) -> str:
        return "TLSv1.3"

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def selected_alpn_protocol(self) -> str:
        return "h2"

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._peer


@pytest.mark.parametrize(
    ("peer", "client_auth", "verified"),
    [
        pytest.param(None, "off", False, id="no-client-cert"),
        pytest.param(b"\x30\x03der", "verified", True, id="verified-client-cert"),
        pytest.param(b"\x30\x03der", "unverified", False, id="unverified-client-cert"),
    ],
)
def test_tls_facts_follow_the_contract(peer: bytes | None, client_auth: str, verified: bool) -> None:
    ssl_object = FakeSSLObject(peer)
    sni = SNIRecorder()
    sni(ssl_object, "echo.local", ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert tls_facts(ssl_object, sni, client_auth) == {
        "version": "TLSv1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "alpn": "h2",
        "sni": "echo.local",
        "peer_cert_der": peer,
        "peer_cert_verified": verified,
    }
    assert SNIRecorder().name_for(ssl_object) is None


# --- listeners ------------------------------------------------------------------------------------------


def _options(http: int | None, https: int | None = None, h2c: int | None = None) -> ServeOptions:
    return ServeOptions(bind="127.0.0.1", http_port=http, https_port=https, h2c_port=h2c, tls=NO_TLS_FILES)


def test_all_listeners_bind_and_are_released() -> None:
    with bound_listeners(_options(0, 0, 0)) as listeners:
        assert [listener.kind for listener in listeners] == ["http", "https", "h2c"]
        ports = [listener.port for listener in listeners]
        assert all(port > 0 for port in ports)
    for port in ports:  # closed again: each can be bound afresh
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_bind() -> None:
    options = ServeOptions(bind="::1", http_port=0, https_port=None, h2c_port=None, tls=NO_TLS_FILES)
    with bound_listeners(options) as listeners:
        assert listeners[0].sock.family == socket.AF_INET6
        assert describe(listeners, options, None).startswith(f"listening: http on [::1]:{listeners[0].port} ")


def test_a_taken_port_releases_the_ports_already_bound() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        with socket.socket() as finder:
            finder.bind(("127.0.0.1", 0))
            first = finder.getsockname()[1]
        with pytest.raises(ServeError) as caught, bound_listeners(_options(first, taken)):
            pass
    assert str(caught.value) == f"cannot listen for https on 127.0.0.1:{taken}: address already in use"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", first))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(_options(None), "every listener is off", id="all-off"),
        pytest.param(_options(18080, 18080), "must differ", id="duplicate-ports"),
        pytest.param(
            ServeOptions(
                bind="nonexistent.invalid", http_port=0, https_port=None, h2c_port=None, tls=NO_TLS_FILES
            ),
            "bind address 'nonexistent.invalid'",
            id="unresolvable-bind",
        ),
    ],
)
def test_listener_errors(options: ServeOptions, message: str) -> None:
    with pytest.raises(ServeError, match=message), bound_listeners(options):
        pass


def test_describe_names_every_listener() -> None:
    with bound_listeners(_options(0, None, 0)) as listeners:
        text = describe(listeners, _options(0, None, 0), None)
        http, h2c = (listener.port for listener in listeners)
    assert text == (
        f"listening: http on 127.0.0.1:{http} (HTTP/1.1, WebSocket); "
        f"h2c on 127.0.0.1:{h2c} (HTTP/2 prior knowledge or Upgrade, HTTP/1.1); off: https"
    )


# --- CLI ------------------------------------------------------------------------------------------------


def test_serve_options_from_config() -> None:
    config = load_config(
        ["--https-port", "off", "--drain-seconds", "2.5"],
        {"HTTP_PORT": "9090", "H2C_PORT": "9091", "ECHO_BIND": "127.0.0.1", "ECHO_MAX_DELAY_MS": "10000"},
    )
    identity = Identity(name="echo-v1-abc", hostname="echo-v1-abc", ip="10.1.2.3")
    options = serve_options(config, identity)
    assert (options.http_port, options.https_port, options.h2c_port) == (9090, None, 9091)
    assert options.bind == "127.0.0.1"
    assert options.drain_seconds == 2.5
    assert options.grace_seconds == 15.0  # max delay 10 s + 5 s margin
    assert options.tls.dns_names == ("localhost", "echo-v1-abc")
    assert options.tls.ip_addresses == ("127.0.0.1", "::1", "10.1.2.3")
    assert options.max_header_bytes == config.max_header_size


def test_help_lists_every_variable() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main_impl(["--help"], {}, out, err) == 0
    for name in ("HTTP_PORT", "HTTPS_PORT", "H2C_PORT", "ECHO_BIND", "MTLS_ENABLE", "ECHO_DRAIN_SECONDS"):
        assert name in out.getvalue()
    assert err.getvalue() == ""


def test_bad_config_exits_2_with_usage() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main_impl([], {"HTTP_PORT": "eighty"}, out, err) == 2
    assert (
        err.getvalue().splitlines()[-1]
        == "echo-server: error: HTTP_PORT: expected a port 1-65535 or 'off', got 'eighty'"
    )
    assert "usage: echo-server" in err.getvalue()
    assert out.getvalue() == ""


# --- serving limits: settings, derived bounds, pure helpers -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param([], {}, (10.0, 30.0, 10_000, 1_048_576), id="defaults"),
        pytest.param(
            [],
            {
                "ECHO_HEADER_TIMEOUT_SECONDS": "2.5",
                "ECHO_BODY_TIMEOUT_SECONDS": "4",
                "ECHO_MAX_CONNECTIONS": "50",
            },
            (2.5, 4.0, 50, 1_048_576),
            id="env",
        ),
        pytest.param(
            ["--header-timeout", "1", "--body-timeout", "2", "--max-connections", "3"],
            {"ECHO_HEADER_TIMEOUT_SECONDS": "9"},
            (1.0, 2.0, 3, 1_048_576),
            id="flags-win",
        ),
        pytest.param([], {"MAX_HEADER_SIZE": "8388608"}, (10.0, 30.0, 10_000, 8_388_608), id="ceiling"),
    ],
)
def test_serving_limit_settings(
    argv: list[str], environ: dict[str, str], expected: tuple[float, float, int, int]
) -> None:
    config = load_config(argv, environ)
    options = serve_options(config, Identity(name="pod", hostname="pod"))
    assert (
        options.header_timeout_seconds,
        options.body_timeout_seconds,
        options.max_connections,
        options.max_header_bytes,
    ) == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("ECHO_HEADER_TIMEOUT_SECONDS", "0", "expected a positive", id="zero"),
        pytest.param("ECHO_BODY_TIMEOUT_SECONDS", "-1", "expected 0-3600", id="negative"),
        pytest.param("ECHO_MAX_CONNECTIONS", "0", "expected a positive", id="no-connections"),
        pytest.param("MAX_HEADER_SIZE", "8388609", "at most 8388608", id="over-the-ceiling"),
    ],
)
def test_serving_limit_errors(name: str, value: str, message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main_impl([], {name: value}, out, err) == 2
    assert f"{name}: {message}" in err.getvalue().splitlines()[-1]


def test_derived_bounds() -> None:
    limits = Limits(
        max_header_bytes=4096, header_timeout=10, body_timeout=30, keep_alive=75, max_connections=5
    )
    assert limits.head_bound == 2 * 4096 + 65536
    assert limits.sweep_interval == 0.5
    assert Limits(4096, 1, 30, 75, 5).sweep_interval == 0.1
    assert Limits(4096, 0.1, 0.2, 75, 5).sweep_interval == 0.05


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(b"/a/b?x=1", (b"/a/b", b"x=1"), id="origin-form"),
        pytest.param(b"/caf\xe9?q=\xff#frag", (b"/caf\xe9", b"q=\xff"), id="raw-bytes-and-fragment"),
        pytest.param(b"http://host:8080/p?q", (b"/p", b"q"), id="absolute-form"),
        pytest.param(b"http://host", (b"/", b""), id="absolute-form-without-path"),
        pytest.param(b"*", (b"*", b""), id="asterisk"),
    ],
)
def test_split_target(target: bytes, expected: tuple[bytes, bytes]) -> None:
    assert split_target(target) == expected


def test_escape_high_bytes_only_touches_bytes_over_0x7f() -> None:
    assert escape_high_bytes(b"/caf\xe9/%41 x") == b"/caf%E9/%41 x"


def test_notices_are_rate_limited() -> None:
    log = io.StringIO()
    notices = Notices(log, interval=3600)
    for n in range(5):
        notices.notice("cap", f"full {n}")
    notices.notice("other", "else")
    assert log.getvalue().splitlines() == ["echo-server: full 0", "echo-server: else"]


def test_descriptor_limit_is_raised_or_the_cap_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    limits = {"soft": 1024, "hard": 4096}

    def getrlimit(_: int) -> tuple[int, int]:
        return limits["soft"], limits["hard"]

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        limits["soft"] = value[0]

    monkeypatch.setattr(resource, "getrlimit", getrlimit)
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert fit_descriptor_limit(2000) == 2000  # raised to 2064
    assert limits["soft"] == 2064
    assert fit_descriptor_limit(10_000) == 4096 - 64  # the hard limit caps it
