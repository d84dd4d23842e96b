"""The echo Deployment of k8s/, rendered by kustomize, run by a real container runtime: `podman kube
play` with the built image. It shows that the pod spec works as written — the securityContext
(non-root UID 10001, read-only root with a writable /tmp, no capabilities, no privilege escalation,
the runtime's seccomp profile), the resource limits, the HTTP probes' paths and named port, and the
Downward API environment the echo reports.

Two kinds of change are made to the rendered Deployment, and both are listed in the test report:
- for this machine: host network (no bridge network here), free loopback ports instead of 8080/8443,
  and ECHO_BIND=127.0.0.1 (traffic stays on loopback);
- what podman cannot represent, found by playing the manifest and reading podman's refusal: each
  refused field is replaced by what the kubelet would have produced (a fieldRef by its value, a
  downwardAPI volume by a folder holding the same file), and named in the report. A refusal this
  test does not know fails it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from netdebug.k8s.inventory import downward_labels_file
from netdebug.k8s.load import load_documents, render_kustomize
from tests.images.conftest import REPORT, BuiltImages
from tests.images.engine import Podman
from tests.procs import REPO, free_port, http_ok, wait_until

pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]

UID = 10001
HOSTNAME = socket.gethostname()
MAX_ATTEMPTS = 10

Manifest = dict[str, Any]


def _container(deployment: Manifest) -> Manifest:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _env(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container["env"]}


def for_this_machine(deployment: Manifest, http_port: int, https_port: int) -> list[str]:
    """Host network, free loopback ports, loopback bind. Returns what changed, for the report."""
    spec = deployment["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    container = _container(deployment)
    env = _env(container)
    env["HTTP_PORT"]["value"] = str(http_port)
    env["HTTPS_PORT"]["value"] = str(https_port)
    container["env"].append({"name": "ECHO_BIND", "value": "127.0.0.1"})
    ports = {"http": http_port, "https": https_port}
    for port in container["ports"]:
        port["containerPort"] = ports[port["name"]]
    return [
        "hostNetwork: true (no bridge network on this machine)",
        f"HTTP_PORT/HTTPS_PORT and the container ports 8080/8443 -> free ports {http_port}/{https_port}",
        "ECHO_BIND=127.0.0.1 (loopback only)",
    ]


def _field_value(deployment: Manifest, field_path: str) -> str:
    """What the kubelet gives a fieldRef, for the fields podman refuses."""
    spec = deployment["spec"]["template"]["spec"]
    values = {
        "metadata.namespace": str(deployment["metadata"]["namespace"]),
        "status.podIP": "127.0.0.1",  # host network: the pod's IP is the host's
        "spec.nodeName": HOSTNAME,
        "spec.serviceAccountName": str(spec["serviceAccountName"]),
    }
    if field_path not in values:
        raise AssertionError(f"podman refused fieldRef {field_path}, which this test cannot stand in for")
    return values[field_path]


def stand_in(deployment: Manifest, error: str, podinfo: Path) -> str | None:
    """Replace what podman refused by what the kubelet would have produced; the report line, or None
    when the refusal is not one this test knows."""
    spec = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    refused_env = re.search(r"can not set env (\w+)\. Reason: fieldPath (\S+) is either not valid", error)
    if refused_env:
        name, field_path = refused_env.groups()
        entry = _env(container)[name]
        entry.pop("valueFrom")
        entry["value"] = _field_value(deployment, field_path)
        return f"env {name}: fieldRef {field_path} (given its value, {entry['value']!r})"
    refused_volume = re.search(r'failed to create volume "([^"]+)": HostPath, ConfigMap, EmptyDir', error)
    if refused_volume:
        volume = next(v for v in spec["volumes"] if v["name"] == refused_volume.group(1))
        kinds = [k for k in volume if k != "name"]
        items = volume.get("downwardAPI", {}).get("items", [])
        metadata = deployment["spec"]["template"]["metadata"]
        # The kubelet writes labels and annotations in one format (key="value" a line).
        sources = {"metadata.labels": "labels", "metadata.annotations": "annotations"}
        for item in items:
            source = sources.get(item["fieldRef"]["fieldPath"])
            if source is None:
                raise AssertionError(f"no stand-in for downwardAPI item {item}")
            content = downward_labels_file(metadata.get(source) or {})
            (podinfo / item["path"]).write_text(content, encoding="utf-8")
        for kind in kinds:
            volume.pop(kind)
        volume["hostPath"] = {"path": str(podinfo), "type": "Directory"}
        return f"volume {volume['name']}: {'/'.join(kinds)} (a folder with the file the kubelet writes)"
    if "PortMappings can only be used with Bridge or slirp4netns networking" in error:
        container.pop("ports")
        return "container ports with hostNetwork (dropped; the probes' named port resolved by this test)"
    return None


@pytest.fixture
def rendered_deployment(kubectl: str) -> Manifest:
    docs = load_documents(render_kustomize(REPO / "k8s" / "overlays" / "istio", kubectl=kubectl))
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "echo-v1")


@contextlib.contextmanager
def played(podman: Podman, deployment: Manifest, folder: Path) -> Iterator[tuple[str, list[str]]]:
    """`podman kube play` until podman accepts the manifest; yields (pod name, what was stood in)."""
    podinfo = folder / "podinfo"
    podinfo.mkdir()
    manifest = folder / "deployment.yaml"
    stood_in: list[str] = []
    pod = f"{deployment['metadata']['name']}-pod"
    try:
        for _ in range(MAX_ATTEMPTS):
            manifest.write_text(yaml.safe_dump(deployment), encoding="utf-8")
            done = podman.run("kube", "play", str(manifest), check=False, timeout=180)
            if done.returncode == 0:
                break
            podman.run("kube", "down", str(manifest), check=False, timeout=60)
            line = stand_in(deployment, done.stderr, podinfo)
            if line is None:
                raise AssertionError(f"podman kube play refused the Deployment:\n{done.stderr[-2000:]}")
            stood_in.append(line)
        else:
            raise AssertionError(f"podman still refused the Deployment after {MAX_ATTEMPTS} stand-ins")
        pods = podman.run("pod", "ps", "--format", "{{.Name}}").stdout.split()
        pod = next(name for name in pods if name.startswith(pod))
        yield pod, stood_in
    finally:
        podman.run("kube", "down", str(manifest), check=False, timeout=120)
        podman.run("volume", "rm", "--force", "tmp", check=False, timeout=60)  # the emptyDir


def _inspect(podman: Podman, container: str) -> dict[str, Any]:
    (doc,) = json.loads(podman.run("inspect", container).stdout)
    return doc  # type: ignore[no-any-return]


def _exec(podman: Podman, container: str, *cmd: str) -> tuple[int, str]:
    done = podman.run("exec", container, *cmd, check=False, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_rendered_deployment_runs_as_written_on_podman(
    podman: Podman, images: BuiltImages, rendered_deployment: Manifest, tmp_path: Path
) -> None:
    if shutil.which("catatonit") is None and not Path("/usr/libexec/podman/catatonit").exists():
        pytest.skip("podman kube play needs catatonit for its infra container (apt-get install catatonit)")
    deployment = rendered_deployment
    original = _container(deployment)
    assert original["image"] == images.echo  # the image the manifests name is the one just built
    probes = {kind: original[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    named_ports = {p["name"]: p["containerPort"] for p in original["ports"]}
    http_port, https_port = free_port(), free_port()
    machine = for_this_machine(deployment, http_port, https_port)
    local_ports = {"http": http_port, "https": https_port}

    def probe_url(kind: str) -> str:
        port = probes[kind]["port"]
        assert port in named_ports  # a named port of the container, as written
        return f"http://127.0.0.1:{local_ports[port]}{probes[kind]['path']}"

    with played(podman, deployment, tmp_path) as (pod, stood_in):
        container = f"{pod}-{original['name']}"

        def ready() -> bool:
            return http_ok(probe_url("readinessProbe"))

        try:
            wait_until(ready, 90, "the readiness probe's URL")
        except TimeoutError as error:
            raise AssertionError(f"{error}; container log:\n{podman.logs(container)}") from None
        REPORT.lines.append("kube play of k8s/overlays/istio echo-v1, changed for this machine:")
        REPORT.lines.extend(f"  {line}" for line in machine)
        REPORT.lines.append("  podman cannot represent (stood in for):")
        REPORT.lines.extend(f"    {line}" for line in stood_in or ["nothing"])

        # The httpGet probes, as the kubelet would send them: their paths on the named port answer 200.
        for kind in probes:
            assert httpx.get(probe_url(kind), timeout=5).status_code == 200, kind

        # securityContext
        doc = _inspect(podman, container)
        assert doc["Config"]["User"] == f"{UID}:{UID}"
        assert doc["HostConfig"]["ReadonlyRootfs"] is True
        assert _exec(podman, container, "id", "-u") == (0, f"{UID}\n")
        code, out = _exec(podman, container, "touch", "/written-to-root")
        assert code != 0
        assert "Read-only file system" in out
        assert _exec(podman, container, "touch", "/tmp/written")[0] == 0  # the emptyDir
        status = _exec(podman, container, "cat", "/proc/1/status")[1]
        assert re.search(r"^CapEff:\s+0+$", status, re.M), status  # capabilities: drop ALL
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)  # allowPrivilegeEscalation: false
        assert re.search(r"^Seccomp:\s+2$", status, re.M)  # seccompProfile RuntimeDefault: a filter
        # resources.limits
        assert doc["HostConfig"]["Memory"] == 256 * 1024 * 1024
        assert doc["HostConfig"]["NanoCpus"] == 500_000_000

        # The Downward API environment, as the echo reports it.
        echo = httpx.get(f"http://127.0.0.1:{http_port}/echo", timeout=5).json()
        assert echo["pod"]["name"] == pod  # fieldRef metadata.name
        assert echo["pod"]["version"] == "v1"  # fieldRef metadata.labels['version']
        assert echo["pod"]["labels"] == {"app": "echo", "version": "v1"}  # the labels file
        assert echo["pod"]["namespace"] == "echo"
        assert echo["pod"]["service_account"] == "echo-v1"
        assert echo["pod"]["ip"] == "127.0.0.1"
        assert echo["pod"]["node"] == HOSTNAME
        assert echo["os"]["hostname"]

        # The probes as podman keeps them (checked above as the kubelet sends them): the liveness probe
        # becomes a healthcheck command run inside the container; the readiness probe has no
        # counterpart (nothing gates traffic on it here).
        healthcheck = doc["Config"].get("Healthcheck") or {}
        verdict = podman.run("healthcheck", "run", container, check=False, timeout=60)
        outcome = (verdict.stdout + verdict.stderr).strip().splitlines()[-1:] or [str(verdict.returncode)]
        REPORT.lines.append(
            f"    livenessProbe: a podman healthcheck {healthcheck.get('Test')} -> {outcome[0]!r}"
        )
        REPORT.lines.append("    readinessProbe: no podman counterpart")
