"""Every kustomization renders, holds exactly the objects the tutorial needs, and validates offline:
core kinds against Kubernetes' schemas (kubernetes-validate), Istio and Gateway API kinds against their
CRDs' openAPIV3Schema from the shared schema folder."""

from __future__ import annotations

import copy
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from netdebug.k8s.documents import Doc, name_of
from netdebug.k8s.load import load_documents, render_kustomize
from netdebug.plan.execute import default_probe_backend, prepare
from netdebug.plan.parse import parse_plan
from tests.k8s.crd_schemas import load_crd_schemas, schema_errors
from tests.k8s.stages import K8S, ROUTING_STAGES, STAGES, kustomization_dirs
from tests.procs import SHARED

# The oldest Kubernetes the manifests claim (native sidecar containers are on by default since 1.29)
# and the newest kubernetes-validate ships schemas for.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
SCHEMAS = SHARED / "schemas"
CUSTOM_GROUPS = ("networking.istio.io", "gateway.networking.k8s.io")


def is_custom(doc: Doc) -> bool:
    return str(doc["apiVersion"]).rpartition("/")[0] in CUSTOM_GROUPS


def objects(docs: list[Doc]) -> set[tuple[str, str]]:
    # kustomize appends a content hash to generated ConfigMaps: compare by the generator's name.
    return {
        (
            str(d["kind"]),
            re.sub(r"-[a-z0-9]{10}$", "", name_of(d)) if d["kind"] == "ConfigMap" else name_of(d),
        )
        for d in docs
    }


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} absent: Istio/Gateway API kinds not validated against their CRDs")
    return load_crd_schemas(SCHEMAS)


@pytest.mark.parametrize("relative", kustomization_dirs())
def test_every_kustomization_renders(relative: str, docs_of: Callable[[str], list[Doc]]) -> None:
    assert docs_of(relative), f"k8s/{relative} renders nothing"


def test_user_facing_directories_exist() -> None:
    assert set(STAGES) <= set(kustomization_dirs())


@pytest.mark.parametrize("relative", list(STAGES))
def test_stage_renders_exactly_its_objects(relative: str, docs_of: Callable[[str], list[Doc]]) -> None:
    docs = docs_of(relative)
    assert objects(docs) == STAGES[relative]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"echo"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("relative", list(STAGES))
def test_core_kinds_match_kubernetes_schemas(
    relative: str, version: str, docs_of: Callable[[str], list[Doc]]
) -> None:
    errors = []
    for doc in docs_of(relative):
        if is_custom(doc):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']} {name_of(doc)}: {exc}")
    assert errors == []


def test_core_validation_needs_no_network(
    docs_of: Callable[[str], list[Doc]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # kubernetes-validate ships its schemas; prove no schema is fetched while validating.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("kubernetes-validate tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for doc in docs_of("base"):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


def _deployment(docs: list[Doc]) -> Doc:
    return copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))


def _typo_in_container(doc: Doc) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"


def _port_as_text(doc: Doc) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"


