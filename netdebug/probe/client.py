"""The only network code of the prober: an httpx.AsyncClient built once from the config, and a
`Prober` whose call sends one request and turns the answer (or the failure) into a `Sample`.

`interpret` and `classify_error` are pure and tested without sockets.

- Keep-alive by default; `--new-connection` disables pooling and sends `connection: close`, because
  Kubernetes (kube-proxy) balances per connection: a keep-alive client without a sidecar sees one pod.
- `--resolve HOST:PORT:ADDR` / `--connect-to HOST:PORT:HOST2:PORT2` connect elsewhere while keeping
  the URL's host in the Host header and in TLS SNI/verification (httpcore's `sni_hostname`).
- `--http2`: ALPN h2 over TLS; prior-knowledge h2c on http:// URLs.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from netdebug.probe.attribution import MISSING, By, attribute
from netdebug.probe.fingerprint import Kind, classify
from netdebug.probe.h1 import H1Client, ResponseError, build_request

# Response headers the classifiers read; the rest are not copied out of httpx's header list.
_WANTED = frozenset(
    {b"server", b"x-envoy-upstream-service-time", b"x-echo-version", b"x-echo-pod", b"content-type"}
)


@dataclass(frozen=True, slots=True)
class Sample:
    status: int | None
    version: str | None  # set only for 2xx upstream answers that named their version
    pod: str | None
    kind: Kind | None
    identity: str | None
    mtls: bool
    retried: bool
    http_version: str | None
    error: str | None = None  # error kind: connect, dns, tls, timeout, protocol, no-version, ...
    detail: str | None = None  # first line of the error message


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what to claim: the rewritten URL plus Host/SNI when overridden."""

    url: str
    host_header: str | None
    sni: str | None


def resolve_target(
    url: str,
    resolve: tuple[tuple[str, int, str], ...],
    connect_to: tuple[tuple[str, int | None, str, int | None], ...],
) -> Target:
    """Apply curl-style --resolve / --connect-to to the URL. Pure."""
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    new_host, new_port = host, port
    for r_host, r_port, addr in resolve:
        if r_host.lower() == host.lower() and r_port == port:
            new_host = addr
            break
    else:
        for c_host, c_port, to_host, to_port in connect_to:
            if (not c_host or c_host.lower() == host.lower()) and (c_port is None or c_port == port):
                new_host = to_host or host
                new_port = to_port or port
                break
    if (new_host, new_port) == (host, port):
        return Target(url, None, None)
    default_port = 443 if parsed.scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    rewritten = parsed.copy_with(host=new_host.strip("[]"), port=new_port)
    return Target(str(rewritten), host_header, host if parsed.scheme == "https" else None)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or node.__context__
    return chain


def classify_error(exc: BaseException) -> tuple[str, str]:
    """A request failure (httpx's or a raw socket/TLS error) -> (kind, one-line detail). Pure."""
    chain = _cause_chain(exc)
    detail = next((str(e).splitlines()[0] for e in chain if str(e).strip()), "")
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in detail:
        return "dns", detail or "name does not resolve"
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return "tls", detail or "TLS handshake failed"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout", detail or "timed out"
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return "connect", detail or "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError | ResponseError):
        return "protocol", detail or "protocol error"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | ConnectionError):
        return "read", detail or "connection reset"
    if isinstance(exc, OSError):
        return "connect", detail or type(exc).__name__
    return "other", detail or type(exc).__name__


def interpret(
    status: int, headers: Mapping[str, str], body: bytes, http_version: str | None, by: By
) -> Sample:
    """One HTTP answer -> Sample. Local replies, non-2xx and answers without a version get no version."""
    document: object = MISSING
    if body[:1] in (b"{", b"["):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = MISSING
    fp = classify(headers, document)
    version: str | None = None
    error: str | None = None
    detail: str | None = None
    if fp.kind != "local-reply" and 200 <= status < 300:
        version = attribute(headers, body, document, by)
        if version is None:
            error = "no-version"
            what = "not JSON" if document is MISSING else "JSON without the field"
            detail = f"the answer names no version (by {by.describe()}; body {what})"
    pod = headers.get("x-echo-pod")
    return Sample(
        status=status,
        version=version,
        pod=pod,
        kind=fp.kind,
        identity=fp.identity,
        mtls=fp.mtls,
        retried=fp.retried,
        http_version=http_version,
        error=error,
        detail=detail,
    )


