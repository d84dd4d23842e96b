"""The distribution installs what both programs need, and nothing from the test or mesh extras.

The fast test keeps pyproject.toml's lists consistent; the slow one does what a new user does:
`pip install <repo>` into a fresh venv with no extras, then runs both programs.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
import venv
from pathlib import Path

import httpx
import pytest

from tests.procs import REPO, free_port, http_ok, running

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_dependencies_are_the_union_of_the_program_extras() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert set(project["dependencies"]) == set(extras["echo"]) | set(extras["netdebug"])
    # Nothing only the tests or the routed setup use is installed for running.
    heavy = _names(extras["mesh"]) | _names(extras["test"]) | _names(extras["dev"])
    assert heavy.isdisjoint(_names(project["dependencies"]) - {"websockets"})


@pytest.mark.slow
def test_plain_pip_install_runs_both_programs(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        check=True,
        timeout=600,
    )
    version = subprocess.run(
        [str(bin_dir / "echo-server"), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert version.stdout.startswith("echo-server ")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(
        [str(bin_dir / "echo-server"), "--http-port", str(port), "--https-port", "off"],
        ready=lambda: http_ok(f"{base}/_echo/readyz"),
        what="echo-server from a plain pip install",
    ):
        assert httpx.get(f"{base}/hello").json()["path"] == "/hello"
        probe = subprocess.run(
            [str(bin_dir / "netdebug"), "probe", f"{base}/echo", "-n", "5", "--rps", "50"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    # The routed setup needs the mesh extra, and says so in one line.
    mesh = subprocess.run(
        [str(bin_dir / "netdebug"), "mesh", "up", str(REPO / "k8s" / "overlays" / "istio")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": str(bin_dir)},
    )
    assert mesh.returncode != 0
    assert "pip install 'meshecho[mesh]'" in mesh.stderr