def _no_containers(doc: Doc) -> None:
    del doc["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(_typo_in_container, id="unknown-field"),
        pytest.param(_port_as_text, id="wrong-type"),
        pytest.param(_no_containers, id="missing-required"),
    ],
)
def test_core_validation_rejects_broken_deployment(
    break_it: Callable[[Doc], None], docs_of: Callable[[str], list[Doc]]
) -> None:
    doc = _deployment(docs_of("base"))
    break_it(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("relative", [*ROUTING_STAGES])
def test_custom_kinds_match_their_crds(
    relative: str,
    docs_of: Callable[[str], list[Doc]],
    crd_schemas: dict[tuple[str, str], dict[str, Any]],
) -> None:
    custom = [d for d in docs_of(relative) if is_custom(d)]
    assert custom, f"{relative} has no Istio or Gateway API resources"
    unknown = [
        (d["apiVersion"], d["kind"]) for d in custom if (d["apiVersion"], d["kind"]) not in crd_schemas
    ]
    assert unknown == [], "no CRD in the shared schemas describes these"
    assert [e for d in custom for e in schema_errors(d, crd_schemas)] == []


def _doc(docs: list[Doc], kind: str, name: str) -> Doc:
    return copy.deepcopy(next(d for d in docs if d["kind"] == kind and name_of(d) == name))


def _vs_weight_text(docs: list[Doc]) -> Doc:
    vs = _doc(docs, "VirtualService", "echo-route")
    vs["spec"]["http"][0]["route"][0]["weight"] = "75"
    return vs


def _dr_subset_label_typo(docs: list[Doc]) -> Doc:
    dr = _doc(docs, "DestinationRule", "echo-service")
    dr["spec"]["subsets"][0]["label"] = dr["spec"]["subsets"][0].pop("labels")
    return dr


def _gateway_port_missing(docs: list[Doc]) -> Doc:
    gateway = _doc(docs, "Gateway", "echo-gateway")
    del gateway["spec"]["servers"][0]["port"]["number"]
    return gateway


def _vs_prefix_and_exact(docs: list[Doc]) -> Doc:
    # StringMatch is a oneOf: prefix and exact together are invalid.
    vs = _doc(docs, "VirtualService", "echo-route")
    vs["spec"]["http"][0]["match"][0]["uri"]["exact"] = "/echo"
    return vs


def _httproute_bad_path_type(docs: list[Doc]) -> Doc:
    route = _doc(docs, "HTTPRoute", "echo-mesh")
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    return route


def _gateway_api_listener_no_protocol(docs: list[Doc]) -> Doc:
    gateway = _doc(docs, "Gateway", "echo-gateway")
    del gateway["spec"]["listeners"][0]["protocol"]
    return gateway


def _waypoint_port_as_text(docs: list[Doc]) -> Doc:
    waypoint = _doc(docs, "Gateway", "echo-waypoint")
    waypoint["spec"]["listeners"][0]["port"] = "15008"
    return waypoint


def _waypoint_without_class(docs: list[Doc]) -> Doc:
    waypoint = _doc(docs, "Gateway", "echo-waypoint")
    del waypoint["spec"]["gatewayClassName"]
    return waypoint


@pytest.mark.parametrize(
    ("stage", "broken", "field"),
    [
        pytest.param("overlays/istio", _vs_weight_text, "weight", id="vs-weight-as-text"),
        pytest.param("overlays/istio", _dr_subset_label_typo, "label", id="dr-subset-label-typo"),
        pytest.param("overlays/istio", _gateway_port_missing, "number", id="gateway-port-without-number"),
        pytest.param("overlays/istio", _vs_prefix_and_exact, "uri", id="vs-prefix-and-exact"),
        pytest.param("overlays/gateway-api", _httproute_bad_path_type, "type", id="httproute-path-type"),
        pytest.param(
            "overlays/gateway-api", _gateway_api_listener_no_protocol, "protocol", id="listener-protocol"
        ),
        pytest.param("overlays/ambient", _waypoint_port_as_text, "port", id="waypoint-port-as-text"),
        pytest.param(
            "overlays/ambient", _waypoint_without_class, "gatewayClassName", id="waypoint-without-class"
        ),
    ],
)
def test_crd_validation_rejects_broken_resources(
    stage: str,
    broken: Callable[[list[Doc]], Doc],
    field: str,
    docs_of: Callable[[str], list[Doc]],
    crd_schemas: dict[tuple[str, str], dict[str, Any]],
) -> None:
    errors = schema_errors(broken(docs_of(stage)), crd_schemas)
    assert errors, "the schema accepted a broken resource"
    assert any(field in error for error in errors), errors


# --- what the manifests must say ---------------------------------------------------------------


def _pod_specs(docs: list[Doc]) -> list[tuple[Doc, dict[str, Any]]]:
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "Job")]


