"""The echo Deployment carries what makes a rolling restart lossless (docs/echo-serving.md, "Rolling
restarts"), checked as arithmetic over the rendered manifests rather than as copied numbers:
- readiness turns false (probe period x failure threshold) well inside the drain;
- the drain outlasts that plus endpoint propagation to kube-proxy and every sidecar;
- the sidecar drains as long as the echo, so neither leaves before the other;
- terminationGracePeriodSeconds covers the drain and the in-flight grace (ECHO_MAX_DELAY_MS + 5 s).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from echo.cli import GRACE_MARGIN_SECONDS
from echo.config import DEFAULT_DRAIN_SECONDS, DEFAULT_MAX_DELAY_MS
from netdebug.k8s.documents import Doc, name_of

# kube-proxy and istiod usually propagate an endpoint removal within a few seconds.
ENDPOINT_PROPAGATION_SECONDS = 5


@pytest.mark.parametrize("overlay", ["base", "overlays/istio"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_rolling_restart_arithmetic(overlay: str, version: str, docs_of: Callable[[str], list[Doc]]) -> None:
    deployment = next(
        d for d in docs_of(overlay) if d["kind"] == "Deployment" and name_of(d) == f"echo-{version}"
    )
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain = float(env.get("ECHO_DRAIN_SECONDS") or DEFAULT_DRAIN_SECONDS)
    max_delay = int(env.get("ECHO_MAX_DELAY_MS") or DEFAULT_MAX_DELAY_MS) / 1000
    probe = container["readinessProbe"]
    not_ready_within = probe["periodSeconds"] * probe["failureThreshold"] + probe.get("timeoutSeconds", 1)

    assert not_ready_within + ENDPOINT_PROPAGATION_SECONDS <= drain
    proxy_config = json.loads(pod["metadata"]["annotations"]["proxy.istio.io/config"])
    assert proxy_config["terminationDrainDuration"] == f"{drain:g}s"
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain + max_delay + GRACE_MARGIN_SECONDS
    # The drain is the preStop sleep: a second one would only delay the exit.
    assert "lifecycle" not in container
