"""Which engine the image tests find, and the skip message when there is none (no podman needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import engine

pytestmark = pytest.mark.images


@pytest.mark.parametrize(
    ("present", "docker_answers", "expected"),
    [
        pytest.param({"podman", "docker"}, False, None, id="podman"),
        pytest.param(set(), False, "neither podman nor a working docker engine", id="nothing"),
        pytest.param(
            {"docker"}, False, "neither podman nor a working docker engine", id="docker-client-only"
        ),
        pytest.param({"docker"}, True, "only a docker engine", id="docker-engine-only"),
    ],
)
def test_engine_absent_reason(
    monkeypatch: pytest.MonkeyPatch, present: set[str], docker_answers: bool, expected: str | None
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}" if name in present else None)
    monkeypatch.setattr(engine, "_answers", lambda cmd: docker_answers)
    reason = engine.engine_absent_reason()
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert expected in reason


def test_storage_config_keeps_everything_in_the_folder(tmp_path: Path) -> None:
    podman = engine.Podman.in_folder(tmp_path / "state")
    storage = (podman.state / "storage.conf").read_text()
    assert f'runroot = "{podman.state}/run"' in storage
    assert f'graphroot = "{podman.state}/storage"' in storage
    assert podman.env["CONTAINERS_STORAGE_CONF"] == str(podman.state / "storage.conf")
    conf = (podman.state / "containers.conf").read_text()
    for setting in (
        'cgroup_manager = "cgroupfs"',
        'runtime = "runc"',
        'netns = "host"',
        'events_logger = "file"',
    ):
        assert setting in conf
