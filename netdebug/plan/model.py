"""A plan's types: YAML is parsed (plan/parse.py) into a validated, typed, frozen `Plan` of `Step`s,
each with one spec per kind; `check_http` says what an http step's expectation means. Pure, no I/O.

The reference for every field is docs/netdebug-plan.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from netdebug.context import UsageError
from netdebug.probe.fingerprint import is_local_reply

StepKind = Literal["probe", "http", "dns", "tcp", "tls"]
STEP_KINDS: tuple[StepKind, ...] = ("probe", "http", "dns", "tcp", "tls")
Scalar: TypeAlias = str | int | float | bool

DEFAULT_HTTP_TIMEOUT = 10.0
DEFAULT_CHECK_TIMEOUT = 5.0
DEFAULT_REPEAT_INTERVAL = 1.0
DEFAULT_MAX_ATTEMPTS = 10


class PlanError(UsageError):
    """A plan that cannot run: one line naming the file, step and field."""


@dataclass(frozen=True)
class Repeat:
    until_passes: int = 1
    max_attempts: int = 1
    interval: float = DEFAULT_REPEAT_INTERVAL


@dataclass(frozen=True)
class ProbeSpec:
    # Handed to netdebug.probe.command.probe_config_from_mapping, which owns their validation.
    options: Mapping[str, object]


@dataclass(frozen=True)
class HttpExpect:
    status: tuple[str, ...] | None = None  # patterns such as "404" or "2xx"
    headers: tuple[tuple[str, str], ...] = ()
    headers_present: tuple[str, ...] = ()
    headers_absent: tuple[str, ...] = ()
    body_contains: tuple[str, ...] = ()
    body_regex: str | None = None
    local_reply: bool | None = None


@dataclass(frozen=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    timeout: float = DEFAULT_HTTP_TIMEOUT
    http2: bool = False
    insecure: bool = False
    ca: str | None = None
    expect: HttpExpect = HttpExpect()


@dataclass(frozen=True)
class DnsSpec:
    name: str
    timeout: float = DEFAULT_CHECK_TIMEOUT
    resolves: bool = True
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class TcpSpec:
    address: str
    timeout: float = DEFAULT_CHECK_TIMEOUT
    connects: bool = True


@dataclass(frozen=True)
class TlsSpec:
    address: str
    sni: str | None = None
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    insecure: bool = False
    ca: str | None = None
    timeout: float = DEFAULT_CHECK_TIMEOUT
    expect_alpn: str | None = None
    expect_version: str | None = None
    expect_san: tuple[str, ...] = ()


StepSpec: TypeAlias = ProbeSpec | HttpSpec | DnsSpec | TcpSpec | TlsSpec


@dataclass(frozen=True)
class Step:
    number: int  # 1-based, as printed in errors and reports
    name: str
    kind: StepKind
    spec: StepSpec
    repeat: Repeat = Repeat()

    @property
    def label(self) -> str:
        return f'step {self.number} "{self.name}"'


@dataclass(frozen=True)
class Plan:
    source: str
    steps: tuple[Step, ...]
    vars: Mapping[str, Scalar] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# HTTP expectations (pure): what the http step checks on a response


def _status_matches(pattern: str, status: int) -> bool:
    text = str(status)
    return len(text) == 3 and all(p in ("x", s) for p, s in zip(pattern, text, strict=True))


def check_http(expect: HttpExpect, status: int, headers: Mapping[str, str], body: str) -> list[str]:
    """Failed expectations as human lines; `headers` keys must be lower-case."""
    failures: list[str] = []
    if expect.status is not None:
        if not any(_status_matches(p, status) for p in expect.status):
            failures.append(f"status {status}, expected {' or '.join(expect.status)}")
    elif expect.local_reply is not True and status >= 400:
        failures.append(f"status {status}, expected < 400 (set expect.status to check for another)")
    for name, wanted in expect.headers:
        got = headers.get(name)
        if got is None:
            failures.append(f"header {name} missing, expected {wanted!r}")
        elif got.strip() != wanted:
            failures.append(f"header {name}: {got!r}, expected {wanted!r}")
    failures += [f"header {name} missing" for name in expect.headers_present if name not in headers]
    failures += [
        f"header {name} present ({headers[name]!r}), expected absent"
        for name in expect.headers_absent
        if name in headers
    ]
    failures += [f"body lacks {text!r}" for text in expect.body_contains if text not in body]
    if expect.body_regex is not None and re.search(expect.body_regex, body) is None:
        failures.append(f"body does not match /{expect.body_regex}/")
    if expect.local_reply is not None:
        local = is_local_reply(headers)
        if expect.local_reply and not local:
            server = headers.get("server", "(none)")
            upstream = "x-envoy-upstream-service-time" in headers
            failures.append(
                f"expected an Envoy local reply, got server {server!r}"
                + (" with x-envoy-upstream-service-time (an upstream answered)" if upstream else "")
            )
        elif not expect.local_reply and local:
            failures.append(
                "got an Envoy local reply (no x-envoy-upstream-service-time), expected an upstream"
            )
    return failures
