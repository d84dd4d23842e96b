"""`netdebug probe --report` against the local mesh (`netdebug mesh up`: echo processes behind real
Envoy sidecars and a gateway): the page of a run through the gateway shows the gateway hop over mTLS
with the gateway's identity, and the page of a direct call to one echo shows the bypass. These are
the two runs whose screenshots docs/netdebug-probe.md shows.

Envoy's weighted pick is random, so no verdict is asserted: only what the page must draw from
whatever split was observed (its shares equal the JSON report's)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from netdebug import cli
from tests.netdebug.picture.page_tree import by_class, graph_of, parse, text
from tests.netdebug.plan.test_plan_e2e import local_mesh  # noqa: F401 - the fixture

pytestmark = [pytest.mark.envoy, pytest.mark.slow, pytest.mark.timeout(300)]


def probe_with_report(url: str, page: Path, *args: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["probe", url, "-n", "400", "--rps", "400", "--report", str(page), "-o", "json", *args]
    cli.main_impl(argv, {"NETDEBUG_WAIT_SIDECAR": "no"}, out, err)
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


def test_gateway_and_bypass_pages_of_a_real_mesh(local_mesh: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    gateway = local_mesh["gateway"]["url"]
    page = tmp_path / "gateway.html"
    doc = probe_with_report(f"{gateway}/echo", page, "-H", "host: echo.local", "--expect", "v1=75,v2=25")
    assert doc["fingerprints"] == {"gateway": 400}
    nodes, edges = graph_of(parse(page.read_text()))
    path = next(n for n in nodes.values() if n.role == "path")
    assert path.label == "gateway"
    # The gateway's identity: istio-ingressgateway-service-account on the Istio API stage,
    # echo-gateway-istio (the Deployment istiod makes for the Gateway) on the Gateway API stage.
    gateway_id = local_mesh["gateway"]["identity"]
    assert path.lines[1] == "mTLS 100% as"
    assert "".join(path.lines[2:]) == "sa/" + gateway_id.rpartition("/sa/")[2]
    assert doc["mtls"]["identities"] == {gateway_id: 400}
    hop = next(e for e in edges if e.source == path.id)
    assert (hop.target, hop.count, hop.mtls) == ("service", 400, 400)
    shares = {nodes[e.target].label: e.share for e in edges if e.source == "service"}
    assert shares == {v["version"]: round(v["observed_pct"], 1) for v in doc["versions"]}
    pods = {nodes[e.target].label: e.count for e in edges if nodes[e.target].role == "pod"}
    assert pods == doc["pods"]

    echo = local_mesh["pods"][0]
    page = tmp_path / "bypass.html"
    doc = probe_with_report(f"{echo['echo_url']}/echo", page, "--expect", "v1=75,v2=25")
    root = parse(page.read_text())
    nodes, edges = graph_of(root)
    path = next(n for n in nodes.values() if n.role == "path")
    assert (path.label, path.tone) == ("bypass (no Envoy)", "unrouted")
    assert all(e.dashed and e.unrouted == 400 for e in edges)
    assert {nodes[e.target].label for e in edges if nodes[e.target].role == "pod"} == {echo["name"]}
    assert "NOT ROUTED BY THE MESH" in text(by_class(root, "warnings", "div")[0])
    assert doc["verdict"] == "fail"
