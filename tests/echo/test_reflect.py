from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from echo import reflect as reflect_module
from echo.reflect import (
    RAW_HEADER_NAMES_EXTENSION,
    REDACTED,
    ReflectOptions,
    body_fields,
    client_addresses,
    describe_certificate,
    display_headers,
    headers_dict,
    is_json_content_type,
    is_secret_name,
    parse_query,
    redact_environ,
    reflect,
    safe_text,
)

POD = {"name": "echo-v1-abc", "version": "v1"}
OPTIONS = ReflectOptions(hostname="host-1", pod=POD)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def make_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    client: tuple[str, int] | None = ("203.0.113.7", 40000),
    scheme: str = "http",
    http_version: str = "1.1",
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "query_string": query,
        "headers": headers if headers is not None else [(b"host", b"echo.local:8080")],
        "client": client,
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


def run(scope: dict[str, Any], body: bytes = b"", options: ReflectOptions = OPTIONS) -> dict[str, Any]:
    doc = reflect(scope, headers_dict(scope["headers"]), body, options)
    orjson.dumps(doc)  # every document must serialise
    return doc


def test_mendhak_fields_in_order() -> None:
    doc = run(make_scope("/hello", query=b"a=1"))
    assert list(doc)[:17] == [
        "path",
        "headers",
        "method",
        "body",
        "cookies",
        "signedCookies",
        "fresh",
        "hostname",
        "ip",
        "ips",
        "protocol",
        "query",
        "subdomains",
        "xhr",
        "os",
        "connection",
        "http_version",
    ]
    assert doc["path"] == "/hello"
    assert doc["method"] == "GET"
    assert doc["body"] == ""
    assert doc["hostname"] == "echo.local"
    assert doc["ip"] == "203.0.113.7"
    assert doc["ips"] == []
    assert doc["protocol"] == "http"
    assert doc["query"] == {"a": "1"}
    assert doc["os"] == {"hostname": "host-1"}
    assert doc["connection"] == {}
    assert doc["tls"] is None
    assert doc["pod"] == POD
    assert doc["body_bytes"] == 0
    assert doc["body_sha256"] == hashlib.sha256(b"").hexdigest()
    assert doc["body_encoding"] == "utf-8"
    assert "json" not in doc
    assert "jwt" not in doc
    assert "env" not in doc
    assert "clientCertificate" not in doc


@pytest.mark.parametrize(
    ("headers", "field", "expected"),
    [
        pytest.param([(b"host", b"a.b.example.com")], "subdomains", ["b", "a"], id="subdomains-reversed"),
        pytest.param([(b"host", b"example.com")], "subdomains", [], id="no-subdomains"),
        pytest.param([(b"host", b"10.0.0.1:80")], "subdomains", [], id="ip-host-no-subdomains"),
        pytest.param([(b"host", b"[::1]:8080")], "hostname", "[::1]", id="ipv6-host"),
        pytest.param([], "hostname", None, id="no-host"),
        pytest.param([(b"x-requested-with", b"XMLHttpRequest")], "xhr", True, id="xhr"),
        pytest.param(
            [(b"cookie", b'a=1; b="two"'), (b"cookie", b"c=3")],
            "cookies",
            {"a": "1", "b": "two", "c": "3"},
            id="cookies",
        ),
        pytest.param([(b"if-none-match", b"*")], "fresh", True, id="fresh-star"),
        pytest.param([(b"if-none-match", b'"etag"')], "fresh", False, id="not-fresh-etag"),
        pytest.param(
            [(b"if-none-match", b"*"), (b"cache-control", b"no-cache")], "fresh", False, id="no-cache"
        ),
        pytest.param(
            [(b"accept", b"a"), (b"accept", b"b"), (b"cookie", b"x=1"), (b"cookie", b"y=2")],
            "headers",
            {"accept": "a, b", "cookie": "x=1; y=2"},
            id="repeated-headers-joined",
        ),
        pytest.param(
            [(b"x-bin", b"caf\xc3\xa9 \xff")], "headers", {"x-bin": "café \\xff"}, id="invalid-utf8-header"
        ),
    ],
)
def test_express_fields(headers: list[tuple[bytes, bytes]], field: str, expected: object) -> None:
    assert run(make_scope(headers=headers))[field] == expected


