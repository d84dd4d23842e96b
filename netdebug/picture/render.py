"""Any netdebug JSON report -> its HTML page: a probe report, or a plan report (which holds a probe
report per probe attempt). Pure."""

from __future__ import annotations

from collections.abc import Mapping

from netdebug.picture.model import ReportError
from netdebug.picture.page import render_probe_page
from netdebug.picture.plan_page import render_plan_page


def render_page(doc: object) -> str:
    """Recognises the report by its fields; raises ReportError for a document it cannot draw."""
    if not isinstance(doc, Mapping):
        raise ReportError("the report: expected a JSON object")
    if "steps" in doc and "plan" in doc:
        return render_plan_page(doc)
    return render_probe_page(doc)
