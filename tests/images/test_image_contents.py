"""Image sizes against their budgets over the base, the files each image must (not) hold, and nothing
from the build host left inside."""

from __future__ import annotations

import hashlib

import pytest

from tests.images.conftest import HOST_CA_BUNDLE, REPORT, BuiltImages
from tests.images.engine import Podman

# The first test also pays for the session's debootstrap base and both builds (minutes on 2 cores).
pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]

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


@pytest.mark.parametrize(
    ("image_attr", "shell_test", "path"),
    [
        pytest.param("echo", "-x", "/opt/meshecho/bin/echo-server", id="echo-server-script"),
        pytest.param("echo", "! -e", "/opt/meshecho/bin/netdebug", id="echo-no-netdebug-without-deps"),
        pytest.param("echo", "! -e", "/opt/meshecho/bin/pip", id="echo-no-pip-at-run-time"),
        pytest.param("netdebug", "-x", "/opt/meshecho/bin/netdebug", id="netdebug-script"),
        pytest.param("netdebug", "-x", "/usr/local/bin/netdebug-shell", id="netdebug-banner-shell"),
        pytest.param("netdebug", "! -e", "/opt/meshecho/bin/echo-server", id="netdebug-no-echo-without-deps"),
        pytest.param("netdebug", "! -e", "/opt/meshecho/bin/pip", id="netdebug-no-pip-at-run-time"),
        pytest.param("netdebug", "! -e", "/var/lib/apt/lists/lock", id="netdebug-no-apt-lists"),
    ],
)
def test_image_files(
    podman: Podman, images: BuiltImages, image_attr: str, shell_test: str, path: str
) -> None:
    proc = podman.run(
        "run", "--rm", "--network=host", "--entrypoint", "sh", getattr(images, image_attr),
        "-c", f'test {shell_test} "$0"', path,
        check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, f"{image_attr}: expected `test {shell_test} {path}` to hold"
