"""Request → echo document (pure: plain data in, a JSON-ready dict out).

Field names and meanings follow mendhak/http-https-echo (Express's ``req.*``), then ours:
``http_version``, ``tls``, ``pod``, ``mesh``, ``body_bytes``, ``body_sha256``, ``body_encoding``.

Text safety rules (the document must always serialise):
- header values are decoded as UTF-8; bytes that are not UTF-8 appear as ``\\xNN`` escapes;
- a path or query holding lone surrogates (a server decoding with ``surrogateescape``) gets the same
  ``\\xNN`` escapes; percent-decoding already turned invalid UTF-8 into U+FFFD;
- a body that is not UTF-8 is sent as base64 with ``body_encoding: "base64"``, never altered.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import orjson

from echo.cookies import parse_cookies
from echo.jwt import decode_jwt
from echo.mesh import UNKNOWN_POD, PodMesh, mesh_info
from echo.trust import TrustedProxies

TLS_EXTENSION = "meshecho.tls"
# From the serving layer, only with PRESERVE_HEADER_CASE: the header names as received (bytes), in
# the order of scope["headers"].
RAW_HEADER_NAMES_EXTENSION = "echo.raw_header_names"
# Express "trust proxy" = ['loopback', 'linklocal', 'uniquelocal'], as mendhak configures it.
_MENDHAK_TRUST = TrustedProxies(TrustedProxies.MENDHAK_DEFAULT)

# An environment variable whose name contains one of these is a secret: its value is hidden whole.
_SECRET_WORDS = (
    "PASS",  # PASSWORD, PASSWD, PASSPHRASE, PGPASS(FILE)
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "CERT",
    "SESSION",
    "COOKIE",
    "DSN",
    "SALT",
    "SIGNATURE",
)
REDACTED = "[redacted]"
# Any other value may still hold a secret: a URL with user:password@ (DATABASE_URL, REDIS_URL,
# AMQP_URL…), a secret-looking query parameter, or a PEM private key.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]*)@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:[^=&;#\s]*(?:pass|secret|token|key|auth|sig|credential)[^=&;#\s]*)=)(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    # user:password@ keeps the user; a lone userinfo is often a token (https://TOKEN@host): hidden.
    return f"{match.group('scheme')}{user}:{REDACTED}@" if colon else f"{match.group('scheme')}{REDACTED}@"


def redact_value(value: str) -> str:
    """Hide the secret parts of a value whose name did not look secret."""
    if _PEM_PRIVATE.search(value):
        return REDACTED
    if "@" in value and "://" in value:
        value = _URL_USERINFO.sub(_mask_userinfo, value)
    if "=" in value:
        value = _SECRET_QUERY.sub(lambda match: match.group("name") + REDACTED, value)
    return value


def redact_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``ECHO_INCLUDE_ENV_VARS``: the environment with secrets hidden (by name, then by value)."""
    return {
        name: (REDACTED if is_secret_name(name) else redact_value(value))
        for name, value in sorted(environ.items())
    }


@dataclass(frozen=True, slots=True)
class ReflectOptions:
    hostname: str
    pod: Mapping[str, object]
    jwt_header: str | None = None  # lower-case
    preserve_header_case: bool = False
    env: Mapping[str, str] | None = None
    trust: TrustedProxies = _MENDHAK_TRUST
    cookie_secret: str | None = None
    max_json_bytes: int = 1_048_576
    mesh_pod: PodMesh = UNKNOWN_POD  # the pod's own mesh, from its Downward API files


def safe_text(text: str) -> str:
    """Make ``text`` encodable as UTF-8: lone surrogates become ``\\xNN`` escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def decode_header_value(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("utf-8", "backslashreplace")


def headers_dict(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names → values; repeats joined by ``, `` (``; `` for cookie), as Node does."""
    out: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        value = decode_header_value(value_bytes)
        if name in out:
            out[name] = out[name] + ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


