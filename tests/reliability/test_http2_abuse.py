"""HTTP/2 abuse against the default settings, with a normal client measured meanwhile: rapid reset
(CVE-2023-44487) from its own process, connection after connection of 20,000 streams opened and
reset at once, on h2c and on TLS. Every such connection must end with GOAWAY ENHANCE_YOUR_CALM
(never a traceback), and the normal client keeps being served.

The attacker is one process on a 2-core machine, so the normal client shares a core with either it
or the server: its latency is compared with its idle value on a generous bound, and the figures are
printed for the record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from tests.echo.serving import Echo, assert_no_traceback, echo_server, make_pki
from tests.reliability.client import PEAK_RSS_LIMIT_KIB, NormalClient, attack

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(240)]

ENHANCE_YOUR_CALM = "11"
# While one core runs the attacker flat out, the server shares the other with the normal client.
ATTACKED_LATENCY_FACTOR = 3


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Echo]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    with echo_server(pki.env(), h2c=True) as server:
        yield server


@pytest.mark.parametrize("tls", [pytest.param(False, id="h2c"), pytest.param(True, id="h2-tls")])
def test_rapid_reset_is_refused_calmly_and_the_normal_client_is_served(echo: Echo, tls: bool) -> None:
    client = NormalClient(echo.http)
    idle_ms = client.median_ms()
    port = echo.port("https" if tls else "h2c")
    args = [
        "rapid-reset",
        "--port",
        str(port),
        "--streams",
        "20000",
        "--hold",
        "8",
        *(["--tls"] if tls else []),
    ]
    with attack(*args) as rapid:
        attacked_ms = client.median_ms()
        result = rapid.result(timeout=60)
    client.close()
    codes = cast(dict[str, int], result["goaway_codes"])
    print(
        f"rapid reset: {result['connections']} connections {codes}; normal client median idle "
        f"{idle_ms:.3f} ms, under attack {attacked_ms:.3f} ms"
    )
    assert set(codes) == {ENHANCE_YOUR_CALM}, codes
    assert attacked_ms <= ATTACKED_LATENCY_FACTOR * idle_ms
    assert echo.peak_rss_kib() <= PEAK_RSS_LIMIT_KIB
    assert_no_traceback(echo)
