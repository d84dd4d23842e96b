"""How each path kind is drawn: one table, read by name, with a generic style for kinds it does not
know. Path kinds are the prober's (netdebug/probe/fingerprint.py) and will grow (ambient `waypoint`,
`ztunnel`, finer sidecar cases); a new kind renders without a code change here, labelled by its name.

Whether a kind was routed by the mesh is not decided here: `fingerprint.UNROUTED_KINDS` says so, and
those kinds get the "not routed" look (dashed red, a warning label) whatever this table says.

Colour is never the only signal: every tone has its own dash pattern and a text label, so the
picture reads in black and white.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from netdebug.probe.fingerprint import UNROUTED_KINDS

Tone = Literal["routed", "unrouted", "local", "error", "neutral"]

# SVG stroke-dasharray per tone; "" is a solid line.
DASHES: Final[dict[Tone, str]] = {
    "routed": "",
    "unrouted": "9 5",
    "local": "2 4",
    "error": "10 3 2 3",
    "neutral": "",
}
TONE_WORDS: Final[dict[Tone, str]] = {
    "routed": "routed by the mesh",
    "unrouted": "NOT routed by the mesh",
    "local": "answered by Envoy itself",
    "error": "no answer / no version",
    "neutral": "mixed or other paths",
}


@dataclass(frozen=True, slots=True)
class PathStyle:
    label: str  # the hop node's first line
    meaning: str  # one sentence for the legend, the table and the node's tooltip
    tone: Tone
    terminal: bool = False  # answers end here: Envoy answered, nothing upstream was reached


PATH_STYLES: Final[dict[str, PathStyle]] = {
    "client-sidecar": PathStyle(
        "client sidecar", "the caller's own Envoy routed it: the mesh route applied", "routed"
    ),
    "gateway": PathStyle("gateway", "entered through an Envoy gateway, mTLS onwards", "routed"),
    "server-sidecar-only": PathStyle(
        "no client sidecar", "only the server's sidecar saw it: the caller had no sidecar", "neutral"
    ),
    "bypass": PathStyle("bypass (no Envoy)", "a direct pod/Service call: no Envoy on the path", "neutral"),
    "local-reply": PathStyle(
        "Envoy local reply",
        "Envoy answered itself (no route, overflow, fault): never counted as a version",
        "local",
        terminal=True,
    ),
    "waypoint": PathStyle("waypoint", "ambient mode: a waypoint proxy routed it", "routed"),
    "ztunnel": PathStyle("ztunnel only", "ambient mode, L4 only: no waypoint applied the route", "neutral"),
}


def path_style(kind: str) -> PathStyle:
    """The style of a path kind; unknown kinds get a neutral one named after the kind."""
    style = PATH_STYLES.get(kind) or PathStyle(kind, f"path kind '{kind}'", "neutral")
    if kind in UNROUTED_KINDS:
        return PathStyle(style.label, style.meaning, "unrouted", style.terminal)
    return style


def kind_order(kinds: list[str]) -> list[str]:
    """Known kinds in the table's order, then unknown ones by name."""
    known = [k for k in PATH_STYLES if k in kinds]
    return known + sorted(k for k in kinds if k not in PATH_STYLES)
