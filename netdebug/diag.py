"""Small diagnostics in pure Python: `netdebug dns NAME`, `netdebug tcp HOST:PORT`, `netdebug tls HOST:PORT`.

Each check is one async function returning a frozen result (with timings in milliseconds) and never
raising for network trouble; rendering and expectation checks are pure functions over those results,
so `netdebug plan` reuses them for its dns/tcp/tls steps.

Exit codes: 0 the check worked (and met its expectations), 1 it worked but an expectation failed
(e.g. `--expect-alpn`), 2 usage error, 4 name not resolved / connection failed / TLS handshake failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from netdebug.context import Context, ExitStatus, UsageError

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int | None = None) -> Address:
    """`host:port`, `[v6]:port`, or a bare host when a default port is given."""
    text = text.strip()
    if not text:
        raise UsageError("address: empty; expected HOST:PORT")
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"address {text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"address {text!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif text.count(":") > 1:
        raise UsageError(f"address {text!r}: write IPv6 addresses as [ADDRESS]:PORT")
    if not host:
        raise UsageError(f"address {text!r}: empty host")
    if not port_text:
        if default_port is None:
            raise UsageError(f"address {text!r}: missing port; expected HOST:PORT")
        return Address(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"address {text!r}: port must be 1-65535, got {port_text!r}")
    return Address(host, int(port_text))


def parse_seconds(text: str, what: str) -> float:
    """A finite, non-negative number of seconds from a flag or env value; UsageError otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise UsageError(f"{what}: expected a finite number >= 0, got {text!r}")
    return value


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# DNS


@dataclass(frozen=True)
class DnsResult:
    name: str
    addresses: tuple[str, ...]
    duration_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