@pytest.mark.parametrize("relative", ["base", "netdebug"])
def test_workloads_are_hardened_the_way_istio_tolerates(
    relative: str, docs_of: Callable[[str], list[Doc]]
) -> None:
    docs = docs_of(relative)
    accounts = {name_of(d) for d in docs if d["kind"] == "ServiceAccount"}
    workloads = _pod_specs(docs)
    assert workloads
    for owner, template in workloads:
        pod = template["spec"]
        what = f"{owner['kind']} {name_of(owner)}"
        assert pod["automountServiceAccountToken"] is False, what
        assert pod["serviceAccountName"] in accounts - {"default"}, what
        assert pod["securityContext"]["runAsNonRoot"] is True, what
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, what
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            uid = ctx.get("runAsUser", pod["securityContext"].get("runAsUser"))
            assert isinstance(uid, int), f"{what}: no numeric UID"
            assert uid not in (0, 1337), f"{what}: UID {uid} is root or the sidecar's"
            assert ctx["allowPrivilegeEscalation"] is False, what
            assert ctx["capabilities"]["drop"] == ["ALL"], what
            assert ctx["readOnlyRootFilesystem"] is True, what
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, what
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), what
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), what
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{what}: /tmp is not an emptyDir"


DOWNWARD_ENV = {
    "POD_NAME": "metadata.name",
    "POD_NAMESPACE": "metadata.namespace",
    "POD_IP": "status.podIP",
    "NODE_NAME": "spec.nodeName",
    "POD_SERVICE_ACCOUNT": "spec.serviceAccountName",
    "SERVICE_VERSION": "metadata.labels['version']",
}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_echo_deployment(version: str, docs_of: Callable[[str], list[Doc]]) -> None:
    docs = docs_of("base")
    deployment = _doc(docs, "Deployment", f"echo-{version}")
    template = deployment["spec"]["template"]
    labels = {"app": "echo", "version": version}
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert template["metadata"]["labels"] == labels
    assert template["spec"]["serviceAccountName"] == f"echo-{version}"
    (container,) = template["spec"]["containers"]
    assert container["image"] == "meshecho/echo:0.1.0"
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert {name: env.get(name) for name in DOWNWARD_ENV} == DOWNWARD_ENV
    assert {(p["name"], p["containerPort"]) for p in container["ports"]} == {("http", 8080), ("https", 8443)}
    assert container["readinessProbe"]["httpGet"] == {"path": "/_echo/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/_echo/livez", "port": "http"}


def test_echo_service_ports(docs_of: Callable[[str], list[Doc]]) -> None:
    service = _doc(docs_of("base"), "Service", "echo-service")
    assert service["spec"]["selector"] == {"app": "echo"}
    assert service["spec"]["ports"] == [
        {"name": "http", "appProtocol": "http", "port": 80, "targetPort": 8080},
        {"name": "https", "appProtocol": "https", "port": 443, "targetPort": 8443},
    ]


def test_namespace_is_labelled_for_injection(docs_of: Callable[[str], list[Doc]]) -> None:
    namespace = _doc(docs_of("base"), "Namespace", "echo")
    assert namespace["metadata"]["labels"] == {"istio-injection": "enabled"}


def test_istio_routing(docs_of: Callable[[str], list[Doc]]) -> None:
    docs = docs_of("overlays/istio")
    assert {str(d["apiVersion"]) for d in docs if is_custom(d)} == {"networking.istio.io/v1"}
    gateway = _doc(docs, "Gateway", "echo-gateway")
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert gateway["spec"]["servers"] == [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["echo.local"]}
    ]
    vs = _doc(docs, "VirtualService", "echo-route")
    assert vs["spec"]["hosts"] == ["echo-service.echo.svc.cluster.local", "echo.local"]
    assert vs["spec"]["gateways"] == ["echo-gateway", "mesh"]
    (route,) = vs["spec"]["http"]
    assert route["match"] == [{"uri": {"prefix": "/echo"}}]
    assert [(r["destination"]["subset"], r["weight"]) for r in route["route"]] == [("v1", 75), ("v2", 25)]
    dr = _doc(docs, "DestinationRule", "echo-service")
    assert dr["spec"]["host"] == "echo-service.echo.svc.cluster.local"
    assert dr["spec"]["subsets"] == [
        {"name": "v1", "labels": {"version": "v1"}},
        {"name": "v2", "labels": {"version": "v2"}},
    ]


