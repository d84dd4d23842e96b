"""Property-based tests of the pure parsers: no input makes one raise anything but its documented error.

Every request input reaches one of: a 2xx document, a documented 4xx (ControlError → 400,
UnsupportedEncoding → 415, DecodeError → 400, DecodedTooLarge → 413), or an "invalid" marker in the
document (``attempt: null``, ``trace.w3c.error``, ``jwt.error``, ``signedCookies[name] = false``).
The last test drives whole requests through the app and checks the status set and that the answer
is JSON.
"""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo import controls as ctl
from echo.cookies import json_cookie, parse_cookies, sign
from echo.encoding import (
    BodyDecoder,
    DecodedTooLarge,
    DecodeError,
    UnsupportedEncoding,
    parse_content_encoding,
)
from echo.jwt import decode_jwt
from echo.mesh import mesh_info, parse_attempt, parse_b3_single, parse_traceparent, parse_xfcc
from echo.prometheus import js_number, normalize_path
from echo.reflect import parse_query
from echo.trust import TrustedProxies, TrustError, parse_networks

# Header values reach the parsers decoded from bytes: never a lone surrogate, never CR/LF/NUL.
_HEADER_CHARS = st.characters(codec="utf-8", blacklist_characters="\r\n\x00")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Header values as a server hands them over: any text without CR/LF/NUL, plus long digit runs.
header_text = st.one_of(
    st.text(_HEADER_CHARS, max_size=200),
    st.text("0123456789", min_size=1, max_size=6000),
    st.from_regex(r"[0-9]{1,5}:[0-9.\-]{0,8}(,[0-9]{1,5}:[0-9.]{0,8}){0,3}", fullmatch=True),
)


@FAST
@given(
    name=st.sampled_from(ctl.ALL_CONTROLS),
    value=header_text,
    query_value=header_text,
    attempt=st.one_of(st.none(), st.integers(min_value=0, max_value=10**12)),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_controls_parse_or_raise_control_error(
    name: str, value: str, query_value: str, attempt: int | None, draw: float
) -> None:
    error: ctl.ControlError | None = None
    try:
        controls = ctl.parse_controls(
            {name: [value]}, {name: [query_value]}, max_delay_ms=60_000, attempt=attempt, rng=lambda: draw
        )
    except ctl.ControlError as exc:
        error = exc
    if error is not None:
        assert error.control == name
        assert len(error.to_json()["error"]) < 400  # an error never echoes a huge value back
        return
    assert controls.status is None or 200 <= controls.status <= 599
    assert 0 <= controls.delay_ms <= 60_000


@FAST
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "x-forwarded-client-cert",
                "x-envoy-attempt-count",
                "x-request-id",
                "traceparent",
                "tracestate",
                "b3",
                "x-b3-traceid",
                "x-b3-sampled",
                "x-b3-flags",
                "x-forwarded-for",
                "x-envoy-decorator-operation",
            ]
        ),
        header_text,
    )
)
def test_mesh_info_always_serialises(headers: dict[str, str]) -> None:
    info = mesh_info(headers)
    orjson.dumps(info)
    assert info["attempt"] is None or 0 <= info["attempt"] < 10**10
    trace = info["trace"]
    if trace is not None and "traceparent" in headers:
        w3c = trace["w3c"]
        assert isinstance(w3c, dict)
        assert "trace_id" in w3c or w3c["error"] == "malformed traceparent"


@FAST
@given(value=header_text)
def test_single_parsers_return_a_value_or_none(value: str) -> None:
    parse_attempt(value)
    parse_traceparent(value)
    parse_b3_single(value)
    for element in parse_xfcc(value):
        assert isinstance(element["dns"], list)


@FAST
@given(
    value=st.one_of(
        header_text, st.builds(lambda a, b, c: f"{a}.{b}.{c}", header_text, header_text, header_text)
    )
)
def test_jwt_decodes_or_says_why(value: str) -> None:
    decoded = decode_jwt(value)
    orjson.dumps(decoded)
    assert set(decoded) == {"header", "payload", "signature"} or set(decoded) == {"error"}


cookie_text = st.text(_HEADER_CHARS, max_size=120)


@FAST
@given(header=cookie_text, secret=st.one_of(st.none(), st.text(min_size=1, max_size=20)))
def test_cookies_parse_anything(header: str, secret: str | None) -> None:
    cookies, signed = parse_cookies(header, secret)
    orjson.dumps(cookies)
    orjson.dumps(signed)
    if secret is None:
        assert signed == {}
    for value in signed.values():
        assert value is False or isinstance(value, str | int | float | list | dict | bool)


