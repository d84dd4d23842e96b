"""`netdebug report FILE.json [-o FILE.html]`: the HTML picture of a saved `netdebug probe -o json`
or `netdebug plan --output json` report, e.g. to attach to a CI run. Also the two calls `probe
--report` and `plan --report` make: `prepare_report` (before the run: is the path writable?) and
`write_report` (after it: render and write).

Input is bounded (MAX_INPUT bytes) and checked field by field; a file that is not a netdebug report
is a usage error (exit 2) naming the field. The page is written to a temporary file beside the
target and renamed, so a reader never sees half a page.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from netdebug.context import Context, ExitStatus, UsageError
from netdebug.picture.model import ReportError
from netdebug.picture.render import render_page

MAX_INPUT = 64 * 1024 * 1024
ENV_OUTPUT = "NETDEBUG_REPORT"


@dataclass(frozen=True)
class ReportConfig:
    source: str  # a path, or "-" for stdin
    output: str | None  # None: the page goes to stdout


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.description = (
        "Draw a saved netdebug JSON report (probe -o json, or plan --output json) as one "
        "self-contained HTML page: the traffic graph, the split verdict, latency and the run's "
        "parameters. No script, no network: it opens offline and prints in black and white."
    )
    parser.epilog = (
        "exit codes:\n"
        "  0  the page was written (whatever the run's verdict)\n"
        "  2  the input is not a netdebug JSON report (the message names the field), or the output\n"
        "     cannot be written\n"
    )
    parser.add_argument("file", metavar="FILE.json", help="the JSON report; - reads stdin")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE.html",
        help=f"write the page here (env {ENV_OUTPUT}; default: stdout)",
    )


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> ReportConfig:
    output = args.output or env.get(ENV_OUTPUT) or None
    if output == "-":
        output = None
    return ReportConfig(source=args.file, output=output)


def _read_bounded(stream: BinaryIO, name: str) -> bytes:
    data = stream.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise UsageError(f"{name}: larger than {MAX_INPUT // (1024 * 1024)} MiB, not a netdebug report")
    return data


def load_report(source: str, stdin: BinaryIO | None = None) -> object:
    """Read and parse the JSON report; raises UsageError with a one-line reason."""
    try:
        if source == "-":
            data = _read_bounded(stdin or sys.stdin.buffer, "stdin")
        else:
            with Path(source).open("rb") as stream:
                data = _read_bounded(stream, source)
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{source}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{source}: not JSON ({exc})") from None


def prepare_report(path: str | None, flag: str = "--report") -> Path | None:
    """Before a run: fail early (UsageError) when the page could not be written where asked."""
    if not path:
        return None
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag}: {path} is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag}: no such directory {parent}")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag}: cannot write {path}")
    return target


def write_page(target: Path, page: str) -> None:
    """Atomically: a temporary file beside the target, then a rename. Raises OSError."""
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_report(target: Path | None, doc: Mapping[str, object], err: TextIO, command: str) -> None:
    """After a run: draw the report and write it. A failure is one line on `err`; it never changes
    the run's exit code (the verdict stands, the page is an extra)."""
    if target is None:
        return
    try:
        write_page(target, render_page(doc))
    except (OSError, ReportError) as exc:
        err.write(f"netdebug {command}: cannot write --report {target}: {exc}\n")


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = config_from_args(args, ctx.env)
    doc = load_report(config.source)
    try:
        page = render_page(doc)
    except ReportError as exc:
        raise UsageError(f"{config.source}: {exc}") from None
    if config.output is None:
        ctx.out.write(page)
        return ExitStatus.OK
    target = prepare_report(config.output, "--output")
    assert target is not None
    try:
        write_page(target, page)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {config.output}: {exc.strerror or exc}") from None
    ctx.err.write(f"netdebug report: wrote {config.output} ({len(page.encode()) // 1024} KiB)\n")
    return ExitStatus.OK