def test_first_stage_sends_everything_to_v1(docs_of: Callable[[str], list[Doc]]) -> None:
    vs = _doc(docs_of("overlays/istio-v1-only"), "VirtualService", "echo-route")
    (route,) = vs["spec"]["http"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route["route"]] == [("v1", 100)]


def test_gateway_api_routing(docs_of: Callable[[str], list[Doc]]) -> None:
    docs = docs_of("overlays/gateway-api")
    assert not any(str(d["apiVersion"]).startswith("networking.istio.io") for d in docs)
    gateway = _doc(docs, "Gateway", "echo-gateway")
    assert gateway["spec"]["gatewayClassName"] == "istio"
    assert [listener["hostname"] for listener in gateway["spec"]["listeners"]] == ["echo.local"]
    mesh = _doc(docs, "HTTPRoute", "echo-mesh")
    assert mesh["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "echo-service", "port": 80}
    ]
    # /echo only, as the Istio stage's VirtualService: other paths get the caller's sidecar's 404 there
    # too, so the netdebug plan holds on both stages.
    (split,) = mesh["spec"]["rules"]
    ingress = _doc(docs, "HTTPRoute", "echo-ingress")
    assert ingress["spec"]["hostnames"] == ["echo.local"]
    for rule in (split, ingress["spec"]["rules"][0]):
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/echo"}}]
        assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("echo-v1", 75), ("echo-v2", 25)]
    for version in ("v1", "v2"):
        service = _doc(docs, "Service", f"echo-{version}")
        assert service["spec"]["selector"] == {"app": "echo", "version": version}


def test_ambient_routing(docs_of: Callable[[str], list[Doc]]) -> None:
    docs = docs_of("overlays/ambient")
    assert not any(str(d["apiVersion"]).startswith("networking.istio.io") for d in docs)
    # Ambient, not sidecars: the base namespace's injection label is gone; every Service of the
    # namespace uses the waypoint.
    namespace = _doc(docs, "Namespace", "echo")
    assert namespace["metadata"]["labels"] == {
        "istio.io/dataplane-mode": "ambient",
        "istio.io/use-waypoint": "echo-waypoint",
    }
    # What `istioctl waypoint generate --for service --name echo-waypoint -n echo` prints.
    waypoint = _doc(docs, "Gateway", "echo-waypoint")
    assert waypoint["metadata"]["labels"] == {"istio.io/waypoint-for": "service"}
    assert waypoint["spec"] == {
        "gatewayClassName": "istio-waypoint",
        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
    }
    # The routes, the per-version Services and the ingress Gateway are the Gateway API stage's.
    gateway_api = docs_of("overlays/gateway-api")
    for kind, name in [
        ("HTTPRoute", "echo-mesh"),
        ("HTTPRoute", "echo-ingress"),
        ("Gateway", "echo-gateway"),
        ("Service", "echo-v1"),
        ("Service", "echo-v2"),
        ("Service", "echo-service"),
    ]:
        assert _doc(docs, kind, name) == _doc(gateway_api, kind, name), f"{kind} {name}"
    # Ingress skips the waypoint by design (the gateway's own route splits): no ingress-use-waypoint.
    assert not any("istio.io/ingress-use-waypoint" in d["metadata"].get("labels", {}) for d in docs)
    # Kubelet probes reach ambient pods from 169.254.7.127 (SNAT); HBONE (15008) is not port-restricted.
    policy = _doc(docs, "NetworkPolicy", "echo-ingress")
    assert {"from": [{"ipBlock": {"cidr": "169.254.7.127/32"}}]} in policy["spec"]["ingress"]
    assert not any("ports" in rule for rule in policy["spec"]["ingress"])


