"""Every option of every netdebug command says its default in --help, and every option with a fixed
set of values shows that set; probe and plan spell the sidecar policies the same way."""

from __future__ import annotations

import argparse
import io

import pytest

from netdebug.cli import COMMANDS, build_parser, main_impl
from netdebug.sidecar import POLICIES


def _parsers(command: str) -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser(command)
    found: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(name: str, p: argparse.ArgumentParser) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.append((name, p))
        for action in subs:
            for sub_name, sub in action.choices.items():
                walk(f"{name} {sub_name}".strip(), sub)

    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    walk(command, sub_action.choices[command])
    return found


CASES = [(name, p) for command in COMMANDS for name, p in _parsers(command)]


@pytest.mark.parametrize(("name", "parser"), CASES, ids=[name for name, _ in CASES])
def test_every_option_shows_its_default_and_choices(name: str, parser: argparse.ArgumentParser) -> None:
    missing: list[str] = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = (action.help or "").lower()
        if "default" not in text:
            missing.append(f"{action.option_strings[-1]}: no default in {text!r}")
        # A fixed set of values is shown: argparse's choices, or the same braces as the metavar
        # where the command validates the value itself (flag > env > default).
        takes_value = action.nargs != 0
        metavar = action.metavar if isinstance(action.metavar, str) else ""
        if takes_value and action.choices is None and metavar.startswith("{"):
            assert metavar.endswith("}"), (name, action.option_strings)
            assert "," in metavar, (name, action.option_strings)
    assert missing == [], f"netdebug {name}"


@pytest.mark.parametrize("command", ["probe", "plan"])
def test_sidecar_policies_share_one_vocabulary(command: str) -> None:
    ((_, parser),) = _parsers(command)
    choices = "{" + ",".join(POLICIES) + "}"
    for flag in ("--wait-sidecar", "--quit-sidecar"):
        action = next(a for a in parser._actions if flag in a.option_strings)
        assert action.metavar == choices, (command, flag)
        assert "default auto" in (action.help or "")


@pytest.mark.parametrize("spelling", ["always", "yes", "true"])
def test_deprecated_spellings_still_work_in_both(spelling: str) -> None:
    from netdebug.probe.config import build_probe_config

    config = build_probe_config({"url": "http://x/", "wait_sidecar": spelling}, {})
    assert config.wait_sidecar == "always"
    out, err = io.StringIO(), io.StringIO()
    env = {"NETDEBUG_WAIT_SIDECAR": "maybe"}
    assert main_impl(["probe", "http://x/"], env, out, err) == 2
    assert "NETDEBUG_WAIT_SIDECAR='maybe': expected one of auto, always, never" in err.getvalue()
