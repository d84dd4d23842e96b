"""The page rendered from fixed reports, read back as structure (xml.etree on the whole polyglot page,
SVG included): nodes, edges, shares, the verdict, the charts, the tables, self-containment."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from xml.etree import ElementTree as ET

import pytest

from netdebug.picture import kinds
from netdebug.picture.page import CSP, render_probe_page
from netdebug.picture.render import render_page
from tests.netdebug.picture import reports
from tests.netdebug.picture.page_tree import (
    SVG,
    by_class,
    graph_of,
    html_nesting_errors,
    parse,
    table_rows,
    text,
)

FIXED: dict[str, Callable[[], dict[str, object]]] = {
    "pass": reports.pass_report,
    "gateway": reports.gateway_report,
    "fail": reports.fail_report,
    "bypass": reports.bypass_report,
    "local-replies": reports.local_reply_report,
    "mixed": reports.mixed_report,
    "6-versions": lambda: reports.versions_report(6),
    "20-pods": lambda: reports.pods_report(20),
}


def page_of(doc: dict[str, object]) -> ET.Element:
    page = render_probe_page(doc)
    assert html_nesting_errors(page) == []
    return parse(page)


def banner(root: ET.Element) -> ET.Element:
    return by_class(root, "banner", "div")[0]


@pytest.mark.parametrize("name", list(FIXED))
def test_every_page_is_self_contained(name: str) -> None:
    page = render_probe_page(FIXED[name]())
    root = parse(page)
    assert not list(root.iter("script"))
    meta = [m for m in root.iter("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert [m.get("content") for m in meta] == [CSP]
    for element in root.iter():
        for attr in ("src", "href", "action", "data"):
            value = element.get(attr)
            assert value is None or value.startswith("#"), f"{element.tag} {attr}={value}"
    assert not re.search(r"url\((?!#)", page), "only in-page url(#id) references"
    assert "@import" not in page
    styles = list(root.iter("style"))
    assert len(styles) == 1


def test_pass_graph_nodes_edges_and_shares() -> None:
    root = page_of(reports.pass_report())
    nodes, edges = graph_of(root)
    roles = sorted(n.role for n in nodes.values())
    assert roles == ["caller", "path", *["pod"] * 6, "service", "version", "version"]
    path = next(n for n in nodes.values() if n.role == "path")
    assert path.label == "client sidecar"
    assert path.tone == "routed"
    assert nodes["caller"].lines[1:5] == ("netdebug probe", "mTLS identity:", "sa/netdebug", "ns/echo")
    service = nodes["service"]
    assert "".join(service.lines[:2]) == "echo-service.echo.svc.cluster.local"  # wrapped at a dot
    assert service.lines[0].endswith(".")
    by_pair = {(nodes[e.source].label, nodes[e.target].label): e for e in edges}
    caller_edge = by_pair[("caller", "client sidecar")]
    assert (caller_edge.count, caller_edge.share, caller_edge.label) == (1000, 100.0, ("100.0%", "1000"))
    hop = by_pair[("client sidecar", service.label)]
    assert hop.mtls == 1000
    assert hop.label == ("1000", "mTLS")
    assert by_pair[(service.label, "v1")].share == 75.0
    assert by_pair[(service.label, "v2")].label == ("25.0%", "250")
    v1_pods = [e for e in edges if nodes[e.source].label == "v1"]
    assert sorted(e.count for e in v1_pods) == [250, 250, 250]
    assert {e.share for e in v1_pods} == {33.3}
    assert not any(e.dashed for e in edges)
    assert not any(e.unrouted for e in edges)
    lock = [u for u in root.iter(f"{SVG}use") if u.get("href", "").endswith("-lock")]
    assert len(lock) == 1  # the padlock on the mTLS hop


def test_pass_verdict_split_and_tables() -> None:
    root = page_of(reports.pass_report())
    assert banner(root).get("data-verdict") == "pass"
    assert text(banner(root)).startswith("✔ verdict: PASS every version's interval lies within expected ± 5")
    chi = text(by_class(root, "chi-square", "p")[0])
    assert chi.startswith("chi-square goodness of fit: p = 1 (alarm below alpha 0.001)")
    rows = by_class(root, "split-row", f"{SVG}g")
    assert [r.get("data-version") for r in rows] == ["v1", "v2"]
    for row in rows:  # expected ± tolerance band, expected mark, interval with caps, observed dot
        assert len(by_class(row, "band")) == 1
        assert len(by_class(row, "expected")) == 1
        assert len(by_class(row, "ci")) == 3
        assert len(by_class(row, "observed")) == 1
    assert table_rows(root, "versions") == [
        ["v1", "750", "75.0%", "75.0%", "72.2–77.6%"],
        ["v2", "250", "25.0%", "25.0%", "22.4–27.8%"],
    ]
    latency = by_class(root, "latency-row", f"{SVG}g")
    assert [(r.get("data-version"), r.get("data-count")) for r in latency] == [("v1", "750"), ("v2", "250")]
    params = dict((r[0], r[1]) for r in table_rows(root, "parameters"))
    assert params["model"] == "open"
    assert params["latency from"] == "intended send time"
    assert params["tolerance"] == "± 5 points"
    assert "Measured from the intended send time" in text(by_class(root, "latency-section", "section")[0])


def test_fail_says_why() -> None:
    root = page_of(reports.fail_report())
    assert banner(root).get("data-verdict") == "fail"
    assert "verdict: FAIL" in text(banner(root))
    reasons = [text(li) for li in by_class(root, "reasons", "ul")[0]]
    assert reasons[0].startswith("chi-square p = ")
    assert any(r.startswith("v1: 50.0% is outside 75.0 ± 5 points") for r in reasons)
    assert "the split differs from the expectation" in text(by_class(root, "chi-square", "p")[0])
    nodes, edges = graph_of(root)
    shares = {nodes[e.target].label: e.share for e in edges if e.source == "service"}
    assert shares == {"v1": 50.0, "v2": 50.0}


def test_bypass_is_dashed_red_and_said_in_words() -> None:
    root = page_of(reports.bypass_report())
    nodes, edges = graph_of(root)
    path = next(n for n in nodes.values() if n.role == "path")
    assert path.label == "bypass (no Envoy)"
    assert path.tone == "unrouted"
    assert "NOT ROUTED by mesh" in path.lines
    through = [e for e in edges if e.count == 300]
    assert len(through) == 4  # caller → bypass → Service → v1 → its pod
    assert all(e.tone == "unrouted" and e.dashed and e.unrouted == 300 for e in through)
    v2 = next(n for n in nodes.values() if n.label == "v2")
    assert (v2.count, v2.tone) == (0, "error")  # expected, never answered
    warnings = text(by_class(root, "warnings", "div")[0])
    assert "WARNING: NOT ROUTED BY THE MESH: 300 bypass of 300 answers" in warnings
    legend = text(by_class(root, "legend", "ul")[0])
    assert "NOT routed by the mesh" in legend
    assert "bypass (no Envoy) (bypass)" in legend


def test_local_replies_have_their_own_node_and_no_version() -> None:
    root = page_of(reports.local_reply_report())
    nodes, edges = graph_of(root)
    terminal = next(n for n in nodes.values() if n.role == "terminal")
    assert terminal.label == "Envoy local reply"
    assert "404 × 50" in terminal.lines
    assert terminal.tone == "local"
    assert [(e.source, e.target, e.count, e.share) for e in edges] == [("caller", terminal.id, 50, 100.0)]
    assert "no upstream answer" in nodes["service"].lines
    assert not [n for n in nodes.values() if n.role in ("version", "pod")]
    assert banner(root).get("data-verdict") == "none"
    assert "No answer named a version." in text(root)


def test_mixed_run_no_answer_and_no_version_nodes() -> None:
    root = page_of(reports.mixed_report())
    nodes, edges = graph_of(root)
    assert nodes["no-answer"].lines[1:] == ("connect × 5",)
    assert nodes["no-version"].lines[1:] == ("not a version", "503 × 10")
    to_v1 = next(e for e in edges if e.source == "service" and nodes[e.target].label == "v1")
    assert (to_v1.count, to_v1.unrouted, to_v1.tone, to_v1.dashed) == (660, 60, "neutral", False)
    caller_edges = {nodes[e.target].label: e.count for e in edges if e.source == "caller"}
    assert caller_edges == {
        "client sidecar": 810,
        "bypass (no Envoy)": 80,
        "Envoy local reply": 30,
        "no answer": 5,
    }
    assert sum(caller_edges.values()) == 925
    table = table_rows(root, "edges")
    assert ["caller", "no answer", "5", "0.5% of all requests", "", ""] in table


@pytest.mark.parametrize(("count", "pods"), [(2, 1), (6, 2), (10, 2)])
def test_versions_scale(count: int, pods: int) -> None:
    root = page_of(reports.versions_report(count, pods))
    nodes, edges = graph_of(root)
    versions = [n for n in nodes.values() if n.role == "version"]
    assert [n.label for n in versions] == [f"v{i + 1}" for i in range(count)]
    assert len([n for n in nodes.values() if n.role == "pod"]) == count * pods
    shares = [e.share or 0.0 for e in edges if e.source == "service"]
    assert sum(shares) == pytest.approx(100.0, abs=0.1 * count)
    assert len(table_rows(root, "versions")) == count


def test_twenty_pods() -> None:
    root = page_of(reports.pods_report(20))
    nodes, edges = graph_of(root)
    pods = [n for n in nodes.values() if n.role == "pod"]
    assert len(pods) == 20
    assert sum(p.count for p in pods) == 2000
    pod_edges = [e for e in edges if nodes[e.target].role == "pod"]
    assert {e.share for e in pod_edges} == {10.0}


def test_hostile_names_stay_text() -> None:
    doc = reports.report_of(
        [reports.answer("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')] * 10, None
    )
    page = render_probe_page(doc)
    root = parse(page)
    assert not list(root.iter("script"))
    assert not list(root.iter("img"))
    assert "<script>alert(1)</script>" in text(root)
    nodes, _ = graph_of(root)
    assert any(n.label == "<script>alert(1)</script>" for n in nodes.values())


def test_password_in_the_url_is_not_shown() -> None:
    doc = reports.report_of([reports.answer("v1", "p")] * 4, None, url="http://user:s3cret@echo/echo")
    page = render_probe_page(doc)
    assert "s3cret" not in page
    assert "http://user:***@echo/echo" in text(parse(page))


def test_an_older_report_still_renders_and_says_what_is_missing() -> None:
    doc = reports.pass_report()
    for key in ("answers", "answers_unrecorded", "latency_histograms", "parameters"):
        del doc[key]
    root = page_of(doc)
    nodes, edges = graph_of(root)
    assert {n.label for n in nodes.values() if n.role == "version"} == {"v1", "v2"}
    assert len([n for n in nodes.values() if n.role == "pod"]) == 6  # listed, not linked
    assert not [e for e in edges if nodes[e.target].role == "pod"]
    notes = " ".join(text(p) for p in by_class(root, "note", "p"))
    assert "predates them" in notes
    assert by_class(root, "latency-row", f"{SVG}g") == []


def _with_kind(doc: dict[str, object], kind: str) -> dict[str, object]:
    doc = copy.deepcopy(doc)
    answers = doc["answers"]
    assert isinstance(answers, list)
    for row in answers:
        row["path"] = kind
    doc["fingerprints"] = {kind: 1000}
    return doc


def test_a_new_path_kind_renders_without_a_code_change(monkeypatch: pytest.MonkeyPatch) -> None:
    root = page_of(_with_kind(reports.pass_report(), "sidecar-to-waypoint"))
    nodes, edges = graph_of(root)
    path = next(n for n in nodes.values() if n.role == "path")
    assert (path.label, path.tone) == ("sidecar-to-waypoint", "neutral")
    assert "path kind 'sidecar-to-waypoint'" in text(by_class(root, "legend", "ul")[0])
    # Ambient kinds have table entries; whether a kind is routed comes from the fingerprint rules.
    monkeypatch.setattr(kinds, "UNROUTED_KINDS", frozenset({"ztunnel"}))
    nodes, edges = graph_of(page_of(_with_kind(reports.pass_report(), "ztunnel")))
    path = next(n for n in nodes.values() if n.role == "path")
    assert (path.label, path.tone) == ("ztunnel only", "unrouted")
    assert all(e.dashed for e in edges if e.source == "caller")
    nodes, edges = graph_of(page_of(_with_kind(reports.pass_report(), "waypoint")))
    assert next(n for n in nodes.values() if n.role == "path").tone == "routed"


def test_tones_differ_by_more_than_colour() -> None:
    dashes = [kinds.DASHES[t] for t in ("routed", "unrouted", "local", "error")]
    assert len(set(dashes)) == len(dashes)
    words = list(kinds.TONE_WORDS.values())
    assert len(set(words)) == len(words)
    page = render_probe_page(reports.mixed_report())
    assert "@media print" in page
    root = parse(page)
    svg = next(root.iter(f"{SVG}svg"))
    assert svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert "bypass (no Envoy) to echo-service.echo.svc.cluster.local: 80, 80 not routed by the mesh" in (
        desc.text or ""
    )
    for g in by_class(root, "node", f"{SVG}g"):
        assert g.find(f"{SVG}title") is not None


def test_render_page_recognises_the_report_kind() -> None:
    assert "netdebug probe" in render_page(reports.pass_report())


def test_many_versions_and_pods_are_bounded_in_the_graph_not_in_the_tables() -> None:
    from netdebug.picture.graph import MAX_PODS, MAX_VERSIONS

    samples = [reports.answer(f"v{i % 50}", f"pod-{i % 120}") for i in range(1200)]
    root = page_of(reports.report_of(samples, None))
    nodes, edges = graph_of(root)
    versions = [n for n in nodes.values() if n.role == "version"]
    pods = [n for n in nodes.values() if n.role == "pod"]
    assert len(versions) == MAX_VERSIONS
    assert versions[-1].label == f"+{50 - MAX_VERSIONS + 1} more versions"
    assert len(pods) == MAX_PODS
    assert pods[-1].label == f"+{120 - MAX_PODS + 1} more pods"
    assert sum(n.count for n in pods) == 1200
    assert sum(e.count for e in edges if e.source == "service") == 1200
    assert len(table_rows(root, "versions")) == 50


def test_gateway_names_the_identity_it_presented() -> None:
    nodes, _ = graph_of(page_of(reports.gateway_report()))
    gateway = next(n for n in nodes.values() if n.role == "path")
    assert gateway.lines == ("gateway", "mTLS 100% as", "sa/istio-ingressgateway-", "service-account")
    assert nodes["caller"].lines == ("caller", "netdebug probe")  # the prober itself presented none
    assert "Host: echo.local" in nodes["service"].lines


def test_inconclusive_says_how_many_requests_are_needed() -> None:
    doc = reports.report_of(
        reports.spread({"v1": 30, "v2": 10}, 1, "client-sidecar", None), {"v1": 75, "v2": 25}
    )
    root = page_of(doc)
    assert banner(root).get("data-verdict") == "inconclusive"
    said = text(banner(root))
    assert said.startswith("? verdict: INCONCLUSIVE the intervals are wider than ± 5 points: you need about ")
    assert f"you need about {doc['needed_requests']} requests" in said
    assert "exit 3" in said


def test_headings_nest_in_a_plan_page() -> None:
    doc = {
        "plan": "p.yaml",
        "status": "pass",
        "steps": [
            {
                "number": 1,
                "name": "split",
                "kind": "probe",
                "status": "pass",
                "attempts": [{"attempt": 1, "status": "pass", "details": reports.pass_report()}],
            }
        ],
    }
    page = render_page(doc)
    assert html_nesting_errors(page) == []
    root = parse(page)
    levels = [e.tag for e in root.iter() if e.tag in ("h1", "h2", "h3", "h4")]
    assert levels == ["h1", "h2", "h3", "h3", "h3", "h3", "h3"]
