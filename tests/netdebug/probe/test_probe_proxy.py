"""`netdebug probe` through an HTTP proxy, as curl goes through one: absolute-form requests for http://,
CONNECT for https://, on the HTTP/1.1 client and on httpx (--http2); chosen by --proxy, http_proxy,
https_proxy and NO_PROXY. The targets are names only the test proxy knows, so a pass proves the
proxy (not the prober) resolved and reached them."""

from __future__ import annotations

import io
import json
import ssl
from pathlib import Path

import pytest
import trustme

from netdebug.cli import main_impl
from tests.netdebug.probe.probe_support import scripted, split
from tests.netdebug.proxy_support import http_proxy

NAME = "echo.proxied.test"  # known to the test proxy, to no DNS
BASE_ENV = {"NETDEBUG_WAIT_SIDECAR": "never"}
SPLIT = ["-n", "200", "--rps", "2000", "--expect", "v1=75,v2=25", "--tolerance", "10", "-o", "json"]


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(["probe", *args], {**BASE_ENV, **(env or {})}, out, err)
    return code, json.loads(out.getvalue()), err.getvalue()


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({"env": {"http_proxy": "{proxy}"}}, id="http_proxy"),
        pytest.param({"args": ["--proxy", "{proxy}"]}, id="flag"),
        pytest.param({"env": {"NETDEBUG_PROXY": "{proxy}"}}, id="NETDEBUG_PROXY"),
        pytest.param({"env": {"http_proxy": "{proxy}"}, "args": ["--http2"]}, id="httpx"),
    ],
)
def test_http_url_through_the_proxy_in_absolute_form(how: dict[str, object]) -> None:
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server, http_proxy({NAME: server.port}) as proxy:
        env = {k: v.format(proxy=proxy.url) for k, v in dict(how.get("env", {})).items()}  # type: ignore[call-overload]
        extra = [a.format(proxy=proxy.url) for a in how.get("args", [])]  # type: ignore[attr-defined]
        code, report, err = probe(f"http://{NAME}/echo", *SPLIT, *extra, env=env)
    assert code == 0, (report, err)
    assert report["verdict"] == "pass"
    assert str(report["proxy"]).startswith(proxy.url)
    assert proxy.seen.connects == []
    assert proxy.seen.request_lines[0] == f"GET http://{NAME}/echo HTTP/1.1"
    assert all(f"host: {NAME}".encode() in r.lower() for r in server.requests)


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "httpx"])
def test_https_url_through_a_connect_tunnel(tmp_path: Path, http2: bool) -> None:
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(tls)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    with (
        scripted({"/echo": split({"v1": 3, "v2": 1})}, tls=tls) as server,
        http_proxy({NAME: server.port}) as proxy,
    ):
        flags = ["--http2"] if http2 else []
        code, report, err = probe(
            f"https://{NAME}/echo", *SPLIT, "--cacert", str(cafile), *flags, env={"HTTPS_PROXY": proxy.url}
        )
    assert code == 0, (report, err)
    assert proxy.seen.connects
    assert set(proxy.seen.connects) == {f"{NAME}:443"}  # TLS verified the name inside the tunnel


def test_credentials_go_to_the_proxy() -> None:
    with scripted({"/echo": split({"v1": 1})}) as server, http_proxy({NAME: server.port}) as proxy:
        proxy_url = proxy.url.replace("http://", "http://user:secret@")
        code, report, err = probe(
            f"http://{NAME}/echo", "-n", "5", "--rps", "500", "-o", "json", "--proxy", proxy_url
        )
    assert code == 0, (report, err)
    assert set(proxy.seen.authorizations) == {"Basic dXNlcjpzZWNyZXQ="}
    assert "secret" not in str(report["proxy"])


def test_upper_case_http_proxy_and_no_proxy_leave_the_request_direct() -> None:
    with scripted({"/echo": split({"v1": 1})}) as server, http_proxy({}) as proxy:
        # curl ignores HTTP_PROXY (httpoxy); NO_PROXY exempts loopback from http_proxy.
        for env in ({"HTTP_PROXY": proxy.url}, {"http_proxy": proxy.url, "NO_PROXY": "127.0.0.0/8"}):
            code, report, err = probe(server.url(), "-n", "5", "--rps", "500", "-o", "json", env=env)
            assert code == 0, (report, err)
            assert report["proxy"] is None
        assert proxy.seen.request_lines == []


def test_a_refused_tunnel_is_a_connect_error() -> None:
    with http_proxy({}) as proxy:  # knows no name: answers CONNECT with 403
        code, report, err = probe(
            "https://nowhere.proxied.test/echo",
            "-n",
            "3",
            "--expect",
            "v1=1",
            "-o",
            "json",
            "--proxy",
            proxy.url,
        )
    assert code == 4
    assert report["errors"] == {"connect": 3}
    assert "refused CONNECT nowhere.proxied.test:443: 403" in str(report["error_details"])
    assert err.count("refused CONNECT") == 1  # JSON on stdout, the one line on stderr


def test_unusable_proxy_setting_is_a_usage_error() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(["probe", "http://svc/echo"], {"all_proxy": "socks5://127.0.0.1:1"}, out, err)
    assert code == 2
    assert "all_proxy: socks5:// proxies are not supported" in err.getvalue()
