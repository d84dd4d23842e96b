"""`netdebug mesh up [DIR]`: the routed setup from the k8s manifests, on this machine, on real Envoy.

Configuration: flag > environment > default, validated once into a frozen MeshUpConfig. Bad flags
and bad manifests are usage errors (exit 2); a port in use, a missing tool or a child that does not
start is a runtime failure (exit 4). After SIGINT/SIGTERM every child is stopped and the exit is 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from netdebug.context import Context, ExitStatus, UsageError
from netdebug.k8s.documents import ManifestError
from netdebug.k8s.load import find_kubectl
from netdebug.mesh.orchestrate import MeshRuntimeError, MeshUpConfig, default_source, run_mesh_up
from netdebug.mesh.translate.versions import NEWEST, parse_istio_version

ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    actions = parser.add_subparsers(dest="mesh_action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="start echo processes, their sidecars, the gateway and a client sidecar; stay in the foreground",
        description=(
            "Render DIR (a kustomization, a directory of YAML files, or one YAML file), start one echo-server"
            " per replica behind a server-side Envoy sidecar (mTLS, SPIFFE ids), a gateway Envoy and a client"
            " sidecar Envoy that apply the VirtualServices/HTTPRoutes (in ambient namespaces: a ztunnel"
            " Envoy, L4 only, and a waypoint Envoy per waypoint in use, instead of the sidecars); print the"
            " addresses and `ready`; stop everything on SIGINT/SIGTERM."
        ),
    )
    up.add_argument(
        "dir",
        nargs="?",
        metavar="DIR",
        help="manifests to run (default: k8s/overlays/istio in the current directory, else in the checkout)",
    )
    up.add_argument(
        "--bind",
        help="loopback address the gateway and sidecars listen on "
        "(env NETDEBUG_MESH_BIND; default 127.0.0.1)",
    )
    up.add_argument(
        "--gateway-port",
        type=int,
        metavar="PORT",
        help="gateway port, e.g. 8080 for a stable URL "
        "(env NETDEBUG_MESH_GATEWAY_PORT; default 0: a free port)",
    )
    up.add_argument(
        "--sidecar-port",
        type=int,
        metavar="PORT",
        help="in-mesh caller port: the client sidecar's, or the ambient caller's ztunnel CONNECT entry"
        " (env NETDEBUG_MESH_SIDECAR_PORT; default 0: a free port)",
    )
    up.add_argument(
        "--state-file",
        metavar="FILE",
        help="write addresses and every child's PID here as JSON (default none)",
    )
    up.add_argument(
        "--logs",
        metavar="DIR",
        help="keep every process's log in DIR, one file each, after exit too "
        "(default: a temporary folder removed on exit)",
    )
    up.add_argument(
        "--echo-command",
        metavar="CMD",
        help="command that runs the echo server (env NETDEBUG_ECHO_COMMAND; default: echo-server)",
    )
    up.add_argument("--envoy", metavar="PATH", help="Envoy binary (env NETDEBUG_ENVOY; default: envoy)")
    up.add_argument(
        "--kubectl", metavar="PATH", help="kubectl for kustomize (env NETDEBUG_KUBECTL; default: kubectl)"
    )
    up.add_argument(
        "--ready-timeout", type=float, help="seconds to wait for every process to be ready (default 30)"
    )
    up.add_argument("--envoy-log-level", choices=ENVOY_LOG_LEVELS, help="Envoy log level (default warning)")
    up.add_argument(
        "--istio-version",
        metavar="VERSION",
        help="behave like this Istio release where releases differ, e.g. 1.23"
        f" (env NETDEBUG_MESH_ISTIO_VERSION; default latest = {NEWEST})",
    )


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else shutil.which(name)


def _port(value: int | None, env_value: str | None, what: str) -> int:
    if value is None:
        if env_value is None or env_value.strip() == "":
            return 0
        if not env_value.strip().isdigit():
            raise UsageError(f"{what}: not a port number: {env_value!r}")
        value = int(env_value)
    if not 0 <= value <= 65535:
        raise UsageError(f"{what}: {value} is not a port (0-65535)")
    return value


def build_config(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> MeshUpConfig:
    """Flags > env > defaults, validated once. Raises UsageError."""
    if args.dir:
        source = Path(args.dir)
    else:
        package_root = Path(__file__).resolve().parent.parent.parent
        found = default_source(cwd, package_root)
        if found is None:
            raise UsageError(
                "no DIR given and no k8s/overlays/istio in the current directory or the checkout"
            )
        source = found
    bind = args.bind or env.get("NETDEBUG_MESH_BIND") or "127.0.0.1"
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        raise UsageError(f"--bind: not an IP address: {bind!r}") from None
    if not address.is_loopback:
        raise UsageError(f"--bind: {bind} is not a loopback address; the local mesh only listens on loopback")
    echo_text = args.echo_command or env.get("NETDEBUG_ECHO_COMMAND")
    try:
        echo_command = tuple(shlex.split(echo_text)) if echo_text else ()
    except ValueError as exc:
        raise UsageError(f"--echo-command: {exc}") from None
    if not echo_command:
        default_echo = _beside_python("echo-server")
        echo_command = (default_echo or "echo-server",)
    timeout = args.ready_timeout if args.ready_timeout is not None else 30.0
    if timeout <= 0:
        raise UsageError("--ready-timeout: must be positive")
    try:
        istio_version = parse_istio_version(
            args.istio_version or env.get("NETDEBUG_MESH_ISTIO_VERSION") or "latest"
        )
    except ValueError as exc:
        raise UsageError(f"--istio-version: {exc}") from None
    return MeshUpConfig(
        source=source,
        bind=str(address),
        gateway_port=_port(args.gateway_port, env.get("NETDEBUG_MESH_GATEWAY_PORT"), "--gateway-port"),
        client_port=_port(args.sidecar_port, env.get("NETDEBUG_MESH_SIDECAR_PORT"), "--sidecar-port"),
        state_file=Path(args.state_file) if args.state_file else None,
        echo_command=echo_command,
        envoy=args.envoy or env.get("NETDEBUG_ENVOY") or _beside_python("envoy") or "envoy",
        kubectl=args.kubectl or env.get("NETDEBUG_KUBECTL") or find_kubectl(),
        ready_timeout=timeout,
        envoy_log_level=args.envoy_log_level or "warning",
        node_name=socket.gethostname(),
        istio_version=istio_version,
        logs_dir=_logs_dir(args.logs),
    )


def _logs_dir(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--logs: {value} exists and is not a directory")
    return path.resolve()


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = build_config(args, ctx.env, Path.cwd())
    try:
        return run_mesh_up(config, ctx.env, ctx.out, ctx.err)
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    except MeshRuntimeError as exc:
        ctx.err.write(f"netdebug mesh: error: {exc}\n")
        return ExitStatus.UNREACHABLE
