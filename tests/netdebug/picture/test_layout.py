"""The fixed layered layout stays readable from 2 to 10 versions and 1 to 20 pods: nodes in their
columns without overlaps, inside the picture, labels cut to fit, edges left to right with their
labels on straight leads that do not collide."""

from __future__ import annotations

import itertools

import pytest

from netdebug.picture.charts import nice_ticks
from netdebug.picture.graph import build_graph
from netdebug.picture.layout import (
    CHAR_WIDTH,
    DETAIL_CHAR_WIDTH,
    LEAD,
    PAD,
    V_GAP,
    Placed,
    fit,
    layout,
    wrap,
)
from netdebug.picture.model import read_probe
from tests.netdebug.picture import reports

SHAPES = [
    pytest.param(versions, pods, id=f"{versions}v-{versions * pods}pods")
    for versions, pods in [(2, 1), (2, 10), (3, 1), (6, 2), (10, 1), (10, 2)]
]


def placed_for(versions: int, pods_per_version: int) -> Placed:
    return layout(build_graph(read_probe(reports.versions_report(versions, pods_per_version))))


def check_readable(placed: Placed) -> None:
    columns: dict[float, list[tuple[float, float]]] = {}
    for box in placed.boxes:
        assert box.x >= 0
        assert box.x + box.w <= placed.width
        assert box.y >= 0
        assert box.y + box.h <= placed.height
        columns.setdefault(box.x, []).append((box.y, box.y + box.h))
    for spans in columns.values():
        spans.sort()
        for (_, bottom), (top, _) in itertools.pairwise(spans):
            assert top - bottom >= V_GAP - 1e-6, "nodes in a column overlap or touch"
    xs = sorted(columns)
    for left, right in itertools.pairwise(xs):
        assert right - left >= min(b.w for b in placed.boxes if b.x == left) + 2 * LEAD
    labels: dict[float, list[float]] = {}
    for route in placed.routes:
        assert route.start[0] < route.end[0], "edges run left to right"
        x, y = route.label_at
        labels.setdefault(round(x), []).append(y)
    for ys in labels.values():
        ys.sort()
        for a, b in itertools.pairwise(ys):
            assert b - a >= 2 * 12.0, "labels on the same lead column overlap"


@pytest.mark.parametrize(("versions", "pods"), SHAPES)
def test_layout_is_readable(versions: int, pods: int) -> None:
    placed = placed_for(versions, pods)
    check_readable(placed)
    assert len([b for b in placed.boxes if b.node.role == "pod"]) == versions * pods


def test_twenty_pods_of_two_versions() -> None:
    placed = layout(build_graph(read_probe(reports.pods_report(20))))
    check_readable(placed)
    v1, v2 = (placed.box(f"version-{i}") for i in range(2))
    v1_pods = [b for b in placed.boxes if b.node.label.startswith("echo-v1")]
    v2_pods = [b for b in placed.boxes if b.node.label.startswith("echo-v2")]
    # Pods grouped under their version: all of v1's above all of v2's, each version beside its pods.
    assert max(b.y for b in v1_pods) < min(b.y for b in v2_pods)
    assert min(b.y for b in v1_pods) <= v1.cy <= max(b.y + b.h for b in v1_pods)
    assert min(b.y for b in v2_pods) <= v2.cy <= max(b.y + b.h for b in v2_pods)


def test_height_grows_linearly_with_pods() -> None:
    heights = [placed_for(2, pods).height for pods in (3, 6, 9)]  # 6, 12, 18 pods
    pod = next(b for b in placed_for(2, 3).boxes if b.node.role == "pod")
    assert heights[1] - heights[0] == pytest.approx(6 * (pod.h + V_GAP))
    assert heights[2] - heights[1] == pytest.approx(6 * (pod.h + V_GAP))


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        pytest.param("v1", 128.0, ["v1"], id="short"),
        pytest.param(
            "echo-service.echo.svc.cluster.local",
            176.0,
            ["echo-service.echo.", "svc.cluster.local"],
            id="host",
        ),
        pytest.param("echo-v10-7d9f8c6b5-00000", 190.0, ["echo-v10-7d9f8c6b5-", "00000"], id="pod-at-a-dash"),
        pytest.param("x" * 60, 128.0, ["x" * 15, "x" * 14 + "…"], id="no-break-point"),
    ],
)
def test_wrap(text: str, width: float, lines: list[str]) -> None:
    assert wrap(text, width) == lines
    room = int((width - 2 * PAD) / CHAR_WIDTH)
    assert all(len(line) <= room for line in lines)


def test_fit_cuts_with_an_ellipsis() -> None:
    assert fit("no route/overflow/fault", 164.0, DETAIL_CHAR_WIDTH) == "no route/overflow/fault"
    assert fit("a" * 40, 164.0, DETAIL_CHAR_WIDTH) == "a" * 22 + "…"


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        pytest.param(1.9, 13.0, [1.0, 2.0, 5.0, 10.0, 20.0], id="one-decade-1-2-5"),
        pytest.param(0.05, 4000.0, [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0], id="many-decades"),
        pytest.param(2.0, 5.0, [2.0, 5.0], id="on-ticks"),
    ],
)
def test_nice_ticks(low: float, high: float, ticks: list[float]) -> None:
    assert nice_ticks(low, high) == ticks
