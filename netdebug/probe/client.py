"""The only network code of the prober: an httpx.AsyncClient built once from the config, and a
`Prober` whose call sends one request and turns the answer (or the failure) into a `Sample`.

`interpret` and `classify_error` are pure and tested without sockets.

- Keep-alive by default; `--new-connection` disables pooling and sends `connection: close`, because
  Kubernetes (kube-proxy) balances per connection: a keep-alive client without a sidecar sees one pod.
- `--resolve HOST:PORT:ADDR` / `--connect-to HOST:PORT:HOST2:PORT2` connect elsewhere while keeping
  the URL's host in the Host header and in TLS SNI/verification (httpcore's `sni_hostname`).
- `--http2`: ALPN h2 over TLS; prior-knowledge h2c on http:// URLs.
- Through an HTTP proxy (`--proxy`, or http_proxy/https_proxy/NO_PROXY as curl reads them; chosen by
  netdebug/proxy.py): absolute-form requests for http://, CONNECT tunnels for https://, on both the
  HTTP/1.1 client and httpx. `--resolve`/`--connect-to` then apply to the proxy's address: the proxy
  resolves the target.
- Names are resolved by `Resolver` (resolve.py): bounded by --timeout, never blocking Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from netdebug.probe.attribution import MISSING, By, attribute
from netdebug.probe.fingerprint import Kind, classify
from netdebug.probe.h1 import H1Client, ResponseError, Tunnel, TunnelRefused, build_request
from netdebug.probe.resolve import Resolver
from netdebug.proxy import Proxy

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
    if isinstance(exc, httpx.ConnectError | httpx.ProxyError | ConnectionRefusedError | TunnelRefused):
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
    proxy: Proxy | None = None


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
        self._timeout = options.timeout
        self._resolver = Resolver()
        proxy = options.proxy
        # With a proxy, --resolve/--connect-to redirect the connection to the proxy (it resolves the target).
        target = resolve_target(proxy.url if proxy else options.url, options.resolve, options.connect_to)
        self._h1: H1Client | None = None
        self.client: httpx.AsyncClient | None = None
        if transport is None and not options.http2:
            self._h1 = h1_client_for(options, self._resolver)
            return
        original = httpx.URL(options.url)
        url = original if proxy else httpx.URL(target.url)
        headers = dict(options.headers)
        host_header = None if proxy else target.host_header
        if host_header and not any(k.lower() == "host" for k in headers):
            headers["host"] = host_header
        if options.new_connection:
            headers["connection"] = "close"
        sni = None if proxy else target.sni
        plain_h2 = options.http2 and options.url.startswith("http://")
        limits = httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=0 if options.new_connection else options.max_connections,
        )
        proxy_arg: httpx.Proxy | None = None
        if proxy is not None:
            proxy_headers = {"proxy-authorization": proxy.authorization} if proxy.authorization else None
            proxy_arg = httpx.Proxy(httpx.URL(target.url), headers=proxy_headers)
        self.client = httpx.AsyncClient(
            http1=not plain_h2,
            http2=options.http2,
            verify=ssl_context(options),
            timeout=httpx.Timeout(options.timeout),
            limits=limits,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            proxy=proxy_arg,
        )
        # Without a proxy or an injected transport, the name is resolved here (bounded, Ctrl-C-safe)
        # and httpx connects to the address, with the name kept in Host and TLS SNI.
        self._lookup: tuple[str, int] | None = None
        if transport is None and proxy is None and literal_host(url.host) is None:
            self._lookup = (url.host, url.port or (443 if url.scheme == "https" else 80))
        self._url = url
        self._sni = sni or (url.host if url.scheme == "https" else None)
        self._request_args: dict[str, Any] = {
            "method": options.method,
            "url": url,
            "headers": headers,
            "content": options.body,
            "extensions": {"sni_hostname": sni} if sni else {},
        }

    async def _httpx_args(self) -> dict[str, Any]:
        """The request's arguments, with the URL's host resolved to an address when it is a name."""
        if self._lookup is None:
            return self._request_args
        host, port = self._lookup
        addresses = await self._resolver.resolve(host, port, within=self._timeout)
        address = addresses[0][1][0]
        args = dict(self._request_args)
        args["url"] = self._url.copy_with(host=address)
        headers = dict(args["headers"])
        if not any(k.lower() == "host" for k in headers):
            headers["host"] = self._url.netloc.decode("ascii")
        args["headers"] = headers
        if self._sni:
            args["extensions"] = {**args["extensions"], "sni_hostname": self._sni}
        return args

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
            request = self.client.build_request(**await self._httpx_args())
            response = await self.client.send(request)
        except httpx.HTTPError as exc:
            return error_sample(exc)
        except OSError as exc:  # name resolution, and raw socket errors that escaped httpcore
            return error_sample(exc)
        raw = response.headers.raw
        headers = {k.lower().decode("latin-1"): v.decode("latin-1") for k, v in raw if k.lower() in _WANTED}
        return interpret(response.status_code, headers, response.content, response.http_version, self._by)

    async def aclose(self) -> None:
        if self._h1 is not None:
            await self._h1.aclose()
        if self.client is not None:
            await self.client.aclose()


def h1_client_for(options: ClientOptions, resolver: Resolver, *, all_headers: bool = False) -> H1Client:
    """The HTTP/1.1 client for these options: straight to the server (after --resolve/--connect-to),
    or through the proxy (absolute-form requests for http://, a CONNECT tunnel for https://)."""
    proxy = options.proxy
    target = resolve_target(proxy.url if proxy else options.url, options.resolve, options.connect_to)
    original = httpx.URL(options.url)
    https = original.scheme == "https"
    default_port = 443 if https else 80
    host = f"[{original.host}]" if ":" in original.host else original.host
    port = original.port or default_port
    authority = host if port == default_port else f"{host}:{port}"
    connect = httpx.URL(target.url)
    path = original.raw_path.decode("ascii") or "/"
    headers = options.headers
    tunnel: Tunnel | None = None
    if proxy is not None and https:
        tunnel = Tunnel(original.host, port, proxy.authorization)
    elif proxy is not None:
        path = f"http://{authority}{path}"  # absolute form: the proxy forwards it
        if proxy.authorization:
            headers = (*headers, ("proxy-authorization", proxy.authorization))
    else:
        path = connect.raw_path.decode("ascii") or "/"
    host_header = authority if proxy else (target.host_header or authority)
    request = build_request(options.method, path, host_header, headers, options.body, options.new_connection)
    return H1Client(
        connect.host,
        connect.port or (80 if proxy else default_port),
        request,
        ssl_context=ssl_context(options) if https else None,
        server_hostname=original.host if proxy else (target.sni or connect.host),
        timeout=options.timeout,
        new_connection=options.new_connection,
        head_only=options.method == "HEAD",
        resolver=resolver,
        tunnel=tunnel,
        all_headers=all_headers,
    )


def literal_host(host: str) -> str | None:
    """The host when it is an IP address literal, else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
