"""The traffic graph as inline SVG. Pure: Placed (layout.py) in, markup out.

Structure (tests and assistive technology read it, so it is part of the contract):
- `<svg role="img">` with `<title>` and `<desc>` (the whole graph in words, graph.describe);
- one `<g class="node" data-node=… data-role=… data-count=…>` per node, with a `<title>`;
- one `<g class="edge" data-from=… data-to=… data-count=… data-share=… data-mtls=… data-unrouted=…>`
  per edge, and its label in `<g class="edge-label" …>` drawn above all edges;
- tones are classes (`tone-routed`, `tone-unrouted`, …) coloured by the page's CSS, and each also
  has its own dash pattern (kinds.DASHES) and words, so nothing depends on colour alone.
"""

from __future__ import annotations

from netdebug.picture.graph import Graph
from netdebug.picture.kinds import DASHES, Tone
from netdebug.picture.layout import COLUMN_TITLES, LINE, PAD, Placed, Route, node_lines
from netdebug.picture.markup import Markup, num, tag

SVG_NS = "http://www.w3.org/2000/svg"
TONES: tuple[Tone, ...] = ("routed", "unrouted", "local", "error", "neutral")
LABEL_LINE = 12.5


def _defs(prefix: str) -> Markup:
    markers = [
        tag(
            "marker",
            {
                "id": f"{prefix}-arrow-{tone}",
                "viewBox": "0 0 10 10",
                "refX": "9",
                "refY": "5",
                "markerWidth": "7",
                "markerHeight": "7",
                "orient": "auto-start-reverse",
                "markerUnits": "userSpaceOnUse",
            },
            tag("path", {"d": "M0,0 L10,5 L0,10 z", "class_": f"arrow tone-{tone}"}),
        )
        for tone in TONES
    ]
    # A padlock: shackle (an arc) over a body (a rounded square) with a keyhole.
    lock = tag(
        "symbol",
        {"id": f"{prefix}-lock", "viewBox": "0 0 12 14"},
        tag("path", {"d": "M3,6 V4 a3,3 0 0 1 6,0 V6", "class_": "lock-shackle"}),
        tag("rect", {"x": "1", "y": "6", "width": "10", "height": "8", "rx": "1.5", "class_": "lock-body"}),
        tag("circle", {"cx": "6", "cy": "10", "r": "1.3", "class_": "lock-hole"}),
    )
    return tag("defs", None, *markers, lock)


def _edge(route: Route, prefix: str, names: dict[str, str]) -> Markup:
    e = route.edge
    title = f"{names[e.source]} → {names[e.target]}: {e.count}"
    if e.share is not None:
        title += f" ({e.share:.1f}% {e.share_of})"
    if e.mtls:
        title += f"; {e.mtls} over mTLS"
    if e.unrouted:
        title += f"; {e.unrouted} NOT routed by the mesh"
    return tag(
        "g",
        {
            "class_": f"edge tone-{e.tone}",
            "data_from": e.source,
            "data_to": e.target,
            "data_count": e.count,
            "data_share": None if e.share is None else num(e.share, 1),
            "data_mtls": e.mtls,
            "data_unrouted": e.unrouted,
            "data_kinds": " ".join(e.kinds) or None,
        },
        tag("title", None, title),
        tag(
            "path",
            {
                "d": route.d,
                "class_": "edge-line",
                "stroke_width": num(route.width, 2),
                "stroke_dasharray": DASHES[e.tone] or None,
                "marker_end": f"url(#{prefix}-arrow-{e.tone})",
            },
        ),
    )


