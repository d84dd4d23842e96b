"""Which HTTP proxy a request goes through, decided as curl decides it. Pure: the environment is passed in.

curl's rules (lib/url.c detect_proxy, lib/noproxy.c), kept here:
- `--proxy URL` wins over the environment; `--proxy ''` turns every proxy off.
- Otherwise the scheme's variable: `http_proxy` for http:// URLs — lower case only: curl ignores
  `HTTP_PROXY` on purpose, because CGI-style servers put a request's `Proxy:` header into the
  environment as HTTP_PROXY ("httpoxy") — and `https_proxy`, then `HTTPS_PROXY`, for https:// URLs;
  then `all_proxy`, then `ALL_PROXY`.
- `--noproxy LIST`, else `no_proxy`, else `NO_PROXY`, applies to every proxy, the explicit one too:
  comma-separated names (blanks around them ignored); `*` alone means no proxy for any host; a name
  matches itself and its subdomains (`example.com` and `.example.com` both match `example.com` and
  `www.example.com`, not `notexample.com`); case and trailing dots do not matter; an IP address or
  CIDR range matches IP hosts only (`10.0.0.0/8`, `::1`, `fd00::/8`). Ports are not part of a match.
- A proxy without a scheme is http://; without a port, port 1080 (curl's default).

netdebug speaks to HTTP proxies only (plain http:// to the proxy): absolute-form requests for http://
URLs, CONNECT tunnels for https:// URLs. HTTPS and SOCKS proxies are refused with a message.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PROXY_PORT = 1080


class ProxyError(ValueError):
    """A proxy setting netdebug cannot use; the message names where it came from."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str  # without brackets
    port: int
    authorization: str | None  # `Proxy-Authorization` value from user:password in the URL
    source: str  # "--proxy", "http_proxy", ... for messages

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def describe(self) -> str:
        return f"{self.url} (from {self.source})"


def parse_proxy(text: str, source: str) -> Proxy:
    """'host:port', 'http://user:pw@host:port' -> Proxy. Raises ProxyError."""
    value = text.strip()
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if parts.scheme.lower() != "http":
        raise ProxyError(
            f"{source}: {parts.scheme}:// proxies are not supported (only http:// proxies: "
            "absolute-form requests and CONNECT)"
        )
    if not parts.hostname:
        raise ProxyError(f"{source}: '{text}' names no proxy host")
    try:
        port = parts.port or DEFAULT_PROXY_PORT
    except ValueError:
        raise ProxyError(f"{source}: '{text}' has an invalid port") from None
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return Proxy(parts.hostname, port, authorization, source)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """curl's Curl_check_noproxy: is `host` (a URL's host) exempt from the proxy?"""
    if not host or not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    address = _ip(host)
    name = host.lower().rstrip(".")
    for raw in no_proxy.split(","):
        token = raw.strip()
        if not token:
            continue
        if address is not None:
            network_text, _, bits = token.strip("[]").partition("/")
            try:
                network = ipaddress.ip_network(
                    f"{network_text.strip('[]')}/{bits}" if bits else network_text.strip("[]"), strict=False
                )
            except ValueError:
                continue
            if address in network:
                return True
            continue
        pattern = token.lower().rstrip(".").removeprefix(".")
        if pattern and (name == pattern or name.endswith("." + pattern)):
            return True
    return False


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of `names` set in the environment (an empty value counts as unset, as in curl)."""
    for name in names:
        value = env.get(name)
        if value:
            return name, value
    return None


def select_proxy(
    url: str,
    env: Mapping[str, str],
    explicit: str | None = None,
    noproxy: str | None = None,
) -> Proxy | None:
    """The proxy for `url`, or None to connect directly. Raises ProxyError for a proxy netdebug cannot
    use. `explicit` is --proxy ('' = none), `noproxy` is --noproxy (None = from the environment)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    exempt = noproxy if noproxy is not None else (_env(env, "no_proxy", "NO_PROXY") or ("", ""))[1]
    if no_proxy_matches(host, exempt):
        return None
    if explicit is not None:
        return parse_proxy(explicit, "--proxy") if explicit.strip() else None
    names = ("http_proxy",) if scheme == "http" else (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
    found = _env(env, *names, "all_proxy", "ALL_PROXY")
    if found is None:
        return None
    source, value = found
    return parse_proxy(value, source)
