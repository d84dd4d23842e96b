"""The cluster walk-throughs, replayed offline: k8s/README.md's tutorial and the repository README's
"In a cluster", command by command, in order, against a model of a fresh cluster with Istio's demo
profile (and, for the ambient stage, Istio reinstalled with the ambient profile).

What the model checks at each command is what a real cluster would refuse: an object applied into a
namespace that does not exist yet, a kind whose API (Istio, Gateway API) is not installed yet, a pod
run as a ServiceAccount that does not exist yet, a delete/wait/logs/port-forward naming an object that
does not exist (or a Service port it does not have), two port-forwards on one local port. The
manifests are rendered for real (`kubectl kustomize`), kustomizations written by the steps included.

The commands are read from the READMEs, so this test breaks when a step does. A command it does not
know is a failure too: teach the model what the new command needs, rather than letting it pass.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netdebug.k8s.documents import Doc
from netdebug.k8s.load import load_documents, render_kustomize
from tests.procs import REPO

CORE_GROUPS = {"", "apps", "batch", "networking.k8s.io", "policy", "rbac.authorization.k8s.io"}
ISTIO_GROUPS = {"networking.istio.io", "security.istio.io", "telemetry.istio.io"}
GATEWAY_API_GROUPS = {"gateway.networking.k8s.io"}
# Resource names as kubectl takes them -> (API group, kind).
RESOURCES = {
    "virtualservice": ("networking.istio.io", "VirtualService"),
    "destinationrule": ("networking.istio.io", "DestinationRule"),
    "gateways.networking.istio.io": ("networking.istio.io", "Gateway"),
    "gateways.gateway.networking.k8s.io": ("gateway.networking.k8s.io", "Gateway"),
    "job": ("batch", "Job"),
    "deploy": ("apps", "Deployment"),
    "deployment": ("apps", "Deployment"),
    "svc": ("", "Service"),
    "service": ("", "Service"),
    "serviceaccount": ("", "ServiceAccount"),
    "pods": ("", "Pod"),
}
# Commands that act outside the cluster's API (clients, image tools, a browser).
CLIENT_TOOLS = {
    "curl",
    "http",
    "jq",
    "grep",
    "head",
    "loadtest",
    "netdebug",
    "docker",
    "podman",
    "kind",
    "k3d",
    "minikube",
    "make",
}

Key = tuple[str, str, str, str]  # (group, kind, namespace, name)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


@dataclass
class Cluster:
    """A fresh Kubernetes cluster, as far as the walk-through's commands can tell."""

    root: Path  # a copy of the repository's k8s/, where relative paths and written files live
    render: Callable[[Path], str]
    groups: set[str] = field(default_factory=lambda: set(CORE_GROUPS))
    # A fresh cluster has these namespaces.
    objects: dict[Key, Doc] = field(
        default_factory=lambda: {
            ("", "Namespace", "", ns): {"kind": "Namespace"} for ns in ("default", "kube-system")
        }
    )
    forwards: dict[int, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def has(self, group: str, kind: str, namespace: str, name: str) -> bool:
        return (group, kind, namespace, name) in self.objects

    def add(self, doc: Doc, where: str) -> None:
        group, kind = _group(str(doc["apiVersion"])), str(doc["kind"])
        meta = doc.get("metadata") or {}
        namespace = "" if kind == "Namespace" else str(meta.get("namespace") or "default")
        assert group in self.groups, f"{where}: {kind} needs the {group} API, not installed at this step"
        if namespace:
            assert self.has("", "Namespace", "", namespace), f"{where}: namespace {namespace} does not exist"
        self.objects[(group, kind, namespace, str(meta["name"]))] = doc
        # istiod deploys a gateway (Deployment + Service `<name>-istio`) for a Gateway of class istio.
        if group in GATEWAY_API_GROUPS and kind == "Gateway" and "networking.istio.io" in self.groups:
            ports = [{"port": listener["port"]} for listener in doc["spec"]["listeners"]]
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"{meta['name']}-istio", "namespace": namespace},
                "spec": {"ports": ports},
            }
            self.objects[("", "Service", namespace, f"{meta['name']}-istio")] = service

    def apply(self, docs: list[Doc], where: str) -> None:
        # kubectl applies what it is given in order; kustomize puts Namespaces first.
        for doc in sorted(docs, key=lambda d: d["kind"] != "Namespace"):
            self.add(doc, where)

    def install_istio_demo(self) -> None:
        self.groups |= ISTIO_GROUPS
        self.objects[("", "Namespace", "", "istio-system")] = {"kind": "Namespace"}
        self.objects[("", "Service", "istio-system", "istio-ingressgateway")] = {
            "kind": "Service",
            "spec": {"ports": [{"port": p} for p in (15021, 80, 443, 31400, 15443)]},
        }
        self.objects[("apps", "Deployment", "istio-system", "istio-ingressgateway")] = {"kind": "Deployment"}

    def install_istio_ambient(self) -> None:
        # The ambient profile (istiod, istio-cni, ztunnel) has no ingress gateway: installing it over
        # the demo profile removes the demo's.
        self.groups |= ISTIO_GROUPS
        self.objects[("", "Namespace", "", "istio-system")] = {"kind": "Namespace"}
        self.objects.pop(("", "Service", "istio-system", "istio-ingressgateway"), None)
        self.objects.pop(("apps", "Deployment", "istio-system", "istio-ingressgateway"), None)


