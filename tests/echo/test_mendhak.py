"""mendhak v41 behaviours and the memory/readiness limits, in process (httpx ASGITransport, raw ASGI).

Each mendhak test says where the behaviour comes from: mendhak's index.js and tests.sh, or the code of
the Express middleware it uses (cookie-parser, proxy-addr, express-prom-bundle, send).
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from echo.app import create_app
from echo.config import EchoConfig, load_config
from echo.cookies import sign
from tests.echo.test_app import IDENTITY, Harness, RawDriver, http_scope

pytestmark = pytest.mark.anyio


# -- Content-Encoding ------------------------------------------------------------------------------


async def test_gzip_body_is_decoded_before_body_and_json() -> None:
    # mendhak tests.sh: echo -n '{"a":"b"}' | gzip | curl -H "Content-Encoding: gzip" ... | jq .json.a
    async with Harness().client() as client:
        response = await client.post(
            "/",
            content=gzip.compress(b'{"a":"b"}'),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
    doc = response.json()
    assert doc["json"] == {"a": "b"}
    assert doc["body"] == '{"a":"b"}'
    assert doc["body_bytes"] == 9
    assert doc["content_encoding"] == {"decoded": ["gzip"], "encoded_bytes": len(gzip.compress(b'{"a":"b"}'))}


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        pytest.param("deflate", zlib.compress(b"hello"), id="deflate-zlib"),
        pytest.param("deflate", zlib.compress(b"hello")[2:-4], id="deflate-raw"),
        pytest.param("x-gzip", gzip.compress(b"hello"), id="x-gzip"),
        pytest.param("GZIP", gzip.compress(b"hello"), id="any-case"),
        pytest.param("gzip, deflate", zlib.compress(gzip.compress(b"hello")), id="two-codings"),
        pytest.param("identity", b"hello", id="identity"),
    ],
)
async def test_codings(encoding: str, payload: bytes) -> None:
    async with Harness().client() as client:
        response = await client.post("/", content=payload, headers={"content-encoding": encoding})
    assert response.status_code == 200
    assert response.json()["body"] == "hello"


@pytest.mark.parametrize(
    ("encoding", "payload", "status", "error"),
    [
        pytest.param("gzip", b"not gzip at all", 400, "not gzip data", id="not-gzip"),
        pytest.param("gzip", gzip.compress(b"hello")[:-6], 400, "cut short", id="truncated"),
        pytest.param("gzip", gzip.compress(b"hello") + b"junk", 400, "trailing bytes", id="trailing"),
        pytest.param("deflate", b"\x78\x9c garbage", 400, "does not decode", id="bad-deflate"),
        pytest.param("br", b"\x0b\x02\x80hello\x03", 415, "unsupported Content-Encoding 'br'", id="brotli"),
        pytest.param("compress", b"x", 415, "unsupported", id="compress"),
    ],
)
async def test_bodies_that_do_not_decode(encoding: str, payload: bytes, status: int, error: str) -> None:
    harness = Harness()
    async with harness.client() as client:
        response = await client.post("/", content=payload, headers={"content-encoding": encoding})
    assert response.status_code == status
    assert error in response.json()["error"]
    assert response.headers["x-echo-pod"] == IDENTITY.name
    if status == 415:
        assert response.headers["accept-encoding"] == "gzip, deflate"
    assert harness.logs()[-1]["status"] == status


async def test_decompression_bomb_is_413_and_bounded() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1_048_576))  # 64 MiB of zeros in ~64 KiB
    harness = Harness({"ECHO_MAX_BODY_BYTES": str(1_048_576)})
    async with harness.client() as client:
        response = await client.post("/", content=bomb, headers={"content-encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["limit"] == 1_048_576
    assert harness.app.budget.in_use == 0
    # Decoding stopped at the limit: at most one chunk past it was ever held.
    assert harness.app.budget.peak <= 3 * (1_048_576 + 64 * 1024)


# -- trusted proxies ------------------------------------------------------------------------------


async def _doc(harness: Harness, peer: str, headers: dict[str, str]) -> dict[str, Any]:
    scope = http_scope(
        "GET", [(b"host", b"echo.local"), *((k.encode(), v.encode()) for k, v in headers.items())]
    )
    scope["client"] = (peer, 4000)
    driver = RawDriver(harness.app, [{"type": "http.request", "body": b"", "more_body": False}])
    await driver.run(scope)
    result: dict[str, Any] = orjson.loads(driver.sent[1]["body"])
    return result


async def test_additional_trusted_proxies() -> None:
    forwarded = {"x-forwarded-for": "198.51.100.9, 203.0.113.50", "x-forwarded-proto": "https"}
    forwarded["x-forwarded-host"] = "public.example"
    plain = await _doc(Harness(), "203.0.113.50", forwarded)
    assert (plain["ip"], plain["ips"], plain["protocol"]) == ("203.0.113.50", [], "http")
    assert plain["hostname"] == "echo.local"
    harness = Harness({"ADDITIONAL_TRUSTED_PROXIES": "203.0.113.0/24, 2001:db8::1"})
    trusted = await _doc(harness, "203.0.113.50", forwarded)
    # The peer and the last hop are trusted; the walk stops at the first untrusted address.
    assert (trusted["ip"], trusted["ips"]) == ("198.51.100.9", ["198.51.100.9", "203.0.113.50"])
    assert (trusted["protocol"], trusted["hostname"]) == ("https", "public.example")
    v6 = await _doc(harness, "2001:db8::1", {"x-forwarded-for": "198.51.100.9"})
    assert v6["ip"] == "198.51.100.9"


# -- cookies ---------------------------------------------------------------------------------------


async def test_cookies_and_signed_cookies() -> None:
    # mendhak tests.sh: COOKIE_SECRET=mysecretkey123, Cookie: mysigned=s:<sign('my-value')>.
    signed = sign("my-value", "mysecretkey123")
    harness = Harness({"COOKIE_SECRET": "mysecretkey123"})
    async with harness.client() as client:
        doc = (
            await client.get(
                "/",
                headers={
                    "cookie": f"mysigned=s:{signed}; forged=s:my-value.AAAA; foo=bar; "
                    f"enc=s%3A{signed.replace('+', '%2B').replace('/', '%2F')}; prefs=j%3A%7B%22a%22%3A1%7D"
                },
            )
        ).json()
    assert doc["signedCookies"] == {"mysigned": "my-value", "forged": False, "enc": "my-value"}
    assert doc["cookies"] == {"foo": "bar", "prefs": {"a": 1}}
    async with Harness().client() as client:
        unsigned = (await client.get("/", headers={"cookie": f"mysigned=s:{signed}; foo=bar"})).json()
    # Without a secret, cookie-parser leaves s: cookies alone.
    assert unsigned["cookies"] == {"mysigned": f"s:{signed}", "foo": "bar"}
    assert unsigned["signedCookies"] == {}
    assert "mysecretkey123" not in repr(harness.config)


# -- response header names -------------------------------------------------------------------------


async def test_response_header_names_in_express_case_on_http1_lower_case_on_h2() -> None:
    harness = Harness(
        {"CORS_ALLOW_ORIGIN": "http://example.com", "CORS_ALLOW_HEADERS": "x-custom-test-header"}
    )
    for version, expected in (
        ("1.1", [b"Content-Type", b"Content-Length", b"Access-Control-Allow-Origin", b"X-Custom"]),
        ("2", [b"content-type", b"content-length", b"access-control-allow-origin", b"x-custom"]),
    ):
        scope = http_scope("GET", [(b"host", b"e"), (b"x-set-response-header", b"X-Custom: 1")], version)
        driver = RawDriver(harness.app, [{"type": "http.request", "body": b"", "more_body": False}])
        await driver.run(scope)
        names = [name for name, _ in driver.sent[0]["headers"]]
        for name in expected:
            assert name in names, (version, name)
        assert b"x-echo-pod" in names


# -- Prometheus ------------------------------------------------------------------------------------


async def test_prometheus_off_leaves_metrics_an_echo_path() -> None:
    async with Harness().client() as client:
        assert (await client.get("/metrics")).json()["path"] == "/metrics"


async def test_prometheus_series_as_express_prom_bundle() -> None:
    harness = Harness({"PROMETHEUS_ENABLED": "true"})
    async with harness.client() as client:
        await client.post("/", content=b"tiramisu")
        await client.get("/a", headers={"x-set-response-status-code": "404"})
        scraped = await client.get("/metrics")
        again = await client.post("/metrics/")  # any method, optional trailing slash
        echoed = await client.get("/metrics?x=1")  # the query is part of what is matched
        admin = await client.get("/_echo/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"] == "text/plain"
    text = scraped.text
    assert "# TYPE http_request_duration_seconds summary" in text
    assert (
        "# HELP http_request_duration_seconds duration summary of http responses labeled with: "
        "status_code, method"
    ) in text
    assert 'http_request_duration_seconds_count{status_code="200",method="POST"} 1' in text
    assert 'http_request_duration_seconds_count{status_code="404",method="GET"} 1' in text
    assert 'http_request_duration_seconds{quantile="0.5",status_code="200",method="POST"} ' in text
    assert text.endswith("\n\n# HELP up 1 = up, 0 = not up\n# TYPE up gauge\nup 1\n")
    assert "http_request_duration_seconds_count" in again.text
    assert echoed.json()["path"] == "/metrics"
    assert "echo_requests_total" in admin.text
    assert [entry["path"] for entry in harness.logs()] == ["/", "/a", "/metrics"]


async def test_prometheus_histogram_with_path_and_custom_path() -> None:
    env = {
        "PROMETHEUS_ENABLED": "true",
        "PROMETHEUS_METRIC_TYPE": "histogram",
        "PROMETHEUS_WITH_PATH": "true",
        "PROMETHEUS_WITH_METHOD": "false",
        "PROMETHEUS_METRICS_PATH": "/prom",
    }
    async with Harness(env).client() as client:
        await client.get("/users/12345/orders")
        text = (await client.get("/prom")).text
    assert (
        'http_request_duration_seconds_bucket{le="0.003",status_code="200",path="/users/#val/orders"} 1'
        in text
    )
    assert (
        'http_request_duration_seconds_bucket{le="+Inf",status_code="200",path="/users/#val/orders"} 1'
        in text
    )
    assert "labeled with: status_code, path" in text


# -- override file ---------------------------------------------------------------------------------


def test_override_path_resolves_like_mendhak(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "test.html").write_text("<h1>Hello World</h1>")
    elsewhere = tmp_path / "page.txt"
    elsewhere.write_text("plain")
    # mendhak's documented -v $PWD/test.html:/app/test.html -e OVERRIDE_RESPONSE_BODY_FILE_PATH=/test.html
    for value in ("/test.html", "test.html", "./test.html"):
        config = load_config([], {"OVERRIDE_RESPONSE_BODY_FILE_PATH": value}, app_dir=app_dir)
        assert config.override_response_body_file_path == app_dir / "test.html", value
    # Not under the app directory: the path as given.
    config = load_config([], {"OVERRIDE_RESPONSE_BODY_FILE_PATH": str(elsewhere)}, app_dir=app_dir)
    assert config.override_response_body_file_path == elsewhere
    # `..` may not climb out of the app directory the mendhak way (send refuses it with 403).
    with pytest.raises(Exception, match="no such file"):
        load_config([], {"OVERRIDE_RESPONSE_BODY_FILE_PATH": "../page.txt"}, app_dir=app_dir)


async def test_override_body_with_controls_and_types(tmp_path: Path) -> None:
    page = tmp_path / "test.html"
    page.write_text("<h1>Hello World</h1>")
    harness = Harness({"OVERRIDE_RESPONSE_BODY_FILE_PATH": str(page)})
    async with harness.client() as client:
        response = await client.get("/", headers={"x-set-response-status-code": "202"})
    assert (response.status_code, response.text) == (202, "<h1>Hello World</h1>")
    assert response.headers["content-type"] == "text/html; charset=utf-8"


# -- LOG_FORMAT=full and redaction -----------------------------------------------------------------


async def test_full_log_has_the_request_with_the_same_redaction() -> None:
    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    harness = Harness({"LOG_FORMAT": "full", "JWT_HEADER": "authorization"})
    async with harness.client() as client:
        await client.post(
            "/hook?token=q-tok-9&page=2",
            content=b'{"event":"push"}',
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {token}",
                "x-api-key": "k-123",
                "x-amz-security-token": "amz-456",
                "cookie": "session=s-789",
            },
        )
        await client.get("/x", headers={"x-set-response-status-code": "nope"})
    line = harness.lines[0]
    for secret in (b"k-123", b"amz-456", b"s-789", b"c2lnbmF0dXJl", b"q-tok-9"):
        assert secret not in line, secret
    entry = harness.logs()[0]
    request = entry["request"]
    assert request["body"] == '{"event":"push"}'
    assert request["json"] == {"event": "push"}
    assert request["headers"]["x-api-key"] == "[redacted]"
    assert request["cookies"] == {"session": "[redacted]"}
    assert request["query"] == {"token": "[redacted]", "page": "2"}
    assert request["jwt"]["payload"] == {"sub": "x"}
    assert entry["headers"]["x-amz-security-token"] == "[redacted]"
    assert harness.logs()[1]["request"]["path"] == "/x"  # logged even when the answer is a 400


async def test_summary_log_redacts_secret_header_names() -> None:
    harness = Harness()
    async with harness.client() as client:
        await client.get(
            "/", headers={"x-api-key": "k1", "x-auth-token": "t1", "x-csrf-token": "c1", "x-ok": "v"}
        )
    entry = harness.logs()[0]
    assert "request" not in entry
    assert [entry["headers"][name] for name in ("x-api-key", "x-auth-token", "x-csrf-token")] == [
        "[redacted]"
    ] * 3
    assert entry["headers"]["x-ok"] == "v"


async def test_env_redacts_urls_with_passwords() -> None:
    environ = {
        "DATABASE_URL": "postgres://app:s3cret@db:5432/app",
        "REDIS_URL": "redis://:r3dis@cache:6379/0",
        "GIT_REMOTE": "https://ghp_abc@github.example/x.git",
        "SENTRY_DSN": "https://key@sentry.example/1",
        "PGPASSFILE": "/x",
        "MY_PASSPHRASE": "words",
        "CALLBACK": "https://h.example/cb?sig=abcd&x=1",
        "TLS_KEY_PEM": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
        "HOME": "/root",
    }
    harness = Harness({"ECHO_INCLUDE_ENV_VARS": "true"}, environ=environ)
    async with harness.client() as client:
        env = (await client.get("/")).json()["env"]
    assert env["DATABASE_URL"] == "postgres://app:[redacted]@db:5432/app"
    assert env["REDIS_URL"] == "redis://:[redacted]@cache:6379/0"
    assert env["GIT_REMOTE"] == "https://[redacted]@github.example/x.git"
    assert env["CALLBACK"] == "https://h.example/cb?sig=[redacted]&x=1"
    for name in ("SENTRY_DSN", "PGPASSFILE", "MY_PASSPHRASE", "TLS_KEY_PEM"):
        assert env[name] == "[redacted]", name
    assert env["HOME"] == "/root"


# -- readiness changes -----------------------------------------------------------------------------


async def _flip(harness: Harness, peer: str) -> tuple[int, dict[str, Any]]:
    scope = http_scope("POST")
    scope["path"], scope["query_string"], scope["client"] = "/_echo/readyz", b"ready=false", (peer, 1)
    driver = RawDriver(harness.app, [{"type": "http.request", "body": b"", "more_body": False}])
    await driver.run(scope)
    return driver.sent[0]["status"], orjson.loads(driver.sent[1]["body"])


async def test_readiness_changes_only_from_loopback_by_default() -> None:
    harness = Harness()
    status, body = await _flip(harness, "10.1.2.3")
    assert status == 403
    assert "ECHO_READYZ_CHANGE_FROM" in body["error"]
    assert harness.app.ready
    assert (await _flip(harness, "127.0.0.1"))[0] == 200
    assert not harness.app.ready
    events = [entry for entry in harness.logs() if entry.get("event") == "readiness"]
    assert [(e["peer"], e["allowed"]) for e in events] == [("10.1.2.3", False), ("127.0.0.1", True)]
    assert events[1]["ready"] is False
    opened = Harness({"ECHO_READYZ_CHANGE_FROM": "any"})
    assert (await _flip(opened, "203.0.113.9"))[0] == 200
    listed = Harness({"ECHO_READYZ_CHANGE_FROM": "10.0.0.0/8"})
    assert (await _flip(listed, "10.9.9.9"))[0] == 200
    assert (await _flip(listed, "127.0.0.1"))[0] == 403


# -- long numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"x-set-response-status-code": "2" * 5000}, id="status"),
        pytest.param({"x-set-response-delay-ms": "9" * 5000}, id="delay"),
        pytest.param({"x-fail-attempts": "9" * 5000}, id="fail-attempts"),
        pytest.param({"x-set-response-status-mix": "503:" + "1" * 5000}, id="mix"),
        pytest.param({"x-envoy-attempt-count": "7" * 5000}, id="attempt-count"),
        pytest.param({"content-length": "1" * 5000}, id="content-length"),
    ],
)
async def test_numbers_beyond_int_limits_are_never_a_500(headers: dict[str, str]) -> None:
    harness = Harness()
    scope = http_scope("GET", [(b"host", b"e"), *((k.encode(), v.encode()) for k, v in headers.items())])
    driver = RawDriver(harness.app, [{"type": "http.request", "body": b"", "more_body": False}])
    await driver.run(scope)
    status = driver.sent[0]["status"]
    assert status in (200, 400, 413), status
    if "x-envoy-attempt-count" in headers:
        assert orjson.loads(driver.sent[1]["body"])["mesh"]["attempt"] is None
    if "x-set-response-delay-ms" in headers:
        assert dict(driver.sent[0]["headers"])[b"x-echo-delay-capped"] == b"true"


# -- disconnect during a delay ---------------------------------------------------------------------


async def test_disconnect_during_delay_ends_the_request_at_once() -> None:
    forever = asyncio.Event()

    async def never_wakes(seconds: float) -> None:
        await forever.wait()

    lines: list[bytes] = []
    app = create_app(load_config([], {}), IDENTITY, log_sink=lines.append, sleep=never_wakes)
    driver = RawDriver(
        app,
        [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}],
    )
    scope = http_scope("GET", [(b"host", b"e"), (b"x-set-response-delay-ms", b"60000")])
    await asyncio.wait_for(driver.run(scope), timeout=5)
    assert driver.sent == []
    assert orjson.loads(lines[0])["status"] == 499
    assert app.in_flight == 0


# -- memory budget ---------------------------------------------------------------------------------


async def test_budget_refuses_with_503_and_retry_after_then_recovers() -> None:
    harness = Harness({"ECHO_MAX_INFLIGHT_BYTES": "100000", "ECHO_MAX_BODY_BYTES": "30000"})
    assert harness.app.budget.reserve(60_000)  # other requests hold most of the budget
    async with harness.client() as client:
        busy = await client.post("/", content=b"x" * 20_000)
        harness.app.budget.release(60_000)
        fine = await client.post("/", content=b"x" * 20_000)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["retry_after"] == 1
    assert fine.status_code == 200
    assert harness.app.budget.in_use == 0


async def test_one_document_larger_than_the_response_cap_is_413() -> None:
    harness = Harness({"ECHO_MAX_RESPONSE_BYTES": "50000"})
    async with harness.client() as client:
        # Control characters are escaped as \\u0001: 6 bytes out for each byte in.
        big = await client.post("/", content=b"\x01" * 20_000)
        body_only = await client.post("/?response_body_only=true", content=b"\x01" * 20_000)
    assert big.status_code == 413
    assert "ECHO_MAX_RESPONSE_BYTES" in big.json()["error"]
    assert body_only.status_code == 200  # nothing is amplified when the body is sent back as it is
    assert harness.app.budget.in_use == 0


async def test_large_json_is_not_parsed_and_says_why() -> None:
    harness = Harness({"ECHO_MAX_JSON_BYTES": "10"})
    async with harness.client() as client:
        doc = (await client.post("/", json={"key": "a long value"})).json()
        bad = (await client.post("/", content=b"{", headers={"content-type": "application/json"})).json()
    assert doc["json"] is None
    assert "ECHO_MAX_JSON_BYTES" in doc["json_error"]
    assert bad["json"] is None
    assert bad["json_error"].startswith("invalid JSON")


async def test_large_documents_are_sent_in_pieces() -> None:
    harness = Harness()
    driver = RawDriver(harness.app, [{"type": "http.request", "body": b"y" * 600_000, "more_body": False}])
    await driver.run(http_scope())
    start, *pieces = driver.sent
    assert len(pieces) > 1
    assert [piece.get("more_body", False) for piece in pieces] == [True] * (len(pieces) - 1) + [False]
    body = b"".join(piece["body"] for piece in pieces)
    assert int(dict(start["headers"])[b"Content-Length"]) == len(body)
    assert orjson.loads(body)["body_bytes"] == 600_000


def test_config_keeps_the_secret_out_of_its_repr() -> None:
    assert "hush" not in repr(EchoConfig(cookie_secret="hush"))


async def test_http2_scope_gets_lower_case_names_for_errors_too() -> None:
    harness = Harness()
    scope = http_scope("GET", [(b"host", b"e"), (b"x-set-response-status-code", b"x")], "2")
    driver = RawDriver(harness.app, [{"type": "http.request", "body": b"", "more_body": False}])
    await driver.run(scope)
    assert all(name == name.lower() for name, _ in driver.sent[0]["headers"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=harness.app), base_url="http://e"
    ) as client:
        assert (await client.options("/_echo/livez")).headers["allow"] == "GET, HEAD"
