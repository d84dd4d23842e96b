"""The echo image, built and run for real: read-only root, non-root numeric user, host network only."""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.images.conftest import BuiltImages
from tests.images.engine import Podman
from tests.images.structure import assert_structure
from tests.procs import free_port, http_ok, wait_until

# The first test also pays for the session's debootstrap base and both builds (minutes on 2 cores).
pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]

NON_ROOT_UID = 10001
SERVICE_VERSION = "v-image"
POD_NAME = "pod-image"
CLIENT_NAME = "client.meshecho.test"


@dataclass(frozen=True)
class EchoContainer:
    name: str
    http_port: int
    https_port: int


@contextlib.contextmanager
def start_echo(podman: Podman, image: str, name: str, *env: str) -> Iterator[EchoContainer]:
    """Run the image as built (its own user), read-only with a tmpfs /tmp, on free loopback ports."""
    http_port, https_port = free_port(), free_port()
    env_args: list[str] = []
    for item in (f"HTTP_PORT={http_port}", f"HTTPS_PORT={https_port}", "ECHO_BIND=127.0.0.1", *env):
        env_args += ["-e", item]
    with podman.container(name, "--read-only", "--tmpfs", "/tmp", "--network=host", *env_args, image):
        try:
            wait_until(lambda: http_ok(f"http://127.0.0.1:{http_port}/_echo/readyz"), 60, f"{name} readiness")
        except TimeoutError as e:
            raise AssertionError(f"{e}; container log:\n{podman.logs(name)}") from None
        yield EchoContainer(name, http_port, https_port)


@pytest.fixture(scope="module")
def echo(podman: Podman, images: BuiltImages) -> Iterator[EchoContainer]:
    with start_echo(
        podman,
        images.echo,
        f"meshecho-test-echo-{os.getpid()}",
        f"SERVICE_VERSION={SERVICE_VERSION}",
        f"POD_NAME={POD_NAME}",
        "MTLS_ENABLE=true",
    ) as container:
        yield container


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A client certificate from a throwaway CA, and its sha256 fingerprint."""
    folder = tmp_path_factory.mktemp("client")
    leaf = trustme.CA().issue_cert(CLIENT_NAME)
    pem = folder / "client.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return pem, cert.fingerprint(hashes.SHA256()).hex()


def test_structure(podman: Podman, images: BuiltImages, tmp_path: Path) -> None:
    assert_structure(podman, images.echo, "echo", images.version, tmp_path)


def test_runs_read_only_as_non_root_numeric_user(podman: Podman, echo: EchoContainer) -> None:
    fmt = "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Pid}}"
    user, read_only, pid = podman.run("inspect", "--format", fmt, echo.name).stdout.split()
    assert user == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    assert read_only == "true"
    # The process itself, seen from the host: real, effective, saved and filesystem uid.
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(NON_ROOT_UID)] * 4, f"echo-server runs with uids {uids}"


@pytest.mark.parametrize(
    ("scheme", "expected_protocol"),
    [pytest.param("http", "http", id="http"), pytest.param("https", "https", id="https")],
)
def test_answers_with_the_echo_document(echo: EchoContainer, scheme: str, expected_protocol: str) -> None:
    port = echo.http_port if scheme == "http" else echo.https_port
    # The self-signed certificate is generated at start inside the container: nothing to verify against.
    response = httpx.get(
        f"{scheme}://127.0.0.1:{port}/from/image?probe=1",
        headers={"x-image-test": "yes"},
        verify=False,
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-echo-version"] == SERVICE_VERSION
    assert response.headers["x-echo-pod"] == POD_NAME
    doc: dict[str, Any] = response.json()
    assert doc["path"] == "/from/image"
    assert doc["query"] == {"probe": "1"}
    assert doc["headers"]["x-image-test"] == "yes"
    assert doc["protocol"] == expected_protocol
    assert doc["pod"]["name"] == POD_NAME
    assert doc["pod"]["version"] == SERVICE_VERSION
    if scheme == "https":
        assert str(doc["tls"]["version"]).startswith("TLSv1.")
        assert doc["tls"]["client_certificate"] is None


def test_mtls_reports_the_client_certificate(echo: EchoContainer, client_cert: tuple[Path, str]) -> None:
    pem, sha256 = client_cert
    # The server's certificate is self-signed at start: present ours, do not verify theirs.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(pem))
    response = httpx.get(f"https://127.0.0.1:{echo.https_port}/mtls", verify=context, timeout=10)
    assert response.status_code == 200
    reported = response.json()["tls"]["client_certificate"]
    assert reported is not None, "MTLS_ENABLE=true but no client certificate reported"
    assert reported["sha256"] == sha256
    assert f"DNS:{CLIENT_NAME}" in reported["sans"]
    assert response.json()["clientCertificate"]["fingerprint256"].replace(":", "").lower() == sha256


def test_healthcheck_passes(podman: Podman, echo: EchoContainer) -> None:
    proc = podman.run("healthcheck", "run", echo.name, check=False, timeout=60)
    assert proc.returncode == 0, f"healthcheck: {proc.stdout} {proc.stderr}"


def test_sigterm_drains_then_exits_zero(podman: Podman, images: BuiltImages) -> None:
    drain = 1.0
    name = f"meshecho-test-echo-stop-{os.getpid()}"
    with start_echo(podman, images.echo, name, f"ECHO_DRAIN_SECONDS={drain:g}") as container:
        started = time.monotonic()
        # A generous stop timeout: if SIGTERM were ignored, podman's SIGKILL would show as exit 137.
        podman.run("stop", "--time", "30", container.name, timeout=60)
        elapsed = time.monotonic() - started
        exit_code = podman.run("inspect", "--format", "{{.State.ExitCode}}", container.name).stdout.strip()
        assert exit_code == "0", f"exit {exit_code} after SIGTERM; log:\n{podman.logs(container.name)}"
        assert elapsed < drain + 10, f"stop took {elapsed:.1f}s with a {drain:g}s drain"