def _title_case(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def display_headers(
    raw: Sequence[tuple[bytes, bytes]],
    headers: Mapping[str, str],
    wire_names: Sequence[bytes] | None,
    http_version: str,
) -> dict[str, str]:
    """PRESERVE_HEADER_CASE: mendhak's rule applied to the names as they were on the wire.

    mendhak copies the lower-case ``req.headers``; then for each raw name that has an upper-case
    letter it sets ``headers[rawName] = req.header(rawName)`` (the processed value) and deletes the
    lower-case key. So lower-case names keep their place and value, names sent with capitals move to
    the end, in arrival order, and two spellings of one name both appear.

    The wire names come from the serving layer (``echo.raw_header_names``). Without them: on HTTP/2
    every name is lower-case on the wire, so the rule leaves ``headers`` as it is; on HTTP/1.x, where
    the case is unknown, names are shown Title-Case.
    """
    if wire_names is None or len(wire_names) != len(raw):
        if http_version == "2":
            return dict(headers)
        wire_names = [_title_case(name.decode("latin-1")).encode("latin-1") for name, _ in raw]
    out = dict(headers)
    for wire in wire_names:
        shown = wire.decode("latin-1")
        lower = shown.lower()
        if shown == lower:
            continue
        if lower in ("referer", "referrer"):  # Express's req.header() treats the two as one
            value = headers.get("referrer") or headers.get("referer")
        else:
            value = headers.get(lower)
        if value is None:
            continue
        out[shown] = value
        out.pop(lower, None)
    return out


def parse_query(query_string: bytes) -> dict[str, str | list[str]]:
    """``a=1&a=2&b`` → {"a": ["1", "2"], "b": ""}: a repeated key becomes a list, as qs does."""
    out: dict[str, str | list[str]] = {}
    if not query_string:
        return out
    text = query_string.decode("utf-8", "backslashreplace")
    if "%" in text or "+" in text:
        pairs = [(safe_text(key), safe_text(value)) for key, value in parse_qsl(text, keep_blank_values=True)]
    else:  # nothing to unescape: a plain split gives what parse_qsl would, several times faster
        pairs = [(part.partition("=")[0], part.partition("=")[2]) for part in text.split("&") if part]
    for key, value in pairs:
        existing = out.get(key)
        if existing is None:
            out[key] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            out[key] = [existing, value]
    return out


def is_trusted_proxy(address: str) -> bool:
    """Trusted by mendhak's own ``trust proxy`` setting (loopback, link-local, private)."""
    return _MENDHAK_TRUST.trusted(address)


def client_addresses(peer: str | None, forwarded_for: str | None) -> tuple[str | None, list[str]]:
    """Express's (req.ip, req.ips) under mendhak's default trust."""
    return _MENDHAK_TRUST.client_addresses(peer, forwarded_for)


def _hostname(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.split(":", 1)[0]


@lru_cache(maxsize=256)
def _host_fields(host: str) -> tuple[str, tuple[str, ...]]:
    """Host header → (Express's req.hostname, req.subdomains: offset 2, reversed; none for an IP)."""
    hostname = _hostname(host)
    try:
        ipaddress.ip_address(hostname.strip("[]"))
        return hostname, ()
    except ValueError:
        pass
    return hostname, tuple(reversed(hostname.split(".")))[2:]


def _fresh(method: str, headers: Mapping[str, str]) -> bool:
    """Express's req.fresh for a response that has no ETag/Last-Modified yet (ours never do)."""
    if method not in ("GET", "HEAD"):
        return False
    if_none_match = headers.get("if-none-match")
    if_modified_since = headers.get("if-modified-since")
    if not if_none_match and not if_modified_since:
        return False
    if "no-cache" in headers.get("cache-control", ""):
        return False
    return if_none_match is not None and if_none_match.strip() == "*" and not if_modified_since


# Content-Type values seen so far and whether each is JSON: a request with a body asks up to three
# times (budget, document, json field), and clients send a handful of values. Bounded in size.
_JSON_CONTENT_TYPES: dict[str, bool] = {}
_JSON_CONTENT_TYPES_SIZE = 1024


def is_json_content_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    known = _JSON_CONTENT_TYPES.get(content_type)
    if known is None:
        media = content_type.split(";", 1)[0].strip().lower()
        known = media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
        if len(_JSON_CONTENT_TYPES) < _JSON_CONTENT_TYPES_SIZE:
            _JSON_CONTENT_TYPES[content_type] = known
    return known


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def body_fields(body: bytes) -> tuple[str, str]:
    """(body text, encoding): UTF-8 text when it is UTF-8, else base64."""
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def _name_dict(name: Any) -> dict[str, str]:
    """x509.Name → Node-style {"CN": ..., "O": ...} (repeated attributes joined by newline as Node does)."""
    out: dict[str, str] = {}
    for attribute in name:
        key = _SHORT_NAMES.get(attribute.oid.dotted_string, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        out[key] = out[key] + "\n" + value if key in out else value
    return out


_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
    "2.5.4.5": "serialNumber",
}


@lru_cache(maxsize=256)
def describe_certificate(der: bytes) -> dict[str, Any]:
    """Parse a DER certificate once per distinct certificate (a client reuses one across requests).

    Returns {"tls": our client_certificate dict, "node": mendhak's clientCertificate dict}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        error = {"error": f"unparseable client certificate: {exc}"}
        return {"tls": error, "node": error}
    sans: list[str] = []
    node_sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        ext = None
    if ext is not None:
        for general_name in ext:
            if isinstance(general_name, x509.UniformResourceIdentifier):
                sans.append(f"URI:{general_name.value}")
            elif isinstance(general_name, x509.DNSName):
                sans.append(f"DNS:{general_name.value}")
            elif isinstance(general_name, x509.IPAddress):
                sans.append(f"IP:{general_name.value}")
            elif isinstance(general_name, x509.RFC822Name):
                sans.append(f"email:{general_name.value}")
            else:
                continue
            node_sans.append(sans[-1])
    sha256 = cert.fingerprint(hashes.SHA256()).hex()
    sha1 = cert.fingerprint(hashes.SHA1()).hex()  # display only, as Node shows it
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    serial = format(cert.serial_number, "X")
    if len(serial) % 2:
        serial = "0" + serial
    spiffe = [san[4:] for san in sans if san.startswith("URI:spiffe://")]
    ours = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "spiffe_id": spiffe[0] if spiffe else None,
        "serial": serial,
        "not_before": not_before.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "not_after": not_after.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "sha256": sha256,
    }

    def colon(hex_text: str) -> str:
        return ":".join(hex_text[i : i + 2] for i in range(0, len(hex_text), 2)).upper()

    node = {
        "subject": _name_dict(cert.subject),
        "issuer": _name_dict(cert.issuer),
        "subjectaltname": ", ".join(node_sans) if node_sans else None,
        "valid_from": not_before.strftime("%b %d %H:%M:%S %Y GMT"),
        "valid_to": not_after.strftime("%b %d %H:%M:%S %Y GMT"),
        "fingerprint": colon(sha1),
        "fingerprint256": colon(sha256),
        "serialNumber": serial,
    }
    return {"tls": ours, "node": node}


def tls_info(tls: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our ``tls`` field, mendhak's ``clientCertificate``: {} when the client sent none)."""
    der = tls.get("peer_cert_der")
    described = describe_certificate(bytes(der)) if der else None
    client_certificate: dict[str, Any] | None = None
    if described is not None:
        # The parsed certificate is shared between requests; verification is per connection.
        client_certificate = {**described["tls"], "verified": bool(tls.get("peer_cert_verified", False))}
    ours = {
        "version": tls.get("version"),
        "cipher": tls.get("cipher"),
        "alpn": tls.get("alpn"),
        "sni": tls.get("sni"),
        "client_certificate": client_certificate,
    }
    return ours, (described["node"] if described else {})


def reflect(
    scope: Mapping[str, Any],
    headers: Mapping[str, str],
    body: bytes,
    options: ReflectOptions,
    *,
    query: Mapping[str, object] | None = None,
    content_encoding: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """Build the echo document. ``headers`` is ``headers_dict(scope["headers"])``; ``body`` is decoded.

    This runs for every request: helpers are only called when their header is present.
    ``content_encoding`` describes a decoded Content-Encoding (``{"decoded": [...], "encoded_bytes"}``).
    """
    method: str = scope["method"]
    client = scope.get("client")
    peer = client[0] if client else None
    trust = options.trust
    trusted_peer = peer is not None and trust.trusted(peer)

    host = headers.get("x-forwarded-host") if trusted_peer else None
    host = host.split(",", 1)[0].strip() if host else headers.get("host")
    hostname, subdomains = _host_fields(host) if host else (None, ())

    protocol = "https" if scope.get("scheme") in ("https", "wss") else "http"
    if trusted_peer and "x-forwarded-proto" in headers:
        protocol = headers["x-forwarded-proto"].split(",", 1)[0].strip()

    forwarded_for = headers.get("x-forwarded-for")
    ips: list[str]
    if forwarded_for is None or peer is None:
        ip, ips = peer, []
    else:
        ip, ips = trust.client_addresses(peer, forwarded_for)
    extensions = scope.get("extensions")
    tls = extensions.get(TLS_EXTENSION) if extensions else None

    if options.preserve_header_case:
        shown_headers: Mapping[str, str] = display_headers(
            scope["headers"],
            headers,
            extensions.get(RAW_HEADER_NAMES_EXTENSION) if extensions else None,
            scope.get("http_version", "1.1"),
        )
    else:
        shown_headers = headers

    body_text, encoding = body_fields(body) if body else ("", "utf-8")
    path: str = scope["path"]
    cookies, signed_cookies = parse_cookies(headers.get("cookie"), options.cookie_secret)
    doc: dict[str, Any] = {
        "path": path if path.isascii() else safe_text(path),
        "headers": shown_headers,
        "method": method,
        "body": body_text,
        "cookies": cookies,
        "signedCookies": signed_cookies,
        "fresh": _fresh(method, headers)
        if "if-none-match" in headers or "if-modified-since" in headers
        else False,
        "hostname": hostname,
        "ip": ip,
        "ips": ips,
        "protocol": protocol,
        "query": query if query is not None else parse_query(scope.get("query_string", b"")),
        "subdomains": list(subdomains),
        "xhr": "x-requested-with" in headers and headers["x-requested-with"].lower() == "xmlhttprequest",
        "os": {"hostname": options.hostname},
        "connection": {"servername": tls["sni"]} if tls and tls.get("sni") else {},
    }
    if tls is not None:
        tls_doc, client_certificate = tls_info(tls)
        doc["clientCertificate"] = client_certificate
    else:
        tls_doc = None
    content_type = headers.get("content-type")
    if content_type is not None and is_json_content_type(content_type):
        if len(body) > options.max_json_bytes:
            doc["json"] = None
            doc["json_error"] = (
                f"not parsed: body larger than {options.max_json_bytes} bytes (ECHO_MAX_JSON_BYTES)"
            )
        else:
            try:
                doc["json"] = orjson.loads(body) if body else None
            except orjson.JSONDecodeError as exc:
                doc["json"] = None
                doc["json_error"] = f"invalid JSON: {exc}"
    if options.jwt_header is not None:
        token = headers.get(options.jwt_header)
        if token:
            doc["jwt"] = decode_jwt(token)
    if options.env is not None:
        doc["env"] = options.env
    doc["http_version"] = scope.get("http_version", "1.1")
    doc["tls"] = tls_doc
    doc["pod"] = options.pod
    doc["mesh"] = mesh_info(headers, options.mesh_pod)
    doc["body_bytes"] = len(body)
    doc["body_sha256"] = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    doc["body_encoding"] = encoding
    if content_encoding is not None:
        doc["content_encoding"] = content_encoding
    return doc
