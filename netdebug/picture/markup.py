"""Building HTML and SVG text safely. Pure.

Every name on the page (versions, pods, identities, URLs) comes from the network or from a file, so
text is escaped unless it is already `Markup` made here. The output is also well-formed XML
(polyglot): void HTML elements are self-closed, everything else is closed explicitly, attributes are
always quoted. Browsers read it as HTML; tests and tools can read it with an XML parser.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Final

_VOID: Final = frozenset({"meta", "br", "col", "hr", "img", "input", "link"})


class Markup(str):
    """Text that is already safe to embed."""

    __slots__ = ()


def esc(value: object) -> Markup:
    """Escape text for element content and attribute values (quotes included)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _attrs(attrs: Mapping[str, object] | None) -> str:
    if not attrs:
        return ""
    parts: list[str] = []
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        key = name.rstrip("_").replace("_", "-")
        parts.append(f' {key}="{esc(key if value is True else value)}"')
    return "".join(parts)


def _children(children: Iterable[object]) -> str:
    out: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, str | int | float):
            out.append(esc(child))
        elif isinstance(child, Iterable):
            out.append(_children(child))
        else:
            raise TypeError(f"cannot render {type(child).__name__}")
    return "".join(out)


def tag(name: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    """`tag("td", {"class_": "n"}, "42")` -> `<td class="n">42</td>`.

    Attribute names: a trailing `_` is dropped (`class_`), other `_` become `-` (`aria_label`).
    `None`/`False` values leave the attribute out; `True` writes `name="name"`.
    """
    opening = f"<{name}{_attrs(attrs)}"
    if name in _VOID:
        return Markup(opening + "/>")
    return Markup(f"{opening}>{_children(children)}</{name}>")


def join(parts: Iterable[Markup]) -> Markup:
    return Markup("".join(parts))


def num(value: float, digits: int = 1) -> str:
    """A coordinate or share for SVG attributes and labels: fixed digits, no `-0`."""
    text = f"{value:.{digits}f}"
    return "0" if text.strip("-0.") == "" else text
