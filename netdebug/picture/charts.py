"""The verdict's error-bar chart and the latency histograms, as inline SVG. Pure.

Both read in black and white: the tolerance band is hatched, the expected share is a dashed line with
a diamond, the observed share a filled dot on its interval's error bar; every row carries its numbers
in text too, and the page repeats them in a table.
"""

from __future__ import annotations

import math
from typing import Final

from netdebug.picture.markup import Markup, num, tag
from netdebug.picture.model import HistogramView, ProbeView
from netdebug.picture.svg import SVG_NS

LABEL_W: Final = 120.0
PLOT_W: Final = 440.0
TEXT_W: Final = 250.0
ROW_H: Final = 30.0
TOP: Final = 26.0
AXIS_H: Final = 28.0
HIST_ROW_H: Final = 46.0
BUCKET_RATIO: Final = 10.0 ** (1.0 / 20.0)  # the prober's 20 buckets per decade (probe/traffic.py)


def axis_tick(x: float, height: float, label: str) -> list[Markup]:
    """A chart's vertical grid line at `x` and its label under the axis."""
    return [
        tag(
            "line",
            {"x1": num(x), "x2": num(x), "y1": num(TOP - 6), "y2": num(height - AXIS_H), "class_": "grid"},
        ),
        tag(
            "text",
            {"x": num(x), "y": num(height - AXIS_H + 16), "class_": "tick", "text_anchor": "middle"},
            label,
        ),
    ]


def _svg(prefix: str, name: str, width: float, height: float, title: str, desc: str, *body: Markup) -> Markup:
    return tag(
        "svg",
        {
            "xmlns": SVG_NS,
            "class_": f"chart {name}",
            "viewBox": f"0 0 {num(width, 0)} {num(height, 0)}",
            "width": num(width, 0),
            "role": "img",
            "aria_labelledby": f"{prefix}-{name}-title {prefix}-{name}-desc",
        },
        tag("title", {"id": f"{prefix}-{name}-title"}, title),
        tag("desc", {"id": f"{prefix}-{name}-desc"}, desc),
        *body,
    )


def confidence_of(view: ProbeView) -> float:
    value = view.parameters.get("confidence")
    return float(value) if isinstance(value, int | float) and 0 < value < 1 else 0.95


