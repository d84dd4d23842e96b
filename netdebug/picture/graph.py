"""The traffic graph of one probe run: caller → path (client sidecar, gateway, bypass…) → target
Service → version → pod, with a node for Envoy local replies and one for requests that got no answer.
Pure: ProbeView in, Graph out (layout and drawing are elsewhere).

Edge shares, each relative to what the reader compares it with:
- caller → path, caller → local reply / no answer: share of all completed requests;
- path → Service: the same answers, labelled with their mTLS share (the padlock);
- Service → version: share of the answers that named a version (the verdict's "observed");
- version → pod: share of that version's answers.
An edge carrying answers of a kind that `fingerprint.UNROUTED_KINDS` lists is drawn "not routed"
(dashed, red, with the count) — wholly when all its answers are, with a note when some are.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from netdebug.k8s.hosts import CLUSTER_DOMAIN
from netdebug.picture.kinds import Tone, kind_order, path_style
from netdebug.picture.model import AnswerRow, ProbeView, VersionRow, display_url, transport_errors

Role = Literal["caller", "path", "terminal", "service", "version", "pod"]
LAYERS: Final[dict[Role, int]] = {
    "caller": 0,
    "path": 1,
    "terminal": 1,
    "service": 2,
    "version": 3,
    "pod": 4,
}
NO_VERSION: Final = "(no version)"
MAX_DETAIL_ITEMS: Final = 3
# The graph draws at most this many version and pod nodes; the rest become one "+N more" node each,
# so any report draws in bounded time and the picture stays readable (tables list everything).
MAX_VERSIONS: Final = 30
MAX_PODS: Final = 40


@dataclass(frozen=True, slots=True)
class Node:
    id: str  # safe for HTML ids: [a-z0-9-]
    role: Role
    label: str
    details: tuple[str, ...]
    tone: Tone
    count: int
    title: str  # the full text (tooltip and SVG <title>)

    @property
    def layer(self) -> int:
        return LAYERS[self.role]


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    count: int
    share: float | None  # 0..100, relative as the module header says
    share_of: str  # what the share is of, in words
    tone: Tone
    mtls: int = 0  # answers on this edge that came over mTLS
    unrouted: int = 0  # answers on this edge whose path kind was not routed by the mesh
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    notes: tuple[str, ...] = ()
    description: str = ""

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


@dataclass
class _Builder:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, node: Node) -> None:
        self.nodes.setdefault(node.id, node)


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole > 0 else None


def _listing(counter: Counter[str] | dict[str, int], unit: str = "×") -> tuple[str, ...]:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"{name} {unit} {n}" for name, n in items[:MAX_DETAIL_ITEMS]]
    if len(items) > MAX_DETAIL_ITEMS:
        lines.append(f"+{len(items) - MAX_DETAIL_ITEMS} more")
    return tuple(lines)


def identity_lines(identity: str) -> tuple[str, ...]:
    """A SPIFFE id in lines that fit a node: `sa/<sa>`, `ns/<ns>`, and the trust domain unless it is
    the default `cluster.local`; other ids as they are."""
    prefix = "spiffe://"
    parts = identity[len(prefix) :].split("/") if identity.startswith(prefix) else []
    if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
        lines = [f"sa/{parts[4]}", f"ns/{parts[2]}"]
        return tuple(lines if parts[0] == CLUSTER_DOMAIN else [*lines, parts[0]])
    return (identity,)


def _service_label(view: ProbeView) -> tuple[str, tuple[str, ...]]:
    url = display_url(view.url)
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    details = [f"{slash}{path}" if slash else "/", scheme]
    headers = view.parameters.get("headers")
    if isinstance(headers, list):
        for pair in headers:
            if isinstance(pair, list) and len(pair) == 2 and str(pair[0]).lower() == "host":
                details.append(f"Host: {pair[1]}")
    return authority, tuple(details)


def _rows(view: ProbeView) -> tuple[list[AnswerRow], bool]:
    """Per-answer rows, or rows rebuilt from the older marginal counts (then pods are not linked)."""
    if view.answers is not None:
        return list(view.answers), True
    rows: list[AnswerRow] = []
    for kind, n in view.fingerprints.items():
        if kind == "local-reply":
            rows.append(AnswerRow(kind, None, None, None, False, None, n))
    routed_kinds = [(k, n) for k, n in view.fingerprints.items() if k != "local-reply"]
    versioned = sum(v.count for v in view.versions)
    # Without joint rows we cannot tell which version came along which path: spread the versions over
    # a single path when there is one, else attach versions to the Service only.
    if len(routed_kinds) == 1:
        kind = routed_kinds[0][0]
        for v in view.versions:
            if v.count:
                rows.append(AnswerRow(kind, v.version, None, None, False, None, v.count))
        rest = routed_kinds[0][1] - versioned
        if rest > 0:
            rows.append(AnswerRow(kind, None, None, None, False, None, rest))
    else:
        for kind, n in routed_kinds:
            rows.append(AnswerRow(kind, None, None, None, False, None, n))
    return rows, False


def _tone_of(kinds: tuple[str, ...], unrouted: int, count: int) -> Tone:
    """Downstream of the Service: the path's tone when all answers took one kind of path."""
    if count and unrouted == count:
        return "unrouted"
    tones = {path_style(k).tone for k in kinds}
    return tones.pop() if len(tones) == 1 and not unrouted else "neutral"