def test_fresh_only_for_get_and_head() -> None:
    assert run(make_scope(method="POST", headers=[(b"if-none-match", b"*")]))["fresh"] is False
    assert run(make_scope(method="HEAD", headers=[(b"if-none-match", b"*")]))["fresh"] is True


@pytest.mark.parametrize(
    ("peer", "xff", "ip", "ips"),
    [
        pytest.param("203.0.113.7", None, "203.0.113.7", [], id="direct"),
        pytest.param("203.0.113.7", "1.2.3.4", "203.0.113.7", [], id="untrusted-peer-ignores-xff"),
        pytest.param("10.0.0.2", "1.2.3.4", "1.2.3.4", ["1.2.3.4"], id="trusted-peer"),
        pytest.param(
            "127.0.0.1", "1.2.3.4, 10.0.0.9", "1.2.3.4", ["1.2.3.4", "10.0.0.9"], id="two-trusted-hops"
        ),
        pytest.param(
            "127.0.0.1",
            "9.9.9.9, 1.2.3.4, 10.0.0.9",
            "1.2.3.4",
            ["1.2.3.4", "10.0.0.9"],
            id="stop-at-untrusted",
        ),
        pytest.param("::ffff:10.1.1.1", "fd00::5", "fd00::5", ["fd00::5"], id="v4-mapped-and-ula"),
        pytest.param("127.0.0.1", "not-an-ip", "not-an-ip", ["not-an-ip"], id="garbage-hop-untrusted"),
        pytest.param(None, "1.2.3.4", None, [], id="no-peer"),
    ],
)
def test_client_addresses(peer: str | None, xff: str | None, ip: str | None, ips: list[str]) -> None:
    assert client_addresses(peer, xff) == (ip, ips)


def test_trusted_proxy_headers_change_host_and_protocol() -> None:
    headers = [
        (b"host", b"internal:8080"),
        (b"x-forwarded-host", b"public.example.com"),
        (b"x-forwarded-proto", b"https"),
    ]
    trusted = run(make_scope(headers=headers, client=("10.0.0.2", 1)))
    assert (trusted["hostname"], trusted["protocol"]) == ("public.example.com", "https")
    untrusted = run(make_scope(headers=headers, client=("203.0.113.1", 1)))
    assert (untrusted["hostname"], untrusted["protocol"]) == ("internal", "http")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(b"", {}, id="empty"),
        pytest.param(b"a=1&b=2", {"a": "1", "b": "2"}, id="simple"),
        pytest.param(b"a=1&a=2&a=3", {"a": ["1", "2", "3"]}, id="repeated"),
        pytest.param(b"flag&x=", {"flag": "", "x": ""}, id="blank"),
        pytest.param(b"q=caf%C3%A9+au+lait", {"q": "café au lait"}, id="percent-and-plus"),
        pytest.param(b"q=%FF", {"q": "\ufffd"}, id="invalid-utf8-percent"),
        pytest.param(b"q=\xff", {"q": "\\xff"}, id="raw-invalid-byte"),
    ],
)
def test_parse_query(query: bytes, expected: dict[str, object]) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        b"a=1",
        b"a=1&&b=2",
        b"=x",
        b"a==b",
        b"k=v=w",
        b"&",
        b"x&y=",
        b"a=1&a=2&a=",
        b"q=%41+b",
        b"q=%zz",
        b"caf\xc3\xa9=1",
    ],
)
def test_parse_query_fast_path_matches_parse_qsl(query: bytes) -> None:
    from urllib.parse import parse_qsl

    expected: dict[str, object] = {}
    for key, value in parse_qsl(query.decode(), keep_blank_values=True):
        previous = expected.get(key)
        expected[key] = (
            value
            if previous is None
            else [*previous, value]
            if isinstance(previous, list)
            else [previous, value]
        )
    assert parse_query(query) == expected


