"""Which path an answer took, from the response headers and what the echo saw. Pure.

Kinds (a cross-team contract, also used by plans):
  client-sidecar       `server: envoy` with `x-envoy-upstream-service-time`: the caller's outbound
                       sidecar routed it, so the VirtualService applied.
  gateway              `server: istio-envoy` with upstream time, and the echo saw either mTLS evidence
                       (XFCC: a sidecar in front of it) or caller-side routing evidence: headers only a
                       routing Envoy adds that no inbound sidecar consumed (see `CALLER_SIDE`). The
                       second is what a cluster shows when a gateway routes to a pod without a sidecar
                       (or to an ambient pod without a waypoint): routed, without mTLS.
  waypoint             `server: istio-envoy` with upstream time, and the echo names a waypoint as its
                       last hop (`mesh.hop`): in ambient mode the Service's waypoint applied its
                       HTTPRoutes, so the split counts.
  server-sidecar-only  `server: istio-envoy` (or the echo saw Envoy headers) and neither: the caller had
                       no sidecar, the VirtualService did not do this split.
  ztunnel              no Envoy answered and the echo says ztunnel captured it with no Envoy on the path
                       (`mesh.hop`): ambient mode without a waypoint, L4 only, no route applied.
  bypass               no Envoy evidence at all.
  local-reply          an Envoy-looking answer without upstream time: Envoy answered itself
                       (404 no route, 503 overflow, fault abort).
Attributes: `mtls` (the caller's SPIFFE id from `mesh.client_identity`, or XFCC seen), `retried`
(`mesh.attempt` > 1), and `evidence` (the headers that decided the kind).

`RULES` is the decision table, tried in order; a new path kind (a waypoint, ztunnel) is a new row
with its own predicate over `Evidence`, so the existing rows keep their meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from netdebug.probe.attribution import MISSING

Kind = Literal[
    "client-sidecar", "gateway", "waypoint", "server-sidecar-only", "ztunnel", "bypass", "local-reply"
]
KINDS: Final[tuple[Kind, ...]] = (
    "client-sidecar",
    "gateway",
    "waypoint",
    "server-sidecar-only",
    "ztunnel",
    "bypass",
    "local-reply",
)
# Kinds for which no route (VirtualService, HTTPRoute) can have done the split.
UNROUTED_KINDS: Final[frozenset[str]] = frozenset({"bypass", "server-sidecar-only", "ztunnel"})

_ENVOY_SERVERS: Final = frozenset({"envoy", "istio-envoy"})


def is_local_reply(headers: Mapping[str, str]) -> bool:
    """Envoy answered by itself: an Envoy server header and no upstream service time.

    `headers`: response headers with lower-case names. The one definition of the rule, used by
    `classify` (kind `local-reply`) and by plans (the http step's `local_reply` expectation).
    """
    return _envoy_answered(
        headers.get("server", "").strip().lower(), "x-envoy-upstream-service-time" in headers
    )


def _envoy_answered(server: str, upstream_time: bool) -> bool:
    return server in _ENVOY_SERVERS and not upstream_time


@dataclass(frozen=True, slots=True)
class Fingerprint:
    kind: Kind
    mtls: bool
    identity: str | None
    retried: bool
    evidence: tuple[str, ...] = ()

    @property
    def routed(self) -> bool:
        """Whether a mesh route (VirtualService/HTTPRoute) can have decided where this answer went."""
        return self.kind not in UNROUTED_KINDS


# Request headers, as the echo reports them (`mesh.*`), that only a *routing* Envoy adds: the route's
# decorator (consumed by an inbound sidecar, so seen only without one), the attempt count a gateway's
# or an outbound sidecar's virtual host sets (Istio's inbound routes do not), and the edge proxy's
# external address. A plain client or an inbound sidecar adds none of them.
CALLER_SIDE: Final = (
    ("decorator", "x-envoy-decorator-operation"),
    ("attempt", "x-envoy-attempt-count"),
    ("external_address", "x-envoy-external-address"),
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one answer shows about its path: response headers plus the echo's `mesh` report."""

    server: str
    upstream_time: bool
    xfcc: bool
    identity: str | None
    attempt: int | None
    echo_saw_envoy: bool
    caller_side: tuple[str, ...]  # CALLER_SIDE header names the echo saw
    hop: str | None = None  # the echo's `mesh.hop`: the last mesh proxy in front of it (None: not told)
    hop_evidence: tuple[str, ...] = ()

    @property
    def envoy_answered(self) -> bool:
        return _envoy_answered(self.server, self.upstream_time)


def _mesh(document: object) -> Mapping[str, object]:
    if document is MISSING or not isinstance(document, Mapping):
        return {}
    mesh = document.get("mesh")
    return mesh if isinstance(mesh, Mapping) else {}


def gather(headers: Mapping[str, str], document: object) -> Evidence:
    """`headers`: response headers with lower-case names; `document`: parsed echo JSON or MISSING."""
    mesh = _mesh(document)
    identity_raw = mesh.get("client_identity")
    identity = identity_raw if isinstance(identity_raw, str) and identity_raw else None
    attempt = mesh.get("attempt")
    return Evidence(
        server=headers.get("server", "").strip().lower(),
        upstream_time="x-envoy-upstream-service-time" in headers,
        xfcc=bool(mesh.get("forwarded_client_cert")) or identity is not None,
        identity=identity,
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        echo_saw_envoy=mesh.get("sidecar") is True,
        caller_side=tuple(header for field, header in CALLER_SIDE if mesh.get(field) not in (None, "", [])),
        hop=hop if isinstance(hop := mesh.get("hop"), str) else None,
        hop_evidence=tuple(str(e) for e in hop_evidence)
        if isinstance(hop_evidence := mesh.get("hop_evidence"), list)
        else (),
    )


Rule = tuple[Kind, Callable[[Evidence], tuple[str, ...] | None]]


def _local_reply(e: Evidence) -> tuple[str, ...] | None:
    return (f"server: {e.server}", "no x-envoy-upstream-service-time") if e.envoy_answered else None


def _gateway(e: Evidence) -> tuple[str, ...] | None:
    if e.server != "istio-envoy":
        return None
    if e.xfcc:
        return ("server: istio-envoy", "x-forwarded-client-cert")
    # No sidecar in front of the app, but a gateway routed the request to it.
    return ("server: istio-envoy", *e.caller_side) if e.caller_side else None


def _waypoint(e: Evidence) -> tuple[str, ...] | None:
    # The answer came back through an inbound Envoy (istio-envoy, upstream time) that the echo, which
    # knows it has no sidecar, names as a waypoint.
    if e.server == "istio-envoy" and e.upstream_time and e.hop == "waypoint":
        return ("server: istio-envoy", "mesh.hop: waypoint", *e.hop_evidence)
    return None


def _ztunnel(e: Evidence) -> tuple[str, ...] | None:
    if e.server not in _ENVOY_SERVERS and e.hop == "ztunnel":
        return ("no Envoy server header", "mesh.hop: ztunnel", *e.hop_evidence)
    return None


def _server_sidecar_only(e: Evidence) -> tuple[str, ...] | None:
    if e.server == "istio-envoy":
        return ("server: istio-envoy",)
    return None


def _client_sidecar(e: Evidence) -> tuple[str, ...] | None:
    # `server: envoy`, or an Envoy configured with another server name: the nearest Envoy is the
    # caller's and it routed the request upstream.
    return (f"server: {e.server or '-'}", "x-envoy-upstream-service-time") if e.upstream_time else None


def _echo_saw_envoy(e: Evidence) -> tuple[str, ...] | None:
    return ("mesh.sidecar",) if e.echo_saw_envoy else None


def _bypass(e: Evidence) -> tuple[str, ...] | None:
    return ()


RULES: Final[tuple[Rule, ...]] = (
    ("local-reply", _local_reply),
    ("waypoint", _waypoint),
    ("gateway", _gateway),
    ("server-sidecar-only", _server_sidecar_only),
    ("client-sidecar", _client_sidecar),
    ("server-sidecar-only", _echo_saw_envoy),
    ("ztunnel", _ztunnel),
    ("bypass", _bypass),
)


def decide(evidence: Evidence, rules: tuple[Rule, ...] = RULES) -> Fingerprint:
    """The first rule whose predicate holds names the kind; its result is the deciding evidence."""
    for kind, predicate in rules:
        found = predicate(evidence)
        if found is not None:
            return Fingerprint(
                kind=kind,
                mtls=evidence.xfcc,
                identity=evidence.identity,
                retried=evidence.attempt is not None and evidence.attempt > 1,
                evidence=found,
            )
    raise AssertionError("the last rule matches everything")


def classify(headers: Mapping[str, str], document: object) -> Fingerprint:
    """`headers`: response headers with lower-case names; `document`: parsed echo JSON or MISSING."""
    return decide(gather(headers, document))
