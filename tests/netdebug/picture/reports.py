"""Fixed probe reports for the picture tests, built through the prober's own pure core (Sample ->
Tally -> build_report -> to_json), so they carry exactly the fields a real run writes.

Latencies are deterministic: each version gets its own base latency and a fixed spread.
"""

from __future__ import annotations

from collections.abc import Sequence

from netdebug.probe.attribution import By
from netdebug.probe.client import Sample
from netdebug.probe.config import ProbeConfig
from netdebug.probe.report import Tally, build_report
from netdebug.probe.runner import RunOutcome, Timing

MESH_ID = "spiffe://cluster.local/ns/echo/sa/netdebug"
GATEWAY_ID = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


def answer(
    version: str | None,
    pod: str | None,
    kind: str = "client-sidecar",
    *,
    status: int = 200,
    identity: str | None = None,
) -> Sample:
    return Sample(
        status,
        version,
        pod,
        kind,  # type: ignore[arg-type]
        identity,
        identity is not None,
        False,
        "HTTP/1.1",
    )


def refused() -> Sample:
    return Sample(None, None, None, None, None, False, False, None, "connect", "connection refused")


def spread(weights: dict[str, int], pods_per_version: int, kind: str, identity: str | None) -> list[Sample]:
    """Exact counts: `weights` answers per version, round-robin over that version's pods."""
    out: list[Sample] = []
    for version, n in weights.items():
        for i in range(n):
            pod = f"echo-{version}-7d9f8c6b5-{i % pods_per_version:05d}"
            out.append(answer(version, pod, kind, identity=identity))
    # Interleave versions so the sequence looks like a run (it does not change the aggregates).
    return sorted(out, key=lambda s: hash((s.version, s.pod)) % 7)


def report_of(
    samples: Sequence[Sample], expected: dict[str, float] | None, **config: object
) -> dict[str, object]:
    tally = Tally()
    for i, s in enumerate(samples):
        base = 0.002 + 0.0015 * (sum(map(ord, s.version or "x")) % 5)
        tally.record(Timing(i, i * 0.005, 0.0002 * (i % 4), base + 0.0004 * (i % 13)), s)
    n = len(samples)
    outcome = RunOutcome(n, n, 0, n * 0.005, 0.0, (n - 1) * 0.005, False, False)
    cfg = ProbeConfig(
        url=str(config.pop("url", "http://echo-service.echo.svc.cluster.local/echo")),
        expected=tuple(expected.items()) if expected else None,
        by=By("auto"),
        **config,  # type: ignore[arg-type]
    )
    return build_report(cfg, tally, outcome).to_json()


def pass_report() -> dict[str, object]:
    return report_of(spread({"v1": 750, "v2": 250}, 3, "client-sidecar", MESH_ID), {"v1": 75.0, "v2": 25.0})


def gateway_report() -> dict[str, object]:
    return report_of(
        spread({"v1": 744, "v2": 256}, 2, "gateway", GATEWAY_ID),
        {"v1": 75.0, "v2": 25.0},
        url="http://127.0.0.1:8080/echo",
        headers=(("host", "echo.local"),),
    )


def fail_report() -> dict[str, object]:
    return report_of(spread({"v1": 500, "v2": 500}, 2, "client-sidecar", MESH_ID), {"v1": 75.0, "v2": 25.0})


def bypass_report() -> dict[str, object]:
    return report_of(spread({"v1": 300}, 1, "bypass", None), {"v1": 75.0, "v2": 25.0})


def local_reply_report() -> dict[str, object]:
    samples = [answer(None, None, "local-reply", status=404)] * 50
    return report_of(samples, None, url="http://echo-service.echo.svc.cluster.local/")


def mixed_report() -> dict[str, object]:
    """Routed answers, some bypass, local replies, a 503 without a version and refused connections."""
    samples = spread({"v1": 600, "v2": 200}, 2, "client-sidecar", MESH_ID)
    samples += spread({"v1": 60, "v2": 20}, 2, "bypass", None)
    samples += [answer(None, None, "local-reply", status=404)] * 30
    samples += [answer(None, "echo-v2-7d9f8c6b5-00000", "client-sidecar", status=503, identity=MESH_ID)] * 10
    samples += [refused()] * 5
    return report_of(samples, {"v1": 75.0, "v2": 25.0}, max_error_rate=0.5)


def versions_report(count: int, pods_per_version: int = 2) -> dict[str, object]:
    weights = {f"v{i + 1}": 100 + 20 * i for i in range(count)}
    total = sum(weights.values())
    expected = {v: 100.0 * n / total for v, n in weights.items()}
    return report_of(spread(weights, pods_per_version, "client-sidecar", MESH_ID), expected)


def pods_report(pods: int = 20) -> dict[str, object]:
    """Two versions spread over `pods` pods in all."""
    return report_of(
        spread({"v1": 1500, "v2": 500}, pods // 2, "client-sidecar", MESH_ID), {"v1": 75.0, "v2": 25.0}
    )