def _bounded(
    versions: tuple[VersionRow, ...], rows: list[AnswerRow]
) -> tuple[tuple[VersionRow, ...], list[AnswerRow], str | None]:
    """At most MAX_VERSIONS versions and MAX_PODS pods: the last versions and the smallest pods are
    merged into one node each. Also returns the merged pod's name (drawn last)."""
    if len(versions) > MAX_VERSIONS:
        keep = versions[: MAX_VERSIONS - 1]
        rest = versions[MAX_VERSIONS - 1 :]
        more = f"+{len(rest)} more versions"
        names = {v.version for v in rest}
        expected = [v.expected_pct for v in rest if v.expected_pct is not None]
        merged = VersionRow(
            more,
            sum(v.count for v in rest),
            sum(v.observed_pct for v in rest),
            sum(expected) if expected else None,
            0.0,
            0.0,
        )
        versions = (*keep, merged)
        rows = [replace(r, version=more) if r.version in names else r for r in rows]
    per_pod = Counter[str]()
    for r in rows:
        if r.pod is not None:
            per_pod[r.pod] += r.count
    if len(per_pod) > MAX_PODS:
        keep_pods = {p for p, _ in sorted(per_pod.items(), key=lambda kv: (-kv[1], kv[0]))[: MAX_PODS - 1]}
        more_pods = f"+{len(per_pod) - len(keep_pods)} more pods"
        rows = [
            replace(r, pod=more_pods) if r.pod is not None and r.pod not in keep_pods else r for r in rows
        ]
        return versions, rows, more_pods
    return versions, rows, None