def _gai_message(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


# The `timeout` parameters below are budgets whose expiry is a reported result, not a cancellation.
async def resolve(name: str, timeout: float = DEFAULT_TIMEOUT, port: int | None = None) -> DnsResult:  # noqa: ASYNC109
    """Resolve with the system resolver (what every other program in the pod sees)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        return DnsResult(name, (), _ms(time.perf_counter() - started), _gai_message(exc))
    elapsed = time.perf_counter() - started
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return DnsResult(name, tuple(addresses), _ms(elapsed))


def render_dns(result: DnsResult) -> str:
    if result.error is not None:
        return f"dns {result.name}: failed after {result.duration_ms:.1f} ms: {result.error}\n"
    lines = [f"dns {result.name}: {len(result.addresses)} address(es) in {result.duration_ms:.1f} ms"]
    lines += [f"  {address}" for address in result.addresses]
    return "\n".join(lines) + "\n"


def check_dns(result: DnsResult, resolves: bool = True, addresses: Sequence[str] = ()) -> list[str]:
    """Failed expectations, as human lines (empty when all hold)."""
    if not resolves:
        return [] if not result.ok else [f"{result.name} resolved to {', '.join(result.addresses)}"]
    if not result.ok:
        return [f"{result.name} did not resolve: {result.error}"]
    missing = [a for a in addresses if a not in result.addresses]
    return [f"{result.name}: expected address {a} not among {', '.join(result.addresses)}" for a in missing]


# ---------------------------------------------------------------------------------------------
# TCP

ErrorKind = Literal["dns", "connect", "timeout", "tls", "verify"]


@dataclass(frozen=True)
class TcpResult:
    address: str
    dns_ms: float | None
    connect_ms: float | None
    peer: str | None = None
    local: str | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Connected:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dns_ms: float | None
    connect_ms: float


@dataclass
class _ConnectFailure:
    dns_ms: float | None
    message: str
    kind: ErrorKind
    attempts: list[str] = field(default_factory=list)


async def _connect(address: Address, timeout: float) -> _Connected | _ConnectFailure:  # noqa: ASYNC109
    """Resolve (unless an IP) and try each address in order, all within `timeout`."""
    deadline = time.perf_counter() + timeout
    dns_ms: float | None = None
    if _is_ip(address.host):
        candidates: tuple[str, ...] = (address.host,)
    else:
        dns = await resolve(address.host, timeout, address.port)
        dns_ms = dns.duration_ms
        if dns.error is not None:
            return _ConnectFailure(dns_ms, f"cannot resolve {address.host}: {dns.error}", "dns")
        candidates = dns.addresses
    failures: list[str] = []
    for ip in candidates:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, address.port), remaining)
        except TimeoutError:
            failures.append(f"{ip}: timed out")
            continue
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
            failures.append(f"{ip}: {reason}")
            continue
        return _Connected(reader, writer, dns_ms, _ms(time.perf_counter() - started))
    if not failures or all(f.endswith("timed out") for f in failures):
        return _ConnectFailure(
            dns_ms, f"connect to {address} timed out after {timeout:g}s", "timeout", failures
        )
    return _ConnectFailure(dns_ms, f"connect to {address} failed: {'; '.join(failures)}", "connect", failures)


def _sockname(value: object) -> str | None:
    if isinstance(value, tuple) and len(value) >= 2:
        host, port = str(value[0]), int(value[1])
        return str(Address(host, port))
    return None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


async def tcp_connect(address: Address, timeout: float = DEFAULT_TIMEOUT) -> TcpResult:  # noqa: ASYNC109
    conn = await _connect(address, timeout)
    if isinstance(conn, _ConnectFailure):
        return TcpResult(str(address), conn.dns_ms, None, error=conn.message, error_kind=conn.kind)
    peer = _sockname(conn.writer.get_extra_info("peername"))
    local = _sockname(conn.writer.get_extra_info("sockname"))
    await _close(conn.writer)
    return TcpResult(str(address), conn.dns_ms, conn.connect_ms, peer, local)


def render_tcp(result: TcpResult) -> str:
    dns = f"dns {result.dns_ms:.1f} ms, " if result.dns_ms is not None else ""
    if result.error is not None:
        return f"tcp {result.address}: {result.error} ({dns.rstrip(', ') or 'no dns'})\n"
    return (
        f"tcp {result.address}: connected to {result.peer} from {result.local} "
        f"({dns}connect {result.connect_ms:.1f} ms)\n"
    )


def check_tcp(result: TcpResult, connects: bool = True) -> list[str]:
    if connects:
        return [] if result.ok else [result.error or "connect failed"]
    return [f"{result.address}: connected to {result.peer}, expected no connection"] if result.ok else []


# ---------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: str
    not_after: str
    days_left: float
    sha256: str
    serial: str

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["sans"] = list(self.sans)
        return doc


def cert_info(der: bytes, now: datetime) -> CertInfo:
    """Subject, issuer, SANs, validity and fingerprint of a DER certificate (pure)."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    sans: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
        sans += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
        sans += [f"URI:{u}" for u in ext.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [f"email:{e}" for e in ext.get_values_for_type(x509.RFC822Name)]
    not_after = cert.not_valid_after_utc
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=tuple(sans),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=not_after.isoformat(),
        days_left=round((not_after - now).total_seconds() / 86400.0, 2),
        sha256=":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()),
        serial=format(cert.serial_number, "x"),
    )


@dataclass(frozen=True)
class TlsOptions:
    sni: str | None = None
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    insecure: bool = False
    ca: str | None = None
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class TlsResult:
    address: str
    sni: str | None
    dns_ms: float | None
    connect_ms: float | None
    handshake_ms: float | None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    verified: bool = False
    cert: CertInfo | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["cert"] = self.cert.to_json() if self.cert is not None else None
        return doc


def make_ssl_context(opts: TlsOptions) -> ssl.SSLContext:
    """Raises UsageError for an unreadable CA file."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if opts.ca is not None:
        if not Path(opts.ca).is_file():
            raise UsageError(f"--ca {opts.ca}: no such file")
        try:
            ctx.load_verify_locations(cafile=opts.ca)
        except ssl.SSLError as exc:
            raise UsageError(f"--ca {opts.ca}: not a PEM CA bundle ({exc.reason or exc})") from None
    if opts.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.alpn:
        ctx.set_alpn_protocols(list(opts.alpn))
    return ctx


async def tls_handshake(address: Address, opts: TlsOptions, ctx: ssl.SSLContext | None = None) -> TlsResult:
    """TCP connect, then a TLS handshake; on a verification failure the certificate is still shown."""
    ctx = ctx or make_ssl_context(opts)
    # SNI defaults to the host name; an IP literal sends none (RFC 6066 forbids IP addresses in SNI).
    sni = opts.sni if opts.sni is not None else (None if _is_ip(address.host) else address.host)
    conn = await _connect(address, opts.timeout)
    if isinstance(conn, _ConnectFailure):
        return TlsResult(str(address), sni, conn.dns_ms, None, None, error=conn.message, error_kind=conn.kind)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(conn.writer.start_tls(ctx, server_hostname=sni), opts.timeout)
    except ssl.SSLCertVerificationError as exc:
        conn.writer.transport.abort()
        message = f"certificate verify failed: {exc.verify_message or exc.reason or exc}"
        # Show what the server presented, which is what one needs to fix the trust problem.
        seen = await tls_handshake(
            address, TlsOptions(sni=opts.sni, alpn=opts.alpn, insecure=True, timeout=opts.timeout)
        )
        return TlsResult(
            str(address), sni, conn.dns_ms, conn.connect_ms, None, seen.version, seen.cipher, seen.alpn,
            False, seen.cert, message, "verify",
        )  # fmt: skip
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        conn.writer.transport.abort()
        reason = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "reason", None) or str(exc))
        return TlsResult(
            str(address), sni, conn.dns_ms, conn.connect_ms, None,
            error=f"TLS handshake with {address} failed: {reason}", error_kind="tls",
        )  # fmt: skip
    handshake_ms = _ms(time.perf_counter() - started)
    ssl_object = conn.writer.get_extra_info("ssl_object")
    version = cipher = alpn = None
    cert = None
    if isinstance(ssl_object, ssl.SSLObject):
        version = ssl_object.version()
        cipher_info = ssl_object.cipher()
        cipher = cipher_info[0] if cipher_info else None
        alpn = ssl_object.selected_alpn_protocol()
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            cert = cert_info(der, datetime.now(UTC))
    await _close(conn.writer)
    return TlsResult(
        str(address), sni, conn.dns_ms, conn.connect_ms, handshake_ms, version, cipher, alpn,
        not opts.insecure, cert,
    )  # fmt: skip


def render_tls(result: TlsResult) -> str:
    lines = [f"tls {result.address} (sni {result.sni or '-'})"]
    timing = []
    if result.dns_ms is not None:
        timing.append(f"dns {result.dns_ms:.1f} ms")
    if result.connect_ms is not None:
        timing.append(f"connect {result.connect_ms:.1f} ms")
    if result.handshake_ms is not None:
        timing.append(f"handshake {result.handshake_ms:.1f} ms")
    if timing:
        lines.append("  timings:   " + ", ".join(timing))
    if result.error is not None:
        lines.append(f"  error:     {result.error}")
    if result.version is not None:
        lines.append(f"  version:   {result.version}")
        lines.append(f"  cipher:    {result.cipher}")
        lines.append(f"  alpn:      {result.alpn or '(none)'}")
        lines.append(f"  verified:  {'yes' if result.verified else 'no'}")
    if result.cert is not None:
        c = result.cert
        lines.append(f"  subject:   {c.subject or '(empty)'}")
        lines.append(f"  issuer:    {c.issuer}")
        lines.append(f"  sans:      {', '.join(c.sans) or '(none)'}")
        lines.append(f"  valid:     {c.not_before} .. {c.not_after} ({c.days_left:.1f} days left)")
        lines.append(f"  sha256:    {c.sha256}")
    return "\n".join(lines) + "\n"


def check_tls(
    result: TlsResult,
    expect_alpn: str | None = None,
    expect_version: str | None = None,
    expect_san: Sequence[str] = (),
) -> list[str]:
    if not result.ok:
        return [result.error or "handshake failed"]
    failures: list[str] = []
    if expect_alpn is not None and result.alpn != expect_alpn:
        failures.append(f"ALPN {result.alpn or '(none)'}, expected {expect_alpn}")
    if expect_version is not None and result.version != expect_version:
        failures.append(f"version {result.version}, expected {expect_version}")
    sans = result.cert.sans if result.cert else ()
    for wanted in expect_san:
        if wanted not in sans and f"DNS:{wanted}" not in sans and f"IP:{wanted}" not in sans:
            failures.append(f"certificate SANs {', '.join(sans) or '(none)'} lack {wanted}")
    return failures


# ---------------------------------------------------------------------------------------------
# Commands

Output = Literal["text", "json"]


@dataclass(frozen=True)
class DiagConfig:
    command: Literal["dns", "tcp", "tls"]
    target: str
    timeout: float
    output: Output
    tls: TlsOptions = TlsOptions()
    expect_alpn: str | None = None


def parse_alpn(text: str) -> tuple[str, ...]:
    protocols = tuple(p.strip() for p in text.split(",") if p.strip())
    if not protocols:
        raise UsageError(f"--alpn {text!r}: expected a comma-separated list such as h2,http/1.1")
    return protocols


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    target_help = {"dns": "name to resolve", "tcp": "HOST:PORT", "tls": "HOST:PORT (port defaults to 443)"}
    parser.add_argument(
        "target", metavar="NAME" if command == "dns" else "HOST:PORT", help=target_help[command]
    )
    parser.add_argument("--timeout", default=str(DEFAULT_TIMEOUT), help="seconds (default %(default)s)")
    parser.add_argument(
        "--output", choices=["text", "json"], default="text", help="output format (default text)"
    )
    if command == "tls":
        parser.add_argument("--sni", help="server name to send (default: the host, none for an IP)")
        parser.add_argument(
            "--alpn", default="h2,http/1.1", help="ALPN protocols to offer (default %(default)s)"
        )
        parser.add_argument(
            "--insecure", "-k", action="store_true", help="do not verify the certificate (default: verify)"
        )
        parser.add_argument("--ca", help="PEM file of CA certificates to trust (default: the system's)")
        parser.add_argument(
            "--expect-alpn", help="exit 1 unless the server selects this protocol (default: any)"
        )


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> DiagConfig:
    timeout = parse_seconds(args.timeout, "--timeout")
    if timeout == 0:
        raise UsageError("--timeout: must be > 0")
    command = args.command
    if command == "dns":
        if not args.target.strip():
            raise UsageError("NAME: empty")
        return DiagConfig("dns", args.target.strip(), timeout, args.output)
    if command == "tcp":
        parse_address(args.target)
        return DiagConfig("tcp", args.target, timeout, args.output)
    parse_address(args.target, 443)
    opts = TlsOptions(
        sni=args.sni, alpn=parse_alpn(args.alpn), insecure=args.insecure, ca=args.ca, timeout=timeout
    )
    if opts.ca is not None and not Path(opts.ca).is_file():
        raise UsageError(f"--ca {opts.ca}: no such file")
    return DiagConfig("tls", args.target, timeout, args.output, opts, args.expect_alpn)


async def run_config(config: DiagConfig, ctx: Context) -> int:
    failures: list[str]
    doc: dict[str, object]
    if config.command == "dns":
        dns = await resolve(config.target, config.timeout)
        doc, text, failures = dns.to_json(), render_dns(dns), check_dns(dns)
        unreachable = not dns.ok
    elif config.command == "tcp":
        tcp = await tcp_connect(parse_address(config.target), config.timeout)
        doc, text, failures = tcp.to_json(), render_tcp(tcp), check_tcp(tcp)
        unreachable = not tcp.ok
    else:
        ssl_ctx = make_ssl_context(config.tls)
        tls = await tls_handshake(parse_address(config.target, 443), config.tls, ssl_ctx)
        doc, text = tls.to_json(), render_tls(tls)
        failures = check_tls(tls, expect_alpn=config.expect_alpn)
        unreachable = not tls.ok
    status = ExitStatus.UNREACHABLE if unreachable else ExitStatus.MISMATCH if failures else ExitStatus.OK
    if config.output == "json":
        doc["exit_code"] = int(status)
        doc["failures"] = failures
        ctx.out.write(json.dumps(doc) + "\n")
    else:
        ctx.out.write(text)
        if not unreachable:
            for failure in failures:
                ctx.out.write(f"FAIL: {failure}\n")
    return status


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = config_from_args(args, ctx.env)
    return asyncio.run(run_config(config, ctx))
