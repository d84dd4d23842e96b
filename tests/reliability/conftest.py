"""The reliability tier: hostile clients (a bad-input corpus, slowloris, HTTP/2 abuse) and the drain
behind Envoy, against echo-server with its default limits. Select it with `-m reliability`; it is
also marked slow, so `make test-fast` leaves it out and `make test` runs it."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: the reliability tier (tests/reliability)")
