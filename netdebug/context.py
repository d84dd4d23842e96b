"""Shared by every netdebug command: the I/O context, the exit codes and the usage error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TextIO


class ExitStatus(IntEnum):
    OK = 0
    MISMATCH = 1  # split mismatch, or a check failed
    USAGE = 2
    INCONCLUSIVE = 3
    UNREACHABLE = 4  # unreachable, or error rate above --max-error-rate
    INTERRUPTED = 130


class UsageError(Exception):
    """Bad flags, env or input files: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Context:
    env: Mapping[str, str]
    out: TextIO
    err: TextIO
    out_is_tty: bool
