"""The Istio sidecar of this pod: detect it, wait until it is ready, ask it to quit.

Facts this module relies on (see docs/netdebug-plan.md, "Sidecar lifecycle"):
- `GET 127.0.0.1:15021/healthz/ready` answers 200 once Envoy is live and has its config; any HTTP
  answer at all means a sidecar is there. pilot-agent's own `wait` polls every 500 ms; so do we.
- `POST 127.0.0.1:15020/quitquitquit` makes a classic sidecar exit, so a Job's pod can complete.
- Native sidecars (an init container with restartPolicy Always) need no quit: Kubernetes ends them
  after the main containers. The injected `sidecar.istio.io/status` annotation says which mode the
  pod uses; it is readable when the pod mounts its annotations with the Downward API.

The functions that touch the network are async and never raise for network trouble; the parsing of
the annotations file is pure.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from netdebug.context import Context, ExitStatus
from netdebug.diag import parse_seconds

DEFAULT_HEALTH_URL = "http://127.0.0.1:15021/healthz/ready"
DEFAULT_QUIT_URL = "http://127.0.0.1:15020/quitquitquit"
DEFAULT_WAIT_TIMEOUT = 60.0
POLL_INTERVAL = 0.5
# Each probe of the health port gets this long, as pilot-agent's own wait does.
PROBE_TIMEOUT = 0.5
STATUS_ANNOTATION = "sidecar.istio.io/status"
NATIVE_ANNOTATION = "sidecar.istio.io/nativeSidecar"
PROXY_CONTAINER = "istio-proxy"

SidecarMode = Literal["native", "classic", "none", "unknown"]

# When to wait for / quit the sidecar (and, for the probe, when to draw the live view): one vocabulary
# for `netdebug probe` and `netdebug plan`, flags and NETDEBUG_WAIT_SIDECAR / NETDEBUG_QUIT_SIDECAR.
Policy = Literal["auto", "always", "never"]
POLICIES: tuple[Policy, ...] = ("auto", "always", "never")
# Deprecated spellings, still accepted (plans and scripts may have them): `netdebug probe` used to
# say yes/no, and booleans read naturally in YAML.
POLICY_ALIASES: Mapping[str, Policy] = {
    "yes": "always",
    "true": "always",
    "on": "always",
    "1": "always",
    "no": "never",
    "false": "never",
    "off": "never",
    "0": "never",
}
IN_JOB_WORDS = frozenset({"1", "true", "yes", "on"})


def parse_policy(value: object, source: str) -> Policy:
    """auto/always/never (or a deprecated alias, or a YAML boolean) -> Policy; ValueError otherwise."""
    if isinstance(value, bool):
        return "always" if value else "never"
    text = str(value).strip().lower()
    for policy in POLICIES:
        if text == policy:
            return policy
    if text in POLICY_ALIASES:
        return POLICY_ALIASES[text]
    raise ValueError(f"{source}={value!r}: expected one of {', '.join(POLICIES)} (or yes/no)")


def in_job_from_env(env: Mapping[str, str]) -> bool:
    return env.get("NETDEBUG_IN_JOB", "").strip().lower() in IN_JOB_WORDS


def should_wait(policy: Policy, detected: bool, mode: SidecarMode) -> bool:
    """auto: when something answers on the health port, or the pod's annotations say a sidecar was
    injected (a classic sidecar may start after us)."""
    if policy != "auto":
        return policy == "always"
    return detected or mode in ("classic", "native")


def should_quit(policy: Policy, *, in_job: bool, detected: bool, mode: SidecarMode) -> tuple[bool, str]:
    """Whether to POST quitquitquit at the very end, and why not. auto: in a Job, when a sidecar was
    seen, unless it is a native sidecar (Kubernetes stops those) or the pod has none."""
    if policy == "never":
        return False, "not quitting the sidecar (--quit-sidecar never)"
    if policy == "always":
        return True, ""
    if not in_job:
        return False, "not quitting the sidecar: not a Job (--job / NETDEBUG_IN_JOB=1)"
    if mode == "native":
        return False, "not quitting the sidecar: native sidecar (Kubernetes stops it)"
    if mode == "none":
        return False, "not quitting the sidecar: the pod has none"
    if not detected:
        return False, "not quitting the sidecar: none detected"
    return True, ""


@dataclass(frozen=True)
class SidecarEndpoints:
    health_url: str = DEFAULT_HEALTH_URL
    quit_url: str = DEFAULT_QUIT_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SidecarEndpoints:
        return cls(
            health_url=env.get("NETDEBUG_SIDECAR_HEALTH_URL") or DEFAULT_HEALTH_URL,
            quit_url=env.get("NETDEBUG_SIDECAR_QUIT_URL") or DEFAULT_QUIT_URL,
        )


async def _health_status(client: httpx.AsyncClient, ep: SidecarEndpoints) -> int | None:
    """The health endpoint's status code, or None when nothing answered."""
    try:
        response = await client.get(ep.health_url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return None
    return response.status_code


def _client() -> httpx.AsyncClient:
    # The sidecar ports are pod-local: never go through a proxy from the environment.
    return httpx.AsyncClient(trust_env=False)


async def detect(ep: SidecarEndpoints) -> bool:
    """True when something answers HTTP on the sidecar health port (ready or not)."""
    async with _client() as client:
        return await _health_status(client, ep) is not None


async def wait_ready(
    ep: SidecarEndpoints,
    timeout: float,  # noqa: ASYNC109 - the contract's signature; expiry is a result (False), not an error
    interval: float = POLL_INTERVAL,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Poll the health endpoint every `interval` s until it answers 200 or `timeout` s have passed."""
    deadline = clock() + timeout
    async with _client() as client:
        while True:
            if await _health_status(client, ep) == 200:
                return True
            remaining = deadline - clock()
            if remaining <= 0:
                return False
            await sleep(min(interval, remaining))


async def quit_sidecar(ep: SidecarEndpoints) -> str:
    """Ask the sidecar to exit; a human message either way. Never raises."""
    return (await quit_sidecar_result(ep))[1]


async def quit_sidecar_result(ep: SidecarEndpoints) -> tuple[bool, str]:
    """(accepted, message) for a quit request. Never raises."""
    try:
        async with _client() as client:
            response = await client.post(ep.quit_url, timeout=5.0)
    except httpx.HTTPError as exc:
        return False, f"sidecar quit: no answer from {ep.quit_url} ({type(exc).__name__}); nothing to stop"
    except Exception as exc:  # the quit must never change the caller's outcome
        return False, f"sidecar quit: failed ({type(exc).__name__}: {exc})"
    if 200 <= response.status_code < 300:
        return (
            True,
            f"sidecar quit: asked the sidecar to exit ({ep.quit_url} answered {response.status_code})",
        )
    return False, f"sidecar quit: {ep.quit_url} answered {response.status_code}; the sidecar may keep running"


# ---------------------------------------------------------------------------------------------
# Native vs classic, from the Downward API annotations file (pure)


def parse_downward_annotations(text: str) -> dict[str, str]:
    """Parse a Downward API `metadata.annotations` file: one `key="go-quoted value"` per line."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or not key.strip():
            continue
        raw = raw.strip()
        value = raw
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            # Go's %q escapes (\" \\ \n \t \xHH \uHHHH) are a subset of Python's string escapes.
            try:
                parsed = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                parsed = raw[1:-1]
            value = parsed if isinstance(parsed, str) else raw[1:-1]
        result[key.strip()] = value
    return result


def sidecar_mode(annotations: Mapping[str, str]) -> SidecarMode:
    """native / classic from the injector's status annotation; none when the pod was not injected."""
    status = annotations.get(STATUS_ANNOTATION)
    if status is None:
        native = annotations.get(NATIVE_ANNOTATION, "").strip().lower()
        return "native" if native == "true" else "none"
    try:
        doc = json.loads(status)
    except json.JSONDecodeError:
        return "unknown"
    if not isinstance(doc, dict):
        return "unknown"
    init = doc.get("initContainers") or []
    containers = doc.get("containers") or []
    if isinstance(init, list) and PROXY_CONTAINER in init:
        return "native"
    if isinstance(containers, list) and PROXY_CONTAINER in containers:
        return "classic"
    return "unknown"


def mode_from_env(env: Mapping[str, str]) -> tuple[SidecarMode, str | None]:
    """(mode, annotations file path); mode is unknown when no file is configured or readable."""
    path = env.get("NETDEBUG_POD_ANNOTATIONS_FILE") or None
    return mode_from_file(path), path


def mode_from_file(path: str | None) -> SidecarMode:
    """The mode from a Downward API annotations file; unknown when there is none or it is unreadable."""
    if not path:
        return "unknown"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    return sidecar_mode(parse_downward_annotations(text))


# ---------------------------------------------------------------------------------------------
# `netdebug sidecar wait|quit|status`


@dataclass(frozen=True)
class SidecarCommandConfig:
    action: Literal["wait", "quit", "status"]
    endpoints: SidecarEndpoints
    timeout: float
    interval: float
    output: Literal["text", "json"]


SIDECAR_EPILOG = """wait: exit 0 once /healthz/ready answers 200, 4 after --timeout.
quit: exit 0 when the quit was accepted, 4 when nothing answered (or it was refused).
status: exit 0; prints detected/ready/mode (native, classic, none, unknown).
env: NETDEBUG_SIDECAR_HEALTH_URL, NETDEBUG_SIDECAR_QUIT_URL, NETDEBUG_SIDECAR_TIMEOUT,
     NETDEBUG_POD_ANNOTATIONS_FILE (Downward API file of the pod's annotations).

"""


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.epilog = SIDECAR_EPILOG
    parser.add_argument("action", choices=["wait", "quit", "status"], help="what to do with the sidecar")
    parser.add_argument(
        "--timeout",
        default=None,
        help="wait: give up after this many seconds "
        f"(env NETDEBUG_SIDECAR_TIMEOUT, default {DEFAULT_WAIT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--output", choices=["text", "json"], default="text", help="status/wait output format (default text)"
    )


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> SidecarCommandConfig:
    timeout_text = args.timeout if args.timeout is not None else env.get("NETDEBUG_SIDECAR_TIMEOUT")
    timeout = DEFAULT_WAIT_TIMEOUT if timeout_text is None else parse_seconds(timeout_text, "--timeout")
    return SidecarCommandConfig(
        action=args.action,
        endpoints=SidecarEndpoints.from_env(env),
        timeout=timeout,
        interval=POLL_INTERVAL,
        output=args.output,
    )


async def status_document(ep: SidecarEndpoints, env: Mapping[str, str]) -> dict[str, object]:
    async with _client() as client:
        code = await _health_status(client, ep)
    mode, path = mode_from_env(env)
    return {
        "detected": code is not None,
        "ready": code == 200,
        "health_status": code,
        "mode": mode,
        "annotations_file": path,
        "health_url": ep.health_url,
        "quit_url": ep.quit_url,
    }


def render_status(doc: Mapping[str, object]) -> str:
    detected = "yes" if doc["detected"] else "no"
    ready = "yes" if doc["ready"] else "no"
    code = doc["health_status"]
    lines = [
        f"detected: {detected}" + (f" ({doc['health_url']} answered {code})" if code is not None else ""),
        f"ready:    {ready}",
        f"mode:     {doc['mode']}"
        + (
            f" (from {doc['annotations_file']})"
            if doc["annotations_file"]
            else " (set NETDEBUG_POD_ANNOTATIONS_FILE)"
        ),
    ]
    return "\n".join(lines) + "\n"


async def run_command(config: SidecarCommandConfig, ctx: Context) -> int:
    ep = config.endpoints
    if config.action == "quit":
        accepted, message = await quit_sidecar_result(ep)
        ctx.out.write(message + "\n")
        return ExitStatus.OK if accepted else ExitStatus.UNREACHABLE
    if config.action == "wait":
        started = time.monotonic()
        ready = await wait_ready(ep, config.timeout, config.interval)
        elapsed = time.monotonic() - started
        if config.output == "json":
            ctx.out.write(json.dumps({"ready": ready, "waited_s": round(elapsed, 3)}) + "\n")
        elif ready:
            ctx.out.write(f"sidecar ready after {elapsed:.1f}s\n")
        else:
            ctx.out.write(f"sidecar not ready after {config.timeout:g}s ({ep.health_url})\n")
        return ExitStatus.OK if ready else ExitStatus.UNREACHABLE
    doc = await status_document(ep, ctx.env)
    ctx.out.write(json.dumps(doc) + "\n" if config.output == "json" else render_status(doc))
    return ExitStatus.OK


def run(args: argparse.Namespace, ctx: Context) -> int:
    return asyncio.run(run_command(config_from_args(args, ctx.env), ctx))