def error_sample(exc: BaseException) -> Sample:
    kind, detail = classify_error(exc)
    return Sample(None, None, None, None, None, False, False, None, kind, detail)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    http2: bool
    insecure: bool
    cacert: str | None
    cert: str | None
    key: str | None
    timeout: float
    new_connection: bool
    resolve: tuple[tuple[str, int, str], ...]
    connect_to: tuple[tuple[str, int | None, str, int | None], ...]
    max_connections: int
    by: By


def ssl_context(options: ClientOptions) -> ssl.SSLContext:
    """Raises OSError/ssl.SSLError for unreadable files; the caller turns that into a usage error."""
    ctx = ssl.create_default_context(cafile=options.cacert)
    if options.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if options.cert:
        ctx.load_cert_chain(options.cert, options.key)
    ctx.set_alpn_protocols(["h2", "http/1.1"] if options.http2 else ["http/1.1"])
    return ctx


class Prober:
    """`await prober(index)` -> Sample; never raises for network failures.

    HTTP/1.1 goes through the small `H1Client` (the hot path); `--http2`, or an injected httpx
    transport (the in-process test tier), goes through httpx.
    """

    def __init__(self, options: ClientOptions, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._by = options.by
        target = resolve_target(options.url, options.resolve, options.connect_to)
        self._h1: H1Client | None = None
        self.client: httpx.AsyncClient | None = None
        if transport is None and not options.http2:
            url = httpx.URL(target.url)
            https = url.scheme == "https"
            original = httpx.URL(options.url)
            default_port = 443 if https else 80
            host = f"[{original.host}]" if ":" in original.host else original.host
            port = original.port or default_port
            host_header = target.host_header or (host if port == default_port else f"{host}:{port}")
            path = url.raw_path.decode("ascii") or "/"
            request = build_request(
                options.method, path, host_header, options.headers, options.body, options.new_connection
            )
            self._h1 = H1Client(
                url.host,
                url.port or default_port,
                request,
                ssl_context=ssl_context(options) if https else None,
                server_hostname=target.sni or url.host,
                timeout=options.timeout,
                new_connection=options.new_connection,
                head_only=options.method == "HEAD",
            )
            return
        headers = dict(options.headers)
        if target.host_header and not any(k.lower() == "host" for k in headers):
            headers["host"] = target.host_header
        if options.new_connection:
            headers["connection"] = "close"
        extensions: dict[str, Any] = {"sni_hostname": target.sni} if target.sni else {}
        plain_h2 = options.http2 and target.url.startswith("http://")
        limits = httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=0 if options.new_connection else options.max_connections,
        )
        self.client = httpx.AsyncClient(
            http1=not plain_h2,
            http2=options.http2,
            verify=ssl_context(options),
            timeout=httpx.Timeout(options.timeout),
            limits=limits,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )
        self._request_args: dict[str, Any] = {
            "method": options.method,
            "url": target.url,
            "headers": headers,
            "content": options.body,
            "extensions": extensions,
        }

    async def __call__(self, index: int) -> Sample:
        if self._h1 is not None:
            try:
                answer = await self._h1.send()
            except (OSError, ResponseError, ValueError) as exc:  # TimeoutError is an OSError
                return error_sample(exc)
            return interpret(
                answer.status, answer.headers, answer.body, f"HTTP/{answer.http_version}", self._by
            )
        assert self.client is not None
        try:
            request = self.client.build_request(**self._request_args)
            response = await self.client.send(request)
        except httpx.HTTPError as exc:
            return error_sample(exc)
        except OSError as exc:  # defensive: raw socket errors that escaped httpcore
            return error_sample(exc)
        raw = response.headers.raw
        headers = {k.lower().decode("latin-1"): v.decode("latin-1") for k, v in raw if k.lower() in _WANTED}
        return interpret(response.status_code, headers, response.content, response.http_version, self._by)

    async def aclose(self) -> None:
        if self._h1 is not None:
            await self._h1.aclose()
        if self.client is not None:
            await self.client.aclose()