def test_ambient_netdebug_job(docs_of: Callable[[str], list[Doc]]) -> None:
    # The same Job (no sidecar to wait for or quit: netdebug sees no sidecar.istio.io/status), with
    # the ambient plan in its ConfigMap.
    docs, sidecar_docs = docs_of("netdebug-ambient"), docs_of("netdebug")
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    job = _doc(docs, "Job", "netdebug-plan")
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["plan"]["configMap"]["name"] == name_of(config_map)
    (sidecar_map,) = [d for d in sidecar_docs if d["kind"] == "ConfigMap"]
    sidecar_job = _doc(sidecar_docs, "Job", "netdebug-plan")
    sidecar_job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] = name_of(config_map)
    assert job == sidecar_job
    assert name_of(config_map) != name_of(sidecar_map)
    plan = yaml.safe_load(config_map["data"]["plan.yaml"])
    steps = {step["name"]: step for step in plan["steps"]}
    probes = [s["probe"] for s in steps.values() if "probe" in s]
    assert [p["url"] for p in probes] == ["${svc}/echo", "${gateway}/echo"]
    assert all(p["expect"] == {"v1": 75, "v2": 25} for p in probes)
    # No client sidecar in ambient: no step may require one.
    assert "client-sidecar" not in config_map["data"]["plan.yaml"]
    # The mesh split must come through the waypoint (a ztunnel-only answer is not routed), the
    # ingress split through the gateway.
    assert [p["require_path"] for p in probes] == [["waypoint"], ["gateway"]]
    gateway = _doc(docs_of("overlays/ambient"), "Gateway", "echo-gateway")
    service = f"{name_of(gateway)}-{gateway['spec']['gatewayClassName']}"
    assert plan["vars"]["gateway"] == f"http://{service}.echo.svc.cluster.local"


@pytest.mark.parametrize(
    ("relative", "file", "probes"),
    [
        ("netdebug", "plan.yaml", 1),  # the mesh split (the gateway's is the gateway Job's)
        ("netdebug", "gateway-plan.yaml", 1),
        ("netdebug-ambient", "plan.yaml", 2),  # no client sidecar: the gateway is probed from inside too
        ("netdebug-ambient", "gateway-plan.yaml", 1),
    ],
)
def test_shipped_plans_validate(
    relative: str, file: str, probes: int, docs_of: Callable[[str], list[Doc]]
) -> None:
    # Everything `netdebug plan` checks before it runs a step, probe options included.
    (config_map,) = [d for d in docs_of(relative) if d["kind"] == "ConfigMap"]
    plan = parse_plan(config_map["data"][file], f"k8s/{relative}/{file}")
    prepared = prepare(plan, {}, default_probe_backend)
    assert len(prepared.probe_configs) == probes


