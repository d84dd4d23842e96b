"""TLS for the HTTPS listener: certificates, the server SSLContext, and per-connection TLS facts.

Invariants:
- Without HTTPS_CERT_FILE/HTTPS_KEY_FILE a fresh ECDSA P-256 certificate is generated at start, in
  memory. `SSLContext.load_cert_chain` needs paths: memfd files (never on disk) where available, else
  a private directory under the temp dir, removed at once. A read-only root filesystem works.
- Given certificate/key files are validated before use; every problem becomes one `TLSSetupError` line.
- The facts handed to the app per connection follow the serving→app contract:
  {"version", "cipher", "alpn", "sni", "peer_cert_der"} (+ "peer_cert_verified").
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import os
import re
import ssl
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALPN_PROTOCOLS = ("h2", "http/1.1")
# TLS 1.2 suites: forward secrecy and AEAD only (RFC 7540 section 9.2.2 bans the rest for h2).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
GENERATED_VALIDITY = datetime.timedelta(days=365)
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


class TLSSetupError(Exception):
    """A certificate, key or CA problem, as one human-readable line."""


@dataclass(frozen=True)
class ServerCertificate:
    cert_pem: bytes
    key_pem: bytes
    source: str  # "generated" or the certificate file path, for the start-up log line
    key_type: str


@dataclass(frozen=True)
class TLSOptions:
    cert_file: str | None
    key_file: str | None
    mtls: bool
    client_ca_file: str | None
    # Names and addresses for the generated certificate's subjectAltName.
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


def generate_self_signed(
    dns_names: Sequence[str], ip_addresses: Sequence[str], now: datetime.datetime
) -> ServerCertificate:
    """A self-signed ECDSA P-256 certificate for the given names (invalid IPs are skipped)."""
    key = ec.generate_private_key(ec.SECP256R1())
    # Only valid DNS names (hostnames and pod names normally are); anything else is left out.
    names = list(dict.fromkeys(n.lower() for n in dns_names if _DNS_NAME.fullmatch(n)))
    common_name = names[0] if names else "localhost"
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    for text in dict.fromkeys(ip_addresses):
        with contextlib.suppress(ValueError):
            alt_names.append(x509.IPAddress(ipaddress.ip_address(text)))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshecho echo-server (self-signed)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little so clients with a slightly slow clock accept it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + GENERATED_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return ServerCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        source="generated",
        key_type="ECDSA P-256",
    )


def load_certificate_pair(cert_file: str, key_file: str) -> ServerCertificate:
    """Read and cross-check a PEM certificate (chain) and its unencrypted private key."""
    cert_pem = _read(cert_file, "HTTPS_CERT_FILE")
    key_pem = _read(key_file, "HTTPS_KEY_FILE")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TLSSetupError(f"HTTPS_CERT_FILE {cert_file}: no PEM certificate found") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TLSSetupError(f"HTTPS_KEY_FILE {key_file}: encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSSetupError(f"HTTPS_KEY_FILE {key_file}: no usable PEM private key found") from None
    public_format = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*public_format) != key.public_key().public_bytes(*public_format):
        raise TLSSetupError(
            f"HTTPS_KEY_FILE {key_file} does not match the (first) certificate in HTTPS_CERT_FILE {cert_file}"
        )
    return ServerCertificate(cert_pem=cert_pem, key_pem=key_pem, source=cert_file, key_type=_key_type(key))


def server_certificate(options: TLSOptions, now: datetime.datetime) -> ServerCertificate:
    if options.cert_file is None and options.key_file is None:
        return generate_self_signed(options.dns_names, options.ip_addresses, now)
    if options.cert_file is None or options.key_file is None:
        missing = "HTTPS_CERT_FILE" if options.cert_file is None else "HTTPS_KEY_FILE"
        raise TLSSetupError(f"{missing} is required when the other of HTTPS_CERT_FILE/HTTPS_KEY_FILE is set")
    return load_certificate_pair(options.cert_file, options.key_file)


class SNIRecorder:
    """Remembers the SNI each TLS connection asked for; the SSLContext calls it during the handshake.

    Weak keys: an entry lives exactly as long as its connection's SSLObject.
    """

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def __call__(self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        if server_name is not None:
            self._names[ssl_object] = server_name

    def name_for(self, ssl_object: Any) -> str | None:
        return self._names.get(ssl_object)


@dataclass(frozen=True)
class ServerTLS:
    context: ssl.SSLContext
    certificate: ServerCertificate
    sni: SNIRecorder
    # "off", "verified" (CA bundle, CERT_REQUIRED) or "unverified" (any client certificate is reported).
    client_auth: str


def server_context(options: TLSOptions, certificate: ServerCertificate) -> ServerTLS:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 7540 section 9.2
    context.options |= ssl.OP_NO_COMPRESSION  # RFC 7540 section 9.2.1
    context.set_ciphers(TLS12_CIPHERS)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    _load_chain(context, certificate)
    sni = SNIRecorder()
    context.sni_callback = sni
    client_auth = "off"
    if options.mtls:
        if options.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=options.client_ca_file)
            except (OSError, ssl.SSLError) as error:
                raise TLSSetupError(f"client CA bundle {options.client_ca_file}: {_reason(error)}") from None
            context.verify_mode = ssl.CERT_REQUIRED
            client_auth = "verified"
        else:
            context.verify_mode = ssl.CERT_OPTIONAL
            if not accept_unverified_client_certificates(context):
                raise TLSSetupError(
                    "MTLS_ENABLE without a client CA bundle needs OpenSSL's verify callback, "
                    "which is not reachable here; configure a client CA bundle"
                )
            client_auth = "unverified"
    return ServerTLS(context=context, certificate=certificate, sni=sni, client_auth=client_auth)


def tls_facts(ssl_object: Any, sni: SNIRecorder, client_auth: str) -> dict[str, object]:
    """The serving→app contract for one TLS connection (`scope["extensions"]["meshecho.tls"]`)."""
    cipher = ssl_object.cipher()
    peer_der = ssl_object.getpeercert(binary_form=True)
    return {
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "alpn": ssl_object.selected_alpn_protocol(),
        "sni": sni.name_for(ssl_object),
        "peer_cert_der": peer_der or None,
        "peer_cert_verified": bool(peer_der) and client_auth == "verified",
    }


# --- mTLS without a CA bundle --------------------------------------------------------------------
# mendhak's MTLS_ENABLE (Node: requestCert, rejectUnauthorized=false) reports ANY client certificate.
# Python's ssl module cannot do that: with CERT_OPTIONAL, OpenSSL aborts the handshake when a presented
# certificate does not chain to a loaded CA, and the stdlib exposes no verify callback. So, when no
# CA bundle is configured, we install OpenSSL's verify callback ourselves (SSL_CTX_set_verify through
# ctypes, on the libssl that CPython's _ssl module is linked against) with a callback that accepts every
# chain. The certificate is then reported as unverified ("peer_cert_verified": false). The SSL_CTX
# pointer is read from the PySSLContext object and checked (verify mode round-trip) before any write.

_SSL_VERIFY_PEER = 1
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any_chain(preverify_ok: int, store_context: int | None) -> int:
    return 1


_ACCEPT_ANY = _VERIFY_CALLBACK(_accept_any_chain)  # module-level: must outlive every SSL_CTX


def accept_unverified_client_certificates(context: ssl.SSLContext) -> bool:
    """Make a CERT_OPTIONAL context accept client certificates it cannot verify; False if impossible."""
    try:
        import _ssl

        libssl = ctypes.CDLL(_ssl.__file__)
        get_mode = libssl.SSL_CTX_get_verify_mode
        set_verify = libssl.SSL_CTX_set_verify
    except (OSError, AttributeError, ImportError):
        return False
    get_mode.argtypes = [ctypes.c_void_p]
    get_mode.restype = ctypes.c_int
    set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
    set_verify.restype = None
    # PySSLContext starts with PyObject_HEAD followed by `SSL_CTX *ctx`.
    ctx_pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ctx_pointer:
        return False
    # Check we found the right pointer: the verify mode must round-trip through OpenSSL.
    context.verify_mode = ssl.CERT_REQUIRED
    required = get_mode(ctx_pointer)
    context.verify_mode = ssl.CERT_OPTIONAL
    if required != 3 or get_mode(ctx_pointer) != _SSL_VERIFY_PEER:
        return False
    set_verify(ctx_pointer, _SSL_VERIFY_PEER, _ACCEPT_ANY)
    return True


def _load_chain(context: ssl.SSLContext, certificate: ServerCertificate) -> None:
    """Load PEM bytes into the context. `ssl` only loads certificates from paths, so the bytes go to
    anonymous in-memory files (memfd, read through /proc/self/fd) where the kernel offers them, else
    to a private directory under the temp dir that is removed at once."""
    try:
        with _pem_paths(certificate) as (cert_path, key_path):
            context.load_cert_chain(certfile=cert_path, keyfile=key_path)
    except ssl.SSLError as error:
        raise TLSSetupError(f"certificate {certificate.source}: {_reason(error)}") from None
    except OSError as error:
        raise TLSSetupError(
            f"cannot stage the certificate for OpenSSL ({error.strerror or error}): "
            "mount a writable /tmp (or set TMPDIR)"
        ) from None


@contextlib.contextmanager
def _pem_paths(certificate: ServerCertificate) -> Iterator[tuple[str, str]]:
    fds: list[int] = []
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        try:
            for blob in (certificate.cert_pem, certificate.key_pem):
                fds.append(memfd_create("echo-tls", os.MFD_CLOEXEC))
                os.write(fds[-1], blob)
        except OSError:  # no memfd here: fall back to the temp directory
            for fd in fds:
                os.close(fd)
            fds = []
    if fds:
        try:
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="echo-tls-") as directory:
        cert_path = Path(directory) / "cert.pem"
        key_path = Path(directory) / "key.pem"
        cert_path.write_bytes(certificate.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(certificate.key_pem)
        yield os.fspath(cert_path), os.fspath(key_path)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TLSSetupError(f"{what} {path}: {error.strerror or error}") from None


def _key_type(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
        return f"ECDSA {curve or key.curve.name}"
    size = getattr(key, "key_size", None)
    return f"{type(key).__name__.removeprefix('_').replace('PrivateKey', '')} {size}".strip()


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None)
    return str(reason or error).lower().replace("_", " ")