def _commands(markdown: str, heading: str) -> Iterator[tuple[str, str]]:
    """(step heading, command) for every shell command of the fenced blocks under `heading`, with
    continuation lines joined and heredocs kept whole (the command line, then the body)."""
    section = markdown.split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    step = heading
    for block in re.finditer(r"^(### [^\n]*)$|^```(?:bash|sh)\n(.*?)^```$", section, re.M | re.S):
        if block.group(1):
            step = block.group(1)
            continue
        lines = block.group(2).splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            heredoc = re.search(r"<<'?(\w+)'?", line)
            if heredoc:
                body = []
                i += 1
                while lines[i] != heredoc.group(1):
                    body.append(lines[i])
                    i += 1
                line = line + "\n" + "\n".join(body)
            i += 1
            if line.strip() and not line.lstrip().startswith("#"):
                yield step, line


def _pipeline(command: str) -> list[list[str]]:
    """The simple commands of a command line (comments dropped, split at && || ; & and |): shell
    words, each list one command."""
    lexer = shlex.shlex(command.split("\n", 1)[0], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "&", "|"):
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in parts if part]


def _option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def replay(cluster: Cluster, step: str, command: str) -> None:
    where = f"{step}: `{command.splitlines()[0]}`"
    cluster.log.append(where)
    for words in _pipeline(command):
        _replay_one(cluster, where, words, command)


def _replay_one(cluster: Cluster, where: str, words: list[str], whole: str) -> None:
    tool = words[0]
    if "=" in tool and tool.split("=", 1)[0].isidentifier():
        return  # a shell variable (GATEWAY=…)
    if tool == "istioctl":
        if words[1] == "install":
            profiles = {
                "profile=demo": cluster.install_istio_demo,
                "profile=ambient": cluster.install_istio_ambient,
            }
            profile = next((w for w in words if w in profiles), None)
            assert "--set" in words, f"{where}: the walk-through sets the profile"
            assert profile, f"{where}: the walk-through installs the demo or ambient profile"
            profiles[profile]()
        else:
            assert "networking.istio.io" in cluster.groups, f"{where}: Istio is not installed yet"
        return
    if tool == "mkdir":
        (cluster.root / words[-1]).mkdir(parents=True, exist_ok=True)
        return
    if tool == "cat" and ">" in words:
        target = cluster.root / words[words.index(">") + 1]
        target.write_text(whole.split("\n", 1)[1] + "\n", encoding="utf-8")
        return
    if tool in ("for", "do", "done") or tool in CLIENT_TOOLS:
        return  # image tagging loops, clients of the cluster, not its API
    assert tool == "kubectl", f"{where}: a command this model does not know ({tool}); teach it"
    _kubectl(cluster, where, words[1:])


