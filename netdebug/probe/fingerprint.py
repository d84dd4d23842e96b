"""Which path an answer took, from the response headers and what the echo saw. Pure.

Kinds (a cross-team contract, also used by plans):
  client-sidecar       `server: envoy` with `x-envoy-upstream-service-time`: the caller's outbound
                       sidecar routed it, so the VirtualService applied.
  gateway              `server: istio-envoy` with upstream time, and the echo saw mTLS evidence (XFCC).
  server-sidecar-only  `server: istio-envoy` (or the echo saw Envoy headers) but no XFCC: the caller had
                       no sidecar, the VirtualService did not do this split.
  bypass               no Envoy evidence at all.
  local-reply          an Envoy-looking answer without upstream time: Envoy answered itself
                       (404 no route, 503 overflow, fault abort).
Attributes: `mtls` (the caller's SPIFFE id from `mesh.client_identity`, or XFCC seen) and `retried`
(`mesh.attempt` > 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from netdebug.probe.attribution import MISSING

Kind = Literal["client-sidecar", "gateway", "server-sidecar-only", "bypass", "local-reply"]
KINDS: Final[tuple[Kind, ...]] = ("client-sidecar", "gateway", "server-sidecar-only", "bypass", "local-reply")
# Kinds for which the VirtualService can not have done the split.
UNROUTED_KINDS: Final[frozenset[str]] = frozenset({"bypass", "server-sidecar-only"})

_ENVOY_SERVERS: Final = frozenset({"envoy", "istio-envoy"})


def is_local_reply(headers: Mapping[str, str]) -> bool:
    """Envoy answered by itself: an Envoy server header and no upstream service time.

    `headers`: response headers with lower-case names. The one definition of the rule, used by
    `classify` (kind `local-reply`) and by plans (the http step's `local_reply` expectation).
    """
    server = headers.get("server", "").strip().lower()
    return server in _ENVOY_SERVERS and "x-envoy-upstream-service-time" not in headers


@dataclass(frozen=True, slots=True)
class Fingerprint:
    kind: Kind
    mtls: bool
    identity: str | None
    retried: bool


def _mesh(document: object) -> Mapping[str, object]:
    if document is MISSING or not isinstance(document, Mapping):
        return {}
    mesh = document.get("mesh")
    return mesh if isinstance(mesh, Mapping) else {}


def classify(headers: Mapping[str, str], document: object) -> Fingerprint:
    """`headers`: response headers with lower-case names; `document`: parsed echo JSON or MISSING."""
    server = headers.get("server", "").strip().lower()
    upstream_time = "x-envoy-upstream-service-time" in headers
    mesh = _mesh(document)
    identity_raw = mesh.get("client_identity")
    identity = identity_raw if isinstance(identity_raw, str) and identity_raw else None
    xfcc = bool(mesh.get("forwarded_client_cert")) or identity is not None
    attempt = mesh.get("attempt")
    retried = isinstance(attempt, int) and not isinstance(attempt, bool) and attempt > 1
    echo_saw_envoy = mesh.get("sidecar") is True

    kind: Kind
    if is_local_reply(headers):
        kind = "local-reply"
    elif server == "istio-envoy":
        kind = "gateway" if xfcc else "server-sidecar-only"
    elif upstream_time:
        # `server: envoy`, or an Envoy configured with another server name: the nearest Envoy is
        # the caller's and it routed the request upstream.
        kind = "client-sidecar"
    elif echo_saw_envoy:
        kind = "server-sidecar-only"
    else:
        kind = "bypass"
    return Fingerprint(kind=kind, mtls=xfcc, identity=identity, retried=retried)