def split_svg(view: ProbeView, prefix: str) -> Markup:
    """Expected and observed share per version, the interval as an error bar, the tolerance band."""
    tol = view.tolerance_pct or 0.0
    level = f"{confidence_of(view) * 100:g}%"
    reach = [v.ci_high_pct for v in view.versions]
    reach += [v.expected_pct + tol for v in view.versions if v.expected_pct is not None]
    top = min(100.0, max(10.0, math.ceil((max(reach, default=100.0) + 2.0) / 10.0) * 10.0))

    def sx(pct: float) -> float:
        return LABEL_W + PLOT_W * max(0.0, min(pct, top)) / top

    width = LABEL_W + PLOT_W + TEXT_W
    height = TOP + ROW_H * len(view.versions) + AXIS_H
    hatch = tag(
        "pattern",
        {
            "id": f"{prefix}-hatch",
            "width": "6",
            "height": "6",
            "patternUnits": "userSpaceOnUse",
            "patternTransform": "rotate(45)",
        },
        tag("rect", {"width": "6", "height": "6", "class_": "hatch-bg"}),
        tag("line", {"x1": "0", "y1": "0", "x2": "0", "y2": "6", "class_": "hatch-line"}),
    )
    ticks: list[Markup] = []
    step = 10.0 if top <= 50 else 25.0 if top <= 100 else 50.0
    value = 0.0
    while value <= top + 1e-9:
        x = sx(value)
        ticks += axis_tick(x, height, f"{value:g}%")
        value += step
    rows: list[Markup] = []
    desc: list[str] = []
    for i, v in enumerate(view.versions):
        y = TOP + ROW_H * i + ROW_H / 2.0
        parts: list[Markup] = [
            tag(
                "text",
                {"x": num(LABEL_W - 8), "y": num(y + 4), "class_": "row-label", "text_anchor": "end"},
                v.version[:18],
            )
        ]
        words = (
            f"{v.version}: observed {v.observed_pct:.1f}% "
            f"({level} interval {v.ci_low_pct:.1f}–{v.ci_high_pct:.1f}%)"
        )
        if v.expected_pct is not None:
            lo, hi = sx(v.expected_pct - tol), sx(v.expected_pct + tol)
            parts.append(
                tag(
                    "rect",
                    {
                        "x": num(lo),
                        "y": num(y - 10),
                        "width": num(max(hi - lo, 1.0)),
                        "height": "20",
                        "class_": "band",
                        "fill": f"url(#{prefix}-hatch)",
                    },
                )
            )
            ex = sx(v.expected_pct)
            parts.append(
                tag(
                    "line",
                    {
                        "x1": num(ex),
                        "x2": num(ex),
                        "y1": num(y - 12),
                        "y2": num(y + 12),
                        "class_": "expected",
                    },
                )
            )
            parts.append(
                tag("path", {"d": f"M{num(ex)},{num(y - 5)} l5,5 l-5,5 l-5,-5 z", "class_": "expected-mark"})
            )
            words += f", expected {v.expected_pct:.1f}% ± {tol:g}"
        else:
            words += ", not expected"
        lo, hi = sx(v.ci_low_pct), sx(v.ci_high_pct)
        parts.append(tag("line", {"x1": num(lo), "x2": num(hi), "y1": num(y), "y2": num(y), "class_": "ci"}))
        for cap in (lo, hi):
            parts.append(
                tag(
                    "line",
                    {"x1": num(cap), "x2": num(cap), "y1": num(y - 6), "y2": num(y + 6), "class_": "ci"},
                )
            )
        parts.append(
            tag("circle", {"cx": num(sx(v.observed_pct)), "cy": num(y), "r": "4.5", "class_": "observed"})
        )
        exp_text = "not expected" if v.expected_pct is None else f"exp {v.expected_pct:.1f}%"
        parts.append(
            tag(
                "text",
                {"x": num(LABEL_W + PLOT_W + 12), "y": num(y + 4), "class_": "row-value"},
                f"{v.observed_pct:.1f}% [{v.ci_low_pct:.1f}–{v.ci_high_pct:.1f}] {exp_text}",
            )
        )
        rows.append(
            tag("g", {"class_": "split-row", "data_version": v.version}, tag("title", None, words), *parts)
        )
        desc.append(words)
    return _svg(
        prefix,
        "split",
        width,
        height,
        f"Observed versus expected share per version ({level} intervals, tolerance ±{tol:g} points)",
        "; ".join(desc) or "no version answered",
        tag("defs", None, hatch),
        *ticks,
        *rows,
    )


def latency_groups(view: ProbeView) -> list[tuple[str, HistogramView]]:
    """(name, histogram) per version in the verdict's order, then answers without a version."""
    if view.histograms is None:
        return []
    names = [v.version for v in view.versions if v.version in view.histograms]
    names += sorted(k for k in view.histograms if k not in names)
    groups = [(name, view.histograms[name]) for name in names if view.histograms[name].total]
    if view.unversioned_histogram is not None and view.unversioned_histogram.total:
        groups.append(("(no version)", view.unversioned_histogram))
    return groups


