"""Reading a rendered page back as structure, for the tests: the page is polyglot HTML (well-formed
XML), so xml.etree parses all of it, SVG included; html.parser checks that an HTML tokenizer sees the
same nesting (nothing left open, nothing closed out of order)."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "col", "hr", "img", "input", "link"}


class _Nesting(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)  # self-closed: SVG elements and void HTML elements

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def html_nesting_errors(page: str) -> list[str]:
    parser = _Nesting()
    parser.feed(page)
    parser.close()
    return parser.errors + [f"<{t}> never closed" for t in parser.stack]


def parse(page: str) -> ET.Element:
    assert page.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(page.removeprefix("<!DOCTYPE html>\n"))


def text(element: ET.Element) -> str:
    """The element's text, pieces of separate elements separated by one space."""
    return " ".join(" ".join(element.itertext()).split())


def by_class(root: ET.Element, cls: str, tag: str = "*") -> list[ET.Element]:
    return [e for e in root.iter(tag) if cls in (e.get("class") or "").split()]


@dataclass(frozen=True)
class GraphNode:
    id: str
    role: str
    label: str
    count: int
    tone: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    count: int
    share: float | None
    mtls: int
    unrouted: int
    tone: str
    dashed: bool
    label: tuple[str, ...]


def _tone(element: ET.Element) -> str:
    return next(
        c.removeprefix("tone-") for c in (element.get("class") or "").split() if c.startswith("tone-")
    )


def graph_of(
    root: ET.Element, section: ET.Element | None = None
) -> tuple[dict[str, GraphNode], list[GraphEdge]]:
    """The drawn graph: nodes by id (with the lines of text drawn in them) and edges (with their
    drawn label lines), read from the SVG of `section` (default: the first graph of the page)."""
    scope = section if section is not None else root
    svg = next(e for e in scope.iter(f"{SVG}svg") if "graph" in (e.get("class") or "").split())
    nodes: dict[str, GraphNode] = {}
    for g in by_class(svg, "node", f"{SVG}g"):
        lines = tuple(t.text or "" for t in g.iter(f"{SVG}text"))
        nodes[g.get("data-node", "")] = GraphNode(
            g.get("data-node", ""),
            g.get("data-role", ""),
            g.get("data-label", ""),
            int(g.get("data-count", "0")),
            _tone(g),
            lines,
        )
    labels: dict[tuple[str, str], tuple[str, ...]] = {}
    for g in by_class(svg, "edge-label", f"{SVG}g"):
        labels[(g.get("data-from", ""), g.get("data-to", ""))] = tuple(
            t.text or "" for t in g.iter(f"{SVG}text")
        )
    edges: list[GraphEdge] = []
    for g in by_class(svg, "edge", f"{SVG}g"):
        path = next(g.iter(f"{SVG}path"))
        share = g.get("data-share")
        key = (g.get("data-from", ""), g.get("data-to", ""))
        edges.append(
            GraphEdge(
                key[0],
                key[1],
                int(g.get("data-count", "0")),
                None if share is None else float(share),
                int(g.get("data-mtls", "0")),
                int(g.get("data-unrouted", "0")),
                _tone(g),
                path.get("stroke-dasharray") is not None,
                labels.get(key, ()),
            )
        )
    return nodes, edges


def table_rows(root: ET.Element, cls: str) -> list[list[str]]:
    table = by_class(root, cls, "table")[0]
    body = next(table.iter("tbody"))
    return [[text(td) for td in tr.iter("td")] for tr in body.iter("tr")]