def test_unsafe_path_is_escaped() -> None:
    path = b"/caf\xff".decode("utf-8", "surrogateescape")
    doc = run(make_scope(path))
    assert doc["path"] == "/caf\\xff"
    assert safe_text("/ok/été") == "/ok/été"


@pytest.mark.parametrize(
    ("body", "text", "encoding"),
    [
        pytest.param(b"hello", "hello", "utf-8", id="text"),
        pytest.param("été".encode(), "été", "utf-8", id="utf8"),
        pytest.param(b"\x00\xff\xfe", base64.b64encode(b"\x00\xff\xfe").decode(), "base64", id="binary"),
        pytest.param(b"", "", "utf-8", id="empty"),
    ],
)
def test_body_fields(body: bytes, text: str, encoding: str) -> None:
    assert body_fields(body) == (text, encoding)
    doc = run(make_scope(method="POST"), body)
    assert (doc["body"], doc["body_encoding"], doc["body_bytes"]) == (text, encoding, len(body))
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    if encoding == "base64":
        assert base64.b64decode(doc["body"]) == body


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        pytest.param(b"application/json", b'{"a": [1, 2]}', {"a": [1, 2]}, id="json"),
        pytest.param(b"application/json; charset=utf-8", b"[1]", [1], id="json-params"),
        pytest.param(b"application/merge-patch+json", b'{"x":null}', {"x": None}, id="plus-json"),
        pytest.param(b"application/json", b"{not json", None, id="invalid-json-null"),
        pytest.param(b"application/json", b"", None, id="empty-json-null"),
        pytest.param(b"application/json", b"\xff\xfe", None, id="binary-json-null"),
    ],
)
def test_json_field(content_type: bytes, body: bytes, expected: object) -> None:
    doc = run(make_scope(method="POST", headers=[(b"content-type", content_type)]), body)
    assert doc["json"] == expected
    assert doc["body_bytes"] == len(body)


def test_no_json_field_for_other_types() -> None:
    assert "json" not in run(make_scope(method="POST", headers=[(b"content-type", b"text/plain")]), b"{}")
    assert not is_json_content_type(None)
    assert not is_json_content_type("application/jsonx")


def test_json_content_type_answers_hold_past_the_remembered_values() -> None:
    # The answers are remembered per value, in a table of bounded size: the same answers after it
    # is full, and a client sending endless distinct values cannot grow it.
    values = [f"application/vnd.{i}+json; charset=utf-8" for i in range(3000)]
    values += [f"text/x-{i}" for i in range(3000)]
    for _ in range(2):
        assert [is_json_content_type(value) for value in values] == [True] * 3000 + [False] * 3000
    assert len(reflect_module._JSON_CONTENT_TYPES) <= reflect_module._JSON_CONTENT_TYPES_SIZE
    assert is_json_content_type("Application/JSON ; charset=utf-8")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            f"Bearer {JWT}".encode(),
            {
                "header": {"alg": "HS256", "typ": "JWT"},
                "payload": {"sub": "1234567890", "name": "John Doe", "iat": 1516239022},
                "signature": "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            },
            id="bearer",
        ),
        pytest.param(JWT.encode(), None, id="bare-token"),
        pytest.param(
            b"Bearer abc", {"error": "malformed JWT: expected 3 dot-separated parts, got 1"}, id="one-part"
        ),
        pytest.param(b"YQ.b.c", {"error": "malformed JWT: header is not JSON"}, id="not-json"),
        pytest.param(b"a.b.c", {"error": "malformed JWT: header is not base64url"}, id="bad-length"),
        pytest.param(b"!!!.b.c", {"error": "malformed JWT: header is not base64url"}, id="bad-alphabet"),
        pytest.param(b"e30.!!.c", {"error": "malformed JWT: payload is not base64url"}, id="bad-payload"),
        pytest.param(b"\xc3\xa9.b.c", {"error": "malformed JWT: header is not base64url"}, id="non-ascii"),
        pytest.param(
            b"WzFd.e30.c", {"error": "malformed JWT: header is not a JSON object"}, id="array-header"
        ),
    ],
)
def test_jwt(value: bytes, expected: dict[str, object] | None) -> None:
    options = ReflectOptions(hostname="h", pod=POD, jwt_header="authentication")
    doc = run(make_scope(headers=[(b"authentication", value)]), options=options)
    if expected is None:  # a bare token decodes like a Bearer one
        expected = run(make_scope(headers=[(b"authentication", b"Bearer " + value)]), options=options)["jwt"]
        assert "header" in expected
    assert doc["jwt"] == expected