def test_netdebug_jobs(docs_of: Callable[[str], list[Doc]]) -> None:
    docs = docs_of("netdebug")
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert {"plan.yaml", "gateway-plan.yaml"} <= set(config_map["data"])
    for name, plan, meshed in (
        ("netdebug-plan", "plan.yaml", True),
        ("netdebug-gateway", "gateway-plan.yaml", False),
    ):
        job = _doc(docs, "Job", name)
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        assert spec["backoffLimit"] >= 0
        assert spec["ttlSecondsAfterFinished"] > 0
        assert spec["activeDeadlineSeconds"] > 0
        assert pod["restartPolicy"] == "Never"
        assert pod["serviceAccountName"] == "netdebug"
        (container,) = pod["containers"]
        assert container["image"] == "meshecho/netdebug:0.1.0"
        assert [*container["command"], *container["args"]] == ["netdebug", "plan", f"/etc/netdebug/{plan}"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/etc/netdebug"]]["configMap"]["name"] == name_of(config_map)
        labels = job["spec"]["template"]["metadata"]["labels"]
        # The gateway is checked from outside the mesh: a sidecar would route echo.local itself.
        assert labels.get("sidecar.istio.io/inject") == (None if meshed else "false")
        env = {e["name"]: e.get("value") for e in container["env"]}
        if not meshed:
            assert "NETDEBUG_IN_JOB" not in env  # no sidecar to quit
            continue
        # The plan quits a classic sidecar at the end only when it knows it runs in a Job.
        assert env["NETDEBUG_IN_JOB"] == "1"
        annotations_file = Path(env["NETDEBUG_POD_ANNOTATIONS_FILE"])
        downward = volumes[mounts[str(annotations_file.parent)]]["downwardAPI"]["items"]
        assert {"path": annotations_file.name, "fieldRef": {"fieldPath": "metadata.annotations"}} in downward


def _from(tmp_path: Path, relative: str) -> str:
    # kustomize accepts only relative paths to other kustomizations.
    return os.path.relpath(K8S / relative, tmp_path)


def test_native_sidecar_component(kubectl: str, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{_from(tmp_path, 'netdebug')}]\n"
        f"components: [{_from(tmp_path, 'components/native-sidecar')}]\n",
        encoding="utf-8",
    )
    docs = load_documents(render_kustomize(tmp_path, kubectl=kubectl))
    job = _doc(docs, "Job", "netdebug-plan")
    assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"


def test_gateway_api_component_points_the_plan_at_its_gateway(
    kubectl: str, tmp_path: Path, docs_of: Callable[[str], list[Doc]]
) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{_from(tmp_path, 'netdebug')}]\n"
        f"components: [{_from(tmp_path, 'components/netdebug-gateway-api')}]\n",
        encoding="utf-8",
    )
    job = _doc(load_documents(render_kustomize(tmp_path, kubectl=kubectl)), "Job", "netdebug-gateway")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The gateway plan's `gateway` variable, overridden by env; the Service is `<Gateway>-<class>`.
    (config_map,) = [d for d in docs_of("netdebug") if d["kind"] == "ConfigMap"]
    assert "gateway" in yaml.safe_load(config_map["data"]["gateway-plan.yaml"])["vars"]
    gateway = _doc(docs_of("overlays/gateway-api"), "Gateway", "echo-gateway")
    service = f"{name_of(gateway)}-{gateway['spec']['gatewayClassName']}"
    assert env["NETDEBUG_VAR_GATEWAY"] == f"http://{service}.echo.svc.cluster.local"


def test_images_can_be_pinned_by_the_images_transformer(kubectl: str, tmp_path: Path) -> None:
    digest = "sha256:" + "0" * 64
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{_from(tmp_path, 'overlays/istio')}, {_from(tmp_path, 'netdebug')}]\n"
        "images:\n"
        f"  - {{name: meshecho/echo, newName: registry.invalid/meshecho/echo, digest: '{digest}'}}\n"
        "  - {name: meshecho/netdebug, newTag: 9.9.9}\n",
        encoding="utf-8",
    )
    docs = load_documents(render_kustomize(tmp_path, kubectl=kubectl))
    images = {
        name_of(d): [c["image"] for c in d["spec"]["template"]["spec"]["containers"]]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }
    assert images == {
        "echo-v1": [f"registry.invalid/meshecho/echo@{digest}"],
        "echo-v2": [f"registry.invalid/meshecho/echo@{digest}"],
        "netdebug-plan": ["meshecho/netdebug:9.9.9"],
        "netdebug-gateway": ["meshecho/netdebug:9.9.9"],
    }