def build_graph(view: ProbeView) -> Graph:
    b = _Builder()
    rows, joint = _rows(view)
    versions, rows, more_pods = _bounded(view.versions, rows)
    total = view.requests
    versioned_total = sum(v.count for v in versions)

    ident = Counter({k: n for k, n in view.identities.items()})
    caller_details: tuple[str, ...] = ()
    caller_ids = Counter[str]()
    for row in rows:
        if row.identity and row.path == "client-sidecar":
            caller_ids[row.identity] += row.count
    if caller_ids:
        main = caller_ids.most_common(1)[0][0]
        more = len(caller_ids) - 1
        caller_details = ("mTLS identity:", *identity_lines(main)) + ((f"+{more} more",) if more else ())
    elif ident and not joint:
        main = ident.most_common(1)[0][0]
        caller_details = ("mTLS identity seen:", *identity_lines(main))
    caller_title = "the prober (caller); " + (
        "its SPIFFE identity: " + ", ".join(caller_ids) if caller_ids else "no caller identity seen"
    )
    b.add(
        Node(
            "caller", "caller", "caller", ("netdebug probe", *caller_details), "neutral", total, caller_title
        )
    )
    svc_label, svc_details = _service_label(view)
    upstream = sum(r.count for r in rows if r.path is None or not path_style(r.path).terminal)
    b.add(
        Node(
            "service",
            "service",
            svc_label,
            svc_details + (() if upstream else ("no upstream answer",)),
            "neutral",
            upstream,
            f"the target {display_url(view.url)}: {upstream} upstream answers",
        )
    )

    by_kind: dict[str, list[AnswerRow]] = defaultdict(list)
    for row in rows:
        by_kind[row.path or "unknown"].append(row)
    path_ids = {kind: f"path-{i}" for i, kind in enumerate(kind_order(list(by_kind)))}
    version_ids = {v.version: f"version-{i}" for i, v in enumerate(versions)}

    for kind in kind_order(list(by_kind)):
        style = path_style(kind)
        kind_rows = by_kind[kind]
        n = sum(r.count for r in kind_rows)
        mtls = sum(r.count for r in kind_rows if r.mtls)
        unrouted = n if style.tone == "unrouted" else 0
        node_id = path_ids[kind]
        if style.terminal:
            statuses = Counter[str]()
            for r in kind_rows:
                statuses[str(r.status) if r.status is not None else "status?"] += r.count
            terminal = ("no route/overflow/fault", *(_listing(statuses) if joint else ()))
            b.add(Node(node_id, "terminal", style.label, terminal, style.tone, n, style.meaning))
            b.edges.append(
                Edge("caller", node_id, n, _pct(n, total), "of all requests", style.tone, kinds=(kind,))
            )
            continue
        ids = Counter[str]()
        for r in kind_rows:
            if r.identity:
                ids[r.identity] += r.count
        lines = [kind] if style.label != kind else []
        presented = bool(ids) and kind != "client-sidecar"  # the caller's own id is on the caller
        if mtls:
            lines.append(f"mTLS {100.0 * mtls / n:.0f}%" + (" as" if presented else ""))
        if presented:
            lines.append(identity_lines(ids.most_common(1)[0][0])[0])
            if len(ids) > 1:
                lines.append(f"+{len(ids) - 1} more identities")
        if style.tone == "unrouted":
            lines.append("NOT ROUTED by mesh")
        title = f"{kind}: {style.meaning}; {n} answers" + (
            "; identities: " + ", ".join(f"{k} ({v})" for k, v in ids.items()) if ids else ""
        )
        b.add(Node(node_id, "path", style.label, tuple(lines), style.tone, n, title))
        b.edges.append(
            Edge(
                "caller",
                node_id,
                n,
                _pct(n, total),
                "of all requests",
                style.tone,
                unrouted=unrouted,
                kinds=(kind,),
            )
        )
        b.edges.append(
            Edge(
                node_id,
                "service",
                n,
                None,
                "",
                style.tone,
                mtls=mtls,
                unrouted=unrouted,
                kinds=(kind,),
            )
        )

    # Service -> versions (every version of the verdict, also expected ones that never answered).
    for v in versions:
        node_id = version_ids[v.version]
        facts = [f"{v.count} answers"]
        if v.expected_pct is not None:
            facts.append(f"expected {v.expected_pct:.1f}%")
        elif view.expected:
            facts.append("NOT expected")
        tone: Tone = "neutral"
        if view.expected and (v.expected_pct is None or (v.count == 0 and v.expected_pct > 0)):
            tone = "error"
        b.add(
            Node(
                node_id,
                "version",
                v.version,
                tuple(facts),
                tone,
                v.count,
                f"version {v.version}: {v.count} answers, observed {v.observed_pct:.1f}%"
                + (f", expected {v.expected_pct:.1f}%" if v.expected_pct is not None else ""),
            )
        )
    version_rows: dict[str, list[AnswerRow]] = defaultdict(list)
    for row in rows:
        if row.path is not None and path_style(row.path).terminal:
            continue
        version_rows[row.version if row.version in version_ids else NO_VERSION].append(row)
    for name, vrows in version_rows.items():
        n = sum(r.count for r in vrows)
        unrouted = sum(r.count for r in vrows if r.path and path_style(r.path).tone == "unrouted")
        kinds = tuple(sorted({r.path for r in vrows if r.path}))
        if name == NO_VERSION:
            node_id = "no-version"
            statuses = Counter[str]()
            for r in vrows:
                statuses[str(r.status) if r.status is not None else "status?"] += r.count
            b.add(
                Node(
                    node_id,
                    "version",
                    NO_VERSION,
                    ("not a version", *_listing(statuses)),
                    "error",
                    n,
                    "answers that named no version (non-2xx, or no version in the answer)",
                )
            )
            share, of = None, ""
        else:
            node_id = version_ids[name]
            share, of = _pct(n, versioned_total), "of the answers with a version"
        b.edges.append(
            Edge(
                "service", node_id, n, share, of, _tone_of(kinds, unrouted, n), unrouted=unrouted, kinds=kinds
            )
        )

    # Version -> pod.
    pod_versions: dict[str, Counter[str]] = defaultdict(Counter)
    pod_unrouted: Counter[tuple[str, str]] = Counter()
    pod_kinds: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        if row.pod is None or (row.path is not None and path_style(row.path).terminal):
            continue
        vname = row.version if row.version in version_ids else NO_VERSION
        pod_versions[row.pod][vname] += row.count
        if row.path:
            pod_kinds[(vname, row.pod)].add(row.path)
        if row.path and path_style(row.path).tone == "unrouted":
            pod_unrouted[(vname, row.pod)] += row.count
    # Pods in the order of their main version, then by count: a layered layout without crossings.
    version_order = [v.version for v in versions] + [NO_VERSION]
    pods = sorted(
        pod_versions,
        key=lambda p: (
            p == more_pods,
            version_order.index(pod_versions[p].most_common(1)[0][0]),
            -sum(pod_versions[p].values()),
            p,
        ),
    )
    for i, pod in enumerate(pods):
        node_id = f"pod-{i}"
        n = sum(pod_versions[pod].values())
        b.add(Node(node_id, "pod", pod, (f"{n} answers",), "neutral", n, f"pod {pod}: {n} answers"))
        for vname, count in pod_versions[pod].items():
            source = "no-version" if vname == NO_VERSION else version_ids[vname]
            v_total = sum(r.count for r in version_rows.get(vname, []))
            unrouted = pod_unrouted[(vname, pod)]
            kinds = tuple(sorted(pod_kinds[(vname, pod)]))
            tone = _tone_of(kinds, unrouted, count)
            b.edges.append(
                Edge(
                    source,
                    node_id,
                    count,
                    _pct(count, v_total),
                    f"of {vname}",
                    tone,
                    unrouted=unrouted,
                    kinds=kinds,
                )
            )

    errors = transport_errors(view)
    if errors:
        n = sum(errors.values())
        b.add(
            Node(
                "no-answer",
                "terminal",
                "no answer",
                _listing(errors),
                "error",
                n,
                "requests that got no answer: "
                + "; ".join(f"{k} {c}: {view.error_details.get(k, '')}" for k, c in errors.items()),
            )
        )
        b.edges.append(Edge("caller", "no-answer", n, _pct(n, total), "of all requests", "error"))

    if not joint:
        b.notes.append(
            "This report has no per-answer rows (it predates them): versions are not linked to paths "
            "or pods, and pods are listed without edges."
        )
        listed = sorted(view.pods.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(listed) > MAX_PODS:
            rest = listed[MAX_PODS - 1 :]
            listed = [*listed[: MAX_PODS - 1], (f"+{len(rest)} more pods", sum(n for _, n in rest))]
        for i, (pod, n) in enumerate(listed):
            b.add(Node(f"pod-{i}", "pod", pod, (f"{n} answers",), "neutral", n, f"pod {pod}: {n} answers"))
    if view.answers_unrecorded:
        b.notes.append(
            f"{view.answers_unrecorded} answers are not drawn: the run had more distinct "
            "path/version/pod combinations than the report keeps."
        )
    if view.dropped:
        b.notes.append(f"{view.dropped} requests were dropped before sending (in-flight limit).")
    graph = Graph(tuple(b.nodes.values()), tuple(b.edges), tuple(b.notes))
    return Graph(graph.nodes, graph.edges, graph.notes, describe(graph))


def describe(graph: Graph) -> str:
    """One paragraph saying what the graph shows (the SVG's <desc>)."""
    names = {n.id: n.label for n in graph.nodes}
    parts = []
    for e in graph.edges:
        text = f"{names[e.source]} to {names[e.target]}: {e.count}"
        if e.share is not None:
            text += f" ({e.share:.1f}% {e.share_of})"
        if e.mtls:
            text += f", {e.mtls} over mTLS"
        if e.unrouted:
            text += f", {e.unrouted} not routed by the mesh"
        parts.append(text)
    return "Traffic graph. " + "; ".join(parts) + "." if parts else "Traffic graph: no traffic."
