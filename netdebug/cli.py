"""`netdebug` entry point: the one argparse tree, one sub-command per module. probe, plan and mesh
are packages whose `command` module is the entry (netdebug/probe/command.py, ...), and so is report
(netdebug/picture/command.py, the HTML picture); dns, tcp, tls
(diag.py) and sidecar (sidecar.py) are single modules.

Every command module exposes the same two functions, so this file stays a dispatcher:

    def add_arguments(parser: argparse.ArgumentParser, command: str) -> None
    def run(args: argparse.Namespace, ctx: Context) -> int

`run` builds and validates the command's own frozen config from `args` and `ctx.env`
(flag > env > default), raises `UsageError` for bad input, and returns an `ExitStatus`.
This module is the only place that turns exceptions into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol, TextIO, cast

from netdebug import __version__
from netdebug.context import Context, ExitStatus, UsageError

# name -> (module, one-line help). Modules are imported lazily so `netdebug dns` does not pay
# for httpx/rich start-up.
COMMANDS: dict[str, tuple[str, str]] = {
    "probe": (
        "netdebug.probe.command",
        "paced requests: tally versions, test the split, fingerprint the path",
    ),
    "plan": ("netdebug.plan.command", "run a YAML plan of named checks (probe, http, dns, tcp, tls)"),
    "sidecar": ("netdebug.sidecar", "wait for, query or quit the Istio sidecar of this pod"),
    "dns": ("netdebug.diag", "resolve a name, with timings"),
    "tcp": ("netdebug.diag", "open a TCP connection, with timings"),
    "tls": ("netdebug.diag", "TLS handshake: version, ALPN, SNI, certificate, with timings"),
    "mesh": ("netdebug.mesh.command", "run the routed setup locally on real Envoy (mesh up)"),
    "report": (
        "netdebug.picture.command",
        "draw a saved probe/plan JSON report as a self-contained HTML page",
    ),
}

EXIT_CODES_HELP = """exit codes:
  0  pass (or nothing was expected)
  1  split mismatch / a check failed
  2  usage error
  3  inconclusive (not enough requests for the tolerance)
  4  unreachable, or error rate above --max-error-rate
  130 interrupted (Ctrl-C); the partial report is printed first
"""


class CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None: ...

    def run(self, args: argparse.Namespace, ctx: Context) -> int: ...


def _load(command: str) -> CommandModule:
    module_name, _ = COMMANDS[command]
    return cast(CommandModule, importlib.import_module(module_name))


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdebug",
        description="Test and debug Istio/Envoy routing: did the mesh route this as configured?",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"netdebug {__version__}")
    parser.add_argument("--traceback", action="store_true", help="re-raise unexpected errors (debugging)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Only the chosen command's module is imported; others get a bare parser for the listing.
        if name == selected:
            _load(name).add_arguments(p, name)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main_impl(argv: Sequence[str], env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    selected = _selected_command(argv)
    parser = build_parser(selected)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code) if isinstance(exc.code, int) else ExitStatus.USAGE
    if args.command is None:
        parser.print_help(out)
        return ExitStatus.USAGE
    ctx = Context(env=env, out=out, err=err, out_is_tty=out.isatty())
    try:
        return _load(args.command).run(args, ctx)
    except UsageError as exc:
        err.write(f"netdebug {args.command}: error: {exc}\n")
        err.write(f"usage: see `netdebug {args.command} --help`\n")
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except Exception as exc:
        if args.traceback:
            raise
        err.write(f"netdebug {args.command}: {type(exc).__name__}: {exc}\n")
        return ExitStatus.UNREACHABLE


def main() -> int:
    return main_impl(sys.argv[1:], os.environ, sys.stdout, sys.stderr)
