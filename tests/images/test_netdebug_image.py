"""The netdebug image, built and run for real: every bundled tool, the banner shell, tcpdump's
capabilities, and `netdebug probe` from inside the image against the echo image."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.images.conftest import BuiltImages
from tests.images.engine import Podman
from tests.images.structure import assert_structure
from tests.images.test_echo_image import start_echo

# The first test also pays for the session's debootstrap base and both builds (minutes on 2 cores).
pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]

TOOLS = [
    pytest.param(["curl", "--version"], r"^curl \d+\.\d+", id="curl"),
    pytest.param(["http", "--version"], r"^\d+\.\d+", id="httpie"),
    pytest.param(["dig", "-v"], r"DiG \d+\.\d+", id="dig"),
    pytest.param(["nc", "-h"], r"OpenBSD netcat", id="nc"),
    pytest.param(["ip", "-V"], r"ip utility, iproute2", id="ip"),
    pytest.param(["ss", "-V"], r"ss utility, iproute2", id="ss"),
    pytest.param(["tcpdump", "--version"], r"tcpdump version \d+", id="tcpdump"),
    pytest.param(["openssl", "version"], r"^OpenSSL \d+", id="openssl"),
    pytest.param(["jq", "--version"], r"^jq-\d+", id="jq"),
    pytest.param(["iperf3", "--version"], r"^iperf \d+", id="iperf3"),
    pytest.param(["netdebug", "--version"], r"^netdebug \d+\.\d+", id="netdebug"),
]

# One packet on the container's own loopback (a --network=none namespace: nothing of the host is
# seen). tcpdump may open its socket after the first connection attempts, so attempts repeat every
# 0.1 s (a polling interval) until it has its packet, for at most 30 s; then it is stopped and fails.
CAPTURE_ONE_PACKET = (
    "tcpdump -i lo -c 1 -n -l & pid=$!; "
    "for i in $(seq 300); do "
    "nc -z 127.0.0.1 9 2>/dev/null; kill -0 $pid 2>/dev/null || break; sleep 0.1; "
    "done; "
    "kill $pid 2>/dev/null; wait $pid"
)


def test_structure(podman: Podman, images: BuiltImages, tmp_path: Path) -> None:
    assert_structure(podman, images.netdebug, "netdebug", images.version, tmp_path)


@pytest.mark.parametrize(("command", "expected"), TOOLS)
def test_bundled_tool_runs(podman: Podman, images: BuiltImages, command: list[str], expected: str) -> None:
    proc = podman.run("run", "--rm", "--network=host", images.netdebug, *command, check=False, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(command)} exited {proc.returncode}: {output[-2000:]}"
    assert re.search(expected, output, re.MULTILINE), f"{' '.join(command)} printed: {output[-2000:]}"


def test_default_command_is_a_shell_with_a_banner(podman: Podman, images: BuiltImages) -> None:
    # No terminal and no input: the banner, then the interactive shell reads end-of-file and exits 0.
    proc = podman.run("run", "--rm", "--network=host", images.netdebug, timeout=60, input_text="")
    assert f"netdebug {images.version}" in proc.stdout
    for name in ("curl", "http", "dig", "nc", "ip", "ss", "tcpdump", "openssl", "jq", "iperf3"):
        assert re.search(rf"\b{name}\b", proc.stdout), f"banner does not list {name}:\n{proc.stdout}"


def test_shell_runs_as_non_root_numeric_user(podman: Podman, images: BuiltImages) -> None:
    proc = podman.run(
        "run", "--rm", "--network=host", images.netdebug, "sh", "-c", 'id -u; stat -c %u "$HOME"; pwd',
        timeout=60,
    )  # fmt: skip
    uid, home_owner, workdir = proc.stdout.split()
    assert uid == "10001"
    assert home_owner == "10001", "the shell user cannot write its own home (history, scratch files)"
    assert workdir == "/home/netdebug"


@pytest.mark.parametrize(
    ("run_args", "captures"),
    [
        pytest.param([], False, id="default-user-cannot-capture"),
        pytest.param(["--user", "0", "--cap-add", "NET_RAW,NET_ADMIN"], True, id="root-with-net-raw"),
        pytest.param(
            ["--user", "0", "--cap-drop", "ALL", "--cap-add", "NET_RAW,NET_ADMIN,SETUID,SETGID"],
            True,
            id="root-drop-all-documented-set",
        ),
    ],
)
def test_tcpdump_capabilities_as_documented(
    podman: Podman, images: BuiltImages, run_args: list[str], captures: bool
) -> None:
    proc = podman.run(
        "run", "--rm", "--network=none", *run_args, images.netdebug, "bash", "-c", CAPTURE_ONE_PACKET,
        check=False, timeout=60,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    if captures:
        assert proc.returncode == 0, output
        assert "1 packet captured" in output, output
    else:
        assert proc.returncode != 0, output
        assert "permission" in output.lower(), output


def test_probe_from_inside_the_image_passes(podman: Podman, images: BuiltImages) -> None:
    name = f"meshecho-test-echo-probe-{os.getpid()}"
    with start_echo(podman, images.echo, name, "SERVICE_VERSION=v1", "HTTPS_PORT=off") as echo:
        proc = podman.run(
            "run", "--rm", "--network=host", images.netdebug,
            "netdebug", "probe", f"http://127.0.0.1:{echo.http_port}/", "-n", "200", "--rps", "200",
            "--expect", "v1=100", "--output", "json",
            check=False, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, (
        f"probe exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    )
    report = json.loads(proc.stdout)
    assert report["verdict"] == "pass"
    assert report["counts"] == {"v1": 200}
    assert report["fingerprints"] == {"bypass": 200}
