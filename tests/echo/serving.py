"""Helpers of the serving tests (tests/echo/test_serve*.py, tests/reliability/): real echo-server
processes on free loopback ports, raw HTTP/1.x and HTTP/2 connections, peak memory, stderr checks.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import hpack
import httpx
import trustme
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.procs import free_port, running

ECHO = [sys.executable, "-m", "echo"]
READY_PATH = "/_echo/readyz"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True)
class Echo:
    proc: subprocess.Popen[bytes]
    http: int
    https: int | None
    h2c: int | None
    output: IO[bytes]

    def url(self, path: str = "/", scheme: str = "http") -> str:
        port = {"http": self.http, "https": self.https, "h2c": self.h2c}[scheme]
        return f"{'https' if scheme == 'https' else 'http'}://127.0.0.1:{port}{path}"

    def port(self, scheme: str) -> int:
        port = {"http": self.http, "https": self.https, "h2c": self.h2c}[scheme]
        assert port is not None, f"{scheme} listener is off"
        return port

    def log(self) -> str:
        """Everything the process wrote so far (stderr and stdout)."""
        self.output.flush()
        self.output.seek(0)
        return self.output.read().decode("utf-8", "replace")

    def peak_rss_kib(self) -> int:
        """VmHWM: the peak resident set size of the process so far."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert found is not None
        return int(found[1])


@dataclass(frozen=True)
class PKI:
    ca: trustme.CA
    cert_file: Path
    key_file: Path
    ca_file: Path

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    def env(self) -> dict[str, str]:
        return {"HTTPS_CERT_FILE": str(self.cert_file), "HTTPS_KEY_FILE": str(self.key_file)}


def make_pki(directory: Path) -> PKI:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    server.private_key_pem.write_to_path(str(key_file))
    server.cert_chain_pems[0].write_to_path(str(cert_file))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(cert_file), append=True)
    ca.cert_pem.write_to_path(str(ca_file))
    return PKI(ca, cert_file, key_file, ca_file)


def ready(port: int, path: str = READY_PATH) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def echo_server(
    env: Mapping[str, str] | None = None,
    *,
    https: bool = True,
    h2c: bool = False,
    command: list[str] | None = None,
    ready_path: str = READY_PATH,
) -> Iterator[Echo]:
    """echo-server on free loopback ports, polled ready on `ready_path` (200 once every listener is up)."""
    http_port = free_port()
    https_port = free_port() if https else None
    h2c_port = free_port() if h2c else None
    full_env = {
        "HTTP_PORT": str(http_port),
        "HTTPS_PORT": str(https_port) if https_port else "off",
        "H2C_PORT": str(h2c_port) if h2c_port else "off",
        "ECHO_BIND": "127.0.0.1",
        "ECHO_DRAIN_SECONDS": "0",
        "DISABLE_REQUEST_LOGS": "true",
        "POD_NAME": "echo-test-pod",
        "SERVICE_VERSION": "v-test",
        **(env or {}),
    }
    with (
        tempfile.TemporaryFile(prefix="echo-server-") as output,
        running(
            command or ECHO,
            env=full_env,
            ready=lambda: ready(http_port, ready_path),
            what="echo-server",
            output=output,
        ) as proc,
    ):
        yield Echo(proc, http_port, https_port, h2c_port, output)


def assert_no_traceback(echo: Echo) -> None:
    log = echo.log()
    assert "Traceback" not in log, log[-4000:]


# --- raw HTTP/1.x ----------------------------------------------------------------------------------


