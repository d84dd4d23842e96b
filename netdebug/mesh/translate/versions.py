"""Which Istio release the local mesh behaves like (`mesh up --istio-version`). Pure.

Only a few behaviours of the route translation changed between the releases the local mesh accepts;
`CHANGES` lists each one with the release that changed it, the Istio code that decides it, and the
istiod environment variable a cluster uses to get the old behaviour back (the variables the
`compatibilityVersion` profiles in istio/istio `manifests/helm-profiles/` set). Everything else the
translation emulates is the same in every accepted release.

A version newer than the newest one read behaves like the newest: the behaviours listed here are
the defaults there, and new changes are added to this table as they are read from Istio's code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class IstioVersion:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def excludes_503_from_default_retries(self) -> bool:
        """istiod `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY` (default true since 1.24)."""
        return self >= IstioVersion(1, 24)

    @property
    def inbound_retry_policy(self) -> bool:
        """istiod `ENABLE_INBOUND_RETRY_POLICY` (a preview, off, in 1.23; default true since 1.24)."""
        return self >= IstioVersion(1, 24)


# The oldest release emulated: `networking.istio.io/v1`, which the manifests use, is served since 1.22.
OLDEST = IstioVersion(1, 22)
# The newest release whose translation was read (Istio 1.30.3; master 1.31.0-rc.0 is the same here).
NEWEST = IstioVersion(1, 30)
LATEST_NAMES = frozenset({"latest", "newest"})


@dataclass(frozen=True)
class Change:
    since: IstioVersion
    behaviour: str
    before: str
    source: str
    flag: str


CHANGES: tuple[Change, ...] = (
    Change(
        since=IstioVersion(1, 24),
        behaviour="the default retry policy retries no status code (503 was dropped as unsafe)",
        before="the default retry policy also retries an upstream 503 (`retriable_status_codes: [503]`)",
        source="pilot/pkg/networking/core/route/retry/retry.go (defaultPolicy)",
        flag="EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY",
    ),
    Change(
        since=IstioVersion(1, 24),
        behaviour="the server sidecar's inbound route retries `reset-before-request` twice",
        before="the inbound route has no retry policy",
        source="pilot/pkg/networking/core/route/route.go (BuildDefaultHTTPInboundRoute)",
        flag="ENABLE_INBOUND_RETRY_POLICY",
    ),
)

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?")


def parse_istio_version(text: str) -> IstioVersion:
    """`1.23`, `1.23.4`, `v1.24.0-rc.1`, or `latest`; ValueError (with the accepted range) otherwise."""
    value = text.strip()
    if value.lower() in LATEST_NAMES:
        return NEWEST
    match = _VERSION.fullmatch(value)
    if match is None:
        raise ValueError(f"not an Istio version: {text!r} (expected e.g. 1.23, 1.24.3 or latest)")
    version = IstioVersion(int(match.group(1)), int(match.group(2)))
    if version < OLDEST:
        raise ValueError(f"Istio {version} is not emulated (oldest: {OLDEST}; newest read: {NEWEST})")
    return version
