"""Which proxy a URL goes through: curl's rules (lib/url.c detect_proxy, lib/noproxy.c), table-driven."""

from __future__ import annotations

import pytest

from netdebug.proxy import Proxy, ProxyError, no_proxy_matches, parse_proxy, select_proxy

P = "http://127.0.0.1:3128"


@pytest.mark.parametrize(
    ("url", "env", "explicit", "noproxy", "expected"),
    [
        pytest.param(
            "http://svc/echo", {"http_proxy": P}, None, None, ("127.0.0.1", 3128, "http_proxy"), id="http"
        ),
        # curl ignores upper-case HTTP_PROXY: CGI servers put a request's Proxy: header there (httpoxy).
        pytest.param("http://svc/echo", {"HTTP_PROXY": P}, None, None, None, id="upper-http-ignored"),
        pytest.param("http://svc/echo", {"https_proxy": P}, None, None, None, id="https-var-not-for-http"),
        pytest.param(
            "https://svc/", {"https_proxy": P}, None, None, ("127.0.0.1", 3128, "https_proxy"), id="https"
        ),
        pytest.param(
            "https://svc/", {"HTTPS_PROXY": P}, None, None, ("127.0.0.1", 3128, "HTTPS_PROXY"), id="HTTPS"
        ),
        pytest.param(
            "https://svc/",
            {"https_proxy": P, "HTTPS_PROXY": "http://other:1"},
            None,
            None,
            ("127.0.0.1", 3128, "https_proxy"),
            id="lower-first",
        ),
        pytest.param("https://svc/", {"http_proxy": P}, None, None, None, id="http-var-not-for-https"),
        pytest.param("http://svc/", {"all_proxy": P}, None, None, ("127.0.0.1", 3128, "all_proxy"), id="all"),
        pytest.param("http://svc/", {"ALL_PROXY": P}, None, None, ("127.0.0.1", 3128, "ALL_PROXY"), id="ALL"),
        pytest.param(
            "http://svc/",
            {"http_proxy": P, "all_proxy": "x:1"},
            None,
            None,
            ("127.0.0.1", 3128, "http_proxy"),
            id="scheme-before-all",
        ),
        pytest.param("http://svc/", {"http_proxy": ""}, None, None, None, id="empty-is-unset"),
        pytest.param("http://svc/", {"http_proxy": P}, "", None, None, id="explicit-empty-turns-off"),
        pytest.param(
            "http://svc/",
            {"http_proxy": P},
            "10.0.0.1:8080",
            None,
            ("10.0.0.1", 8080, "--proxy"),
            id="explicit",
        ),
        pytest.param(
            "http://svc/", {}, "proxy.local", None, ("proxy.local", 1080, "--proxy"), id="port-1080"
        ),
        pytest.param("http://svc/", {"http_proxy": P, "no_proxy": "svc"}, None, None, None, id="no-proxy"),
        pytest.param("http://svc/", {"http_proxy": P, "NO_PROXY": "svc"}, None, None, None, id="NO-PROXY"),
        pytest.param(
            "http://svc/",
            {"http_proxy": P, "no_proxy": "other", "NO_PROXY": "svc"},
            None,
            None,
            ("127.0.0.1", 3128, "http_proxy"),
            id="no-proxy-lower-first",
        ),
        # NO_PROXY applies to an explicit proxy too; --noproxy replaces the variables.
        pytest.param("http://svc/", {"no_proxy": "svc"}, P, None, None, id="no-proxy-explicit"),
        pytest.param(
            "http://svc/",
            {"http_proxy": P, "no_proxy": "svc"},
            None,
            "other",
            ("127.0.0.1", 3128, "http_proxy"),
            id="noproxy-flag-wins",
        ),
        pytest.param("http://svc/", {"http_proxy": P}, None, "*", None, id="star"),
    ],
)
def test_select_proxy(
    url: str,
    env: dict[str, str],
    explicit: str | None,
    noproxy: str | None,
    expected: tuple[str, int, str] | None,
) -> None:
    proxy = select_proxy(url, env, explicit, noproxy)
    if expected is None:
        assert proxy is None
    else:
        assert proxy is not None
        assert (proxy.host, proxy.port, proxy.source) == expected


@pytest.mark.parametrize(
    ("host", "no_proxy", "match"),
    [
        pytest.param("example.com", "example.com", True, id="exact"),
        pytest.param("www.example.com", "example.com", True, id="subdomain"),
        pytest.param("www.example.com", ".example.com", True, id="leading-dot"),
        pytest.param("example.com", ".example.com", True, id="leading-dot-matches-itself"),
        pytest.param("notexample.com", "example.com", False, id="not-a-suffix-of-a-label"),
        pytest.param("EXAMPLE.com.", "example.COM", True, id="case-and-trailing-dot"),
        pytest.param("svc.echo.svc.cluster.local", "cluster.local", True, id="cluster-suffix"),
        pytest.param("a.b", " x , a.b ", True, id="blanks-around"),
        pytest.param("a.b", "x,,a.b", True, id="empty-entries"),
        pytest.param("anything", "*", True, id="star-alone"),
        pytest.param("anything", "*,x", False, id="star-only-alone"),
        pytest.param("10.1.2.3", "10.0.0.0/8", True, id="cidr4"),
        pytest.param("11.1.2.3", "10.0.0.0/8", False, id="cidr4-outside"),
        pytest.param("10.1.2.3", "10.1.2.3", True, id="ip4-exact"),
        pytest.param("10.1.2.4", "10.1.2.3", False, id="ip4-other"),
        pytest.param("::1", "::1", True, id="ip6"),
        pytest.param("[fd00::5]", "fd00::/8", True, id="cidr6-bracketed-host"),
        pytest.param("fe80::1", "fd00::/8", False, id="cidr6-outside"),
        pytest.param("10.1.2.3", "example.com", False, id="ip-vs-name"),
        pytest.param("example.com", "10.0.0.0/8", False, id="name-vs-cidr"),
        pytest.param("example.com", "", False, id="empty"),
    ],
)
def test_no_proxy_matches_like_curl(host: str, no_proxy: str, match: bool) -> None:
    assert no_proxy_matches(host, no_proxy) is match


def test_parse_proxy_credentials_and_errors() -> None:
    proxy = parse_proxy("http://user:p%40ss@[::1]:8080", "http_proxy")
    assert proxy == Proxy("::1", 8080, "Basic dXNlcjpwQHNz", "http_proxy")
    assert proxy.url == "http://[::1]:8080"
    with pytest.raises(ProxyError, match=r"all_proxy: socks5:// proxies are not supported"):
        select_proxy("http://svc/", {"all_proxy": "socks5://127.0.0.1:1080"})
    with pytest.raises(ProxyError, match="invalid port"):
        parse_proxy("http://127.0.0.1:99999", "--proxy")
