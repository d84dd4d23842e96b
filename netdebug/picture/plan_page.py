"""The page of a plan run (`netdebug plan --report`, or `netdebug report` on `plan --output json`):
the steps table, then for every probe step the full probe picture of its last attempt and the list
of its attempts. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from netdebug.picture.markup import Markup, join, tag
from netdebug.picture.model import ReportError, read_probe
from netdebug.picture.page import document, probe_body, table


def _field(doc: Mapping[str, object], key: str, where: str) -> object:
    if key not in doc:
        raise ReportError(f"field {where}{key}: missing")
    return doc[key]


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def render_plan_page(doc: Mapping[str, object]) -> str:
    """A plan's JSON report -> the HTML page. Raises ReportError for a document it cannot read."""
    steps = _field(doc, "steps", "")
    if not isinstance(steps, list):
        raise ReportError("field steps: expected a list")
    status = _text(doc.get("status"))
    source = _text(doc.get("plan"))
    rows: list[list[object]] = []
    sections: list[Markup] = []
    for i, step in enumerate(steps):
        where = f"steps[{i}]."
        if not isinstance(step, Mapping):
            raise ReportError(f"field steps[{i}]: expected an object")
        number, name, kind = step.get("number", i + 1), _text(step.get("name")), _text(step.get("kind"))
        word = _text(step.get("status"))
        rows.append([number, name, word, kind, _text(step.get("summary"))])
        attempts = step.get("attempts")
        if attempts is None:
            attempts = []
        if not isinstance(attempts, list):
            raise ReportError(f"field {where}attempts: expected a list")
        if kind != "probe" or not attempts:
            continue
        last = attempts[-1]
        if not isinstance(last, Mapping):
            raise ReportError(f"field {where}attempts[{len(attempts) - 1}]: expected an object")
        details = last.get("details")
        if not isinstance(details, Mapping) or "verdict" not in details:
            continue  # the probe could not run (usage error, unreachable before any answer)
        view = read_probe(details, f"{where}attempts[{len(attempts) - 1}].details")
        attempt_rows = [
            [a.get("attempt"), _text(a.get("status")), _text(a.get("summary"))]
            for a in attempts
            if isinstance(a, Mapping)
        ]
        prefix = f"s{i + 1}"
        sections.append(
            tag(
                "section",
                {"class_": "step", "data_step": number, "aria_labelledby": f"{prefix}-h-step"},
                tag("h2", {"id": f"{prefix}-h-step"}, f"Step {number}: {name}"),
                tag(
                    "p", None, f"status {word}; the picture shows attempt {len(attempts)} of {len(attempts)}"
                ),
                table(["attempt", "status", "summary"], attempt_rows, "attempts", "Attempts")
                if len(attempts) > 1
                else Markup(),
                probe_body(view, prefix, "h3"),
            )
        )
    header = tag(
        "header",
        None,
        tag("h1", None, "netdebug plan ", tag("span", {"class_": "url"}, source)),
        tag(
            "div",
            {"class_": f"banner verdict-{status}", "data_verdict": status},
            tag("p", {"class_": "verdict"}, f"plan: {status.upper()}"),
            tag(
                "p",
                {"class_": "facts"},
                f"{len(steps)} steps; started {_text(doc.get('started_at'))}; "
                f"{_text(doc.get('duration_s'))} s; exit {_text(doc.get('exit_code'))}",
            ),
        ),
    )
    body = join(
        [
            header,
            tag(
                "main",
                None,
                table(["step", "name", "status", "kind", "summary"], rows, "steps", "Steps"),
                *sections
                if sections
                else [tag("p", {"class_": "note"}, "No probe step produced a report to draw.")],
            ),
        ]
    )
    return document(f"netdebug plan {source}: {status}", body)
