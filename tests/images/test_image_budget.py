"""Image sizes against their budgets over the base, and nothing from the build host left inside."""

from __future__ import annotations

import hashlib

import pytest

from tests.images.conftest import HOST_CA_BUNDLE, REPORT, BuiltImages
from tests.images.engine import Podman

pytestmark = pytest.mark.images

MB = 1_000_000  # podman reports decimal megabytes


@pytest.mark.parametrize(
    ("image_attr", "budget_mb"),
    [pytest.param("echo", 60, id="echo"), pytest.param("netdebug", 150, id="netdebug")],
)
def test_size_within_budget_over_the_base(
    podman: Podman, images: BuiltImages, image_attr: str, budget_mb: int
) -> None:
    image = getattr(images, image_attr)
    base = podman.image_size(images.base)
    size = podman.image_size(image)
    added = (size - base) / MB
    REPORT.lines.append(
        f"{image}: {size / MB:.1f} MB = base {base / MB:.1f} MB + {added:.1f} MB (budget +{budget_mb} MB)"
    )
    assert added <= budget_mb, f"{image} adds {added:.1f} MB to its base; budget {budget_mb} MB"


# Walks the image's whole filesystem for a file with the bundle's exact size and digest.
FIND_BUNDLE = """
import hashlib, os, sys
size, digest = int(sys.argv[1]), sys.argv[2]
for root, dirs, files in os.walk("/"):
    if root == "/" :
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(root, name)
        try:
            if not os.path.islink(path) and os.path.getsize(path) == size:
                with open(path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() == digest:
                        print(path)
        except OSError:
            pass
"""


@pytest.mark.parametrize(
    "image_attr", [pytest.param("echo", id="echo"), pytest.param("netdebug", id="netdebug")]
)
def test_build_ca_bundle_not_baked_in(podman: Podman, images: BuiltImages, image_attr: str) -> None:
    if not HOST_CA_BUNDLE.is_file():
        pytest.skip(f"no {HOST_CA_BUNDLE} on this machine: the build mounted no CA bundle")
    data = HOST_CA_BUNDLE.read_bytes()
    proc = podman.run(
        "run", "--rm", "--network=host", "--user", "0", "--entrypoint", "python3",
        getattr(images, image_attr), "-c", FIND_BUNDLE, str(len(data)), hashlib.sha256(data).hexdigest(),
        timeout=120,
    )  # fmt: skip
    assert proc.stdout.strip() == "", f"the build host's CA bundle is inside the image at: {proc.stdout}"
