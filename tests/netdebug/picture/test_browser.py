"""End to end in a real headless Chromium (tests/browser.py): each page from the fixed reports loads
with no console error and no request beyond its own file, renders the text a reader must see, keeps
every node's text inside its box and edge labels apart, and is shot to a PNG in the test's temp dir.

Each check is shown to fail on a page broken on purpose (the `test_check_fails_*` tests), so a
passing run means something. Skipped, with the reason, when Chromium is not installed (CI installs
Debian's `chromium`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netdebug.picture.render import render_page
from tests.browser import Browser, PageLoad, find_chromium, png_size
from tests.netdebug.picture import reports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = find_chromium()
WIDTH = 1280

# Geometry read from the rendered page (SVG getBBox uses the fonts actually drawn; its boxes are in
# each SVG's own coordinates, so label overlaps are looked for graph by graph).
EXPRESSIONS = {
    "height": "document.documentElement.scrollHeight",
    "graph_nodes": "document.querySelectorAll('svg.graph g.node').length",
    "overflowing": """[...document.querySelectorAll('svg.graph g.node')].filter(g => {
        const box = g.querySelector('rect').getBBox();
        return [...g.querySelectorAll('text')].some(t => {
            const b = t.getBBox();
            return b.x < box.x || b.x + b.width > box.x + box.width
                || b.y < box.y || b.y + b.height > box.y + box.height;
        });
    }).map(g => g.dataset.node)""",
    "label_overlaps": """[...document.querySelectorAll('svg.graph')].flatMap(svg => {
        const boxes = [...svg.querySelectorAll('g.edge-label text')].map(t => [t.textContent, t.getBBox()]);
        const out = [];
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const [na, a] = boxes[i], [nb, b] = boxes[j];
            if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height)
                out.push(na + ' / ' + nb);
        }
        return out;
    })""",
}


def plan_doc() -> dict[str, object]:
    def step(number: int, name: str, details: dict[str, object]) -> dict[str, object]:
        return {
            "number": number,
            "name": name,
            "kind": "probe",
            "status": details["verdict"],
            "summary": "…",
            "attempts": [{"attempt": 1, "status": details["verdict"], "summary": "…", "details": details}],
        }

    return {
        "plan": "k8s/netdebug/plan.yaml",
        "status": "fail",
        "exit_code": 1,
        "started_at": "2026-11-29T00:00:00+00:00",
        "duration_s": 12.5,
        "steps": [step(1, "mesh split", reports.pass_report()), step(2, "direct", reports.bypass_report())],
    }


PAGES: dict[str, tuple[Callable[[], dict[str, object]], list[str]]] = {
    "pass": (
        reports.pass_report,
        ["verdict: PASS", "client sidecar", "72.2–77.6%", "spiffe://cluster.local"],
    ),
    "gateway": (reports.gateway_report, ["verdict: PASS", "gateway", "Host: echo.local"]),
    "fail": (reports.fail_report, ["verdict: FAIL", "v1: 50.0% is outside 75.0 ± 5 points"]),
    "bypass": (reports.bypass_report, ["WARNING: NOT ROUTED BY THE MESH", "bypass (no Envoy)"]),
    "local-replies": (reports.local_reply_report, ["verdict: NO VERDICT", "Envoy local reply", "status 404"]),
    "mixed": (reports.mixed_report, ["no answer", "connect", "(no version)"]),
    "6-versions": (lambda: reports.versions_report(6), ["verdict: PASS", "v6"]),
    "10-versions": (lambda: reports.versions_report(10, 2), ["v10", "echo-v10-7d9f8c6b5-00001"]),
    "20-pods": (lambda: reports.pods_report(20), ["echo-v2-7d9f8c6b5-00009"]),
    "plan": (plan_doc, ["plan: FAIL", "Step 1: mesh split", "Step 2: direct", "NOT ROUTED BY THE MESH"]),
}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium): no end-to-end page check")
    with Browser(CHROMIUM, tmp_path_factory.mktemp("chromium")) as running:
        yield running


def load(browser: Browser, tmp_path: Path, name: str, page: str) -> PageLoad:
    path = tmp_path / f"{name}.html"
    path.write_text(page, encoding="utf-8")
    return browser.load(path, tmp_path / f"{name}.png", EXPRESSIONS, width=WIDTH)


def problems(result: PageLoad, must_show: list[str]) -> list[str]:
    """Everything wrong with a loaded page; empty when it is right."""
    found: list[str] = [f"console: {e}" for e in result.console_errors]
    found += [f"request: {r}" for r in result.requests]
    found += [f"not shown: {t!r}" for t in must_show if t not in result.text]
    found += [f"text outside its node: {n}" for n in result.values["overflowing"]]
    found += [f"edge labels overlap: {p}" for p in result.values["label_overlaps"]]
    assert result.screenshot is not None
    width, height = png_size(result.screenshot)
    if (width, height) != (WIDTH, result.values["height"]):
        found.append(f"screenshot {width}x{height} is not the whole page ({WIDTH}x{result.values['height']})")
    if result.screenshot.stat().st_size < 20_000:
        found.append(f"screenshot of {result.screenshot.stat().st_size} bytes: nothing drawn")
    return found


@pytest.mark.parametrize("name", list(PAGES))
def test_page_in_a_real_browser(browser: Browser, tmp_path: Path, name: str) -> None:
    make, must_show = PAGES[name]
    result = load(browser, tmp_path, name, render_page(make()))
    assert problems(result, must_show) == []
    assert result.values["graph_nodes"] > 0
    # The rendered DOM is the page we wrote (nothing rewrote it), read back from the browser.
    assert result.dom.count('class="node ') == result.values["graph_nodes"]


# --- each check can fail ---------------------------------------------------------------------------


def broken(browser: Browser, tmp_path: Path, inject: str) -> list[str]:
    page = render_page(reports.pass_report()).replace("</body>", inject + "</body>")
    return problems(load(browser, tmp_path, "broken", page), ["verdict: PASS"])


def test_check_fails_on_a_console_error(browser: Browser, tmp_path: Path) -> None:
    # A page of its own: ours forbids scripts, so the script must come without our CSP.
    page = (
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('broken on purpose')</script></body></html>"
    )
    (tmp_path / "console.html").write_text(page)
    result = browser.load(tmp_path / "console.html", tmp_path / "console.png")
    assert result.console_errors == ["console.error: broken on purpose"]


def test_check_fails_on_an_exception(browser: Browser, tmp_path: Path) -> None:
    page = "<!DOCTYPE html><html><body><script>null.boom()</script></body></html>"
    (tmp_path / "exception.html").write_text(page)
    result = browser.load(tmp_path / "exception.html")
    assert len(result.console_errors) == 1
    assert result.console_errors[0].startswith("exception: TypeError")


def test_check_fails_on_a_network_request(browser: Browser, tmp_path: Path) -> None:
    # Port 9 on loopback: Chromium refuses the port itself, nothing is sent anywhere.
    page = '<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png" alt="x"></body></html>'
    (tmp_path / "request.html").write_text(page)
    result = browser.load(tmp_path / "request.html")
    assert result.requests == ["http://127.0.0.1:9/x.png"]


def test_our_policy_blocks_a_resource_and_the_check_sees_it(browser: Browser, tmp_path: Path) -> None:
    found = broken(browser, tmp_path, '<img src="http://127.0.0.1:9/x.png" alt="x"/>')
    assert any("Content Security Policy" in p for p in found), found


def test_check_fails_when_the_text_is_not_rendered(browser: Browser, tmp_path: Path) -> None:
    # Still in the HTML source, but not shown: the check reads what the browser rendered.
    found = broken(browser, tmp_path, "<style>.banner { display: none; }</style>")
    assert found == ["not shown: 'verdict: PASS'"]


def test_check_fails_when_text_leaves_its_node(browser: Browser, tmp_path: Path) -> None:
    found = broken(browser, tmp_path, "<style>svg .node-label { font-size: 30px; }</style>")
    assert any(p.startswith("text outside its node: pod-") for p in found), found


def test_check_fails_when_edge_labels_collide(browser: Browser, tmp_path: Path) -> None:
    found = broken(browser, tmp_path, "<style>svg .edge-text { font-size: 40px; }</style>")
    assert any(p.startswith("edge labels overlap: ") for p in found), found


def test_check_fails_on_a_blank_picture(browser: Browser, tmp_path: Path) -> None:
    found = broken(browser, tmp_path, "<style>body * { visibility: hidden; }</style>")
    assert any(p.startswith("screenshot of ") for p in found), found


def test_page_prints_without_colour(browser: Browser, tmp_path: Path) -> None:
    """Under the print media type every stroke and text colour of the graph is black or grey."""
    path = tmp_path / "print.html"
    path.write_text(render_page(reports.mixed_report()), encoding="utf-8")
    colours = "[...document.querySelectorAll('svg.graph *')].map(e => getComputedStyle(e).stroke)"
    screen = browser.load(path, expressions={"colours": colours}).values["colours"]
    browser.print_media = True
    try:
        printed = browser.load(path, expressions={"colours": colours}).values["colours"]
    finally:
        browser.print_media = False
    assert "rgb(193, 18, 31)" in screen  # the red of "not routed", on screen
    black_grey_white = {"none", "rgb(0, 0, 0)", "rgb(119, 119, 119)", "rgb(255, 255, 255)"}
    assert set(printed) <= black_grey_white, json.dumps(sorted(set(printed)))
