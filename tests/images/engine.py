"""podman driven with all of its state in one folder, for the image tests.

Every command has a timeout; containers are started under names chosen here and removed by name.
The folder's configuration comes from the templates in images/podman/ (the settings that make podman
work on machines without systemd, with hybrid cgroups and no CAP_SYS_RESOURCE).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.procs import REPO

IMAGES_DIR = REPO / "images"


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def engine_absent_reason() -> str | None:
    """Why the image tests cannot run here, or None when podman is usable."""
    if shutil.which("podman") is None:
        docker = shutil.which("docker")
        if docker is not None and _answers([docker, "info"]):
            return (
                "the image tests drive podman (isolated state folder, debootstrap base); this machine "
                "has only a docker engine: build with `make images` instead"
            )
        return "neither podman nor a working docker engine is installed (apt-get install podman)"
    return None


def _answers(cmd: Sequence[str]) -> bool:
    try:
        return subprocess.run(list(cmd), capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class PodmanError(AssertionError):
    """A podman command failed; the message carries the command and its output."""


@dataclass(frozen=True)
class Podman:
    state: Path
    env: Mapping[str, str]

    @classmethod
    def in_folder(cls, state: Path) -> Podman:
        """Write containers.conf and storage.conf into `state` and point podman at them."""
        state.mkdir(parents=True, exist_ok=True)
        state = state.resolve()
        conf = state / "containers.conf"
        storage = state / "storage.conf"
        shutil.copyfile(IMAGES_DIR / "podman" / "containers.conf", conf)
        template = (IMAGES_DIR / "podman" / "storage.conf.in").read_text()
        storage.write_text(template.replace("@STATE@", str(state)))
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(conf)
        env["CONTAINERS_STORAGE_CONF"] = str(storage)
        return cls(state=state, env=env)

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["podman", *args]
        try:
            proc = subprocess.run(
                cmd,
                env=dict(self.env),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                input=input_text,
            )
        except subprocess.TimeoutExpired as e:
            raise PodmanError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from e
        if check and proc.returncode != 0:
            raise PodmanError(
                f"exit {proc.returncode}: {' '.join(cmd)}\nstdout: {proc.stdout[-3000:]}\n"
                f"stderr: {_quiet(proc.stderr)[-3000:]}"
            )
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False, timeout=30).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def remove_container(self, name: str) -> None:
        self.run("rm", "--force", "--time", "0", "--ignore", name, check=False, timeout=60)

    @contextlib.contextmanager
    def container(self, name: str, *run_args: str) -> Iterator[str]:
        """`podman run -d --name NAME ...`; always removed (by that name) on exit."""
        try:
            self.run("run", "-d", "--name", name, *run_args, timeout=60)
            yield name
        finally:
            self.remove_container(name)

    def logs(self, name: str) -> str:
        proc = self.run("logs", name, check=False, timeout=30)
        return (proc.stdout + _quiet(proc.stderr))[-4000:]

    def destroy(self) -> None:
        """Remove every container, image and layer, unmount what podman left, delete the folder."""
        with contextlib.suppress(PodmanError):
            self.run("system", "reset", "--force", timeout=300, check=False)
        # Overlay mounts of a killed container can outlive the reset: unmount deepest first.
        for mount_point in sorted(_mounts_under(self.state), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.state, ignore_errors=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and (fields[4] + "/").startswith(prefix):
                points.append(fields[4])
    return points


def _quiet(stderr: str) -> str:
    """podman's stderr without its healthcheck-timer complaints (no systemd here: expected)."""
    return "\n".join(line for line in stderr.splitlines() if "unable to get systemd connection" not in line)
