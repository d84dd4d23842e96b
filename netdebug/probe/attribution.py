"""Which version answered: pure functions over an answer's headers and (parsed) body.

Default (`auto`): the `x-echo-version` response header, else the echo JSON's `pod.version`.
`--by` overrides it: `header:NAME`, `json:DOTTED.PATH`, `regex:PATTERN` (on the body text; group 1
if the pattern has a group, else the whole match), or `pod` (the answering pod's name, for
per-pod balancing checks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ByKind = Literal["auto", "header", "json", "regex", "pod"]
MISSING = object()


@dataclass(frozen=True, slots=True)
class By:
    kind: ByKind
    argument: str = ""
    pattern: re.Pattern[str] | None = None

    def describe(self) -> str:
        return self.kind if not self.argument else f"{self.kind}:{self.argument}"


def parse_by(text: str) -> By:
    """'header:x-version' -> By('header', 'x-version'); raises ValueError with a one-line reason."""
    text = text.strip()
    if text in ("", "auto"):
        return By("auto")
    if text == "pod":
        return By("pod")
    kind, sep, arg = text.partition(":")
    if not sep or not arg:
        raise ValueError(f"--by '{text}': use header:NAME, json:PATH, regex:PATTERN or pod")
    if kind == "header":
        return By("header", arg.strip().lower())
    if kind == "json":
        if any(not part for part in arg.split(".")):
            raise ValueError(f"--by '{text}': empty element in JSON path")
        return By("json", arg)
    if kind == "regex":
        try:
            return By("regex", arg, re.compile(arg))
        except re.error as exc:
            raise ValueError(f"--by '{text}': bad regular expression: {exc}") from None
    raise ValueError(f"--by '{text}': unknown kind '{kind}'; use header, json, regex or pod")


def json_path(document: object, path: str) -> object:
    """Follow a dotted path through dicts (and list indexes); MISSING when absent."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def _scalar(value: object) -> str | None:
    if value is MISSING or value is None or isinstance(value, Mapping | list):
        return None
    text = str(value)
    return text or None


def attribute(headers: Mapping[str, str], body: bytes, document: object, by: By) -> str | None:
    """The version (or pod) that answered, or None when the answer does not say.

    `headers` has lower-case names; `document` is the parsed JSON body or MISSING.
    """
    if by.kind == "auto":
        version = headers.get("x-echo-version")
        if version:
            return version
        return _scalar(json_path(document, "pod.version"))
    if by.kind == "header":
        return headers.get(by.argument) or None
    if by.kind == "json":
        return _scalar(json_path(document, by.argument))
    if by.kind == "pod":
        return headers.get("x-echo-pod") or _scalar(json_path(document, "pod.name"))
    assert by.pattern is not None
    m = by.pattern.search(body.decode("utf-8", "replace"))
    if m is None:
        return None
    return (m.group(1) if by.pattern.groups else m.group(0)) or None