def test_jwt_absent_header_means_no_field() -> None:
    options = ReflectOptions(hostname="h", pod=POD, jwt_header="authentication")
    assert "jwt" not in run(make_scope(), options=options)


def test_env_redaction() -> None:
    environ = {
        "PATH": "/usr/bin",
        "DB_PASSWORD": "hunter2",
        "API_TOKEN": "t",
        "aws_secret_access_key": "k",
        "GITHUB_CREDENTIALS": "c",
        "POD_NAME": "p",
    }
    redacted = redact_environ(environ)
    assert redacted == {
        "API_TOKEN": REDACTED,
        "DB_PASSWORD": REDACTED,
        "GITHUB_CREDENTIALS": REDACTED,
        "PATH": "/usr/bin",
        "POD_NAME": "p",
        "aws_secret_access_key": REDACTED,
    }
    assert is_secret_name("MY_PRIVATE_THING")
    assert not is_secret_name("HOSTNAME")
    doc = run(make_scope(), options=ReflectOptions(hostname="h", pod=POD, env=redacted))
    assert doc["env"] == redacted


@pytest.mark.parametrize(
    ("wire", "raw", "expected"),
    [
        pytest.param(
            [b"Host", b"User-Agent", b"Accept"],
            [(b"host", b"h"), (b"user-agent", b"curl"), (b"accept", b"*/*")],
            [("Host", "h"), ("User-Agent", "curl"), ("Accept", "*/*")],
            id="curl-all-capitalised",
        ),
        pytest.param(
            # mendhak's own test: lower-case names stay in place, capitalised ones move to the end.
            [b"Host", b"prEseRVe-CaSE", b"x-a-b", b"X-a-B"],
            [(b"host", b"h"), (b"preserve-case", b"A1b2C3"), (b"x-a-b", b"999"), (b"x-a-b", b"13")],
            [("Host", "h"), ("prEseRVe-CaSE", "A1b2C3"), ("X-a-B", "999, 13")],
            id="mendhak-test-case",
        ),
        pytest.param(
            [b"x-lower", b"X-Upper", b"x-last"],
            [(b"x-lower", b"1"), (b"x-upper", b"2"), (b"x-last", b"3")],
            [("x-lower", "1"), ("x-last", "3"), ("X-Upper", "2")],
            id="capitalised-moves-to-the-end",
        ),
        pytest.param(
            [b"X-Dup", b"x-DUP"],
            [(b"x-dup", b"a"), (b"x-dup", b"b")],
            [("X-Dup", "a, b"), ("x-DUP", "a, b")],
            id="two-spellings-both-shown",
        ),
        pytest.param(
            [b"Referer"],
            [(b"referer", b"https://r.example")],
            [("Referer", "https://r.example")],
            id="referer",
        ),
    ],
)
def test_preserve_header_case_mendhak_rule(
    wire: list[bytes], raw: list[tuple[bytes, bytes]], expected: list[tuple[str, str]]
) -> None:
    headers = headers_dict(raw)
    assert list(display_headers(raw, headers, wire, "1.1").items()) == expected
    options = ReflectOptions(hostname="h", pod=POD, preserve_header_case=True)
    doc = run(make_scope(headers=raw, extensions={RAW_HEADER_NAMES_EXTENSION: wire}), options=options)
    assert list(doc["headers"].items()) == expected


