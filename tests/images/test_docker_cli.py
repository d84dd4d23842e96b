"""`docker run` works on the built images: the docker client driven by podman's Docker-compatible API
(`podman system service`, stopped by PID), since these machines have no Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.images.conftest import BuiltImages
from tests.images.engine import Podman
from tests.procs import free_port, http_ok, running, wait_until

pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def docker(podman: Podman) -> Iterator[dict[str, str]]:
    """Environment for the docker client, pointing at a podman API service on a socket of its own."""
    client = shutil.which("docker")
    if client is None:
        pytest.skip("the docker client is not installed: nothing to prove for `docker run`")
    socket_path = podman.state / "docker.sock"
    env = dict(podman.env)
    env["DOCKER_HOST"] = f"unix://{socket_path}"

    def answers() -> bool:
        probe = subprocess.run([client, "version"], env=env, capture_output=True, timeout=20, check=False)
        return probe.returncode == 0

    with running(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        env=dict(podman.env),
        ready=lambda: socket_path.exists() and answers(),
        ready_timeout=60,
        what="podman system service",
    ):
        yield env


def docker_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_docker_run_echo(docker: dict[str, str], images: BuiltImages) -> None:
    port = free_port()
    name = f"meshecho-test-docker-echo-{os.getpid()}"
    started = docker_cli(
        docker, "run", "-d", "--name", name, "--network=host", "--read-only", "--tmpfs", "/tmp",
        "-e", f"HTTP_PORT={port}", "-e", "HTTPS_PORT=off", "-e", "ECHO_BIND=127.0.0.1",
        "-e", "SERVICE_VERSION=v-docker", "-e", "ECHO_DRAIN_SECONDS=1", images.echo,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/_echo/readyz"), 60, "echo via docker run")
        response = httpx.get(f"http://127.0.0.1:{port}/via/docker", timeout=10)
        assert response.status_code == 200
        assert response.headers["x-echo-version"] == "v-docker"
        assert response.json()["path"] == "/via/docker"
        began = time.monotonic()
        stopped = docker_cli(docker, "stop", "--time", "30", name)
        assert stopped.returncode == 0, stopped.stderr
        assert time.monotonic() - began < 11
        code = docker_cli(docker, "inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0"
    finally:
        docker_cli(docker, "rm", "--force", name)


def test_docker_run_netdebug(docker: dict[str, str], images: BuiltImages) -> None:
    proc = docker_cli(docker, "run", "--rm", "--network=host", images.netdebug, "netdebug", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"netdebug {images.version}"