def nice_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks covering [low, high] on a log axis: from the largest tick <= low to the smallest
    tick >= high; only decades when the range spans more than three of them."""
    steps = (1.0,) if math.log10(high / low) > 3 else (1.0, 2.0, 5.0)
    candidates = sorted(
        m * 10.0**d
        for d in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
        for m in steps
    )
    first = max(c for c in candidates if c <= low * 1.0000001)
    last = min(c for c in candidates if c >= high / 1.0000001)
    return [float(f"{c:.6g}") for c in candidates if first <= c <= last]


def _fmt_ms(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def latency_svg(view: ProbeView, prefix: str, measured_from: str) -> Markup | None:
    """One histogram row per version on a shared logarithmic axis, with p50 and p99 marked."""
    groups = latency_groups(view)
    if not groups:
        return None
    low = max(min(h.le_ms[0] for _, h in groups) / BUCKET_RATIO, 1e-3)
    high = max(max(h.le_ms[-1] for _, h in groups), low * 10.0)
    ticks = nice_ticks(low, high)
    lo, hi = math.log10(ticks[0]), math.log10(ticks[-1])

    def sx(ms: float) -> float:
        frac = (math.log10(max(ms, ticks[0])) - lo) / (hi - lo)
        return LABEL_W + PLOT_W * max(0.0, min(1.0, frac))

    width = LABEL_W + PLOT_W + TEXT_W
    height = TOP + HIST_ROW_H * len(groups) + AXIS_H
    body: list[Markup] = []
    for value in ticks:
        x = sx(value)
        body += axis_tick(x, height, f"{value:g}")
    body.append(
        tag(
            "text",
            {"x": num(LABEL_W + PLOT_W), "y": num(height - 2), "class_": "tick", "text_anchor": "end"},
            "ms (log scale)",
        )
    )
    desc: list[str] = []
    for i, (name, h) in enumerate(groups):
        base = TOP + HIST_ROW_H * (i + 1) - 8
        peak = max(h.count)
        bars: list[Markup] = []
        for bound, n in zip(h.le_ms, h.count, strict=True):
            x0, x1 = sx(bound / BUCKET_RATIO), sx(bound)
            bh = (HIST_ROW_H - 14) * n / peak
            bars.append(
                tag(
                    "rect",
                    {
                        "x": num(x0),
                        "y": num(base - bh),
                        "width": num(max(x1 - x0 - 0.5, 0.8)),
                        "height": num(bh),
                        "class_": "bar",
                    },
                )
            )
        p50, p99 = h.quantile(0.5), h.quantile(0.99)
        marks: list[Markup] = []
        for q, at, anchor, dx in (("p50", p50, "end", -2.0), ("p99", p99, "start", 2.0)):
            if at is None:
                continue
            x = sx(at)
            marks.append(
                tag(
                    "line",
                    {
                        "x1": num(x),
                        "x2": num(x),
                        "y1": num(base - HIST_ROW_H + 12),
                        "y2": num(base),
                        "class_": f"mark {q}",
                    },
                )
            )
            marks.append(
                tag(
                    "text",
                    {
                        "x": num(x + dx),
                        "y": num(base - HIST_ROW_H + 20),
                        "class_": "mark-text",
                        "text_anchor": anchor,
                    },
                    q,
                )
            )
        words = f"{name}: {h.total} answers, p50 ≤ {_fmt_ms(p50 or 0)} ms, p99 ≤ {_fmt_ms(p99 or 0)} ms"
        desc.append(words)
        body.append(
            tag(
                "g",
                {"class_": "latency-row", "data_version": name, "data_count": h.total},
                tag("title", None, words),
                tag(
                    "line",
                    {
                        "x1": num(LABEL_W),
                        "x2": num(LABEL_W + PLOT_W),
                        "y1": num(base),
                        "y2": num(base),
                        "class_": "baseline",
                    },
                ),
                tag(
                    "text",
                    {"x": num(LABEL_W - 8), "y": num(base - 10), "class_": "row-label", "text_anchor": "end"},
                    name[:18],
                ),
                *bars,
                *marks,
                tag(
                    "text",
                    {"x": num(LABEL_W + PLOT_W + 12), "y": num(base - 10), "class_": "row-value"},
                    f"n {h.total}  p50 ≤{_fmt_ms(p50 or 0)}  p99 ≤{_fmt_ms(p99 or 0)} ms",
                ),
            )
        )
    return _svg(
        prefix,
        "latency",
        width,
        height,
        f"Latency per version, measured from the {measured_from} (log scale)",
        "; ".join(desc),
        *body,
    )