def _kubectl(cluster: Cluster, where: str, args: list[str]) -> None:
    namespace = _option(args, "-n", "--namespace") or "default"
    rest = [
        a
        for i, a in enumerate(args)
        if a not in ("-n", "--namespace") and (i == 0 or args[i - 1] not in ("-n", "--namespace"))
    ]
    verb = rest[0]
    if verb in ("get", "rollout", "logs", "wait", "port-forward", "delete", "run"):
        assert cluster.has("", "Namespace", "", namespace), f"{where}: namespace {namespace} does not exist"
    if verb == "apply":
        kustomization = _option(rest, "-k")
        if kustomization is not None:
            path = cluster.root / kustomization
            docs = load_documents(cluster.render(path), kustomization)
            cluster.apply(docs, where)
            return
        file = _option(rest, "-f") or ""
        if "gateway-api" in file and file.endswith("standard-install.yaml"):
            cluster.groups |= GATEWAY_API_GROUPS
            return
        if file.startswith("istio-"):
            assert "networking.istio.io" in cluster.groups, f"{where}: the add-ons need Istio installed"
            return
        cluster.apply(load_documents((cluster.root / file).read_text(encoding="utf-8"), file), where)
        return
    if verb == "kustomize":
        load_documents(cluster.render(cluster.root / rest[1]), rest[1])
        return
    if verb == "get":
        if rest[1] == "crd":
            return  # asks whether a CRD is there; the `||` branch installs it
        return
    if verb == "rollout":
        return
    if verb == "run":
        overrides = json.loads(_option(rest, "--overrides") or "{}")
        account = overrides.get("spec", {}).get("serviceAccountName")
        if account:
            assert cluster.has("", "ServiceAccount", namespace, account), (
                f"{where}: ServiceAccount {namespace}/{account} does not exist yet"
            )
        return
    if verb == "delete":
        resource, names = rest[1], [n for n in rest[2:] if not n.startswith("-")]
        if "--all" in rest:  # every object of these kinds in the namespace (none is fine)
            for group, kind in (RESOURCES[r] for r in resource.split(",")):
                for key in [k for k in cluster.objects if k[:3] == (group, kind, namespace)]:
                    del cluster.objects[key]
            return
        group, kind = RESOURCES[resource]
        for name in names:
            key = (group, kind, namespace, name)
            if key not in cluster.objects:
                assert "--ignore-not-found" in rest, f"{where}: {kind} {namespace}/{name} does not exist"
            cluster.objects.pop(key, None)
        return
    if verb in ("wait", "logs"):
        values = {i + 1 for i, a in enumerate(rest) if a in ("-c", "--container")}  # option values
        targets = [a for i, a in enumerate(rest) if i > 0 and i not in values and not a.startswith("-")]
        if "--all" in rest:
            group, kind = RESOURCES[targets[0]]
            assert any(k[:3] == (group, kind, namespace) for k in cluster.objects), f"{where}: no {kind}"
            return
        for target in targets:
            resource, _, name = target.partition("/")
            group, kind = RESOURCES[resource]
            assert cluster.has(group, kind, namespace, name), (
                f"{where}: {kind} {namespace}/{name} does not exist"
            )
        return
    if verb == "port-forward":
        resource, _, name = rest[1].partition("/")
        local, _, remote = rest[2].partition(":")
        group, kind = RESOURCES[resource]
        service = cluster.objects.get((group, kind, namespace, name))
        assert service is not None, f"{where}: {kind} {namespace}/{name} does not exist"
        ports = {int(p["port"]) for p in service["spec"]["ports"]}
        assert int(remote) in ports, f"{where}: {name} has no port {remote} ({sorted(ports)})"
        assert int(local) not in cluster.forwards, (
            f"{where}: local port {local} is still held by `{cluster.forwards[int(local)]}`"
        )
        cluster.forwards[int(local)] = where
        return
    raise AssertionError(f"{where}: kubectl {verb} is not in this model; teach it")