def _edge_label(route: Route, prefix: str) -> Markup:
    """Share above the lead, count below it, then the mTLS padlock line."""
    e = route.edge
    x, y = route.label_at
    above = [f"{e.share:.1f}%"] if e.share is not None else []
    below = [str(e.count)]
    if e.mtls:
        below.append("mTLS" if e.mtls == e.count else f"mTLS {e.mtls}/{e.count}")
    if not above:
        above, below = below[:1], below[1:]
    parts: list[Markup] = []
    for i, line in enumerate(reversed(above)):
        y_text = y - route.width / 2.0 - 3.0 - i * LABEL_LINE
        parts.append(
            tag(
                "text",
                {
                    "x": num(x, 1),
                    "y": num(y_text, 1),
                    "class_": "edge-text edge-share",
                    "text_anchor": "middle",
                },
                line,
            )
        )
    for i, line in enumerate(below):
        y_text = y + route.width / 2.0 + 10.0 + i * LABEL_LINE
        parts.append(
            tag(
                "text",
                {"x": num(x, 1), "y": num(y_text, 1), "class_": "edge-text", "text_anchor": "middle"},
                line,
            )
        )
    if e.mtls:
        width = 6.2 * len(below[-1])
        parts.append(
            tag(
                "use",
                {
                    "href": f"#{prefix}-lock",
                    "x": num(x - width / 2.0 - 13.0, 1),
                    "y": num(y + route.width / 2.0 + (len(below) - 1) * LABEL_LINE, 1),
                    "width": "11",
                    "height": "13",
                    "class_": "lock",
                },
            )
        )
    return tag(
        "g",
        {"class_": f"edge-label tone-{e.tone}", "data_from": e.source, "data_to": e.target},
        *parts,
    )


def graph_svg(graph: Graph, placed: Placed, prefix: str, caption: str) -> Markup:
    """`prefix` makes ids unique when a page holds several graphs (plan steps)."""
    names = {n.id: n.label for n in graph.nodes}
    columns = [
        tag(
            "text",
            {
                "x": num(x + w / 2, 1),
                "y": num(PAD + 12, 1),
                "class_": "column-title",
                "text_anchor": "middle",
            },
            COLUMN_TITLES[layer],
        )
        for layer, x, w in placed.columns
    ]
    nodes: list[Markup] = []
    for box in placed.boxes:
        n = box.node
        label, details = node_lines(n, box.w)
        lines = [
            tag(
                "text",
                {"x": num(box.x + PAD, 1), "y": num(box.y + PAD + 11 + i * LINE, 1), "class_": "node-label"},
                part,
            )
            for i, part in enumerate(label)
        ]
        for i, detail in enumerate(details, start=len(label)):
            lines.append(
                tag(
                    "text",
                    {
                        "x": num(box.x + PAD, 1),
                        "y": num(box.y + PAD + 11 + i * LINE, 1),
                        "class_": "node-detail",
                    },
                    detail,
                )
            )
        nodes.append(
            tag(
                "g",
                {
                    "class_": f"node role-{n.role} tone-{n.tone}",
                    "data_node": n.id,
                    "data_role": n.role,
                    "data_count": n.count,
                    "data_label": n.label,
                },
                tag("title", None, n.title),
                tag(
                    "rect",
                    {
                        "x": num(box.x, 1),
                        "y": num(box.y, 1),
                        "width": num(box.w, 1),
                        "height": num(box.h, 1),
                        "rx": "6",
                        "class_": "node-box",
                        "stroke_dasharray": DASHES[n.tone] or None,
                    },
                ),
                *lines,
            )
        )
    return tag(
        "svg",
        {
            "xmlns": SVG_NS,
            "class_": "graph",
            "viewBox": f"0 0 {num(placed.width, 0)} {num(placed.height, 0)}",
            "width": num(placed.width, 0),
            "role": "img",
            "aria_labelledby": f"{prefix}-graph-title {prefix}-graph-desc",
        },
        tag("title", {"id": f"{prefix}-graph-title"}, caption),
        tag("desc", {"id": f"{prefix}-graph-desc"}, graph.description),
        _defs(prefix),
        tag("g", {"class_": "columns"}, *columns),
        tag("g", {"class_": "edges"}, *(_edge(r, prefix, names) for r in placed.routes)),
        tag("g", {"class_": "nodes"}, *nodes),
        tag("g", {"class_": "edge-labels"}, *(_edge_label(r, prefix) for r in placed.routes)),
    )
