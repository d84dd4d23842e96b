"""checkov (offline, `--skip-download`) passes over k8s/, both as written and as rendered; every
exception is an annotation on the resource with its reason."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from netdebug.k8s.documents import Doc, name_of
from tests.k8s.stages import K8S, STAGES
from tests.procs import REPO

pytestmark = pytest.mark.slow

# Checks k8s/ may skip, each justified in a `checkov.io/skipN: CHECK=reason` annotation.
ALLOWED_SKIPS = {"CKV_K8S_43", "CKV_K8S_15"}


@pytest.fixture(scope="module")
def checkov() -> str:
    own_venv = REPO / ".venv-checkov" / "bin" / "checkov"
    found = str(own_venv) if own_venv.exists() else shutil.which("checkov")
    if found is None:
        pytest.skip(f"checkov not found at {own_venv} or on PATH (make test installs it)")
    return found


def run_checkov(checkov: str, directory: Path, *, framework: str = "kubernetes") -> dict[str, Any]:
    target = ["-d", str(directory)] if directory.is_dir() else ["-f", str(directory)]
    done = subprocess.run(
        [checkov, *target, "--framework", framework, "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), f"checkov crashed ({done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    # One framework gives one report object; several give a list. An empty directory gives a summary.
    reports = report if isinstance(report, list) else [report]
    results: dict[str, list[dict[str, Any]]] = {
        "passed_checks": [],
        "failed_checks": [],
        "skipped_checks": [],
    }
    for item in reports:
        for key in results:
            results[key] += item.get("results", {}).get(key, [])
    return results


def _failures(results: dict[str, Any]) -> list[str]:
    return [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in results["failed_checks"]]


@pytest.fixture(scope="module")
def rendered_dir(render: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Scan what is applied: kustomize sets the namespace and the names, so raw files alone would
    # mislead the namespace and NetworkPolicy checks.
    out = tmp_path_factory.mktemp("rendered")
    for relative in STAGES:
        (out / f"{relative.replace('/', '-')}.yaml").write_text(render(relative), encoding="utf-8")
    return out


def test_rendered_stages_pass(checkov: str, rendered_dir: Path) -> None:
    results = run_checkov(checkov, rendered_dir)
    assert results["passed_checks"], "checkov scanned nothing"
    assert _failures(results) == []
    _assert_skips_justified(results)


def test_k8s_directory_as_written_passes(checkov: str) -> None:
    results = run_checkov(checkov, K8S)
    assert results["passed_checks"], "checkov scanned nothing"
    assert _failures(results) == []
    _assert_skips_justified(results)


def _assert_skips_justified(results: dict[str, Any], allowed: set[str] | None = ALLOWED_SKIPS) -> None:
    for check in results["skipped_checks"]:
        if allowed is not None:
            assert check["check_id"] in allowed, f"unexpected skip {check['check_id']} on {check['resource']}"
        comment = check["check_result"].get("suppress_comment", "")
        assert len(comment) > 20, f"{check['check_id']} on {check['resource']}: no reason given"
        assert comment != "No comment provided"


def test_checkov_catches_a_weakened_deployment(
    checkov: str, render: Callable[[str], str], tmp_path: Path
) -> None:
    docs: list[Doc] = [d for d in yaml.safe_load_all(render("base")) if d]
    weakened = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment" and name_of(d) == "echo-v1"))
    pod = weakened["spec"]["template"]["spec"]
    del pod["securityContext"]
    del pod["containers"][0]["securityContext"]
    (tmp_path / "weakened.yaml").write_text(yaml.safe_dump_all([*docs, weakened]), encoding="utf-8")
    failed = {c["check_id"] for c in run_checkov(checkov, tmp_path)["failed_checks"]}
    # allowPrivilegeEscalation, root containers, capabilities, read-only root filesystem
    assert {"CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_37", "CKV_K8S_22"} <= failed


@pytest.mark.parametrize("dockerfile", ["Dockerfile.echo", "Dockerfile.netdebug"])
def test_dockerfile_passes(checkov: str, dockerfile: str) -> None:
    # The issue's acceptance covers both images too; their skips are the image owners' to justify,
    # so only "has a reason" is required here.
    assert (REPO / dockerfile).is_file(), f"{dockerfile} is missing (the images are part of the setup)"
    results = run_checkov(checkov, REPO / dockerfile, framework="dockerfile")
    assert results["passed_checks"], "checkov scanned nothing"
    assert _failures(results) == []
    _assert_skips_justified(results, allowed=None)