@pytest.fixture
def cluster(tmp_path: Path, kubectl: str) -> Cluster:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "k8s", root / "k8s")
    return Cluster(root, lambda path: render_kustomize(path, kubectl=kubectl))


WALKTHROUGHS = [
    pytest.param(REPO / "k8s" / "README.md", "## The tutorial, for today's Istio", id="k8s-readme"),
    pytest.param(REPO / "README.md", "## In a cluster", id="readme"),
]


@pytest.mark.parametrize(("readme", "heading"), WALKTHROUGHS)
def test_every_step_works_in_order_on_a_fresh_cluster(cluster: Cluster, readme: Path, heading: str) -> None:
    commands = list(_commands(readme.read_text(encoding="utf-8"), heading))
    assert commands, f"no commands under {heading} in {readme}"
    for step, command in commands:
        replay(cluster, step, command)
    assert cluster.has("batch", "Job", "echo", "netdebug-plan")


def test_the_model_catches_what_the_issue_found(cluster: Cluster) -> None:
    """The step-5 ordering bug: a debug pod run as `netdebug` before `k8s/netdebug` was applied."""
    cluster.install_istio_demo()
    replay(cluster, "step 3", "kubectl apply -k k8s/overlays/istio-v1-only")
    overrides = json.dumps({"spec": {"serviceAccountName": "netdebug"}})
    run = f"kubectl run debug -n echo -it --rm --restart=Never --image=x --overrides='{overrides}'"
    with pytest.raises(AssertionError, match="ServiceAccount echo/netdebug does not exist yet"):
        replay(cluster, "step 5", run)
    replay(cluster, "step 5", "kubectl apply -f k8s/netdebug/serviceaccount.yaml")
    replay(cluster, "step 5", run)


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        pytest.param(["kubectl apply -k k8s/netdebug"], "namespace echo does not exist", id="no-namespace"),
        pytest.param(
            ["kubectl apply -k k8s/overlays/istio"], "needs the networking.istio.io API", id="no-istio"
        ),
        pytest.param(
            ["istioctl install --set profile=demo -y", "kubectl apply -k k8s/overlays/gateway-api"],
            "needs the gateway.networking.k8s.io API",
            id="no-gateway-api-crds",
        ),
        pytest.param(
            [
                "istioctl install --set profile=demo -y",
                "kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80 &",
                "kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80 &",
            ],
            "local port 8080 is still held",
            id="port-forward-twice",
        ),
        pytest.param(
            [
                "istioctl install --set profile=demo -y",
                "kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:81",
            ],
            "has no port 81",
            id="no-such-port",
        ),
        pytest.param(["kubectl -n echo delete job x"], "namespace echo does not exist", id="delete-missing"),
        pytest.param(["frobnicate --now"], "does not know", id="unknown-command"),
    ],
)
def test_the_model_refuses_what_a_cluster_refuses(
    cluster: Cluster, commands: list[str], message: str
) -> None:
    *setup, last = commands
    for command in setup:
        replay(cluster, "test", command)
    with pytest.raises(AssertionError, match=message):
        replay(cluster, "test", last)


def test_registry_kustomization_of_step_2_renames_every_image(cluster: Cluster) -> None:
    """The images section's kustomization, as written in the README, renames both images."""
    readme = (REPO / "k8s" / "README.md").read_text(encoding="utf-8")
    commands = [
        c for s, c in _commands(readme, "## The tutorial, for today's Istio") if s.startswith("### 2.")
    ]
    for command in commands:
        if command.startswith(("mkdir", "cat")):
            replay(cluster, "step 2", command)
    (written,) = [c for c in commands if c.startswith("cat >")]
    directory = str(Path(_pipeline(written)[0][2]).parent)
    docs = load_documents(cluster.render(cluster.root / directory), directory)
    containers = [
        c
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert {c["image"] for c in containers} == {
        "registry.example.com/team/meshecho-echo:0.1.0",
        "registry.example.com/team/meshecho-netdebug:0.1.0",
    }
