"""Response header names on the wire, as a `curl -i` script sees them (real processes).

mendhak's Express answers `Content-Type`, `Content-Length`, `Date`, `Access-Control-Allow-Origin`,
`Connection: close`; on every HTTP/1.x listener the names go out in that case, and a header a
client asks for with `x-set-response-header` keeps the case it was written in. HTTP/2 requires
lower-case names (RFC 9113 §8.2.1), so there they are lower-case.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.echo.serving import (
    PKI,
    Echo,
    assert_no_traceback,
    echo_server,
    h2_connection,
    make_pki,
    raw_connection,
    read_until,
)

H1 = [pytest.param("http", id="http"), pytest.param("https", id="https-h1"), pytest.param("h2c", id="h2c-h1")]
H2 = [pytest.param("https", id="h2-tls"), pytest.param("h2c", id="h2c")]
HEADER_LIMIT = 8192


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def echo(pki: PKI) -> Iterator[Echo]:
    env = pki.env() | {"CORS_ALLOW_ORIGIN": "*", "MAX_HEADER_SIZE": str(HEADER_LIMIT)}
    with echo_server(env, h2c=True) as server:
        yield server
        assert_no_traceback(server)


def head_names(echo: Echo, scheme: str, pki: PKI, request: bytes) -> list[str]:
    """The header names of the first response, exactly as they arrived."""
    with raw_connection(echo, scheme, pki) as sock:
        sock.sendall(request)
        head = read_until(sock, b"\r\n\r\n").partition(b"\r\n\r\n")[0]
    return [line.partition(b":")[0].decode("latin-1") for line in head.split(b"\r\n")[1:]]


@pytest.mark.parametrize("scheme", H1)
def test_names_in_express_case(echo: Echo, pki: PKI, scheme: str) -> None:
    names = head_names(echo, scheme, pki, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert names[:3] == ["Date", "Content-Type", "Content-Length"]
    assert "Access-Control-Allow-Origin" in names
    assert "x-echo-pod" in names  # this server's own headers (no Express counterpart) stay lower-case


@pytest.mark.parametrize("scheme", H1)
def test_connection_close_and_a_requested_header_keep_their_case(echo: Echo, pki: PKI, scheme: str) -> None:
    request = (
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-set-response-header: X-Trace-Mode: On\r\n\r\n"
    )
    names = head_names(echo, scheme, pki, request)
    assert names[-1] == "Connection"
    assert "X-Trace-Mode" in names


@pytest.mark.parametrize("scheme", H1)
def test_head_and_no_content_answers(echo: Echo, pki: PKI, scheme: str) -> None:
    with raw_connection(echo, scheme, pki) as sock:
        # HEAD: the head only, then the next request's answer on the same connection.
        sock.sendall(
            b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /x?x-set-response-status-code=204 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        data = read_until(sock, b"HTTP/1.1 204")
        data += read_until(sock, b"\r\n\r\n")
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\nDate: ")
    assert b"\r\nContent-Length: " in first
    assert rest.startswith(b"HTTP/1.1 204 No Content\r\nDate: ")
    assert b"Content-Length" not in rest


@pytest.mark.parametrize("scheme", H1)
def test_the_serving_layers_own_answers(echo: Echo, pki: PKI, scheme: str) -> None:
    big = b"x-big: " + b"a" * (HEADER_LIMIT + 1) + b"\r\n"
    names = head_names(echo, scheme, pki, b"GET /x HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n")
    assert names[:3] == ["Date", "Content-Type", "Content-Length"]
    assert names[-1] == "Connection"


@pytest.mark.parametrize("scheme", H2)
def test_http2_names_are_lower_case(echo: Echo, pki: PKI, scheme: str) -> None:
    with h2_connection(echo, scheme, pki) as wire:
        wire.request(1, b"/x", extra=[(b"x-set-response-header", b"X-Trace-Mode: On")])
        wire.read(until=lambda w: 1 in w.streams and w.streams[1].ended)
        names = list(wire.streams[1].headers)
    assert "content-type" in names
    assert "access-control-allow-origin" in names
    assert "x-trace-mode" in names
    assert all(name == name.lower() for name in names)
