"""The HTML page: one self-contained file (inline CSS and SVG, no script, no external resource; the
Content-Security-Policy forbids any), for one probe run or for every probe step of a plan. Pure:
report JSON in, page text out.

Sections of a probe: the verdict banner and warnings, the traffic graph with its legend and a table
equivalent, the split chart with its table, latency, paths and answers, the run's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from netdebug import __version__
from netdebug.picture.charts import confidence_of, latency_groups, latency_svg, split_svg
from netdebug.picture.graph import Graph, build_graph
from netdebug.picture.kinds import DASHES, TONE_WORDS, Tone, path_style
from netdebug.picture.layout import layout
from netdebug.picture.markup import Markup, join, tag
from netdebug.picture.model import ProbeView, display_url, read_probe, transport_errors
from netdebug.picture.style import CSS
from netdebug.picture.svg import graph_svg

CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
VERDICT_WORDS: Final[dict[str, tuple[str, str]]] = {
    "pass": ("PASS", "✔"),
    "fail": ("FAIL", "✘"),
    "inconclusive": ("INCONCLUSIVE", "?"),
    "none": ("NO VERDICT", "–"),
}


def table(head: Sequence[str], rows: Sequence[Sequence[object]], cls: str, caption: str) -> Markup:
    return tag(
        "table",
        {"class_": cls},
        tag("caption", None, caption),
        tag("thead", None, tag("tr", None, *(tag("th", {"scope": "col"}, h) for h in head))),
        tag(
            "tbody",
            None,
            *(
                tag(
                    "tr",
                    None,
                    *(tag("td", {"class_": "num" if isinstance(c, int | float) else None}, c) for c in row),
                )
                for row in rows
            ),
        ),
    )


def _verdict_sentence(view: ProbeView) -> str:
    tol = "the tolerance" if view.tolerance_pct is None else f"± {view.tolerance_pct:g} points"
    if view.verdict == "pass":
        return f"every version's interval lies within expected {tol}"
    if view.verdict == "fail":
        return "the split does not match the expectation" if view.expected else "the run failed"
    if view.verdict == "inconclusive":
        need = f": you need about {view.needed_requests} requests" if view.needed_requests else ""
        return f"the intervals are wider than {tol}{need}"
    return "nothing was expected, so there is no split verdict"


def _chi_square(view: ProbeView) -> str | None:
    if view.p_value is None:
        return None
    alpha = view.alpha if view.alpha is not None else 0.001
    head = f"chi-square goodness of fit: p = {view.p_value:.3g}"
    if view.p_value < alpha:
        return f"{head} < alpha {alpha:g}: the split differs from the expectation"
    return f"{head} (alarm below alpha {alpha:g}): no evidence against the expected split"


def _banner(view: ProbeView) -> Markup:
    word, icon = VERDICT_WORDS.get(view.verdict, (view.verdict.upper(), "·"))
    facts = f"{view.requests} requests (launched {view.launched}, dropped {view.dropped})"
    if view.elapsed_s is not None:
        facts += f" in {view.elapsed_s:.2f} s"
    if view.achieved_rps:
        facts += f", {view.achieved_rps:.1f} req/s"
    if view.exit_code is not None:
        facts += f"; exit {view.exit_code}"
    return tag(
        "div",
        {"class_": f"banner verdict-{view.verdict}", "data_verdict": view.verdict},
        tag(
            "p",
            {"class_": "verdict"},
            tag("span", {"class_": "icon", "aria_hidden": "true"}, icon),
            " ",
            f"verdict: {word}",
        ),
        tag("p", {"class_": "verdict-why"}, _verdict_sentence(view)),
        tag("p", {"class_": "facts"}, facts),
        tag("p", {"class_": "message"}, view.message) if view.message else None,
    )


def _legend(graph: Graph) -> Markup:
    tones: list[Tone] = []
    for e in graph.edges:
        if e.tone not in tones:
            tones.append(e.tone)
    items = []
    for tone in tones:
        sample = tag(
            "svg",
            {
                "xmlns": "http://www.w3.org/2000/svg",
                "width": "44",
                "height": "10",
                "aria_hidden": "true",
                "class_": f"swatch tone-{tone}",
            },
            tag(
                "line",
                {
                    "x1": "2",
                    "y1": "5",
                    "x2": "42",
                    "y2": "5",
                    "class_": "edge-line",
                    "stroke_width": "3",
                    "stroke_dasharray": DASHES[tone] or None,
                },
            ),
        )
        items.append(tag("li", {"data_tone": tone}, sample, " ", TONE_WORDS[tone]))
    kinds = [k for e in graph.edges for k in e.kinds]
    for kind in dict.fromkeys(kinds):
        style = path_style(kind)
        items.append(
            tag("li", {"data_kind": kind}, tag("strong", None, style.label), f" ({kind}): {style.meaning}")
        )
    if any(e.mtls for e in graph.edges):
        lock = tag(
            "svg",
            {
                "xmlns": "http://www.w3.org/2000/svg",
                "width": "11",
                "height": "13",
                "viewBox": "0 0 12 14",
                "aria_hidden": "true",
            },
            tag("path", {"d": "M3,6 V4 a3,3 0 0 1 6,0 V6", "class_": "lock-shackle"}),
            tag(
                "rect", {"x": "1", "y": "6", "width": "10", "height": "8", "rx": "1.5", "class_": "lock-body"}
            ),
        )
        items.append(
            tag(
                "li",
                {"data_legend": "mtls"},
                lock,
                " mTLS: the answers on that hop came over mutual TLS (the echo saw XFCC)",
            )
        )
    items.append(
        tag(
            "li",
            None,
            "edge labels: share · count; caller edges are shares of all requests, version edges of "
            "the answers with a version, pod edges of the version's answers; line width follows the count",
        )
    )
    return tag("ul", {"class_": "legend"}, *items)


def _graph_section(view: ProbeView, prefix: str, h: str) -> Markup:
    graph = build_graph(view)
    placed = layout(graph)
    caption = f"Traffic graph of {display_url(view.url)}"
    names = {n.id: n.label for n in graph.nodes}
    rows = []
    for e in graph.edges:
        note = []
        if e.mtls:
            note.append(f"mTLS {e.mtls}")
        if e.unrouted:
            note.append(f"NOT routed {e.unrouted}")
        rows.append(
            [
                names[e.source],
                names[e.target],
                e.count,
                "" if e.share is None else f"{e.share:.1f}% {e.share_of}",
                ", ".join(e.kinds),
                "; ".join(note),
            ]
        )
    return tag(
        "section",
        {"class_": "graph-section", "aria_labelledby": f"{prefix}-h-graph"},
        tag(h, {"id": f"{prefix}-h-graph"}, "What the probe saw"),
        tag(
            "figure",
            {"class_": "graph-figure"},
            tag("div", {"class_": "scroll"}, graph_svg(graph, placed, prefix, caption)),
        ),
        _legend(graph),
        *(tag("p", {"class_": "note"}, note) for note in graph.notes),
        table(["from", "to", "count", "share", "path kind", "notes"], rows, "edges", "The graph as a table"),
    )


def _verdict_section(view: ProbeView, prefix: str, h: str) -> Markup:
    level = f"{confidence_of(view) * 100:g}%"
    rows = [
        [
            v.version,
            v.count,
            f"{v.observed_pct:.1f}%",
            "not expected" if v.expected_pct is None else f"{v.expected_pct:.1f}%",
            f"{v.ci_low_pct:.1f}–{v.ci_high_pct:.1f}%",
        ]
        for v in view.versions
    ]
    chi = _chi_square(view)
    return tag(
        "section",
        {"class_": "verdict-section", "aria_labelledby": f"{prefix}-h-verdict"},
        tag(h, {"id": f"{prefix}-h-verdict"}, "The split"),
        tag("p", {"class_": "chi-square"}, chi) if chi else None,
        tag("ul", {"class_": "reasons"}, *(tag("li", None, r) for r in view.reasons))
        if view.reasons
        else None,
        tag("figure", None, tag("div", {"class_": "scroll"}, split_svg(view, prefix)))
        if view.versions
        else None,
        table(
            ["version", "count", "observed", "expected", f"{level} interval"], rows, "versions", "Per version"
        )
        if view.versions
        else tag("p", None, "No answer named a version."),
    )


def _latency_section(view: ProbeView, prefix: str, h: str) -> Markup:
    measured = str(view.parameters.get("latency_from") or "intended send time (open model) or send (closed)")
    chart = latency_svg(view, prefix, measured)
    rows = []
    for name, hist in latency_groups(view):
        rows.append([name, hist.total, *(f"≤ {hist.quantile(q) or 0:.3g}" for q in (0.5, 0.9, 0.99, 1.0))])
    exact = [[k, "-" if v is None else f"{v:.3f}"] for k, v in view.latency_ms.items()]
    late = [[k, "-" if v is None else f"{v:.3f}"] for k, v in view.lateness_ms.items()]
    return tag(
        "section",
        {"class_": "latency-section", "aria_labelledby": f"{prefix}-h-latency"},
        tag(h, {"id": f"{prefix}-h-latency"}, "Latency"),
        tag(
            "p", None, f"Measured from the {measured}: a late send shows up as latency, not as a lower rate."
        ),
        tag("figure", None, tag("div", {"class_": "scroll"}, chart))
        if chart
        else tag("p", {"class_": "note"}, "This report has no latency histograms (it predates them)."),
        table(
            ["answers", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            rows,
            "latency",
            "Per version, from the histogram (bucket upper bounds, within 12%)",
        )
        if rows
        else None,
        tag(
            "div",
            {"class_": "pair"},
            table(["quantile", "ms"], exact, "latency-exact", "All answers, exact"),
            table(["quantile", "ms"], late, "lateness", "Send lateness"),
        ),
    )


def _answers_section(view: ProbeView, prefix: str, h: str) -> Markup:
    paths = [[k, n, path_style(k).meaning] for k, n in view.fingerprints.items()]
    facts: list[list[object]] = [[f"status {k}", n] for k, n in view.status_codes.items()]
    facts += [[f"error {k}", n] for k, n in view.errors.items()]
    facts += [["mTLS answers", view.mtls_answers], ["retried by Envoy", view.retried]]
    ids = [[k, n] for k, n in view.identities.items()]
    details = [
        [k, d] for k, d in view.error_details.items() if k in transport_errors(view) or k == "no-version"
    ]
    return tag(
        "section",
        {"class_": "answers-section", "aria_labelledby": f"{prefix}-h-answers"},
        tag(h, {"id": f"{prefix}-h-answers"}, "Paths and answers"),
        tag(
            "div",
            {"class_": "pair"},
            table(["path", "answers", "meaning"], paths, "paths", "Path fingerprints") if paths else None,
            table(["what", "count"], facts, "facts", "Answers"),
        ),
        table(["SPIFFE identity (XFCC URI)", "answers"], ids, "identities", "mTLS caller identities")
        if ids
        else None,
        table(["error", "first message"], details, "error-details", "Errors") if details else None,
    )


def _parameter_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(": ".join(map(str, v)) if isinstance(v, list) else str(v) for v in value) or "-"
    return str(value)


def _parameters_section(view: ProbeView, prefix: str, h: str) -> Markup:
    rows: list[list[object]] = [["url", display_url(view.url)]]
    if view.tolerance_pct is not None:
        rows.append(["tolerance", f"± {view.tolerance_pct:g} points"])
    if view.alpha is not None:
        rows.append(["alpha", f"{view.alpha:g}"])
    rows += [
        [k.replace("_", " "), _parameter_text(v)]
        for k, v in view.parameters.items()
        if v is not None and v != []
    ]
    return tag(
        "section",
        {"class_": "parameters-section", "aria_labelledby": f"{prefix}-h-parameters"},
        tag(h, {"id": f"{prefix}-h-parameters"}, "Run parameters"),
        table(["parameter", "value"], rows, "parameters", "Settings of this run")
        if view.parameters
        else tag("p", {"class_": "note"}, "This report does not record its parameters (it predates them)."),
    )


def probe_body(view: ProbeView, prefix: str, heading: str = "h2") -> Markup:
    """The sections of one probe run; `heading` is their heading element (h3 inside a plan step)."""
    warnings = [tag("p", {"class_": "warning"}, tag("strong", None, "WARNING: "), w) for w in view.warnings]
    return join(
        [
            _banner(view),
            tag("div", {"class_": "warnings", "role": "note"}, *warnings) if warnings else Markup(),
            _graph_section(view, prefix, heading),
            _verdict_section(view, prefix, heading),
            _latency_section(view, prefix, heading),
            _answers_section(view, prefix, heading),
            _parameters_section(view, prefix, heading),
        ]
    )


def document(title: str, body: Markup) -> str:
    head = tag(
        "head",
        None,
        tag("meta", {"charset": "utf-8"}),
        tag("meta", {"http_equiv": "Content-Security-Policy", "content": CSP}),
        tag("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        tag("meta", {"name": "generator", "content": f"netdebug {__version__}"}),
        tag("title", None, title),
        tag("style", None, Markup(CSS)),
    )
    footer = tag("footer", None, f"netdebug {__version__} — a self-contained page: no script, no network.")
    return "<!DOCTYPE html>\n" + tag("html", {"lang": "en"}, head, tag("body", None, body, footer)) + "\n"


def render_probe_page(doc: Mapping[str, object]) -> str:
    """A probe's JSON report -> the HTML page. Raises ReportError for a document it cannot read."""
    view = read_probe(doc)
    title = f"netdebug probe {display_url(view.url)}: {VERDICT_WORDS.get(view.verdict, (view.verdict,))[0]}"
    body = join(
        [
            tag(
                "header",
                None,
                tag("h1", None, "netdebug probe ", tag("span", {"class_": "url"}, display_url(view.url))),
            ),
            tag("main", None, probe_body(view, "p")),
        ]
    )
    return document(title, body)
