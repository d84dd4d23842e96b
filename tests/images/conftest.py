"""Session fixtures for the image tests: one podman state folder, a local Python base, both images.

Environment knobs (all optional):
  MESHECHO_IMAGES_STATE        keep podman's state (base image, layer cache) in this folder across
                               runs, e.g. .work/images; default: a fresh temporary folder, removed at
                               the end (CI starts clean)
  MESHECHO_TEST_PYTHON_IMAGE   use this base instead of building one with debootstrap
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.images.engine import IMAGES_DIR, Podman, engine_absent_reason, project_version
from tests.procs import REPO

LOCAL_BASE = "localhost/meshecho-pybase:bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass
class ImageReport:
    """Figures printed at the end of the run (sizes, build times)."""

    lines: list[str] = field(default_factory=list)


REPORT = ImageReport()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT.lines:
        terminalreporter.section("meshecho images")
        for line in REPORT.lines:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class BuiltImages:
    base: str
    echo: str
    netdebug: str
    version: str


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    reason = engine_absent_reason()
    if reason is not None:
        pytest.skip(f"image tests skipped: {reason}")
    kept = os.environ.get("MESHECHO_IMAGES_STATE", "").strip()
    state = Path(kept) if kept else Path(tempfile.mkdtemp(prefix="meshecho-podman-"))
    engine = Podman.in_folder(state)
    try:
        engine.run("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
        yield engine
    finally:
        if not kept:
            engine.destroy()


@pytest.fixture(scope="session")
def base_image(podman: Podman) -> str:
    chosen = os.environ.get("MESHECHO_TEST_PYTHON_IMAGE", "").strip()
    if chosen:
        return chosen
    if podman.image_exists(LOCAL_BASE):
        REPORT.lines.append(f"base {LOCAL_BASE}: reused from {podman.state}")
        return LOCAL_BASE
    if shutil.which("debootstrap") is None:
        pytest.skip("image tests skipped: debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("image tests skipped: debootstrap needs root (or set MESHECHO_TEST_PYTHON_IMAGE)")
    started = time.monotonic()
    _script(podman, ["bash", str(IMAGES_DIR / "localbase.sh"), LOCAL_BASE], {}, timeout=600)
    REPORT.lines.append(f"base {LOCAL_BASE}: debootstrap + import in {time.monotonic() - started:.0f}s")
    return LOCAL_BASE


@pytest.fixture(scope="session")
def images(podman: Podman, base_image: str) -> BuiltImages:
    """Both images built by `images/build.sh` (what `make images` runs), on the chosen base."""
    env = {"ENGINE": "podman", "PYTHON_IMAGE": base_image}
    if HOST_CA_BUNDLE.is_file():
        # Outbound TLS here may be re-signed by a local CA: pip gets it through a build-only mount.
        env["BUILD_CA_BUNDLE"] = str(HOST_CA_BUNDLE)
    started = time.monotonic()
    _script(podman, ["bash", str(IMAGES_DIR / "build.sh")], env, timeout=1200)
    REPORT.lines.append(f"images built by images/build.sh in {time.monotonic() - started:.0f}s")
    version = project_version()
    return BuiltImages(
        base=base_image,
        echo=f"meshecho/echo:{version}",
        netdebug=f"meshecho/netdebug:{version}",
        version=version,
    )


def _script(podman: Podman, cmd: list[str], extra_env: dict[str, str], timeout: float) -> None:
    env = dict(podman.env)
    env.update(extra_env)
    env["MESHECHO_PODMAN_STATE"] = str(podman.state)
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.run(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO, check=False
            )
            failed = f"exited {proc.returncode}" if proc.returncode != 0 else ""
        except subprocess.TimeoutExpired:
            failed = f"timed out after {timeout:.0f}s"
        if failed:
            log.seek(0)
            tail = log.read()[-6000:].decode("utf-8", "replace")
            pytest.fail(f"{' '.join(cmd)} {failed}:\n{tail}", pytrace=False)