@contextlib.contextmanager
def raw_connection(
    echo: Echo, scheme: str, pki: PKI | None = None, timeout: float = 5
) -> Iterator[socket.socket]:
    """A plain socket to a listener; for "https" a TLS socket with ALPN http/1.1."""
    sock = socket.create_connection(("127.0.0.1", echo.port(scheme)), timeout=timeout)
    if scheme == "https":
        assert pki is not None
        sock = pki.client_context(["http/1.1"]).wrap_socket(sock, server_hostname="localhost")
    with sock:
        yield sock


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
        while marker not in data and len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def send_tolerant(sock: socket.socket, data: bytes) -> bool:
    """Send; False once the server has closed on us (it may answer before we finish sending)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        return False
    return True


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket) -> Answer | None:
    """One HTTP/1.1 response framed by Content-Length; None if the connection ended first."""
    head = read_until(sock, b"\r\n\r\n")
    if b"\r\n\r\n" not in head:
        return None
    head, _, body = head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = b""
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(status, headers, body[:length])


# --- raw HTTP/2 ------------------------------------------------------------------------------------
# Frames are built and read here directly (hyperframe + hpack): the tests need what a client library
# would refuse to send (header blocks of megabytes, streams past the server's limit) and to see
# exactly which frames come back.


@dataclass
class H2Stream:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ended: bool = False
    reset: int | None = None


@dataclass
class H2Wire:
    sock: socket.socket
    encoder: hpack.Encoder = field(default_factory=hpack.Encoder)
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    streams: dict[int, H2Stream] = field(default_factory=dict)
    goaway: GoAwayFrame | None = None
    closed: bool = False
    _buffer: bytes = b""

    def send(self, *frames: Frame) -> bool:
        return send_tolerant(self.sock, b"".join(frame.serialize() for frame in frames))

    def request(
        self,
        stream_id: int,
        path: bytes = b"/",
        *,
        method: bytes = b"GET",
        extra: list[tuple[bytes, bytes]] | None = None,
        end_stream: bool = True,
        frame_size: int = 16384,
    ) -> bool:
        """Send a request's header block (split into CONTINUATION frames as needed)."""
        headers = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", path),
            *(extra or []),
        ]
        # No Huffman coding: this client's speed must not depend on the header size.
        block = self.encoder.encode(headers, huffman=False)
        chunks = [block[i : i + frame_size] for i in range(0, len(block), frame_size)] or [b""]
        flags = ["END_STREAM"] if end_stream else []
        if len(chunks) == 1:
            flags.append("END_HEADERS")
        frames: list[Frame] = [HeadersFrame(stream_id, data=chunks[0], flags=flags)]
        for index, chunk in enumerate(chunks[1:], 1):
            last = index == len(chunks) - 1
            frames.append(ContinuationFrame(stream_id, data=chunk, flags=["END_HEADERS"] if last else []))
        self.streams.setdefault(stream_id, H2Stream())
        return self.send(*frames)

    def data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> bool:
        return self.send(DataFrame(stream_id, data=data, flags=["END_STREAM"] if end_stream else []))

    def reset(self, stream_id: int, error_code: int = 8) -> bool:  # 8 = CANCEL
        return self.send(RstStreamFrame(stream_id, error_code=error_code))

    def read(self, until: object = None, timeout: float = 5.0) -> None:
        """Read frames until `until(self)` is true, the connection ends, or `timeout` passes."""
        import time

        deadline = time.monotonic() + timeout
        check = until if callable(until) else (lambda wire: False)
        while not check(self) and not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLError, OSError) as error:
                if isinstance(error, TimeoutError) or "timed out" in str(error):
                    continue
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self._buffer += chunk
            self._parse()

    def _parse(self) -> None:
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                return
            frame.parse_body(memoryview(self._buffer[9 : 9 + length]))
            self._buffer = self._buffer[9 + length :]
            stream = self.streams.setdefault(frame.stream_id, H2Stream())
            if isinstance(frame, HeadersFrame):
                for name, value in self.decoder.decode(frame.data):
                    stream.headers[str(name)] = str(value)
            elif isinstance(frame, DataFrame):
                stream.body += frame.data
                if frame.flow_controlled_length:
                    self.send(
                        WindowUpdateFrame(0, window_increment=frame.flow_controlled_length),
                        WindowUpdateFrame(frame.stream_id, window_increment=frame.flow_controlled_length),
                    )
            elif isinstance(frame, RstStreamFrame):
                stream.reset = frame.error_code
            elif isinstance(frame, GoAwayFrame):
                self.goaway = frame
            elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]))
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]))
            if "END_STREAM" in frame.flags:
                stream.ended = True


@contextlib.contextmanager
def h2_connection(echo: Echo, scheme: str, pki: PKI | None = None) -> Iterator[H2Wire]:
    """An HTTP/2 connection: prior knowledge on the h2c port, ALPN h2 on the HTTPS port."""
    sock = socket.create_connection(("127.0.0.1", echo.port(scheme)), timeout=5)
    if scheme == "https":
        assert pki is not None
        sock = pki.client_context(["h2"]).wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2"
    with sock:
        wire = H2Wire(sock)
        sock.sendall(H2_PREFACE + SettingsFrame(0, settings={}).serialize())
        yield wire
