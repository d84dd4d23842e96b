"""A fixed layered layout for the traffic graph. Pure: Graph in, coordinates out.

The graph's shape is known (caller → path → Service → version → pod, every edge between adjacent
layers), so no general graph layout is needed:
- one column per layer, fixed widths; node height grows with its text lines;
- pods are stacked first, grouped by their main version (graph.py orders them so), then each version
  is centred on its pods, the Service on the versions, the paths on the Service and the caller on
  the paths; a node that would overlap the one above is pushed down, and each column is then shifted
  back so that, on average, nodes sit where they wanted to;
- edges run from the right middle of the source to the left middle of the target: a straight lead
  at one end, a cubic Bézier for the rest. The lead carries the label (share above the line, count
  below), so labels never sit on other edges: it is at the target when the target has one incoming
  edge (fan-out: targets are spread) and at the source when several edges meet at the target
  (fan-in: sources are spread).
Readable for 2–10 versions and 1–20 pods: the height grows linearly with the larger column.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from netdebug.picture.graph import Edge, Graph, Node

COLUMN_WIDTH: Final[dict[int, float]] = {0: 160.0, 1: 176.0, 2: 176.0, 3: 128.0, 4: 190.0}
COLUMN_GAP: Final = 124.0
MARGIN: Final = 16.0
HEADER: Final = 30.0  # room for the column headings
LINE: Final = 15.0
PAD: Final = 7.0
V_GAP: Final = 18.0
LEAD: Final = 62.0  # the straight part of an edge that carries its label
CHAR_WIDTH: Final = 7.4  # average advance of the 12 px bold sans face, for cutting labels to fit
DETAIL_CHAR_WIDTH: Final = 6.4  # the same for the 11 px detail lines
COLUMN_TITLES: Final[dict[int, str]] = {0: "caller", 1: "path", 2: "target", 3: "version", 4: "pod"}


@dataclass(frozen=True, slots=True)
class Box:
    node: Node
    x: float
    y: float
    w: float
    h: float

    @property
    def cy(self) -> float:
        return self.y + self.h / 2.0


@dataclass(frozen=True, slots=True)
class Route:
    """An edge's line: a straight lead at one end (which carries the label: share above the line,
    count below), joined to the other node by a cubic Bézier."""

    edge: Edge
    start: tuple[float, float]
    end: tuple[float, float]
    lead_at_target: bool
    label_at: tuple[float, float]  # centre of the straight lead
    width: float

    @property
    def d(self) -> str:
        (x0, y0), (x3, y3) = self.start, self.end
        if self.lead_at_target:
            bend = x3 - LEAD
            mid = (x0 + bend) / 2.0
            return f"M{x0:g},{y0:g} C{mid:g},{y0:g} {mid:g},{y3:g} {bend:g},{y3:g} H{x3:g}"
        bend = x0 + LEAD
        mid = (bend + x3) / 2.0
        return f"M{x0:g},{y0:g} H{bend:g} C{mid:g},{y0:g} {mid:g},{y3:g} {x3:g},{y3:g}"


@dataclass(frozen=True)
class Placed:
    boxes: tuple[Box, ...]
    routes: tuple[Route, ...]
    columns: tuple[tuple[int, float, float], ...]  # (layer, x, width) of each column drawn
    width: float
    height: float

    def box(self, node_id: str) -> Box:
        return next(b for b in self.boxes if b.node.id == node_id)


def node_lines(node: Node, width: float) -> tuple[list[str], list[str]]:
    """The lines drawn in a node: its label and each detail wrapped to at most two lines."""
    details = [line for d in node.details for line in wrap(d, width, 2, DETAIL_CHAR_WIDTH)]
    return wrap(node.label, width), details


def node_height(node: Node, width: float) -> float:
    label, details = node_lines(node, width)
    return 2 * PAD + LINE * (len(label) + len(details))


def _room(width: float, char_width: float = CHAR_WIDTH) -> int:
    return max(4, int((width - 2 * PAD) / char_width))


def fit(text: str, width: float, char_width: float = CHAR_WIDTH) -> str:
    """Cut `text` to what fits in `width` px at the label font, marking the cut with an ellipsis."""
    room = _room(width, char_width)
    return text if len(text) <= room else text[: room - 1] + "…"


def wrap(text: str, width: float, max_lines: int = 2, char_width: float = CHAR_WIDTH) -> list[str]:
    """Break a long name after a `.`, `-`, `/` or `:` where possible (host and pod names), else
    anywhere; the last line is cut with an ellipsis if it still does not fit."""
    room = _room(width, char_width)
    lines: list[str] = []
    rest = text
    while len(rest) > room and len(lines) < max_lines - 1:
        cut = max(rest.rfind(sep, 0, room) for sep in "./-:") + 1
        if cut <= room // 3:
            cut = room
        lines.append(rest[:cut])
        rest = rest[cut:]
    lines.append(fit(rest, width, char_width))
    return lines


def _pack(heights: list[float], wanted: list[float | None]) -> list[float]:
    """Tops for a column: as close to each wanted centre as the order and gaps allow."""
    tops: list[float] = []
    floor = float("-inf")
    for h, want in zip(heights, wanted, strict=True):
        top = max(want - h / 2.0 if want is not None else floor, floor)
        if top == float("-inf"):
            top = 0.0
        tops.append(top)
        floor = top + h + V_GAP
    # Pushing down only moves nodes one way; shift the column back by the mean displacement.
    moved = [t + h / 2.0 - w for t, h, w in zip(tops, heights, wanted, strict=True) if w is not None]
    if moved:
        shift = sum(moved) / len(moved)
        tops = [t - shift for t in tops]
    return tops


def _centre(values: list[tuple[float, float]]) -> float | None:
    """Weighted mean of (centre, weight) pairs; the plain mean when all weights are zero."""
    if not values:
        return None
    total = sum(w for _, w in values)
    if total <= 0:
        return sum(c for c, _ in values) / len(values)
    return sum(c * w for c, w in values) / total


def layout(graph: Graph) -> Placed:
    layers: dict[int, list[Node]] = {}
    for node in graph.nodes:
        layers.setdefault(node.layer, []).append(node)
    # Paths before terminals (local reply, no answer) in the path column.
    if 1 in layers:
        layers[1].sort(key=lambda n: n.role == "terminal")
    present = sorted(layers)
    xs: dict[int, float] = {}
    x = MARGIN
    for layer in present:
        xs[layer] = x
        x += COLUMN_WIDTH[layer] + COLUMN_GAP
    width = x - COLUMN_GAP + MARGIN

    centres: dict[str, float] = {}
    tops: dict[str, float] = {}

    def place(layer: int, wanted: list[float | None]) -> None:
        nodes = layers[layer]
        heights = [node_height(n, COLUMN_WIDTH[layer]) for n in nodes]
        for node, top, h in zip(nodes, _pack(heights, wanted), heights, strict=True):
            tops[node.id] = top
            centres[node.id] = top + h / 2.0

    incoming: dict[str, list[Edge]] = {}
    outgoing: dict[str, list[Edge]] = {}
    for e in graph.edges:
        incoming.setdefault(e.target, []).append(e)
        outgoing.setdefault(e.source, []).append(e)

    def wanted_from_right(node: Node) -> float | None:
        return _centre(
            [(centres[e.target], e.count) for e in outgoing.get(node.id, []) if e.target in centres]
        )

    for layer in sorted(present, reverse=True):
        nodes = layers[layer]
        if layer == max(present):
            place(layer, [None] * len(nodes))
        elif layer == 1:
            # Paths centred on what they lead to; terminals stacked below them.
            wanted: list[float | None] = [wanted_from_right(n) if n.role == "path" else None for n in nodes]
            place(layer, wanted)
        else:
            place(layer, [wanted_from_right(n) for n in nodes])

    low = min(tops.values(), default=0.0)
    shift = MARGIN + HEADER - low
    boxes = tuple(
        Box(n, xs[n.layer], tops[n.id] + shift, COLUMN_WIDTH[n.layer], node_height(n, COLUMN_WIDTH[n.layer]))
        for n in graph.nodes
    )
    height = max((b.y + b.h for b in boxes), default=MARGIN + HEADER) + MARGIN
    by_id = {b.node.id: b for b in boxes}
    # The lead (and label) goes where edges are spread out: at the target when it has one incoming
    # edge (fan-out), at the source when several edges meet at the target (fan-in).
    fan_in = Counter(e.target for e in graph.edges)
    total = max(1, max((n.count for n in graph.nodes if n.role == "caller"), default=1))
    routes = tuple(
        _route(e, by_id[e.source], by_id[e.target], fan_in[e.target] <= 1, total) for e in graph.edges
    )
    columns = tuple((layer, xs[layer], COLUMN_WIDTH[layer]) for layer in present)
    return Placed(boxes, routes, columns, round(width, 1), round(height, 1))


def _route(edge: Edge, source: Box, target: Box, lead_at_target: bool, total: int) -> Route:
    start = (round(source.x + source.w, 1), round(source.cy, 1))
    end = (round(target.x, 1), round(target.cy, 1))
    label = (end[0] - LEAD / 2.0 - 3.0, end[1]) if lead_at_target else (start[0] + LEAD / 2.0, start[1])
    width = 1.5 + 6.0 * min(1.0, edge.count / total)
    return Route(edge, start, end, lead_at_target, label, round(width, 2))
