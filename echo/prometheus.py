"""mendhak's Prometheus metrics (PROMETHEUS_ENABLED): express-prom-bundle's series, names and labels.

Read from express-prom-bundle's code (src/index.js, src/normalizePath.js) and url-value-parser's, as
mendhak configures it (``metricType`` summary by default, ``includeMethod``/``includeStatusCode``
true, ``includePath`` false):

- the metrics path matches ``^PATH/?$`` against the request target *with* its query string, for any
  method; it answers 200 ``Content-Type: text/plain`` and is itself not counted;
- ``http_request_duration_seconds`` is a summary (quantiles 0.5 0.75 0.95 0.98 0.99 0.999, plus
  ``_sum`` and ``_count``) or a histogram (buckets 0.003 0.03 0.1 0.3 1.5 10), labelled
  ``status_code``, ``method`` and ``path`` (each only when enabled; the HELP line names the label set
  as the library does, ``status_code`` always first), and the ``le``/``quantile`` label comes first;
- ``up`` is a gauge that is always 1;
- ``path`` is the path as received, empty segments dropped, and every segment that is all digits, a
  UUID, or 7+ hex digits of one case replaced by ``#val``;
- numbers are written as JavaScript writes them.

prom-client computes summary quantiles with a t-digest; here they come from a log-scale sketch with
1% relative error. Both are estimates; the ``_sum``/``_count`` lines are exact in both. Unlike the
library, at most ``MAX_SERIES`` label sets are kept (a client can send endless distinct paths and,
over HTTP/2, methods): later new label sets are counted under ``method="other"`` and
``path="#other"``.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field

NAME = "http_request_duration_seconds"
PERCENTILES = (0.5, 0.75, 0.95, 0.98, 0.99, 0.999)
BUCKETS = (0.003, 0.03, 0.1, 0.3, 1.5, 10.0)
CONTENT_TYPE = b"text/plain"
MAX_SERIES = 1000
_INF_LABEL = 'le="+Inf"'
_GAMMA = 1.02  # sketch buckets grow by 2%: any quantile is within 1% of a value that was observed
_LOG_GAMMA = math.log(_GAMMA)
_VALUE_SEGMENT = re.compile(
    r"\d+|[\da-fA-F]{8}-[\da-fA-F]{4}-[\da-fA-F]{4}-[\da-fA-F]{4}-[\da-fA-F]{12}|[\da-f]{7,}|[\dA-F]{7,}"
)


def js_number(value: float) -> str:
    """A number as JavaScript's String(number) writes it (``1``, ``0.25``, ``1e-7``, ``1.5e+21``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    mantissa, _, exponent_text = repr(value).partition("e")
    exponent = int(exponent_text) if exponent_text else 0
    sign = "-" if mantissa.startswith("-") else ""
    mantissa = mantissa.lstrip("-")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # Decimal point position relative to the start of `digits` (ECMAScript's n).
    point = len(whole) + exponent if whole != "0" else exponent - (len(fraction) - len(fraction.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if 0 < point <= 21:
        if len(digits) <= point:
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    exp = point - 1
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'+' if exp > 0 else '-'}{abs(exp)}"


def normalize_path(raw_path: str) -> str:
    """url-value-parser's replacePathValues(path, '#val')."""
    segments = [segment for segment in raw_path.split("/") if segment]
    return "/" + "/".join("#val" if _VALUE_SEGMENT.fullmatch(seg) else seg for seg in segments)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Series:
    count: int = 0
    total: float = 0.0
    sketch: dict[int, int] = field(default_factory=dict)  # summary: log bucket → observations
    zeros: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))  # histogram

    def quantile(self, q: float) -> float:
        rank = q * self.count
        seen = self.zeros
        if seen >= rank and self.zeros:
            return 0.0
        for index in sorted(self.sketch):
            seen += self.sketch[index]
            if seen >= rank:
                return 2 * _GAMMA**index / (_GAMMA + 1)
        return 0.0


class PromBundle:
    def __init__(
        self,
        *,
        metrics_path: str,
        with_path: bool,
        with_method: bool,
        with_status: bool,
        metric_type: str,
    ) -> None:
        self.matches = re.compile("^" + metrics_path + "/?$").match
        self._with_path = with_path
        self._with_method = with_method
        self._with_status = with_status
        self._summary = metric_type == "summary"
        labels = ["status_code"] + (["method"] if with_method else []) + (["path"] if with_path else [])
        kind = "summary" if self._summary else "histogram"
        self._help = f"duration {kind} of http responses labeled with: {', '.join(labels)}"
        self._series: dict[tuple[str, ...], _Series] = {}

    def observe(self, method: str, status: int, raw_path: str, seconds: float) -> None:
        key: tuple[str, ...] = (
            ((str(status),) if self._with_status else ())
            + ((method,) if self._with_method else ())
            + ((normalize_path(raw_path),) if self._with_path else ())
        )
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                key = (
                    ((str(status),) if self._with_status else ())
                    + (("other",) if self._with_method else ())
                    + (("#other",) if self._with_path else ())
                )
            series = self._series.setdefault(key, _Series())
        series.count += 1
        series.total += seconds
        if self._summary:
            if seconds <= 0:
                series.zeros += 1
            else:
                index = math.ceil(math.log(seconds) / _LOG_GAMMA)
                series.sketch[index] = series.sketch.get(index, 0) + 1
        else:
            position = bisect_left(BUCKETS, seconds)
            if position < len(BUCKETS):
                series.buckets[position] += 1

    def _labels(self, key: tuple[str, ...], first: str | None = None) -> str:
        names = (
            (["status_code"] if self._with_status else [])
            + (["method"] if self._with_method else [])
            + (["path"] if self._with_path else [])
        )
        pairs = ([first] if first else []) + [
            f'{name}="{_label_value(value)}"' for name, value in zip(names, key, strict=True)
        ]
        return "{" + ",".join(pairs) + "}" if pairs else ""

    def render(self) -> bytes:
        kind = "summary" if self._summary else "histogram"
        lines = [f"# HELP {NAME} {self._help}", f"# TYPE {NAME} {kind}"]
        for key, series in self._series.items():
            if self._summary:
                for q in PERCENTILES:
                    label = f'quantile="{js_number(q)}"'
                    lines.append(f"{NAME}{self._labels(key, label)} {js_number(series.quantile(q))}")
            else:
                cumulative = 0
                for bound, count in zip(BUCKETS, series.buckets, strict=True):
                    cumulative += count
                    label = 'le="' + js_number(bound) + '"'
                    lines.append(f"{NAME}_bucket{self._labels(key, label)} {cumulative}")
                lines.append(f"{NAME}_bucket{self._labels(key, _INF_LABEL)} {series.count}")
            lines.append(f"{NAME}_sum{self._labels(key)} {js_number(series.total)}")
            lines.append(f"{NAME}_count{self._labels(key)} {series.count}")
        text = "\n".join(lines) + "\n\n# HELP up 1 = up, 0 = not up\n# TYPE up gauge\nup 1\n"
        return text.encode()