@FAST
@given(
    value=st.text(max_size=40),
    secret=st.text(min_size=1, max_size=20),
    other=st.text(min_size=1, max_size=20),
)
def test_signed_cookies_round_trip_and_reject_other_secrets(value: str, secret: str, other: str) -> None:
    cookie = "s:" + sign(value, secret)
    header = "c=" + cookie.replace("%", "%25").replace(";", "%3B").replace('"', "%22")
    _, signed = parse_cookies(header, secret)
    expected = json_cookie(value.strip(" \t")) if value == value.strip(" \t") else None
    if expected is not None:
        assert signed["c"] == expected
    if other != secret:
        assert parse_cookies(header, other)[1]["c"] is False


@FAST
@given(query=st.binary(max_size=300))
def test_query_always_parses_to_serialisable_text(query: bytes) -> None:
    orjson.dumps(parse_query(query))


@FAST
@given(value=st.text(max_size=80))
def test_content_encoding_header(value: str) -> None:
    try:
        codings = parse_content_encoding(value)
    except UnsupportedEncoding:
        return
    assert set(codings) <= {"gzip", "deflate"}


def _encode(data: bytes, coding: str) -> bytes:
    return gzip.compress(data) if coding == "gzip" else zlib.compress(data)


@FAST
@given(
    data=st.binary(max_size=2000),
    codings=st.lists(st.sampled_from(["gzip", "deflate"]), min_size=1, max_size=3),
    cut=st.integers(min_value=1, max_value=97),
    garbage=st.binary(max_size=40),
    mode=st.sampled_from(["clean", "garbage", "flip"]),
)
def test_decoder_decodes_or_raises_documented_errors(
    data: bytes, codings: list[str], cut: int, garbage: bytes, mode: str
) -> None:
    encoded = data
    for coding in codings:
        encoded = _encode(encoded, coding)
    if mode == "garbage":
        encoded = encoded + garbage
    elif mode == "flip" and encoded:
        index = len(garbage) % len(encoded)
        encoded = encoded[:index] + bytes([encoded[index] ^ 0x5A]) + encoded[index + 1 :]
    decoder = BodyDecoder(tuple(codings), limit=1000)
    try:
        for offset in range(0, len(encoded), cut):
            decoder.feed(encoded[offset : offset + cut])
        result = decoder.finish()
    except DecodedTooLarge:
        assert len(data) > 1000 or mode != "clean"
        return
    except DecodeError:
        assert mode != "clean"
        return
    if mode == "clean":
        assert result == data
    assert len(result) <= 1000


@FAST
@given(text=st.text(max_size=60))
def test_proxy_lists_parse_or_raise_trust_error(text: str) -> None:
    try:
        networks = parse_networks(text)
    except TrustError:
        return
    trust = TrustedProxies(networks)
    trust.client_addresses("10.0.0.1", text)


@FAST
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_js_number_round_trips(value: float) -> None:
    assert float(js_number(value)) == value


@FAST
@given(path=st.text(max_size=80))
def test_normalize_path(path: str) -> None:
    assert normalize_path(path).startswith("/")


@pytest.mark.anyio
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    *ctl.ALL_CONTROLS,
                    "content-encoding",
                    "content-type",
                    "cookie",
                    "x-envoy-attempt-count",
                    "traceparent",
                    "x-forwarded-client-cert",
                    "authorization",
                    "x-forwarded-for",
                ]
            ),
            header_text,
        ),
        max_size=4,
    ),
    body=st.binary(max_size=300),
    query=st.binary(max_size=100),
)
async def test_any_request_gets_a_documented_status(
    headers: list[tuple[str, str]], body: bytes, query: bytes
) -> None:
    from tests.echo.test_app import Harness, RawDriver, http_scope

    harness = Harness(
        {"COOKIE_SECRET": "s", "JWT_HEADER": "authorization", "ECHO_MAX_DELAY_MS": "0", "LOG_FORMAT": "full"}
    )
    raw = [(b"host", b"echo.local")] + [
        (name.encode(), value.encode("utf-8", "surrogateescape")) for name, value in headers
    ]
    scope = http_scope("POST", raw)
    scope["query_string"] = query
    driver = RawDriver(harness.app, [{"type": "http.request", "body": body, "more_body": False}])
    await driver.run(scope)
    status = driver.sent[0]["status"]
    status_controls = {ctl.STATUS_CODE, ctl.STATUS_MIX, ctl.FAIL_ATTEMPTS}
    # Every status is a documented one; 5xx only when a control asked for it (a traceback never is).
    assert 200 <= status < 600
    assert status < 500 or any(name in status_controls for name, _ in headers)
    payload = b"".join(message.get("body", b"") for message in driver.sent[1:])
    if status not in (204, 304) and dict(driver.sent[0]["headers"]).get(b"Content-Type", b"").startswith(
        b"application/json"
    ):
        orjson.loads(payload)
    assert harness.app.budget.in_use == 0
    assert harness.app.in_flight == 0