def test_preserve_header_case_without_wire_names() -> None:
    raw = [(b"user-agent", b"curl"), (b"x-custom-thing", b"1")]
    headers = headers_dict(raw)
    # HTTP/1.x without the serving layer's names: the case is unknown, names are shown Title-Case.
    assert display_headers(raw, headers, None, "1.1") == {"User-Agent": "curl", "X-Custom-Thing": "1"}
    # HTTP/2: names are lower-case on the wire, so mendhak's rule leaves them as they are.
    assert display_headers(raw, headers, None, "2") == {"user-agent": "curl", "x-custom-thing": "1"}
    # A list that does not match the headers (a server bug) is not trusted.
    assert display_headers(raw, headers, [b"X"], "1.1") == {"User-Agent": "curl", "X-Custom-Thing": "1"}
    # Off: the extension is ignored.
    doc = run(make_scope(headers=raw, extensions={RAW_HEADER_NAMES_EXTENSION: [b"USER-AGENT", b"X"]}))
    assert doc["headers"] == headers


def make_cert(*, uri: str | None, dns: list[str], serial: int = 0xABC) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshecho tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, "client"),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    if uri:
        names.insert(0, x509.UniformResourceIdentifier(uri))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    names.append(x509.RFC822Name("ops@example.invalid"))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_tls_fields_with_client_certificate() -> None:
    der = make_cert(uri="spiffe://cluster.local/ns/default/sa/sleep", dns=["client.example.invalid"])
    tls = {
        "version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "alpn": "h2",
        "sni": "echo.local",
        "peer_cert_der": der,
    }
    doc = run(make_scope(scheme="https", http_version="2", extensions={"meshecho.tls": tls}))
    sha256 = hashlib.sha256(der).hexdigest()
    assert doc["protocol"] == "https"
    assert doc["http_version"] == "2"
    assert doc["connection"] == {"servername": "echo.local"}
    assert doc["tls"] == {
        "version": "TLSv1.3",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "alpn": "h2",
        "sni": "echo.local",
        "client_certificate": {
            "subject": "CN=client,O=meshecho tests",
            "issuer": "CN=test ca",
            "sans": [
                "URI:spiffe://cluster.local/ns/default/sa/sleep",
                "DNS:client.example.invalid",
                "IP:127.0.0.1",
                "email:ops@example.invalid",
            ],
            "spiffe_id": "spiffe://cluster.local/ns/default/sa/sleep",
            "serial": "0ABC",
            "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2026-12-31T23:59:59Z",
            "sha256": sha256,
            "verified": False,
        },
    }
    verified = run(
        make_scope(scheme="https", extensions={"meshecho.tls": {**tls, "peer_cert_verified": True}})
    )
    assert verified["tls"]["client_certificate"]["verified"] is True
    assert doc["tls"]["client_certificate"]["verified"] is False  # the cached parse was not mutated
    node = doc["clientCertificate"]
    assert node["subject"] == {"O": "meshecho tests", "CN": "client"}
    assert node["issuer"] == {"CN": "test ca"}
    assert node["valid_to"] == "Dec 31 23:59:59 2026 GMT"
    assert node["fingerprint256"].replace(":", "").lower() == sha256
    assert node["serialNumber"] == "0ABC"
    assert node["subjectaltname"].startswith("URI:spiffe://cluster.local/ns/default/sa/sleep, DNS:")


def test_tls_without_client_certificate() -> None:
    tls = {
        "version": "TLSv1.2",
        "cipher": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "alpn": None,
        "sni": None,
        "peer_cert_der": None,
    }
    doc = run(make_scope(scheme="https", extensions={"meshecho.tls": tls}))
    assert doc["clientCertificate"] == {}
    assert doc["connection"] == {}
    assert doc["tls"]["client_certificate"] is None
    assert doc["tls"]["version"] == "TLSv1.2"


def test_certificate_without_sans_and_garbage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    described = describe_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert described["tls"]["sans"] == []
    assert described["tls"]["spiffe_id"] is None
    assert described["node"]["subjectaltname"] is None
    garbage = describe_certificate(b"not a certificate")
    assert garbage["tls"]["error"].startswith("unparseable client certificate")


def test_mesh_and_pod_fields_present() -> None:
    doc = run(make_scope(headers=[(b"x-request-id", b"rid"), (b"x-envoy-attempt-count", b"2")]))
    assert doc["mesh"]["sidecar"] is True
    assert doc["mesh"]["attempt"] == 2
    assert doc["pod"] is POD
