"""The per-answer facts recorded for the picture: joint rows, latency histograms, run parameters, and
the additive JSON fields they become."""

from __future__ import annotations

import math

import pytest

from netdebug.probe.attribution import By
from netdebug.probe.client import Sample
from netdebug.probe.config import ProbeConfig, build_probe_config
from netdebug.probe.report import Tally, build_report
from netdebug.probe.runner import RunOutcome, Timing
from netdebug.probe.traffic import (
    BUCKETS_PER_DECADE,
    LAST_BUCKET,
    MAX_ANSWER_ROWS,
    REDACTED,
    TrafficTally,
    bucket_bound_ms,
    bucket_index,
    run_parameters,
)
from tests.netdebug.probe.test_report import CONTRACT_KEYS

ID = "spiffe://cluster.local/ns/echo/sa/netdebug"


def sample(version: str | None, pod: str | None, kind: str = "client-sidecar", status: int = 200) -> Sample:
    return Sample(status, version, pod, kind, ID, True, False, "HTTP/1.1")  # type: ignore[arg-type]


def timing(i: int, latency: float = 0.004) -> Timing:
    return Timing(i, i * 0.01, 0.0, latency)


@pytest.mark.parametrize(
    ("ms", "index"),
    [
        pytest.param(0.0, 0, id="zero"),
        pytest.param(-1.0, 0, id="negative"),
        pytest.param(math.nan, 0, id="nan"),
        pytest.param(0.001, 0, id="first-bound"),
        pytest.param(0.0011, 1, id="just-above-first"),
        pytest.param(1.0, 3 * BUCKETS_PER_DECADE, id="one-ms-is-a-bound"),
        pytest.param(1.01, 3 * BUCKETS_PER_DECADE + 1, id="above-one-ms"),
        pytest.param(10.0, 4 * BUCKETS_PER_DECADE, id="ten-ms"),
        pytest.param(1e6, LAST_BUCKET, id="1000s"),
        pytest.param(1e9, LAST_BUCKET, id="beyond-last-clamped"),
    ],
)
def test_bucket_index(ms: float, index: int) -> None:
    assert bucket_index(ms) == index


def test_every_latency_is_at_most_its_bucket_bound_and_above_the_previous() -> None:
    for k in range(1, 200):
        ms = 0.001 * 1.07**k
        i = bucket_index(ms)
        assert ms <= bucket_bound_ms(i) * (1 + 1e-3)
        assert ms > bucket_bound_ms(i - 1) * (1 - 1e-3)


def test_answers_are_joint_rows_and_errors_are_not_answers() -> None:
    t = TrafficTally()
    for i in range(3):
        t.record(timing(i), sample("v1", "echo-v1-a"))
    t.record(timing(3), sample("v2", "echo-v2-a"))
    t.record(timing(4), sample(None, None, "local-reply", 404))
    t.record(timing(5), Sample(None, None, None, None, None, False, False, None, "connect", "refused"))
    rows = t.summary(ProbeConfig(url="http://x/")).answers
    assert rows[0] == {
        "path": "client-sidecar",
        "version": "v1",
        "pod": "echo-v1-a",
        "status": 200,
        "mtls": True,
        "identity": ID,
        "count": 3,
    }
    assert sum(int(r["count"]) for r in rows) == 5  # type: ignore[call-overload]
    assert {r["path"] for r in rows} == {"client-sidecar", "local-reply"}


def test_rows_are_bounded_and_the_rest_counted() -> None:
    t = TrafficTally()
    for i in range(MAX_ANSWER_ROWS + 7):
        t.record(timing(i), sample("v1", f"pod-{i}"))
    t.record(timing(0), sample("v1", "pod-0"))  # an existing row still counts
    summary = t.summary(ProbeConfig(url="http://x/"))
    assert len(summary.answers) == MAX_ANSWER_ROWS
    assert summary.unrecorded == 7
    assert summary.answers[0]["count"] == 2


def test_histograms_per_version_hold_every_latency() -> None:
    t = TrafficTally()
    for i in range(100):
        t.record(timing(i, 0.001 * (1 + i % 10)), sample("v1" if i % 4 else "v2", "p"))
    t.record(timing(100, 0.5), sample(None, "p", status=503))
    hist = t.summary(ProbeConfig(url="http://x/")).latency_histograms
    versions = hist["versions"]
    assert isinstance(versions, dict)
    assert sum(versions["v1"]["count"]) == 75
    assert sum(versions["v2"]["count"]) == 25
    assert hist["unversioned"] == {"le_ms": [bucket_bound_ms(bucket_index(500.0))], "count": [1]}
    bounds = versions["v1"]["le_ms"]
    assert bounds == sorted(bounds)
    assert bounds[0] >= 1.0
    assert bounds[-1] >= 10.0


def test_parameters_redact_secrets_and_summarise_the_body() -> None:
    config = build_probe_config(
        {
            "url": "http://echo/echo",
            "headers": ["host: echo.local", "Authorization: Bearer xyz", "x-api-key: k", "cookie: c=1"],
            "data": "secret body",
            "concurrency": "4",
            "requests": "10",
        },
        {},
    )
    params = run_parameters(config)
    assert params["headers"] == [
        ["host", "echo.local"],
        ["Authorization", REDACTED],
        ["x-api-key", REDACTED],
        ["cookie", REDACTED],
    ]
    assert params["body_bytes"] == len("secret body")
    assert "secret body" not in str(params)
    assert params["model"] == "closed"
    assert params["latency_from"] == "actual send time"
    assert params["rps"] is None
    assert params["concurrency"] == 4


def test_open_model_parameters() -> None:
    params = run_parameters(ProbeConfig(url="http://x/", rps=20.0, by=By("pod")))
    assert params["model"] == "open"
    assert params["latency_from"] == "intended send time"
    assert params["rps"] == 20.0
    assert params["by"] == "pod"


def test_json_report_keeps_its_fields_and_adds_the_picture_ones() -> None:
    tally = Tally()
    for i in range(4):
        tally.record(timing(i), sample("v1" if i < 3 else "v2", "p"))
    doc = build_report(
        ProbeConfig(url="http://x/", expected=(("v1", 75.0), ("v2", 25.0))),
        tally,
        RunOutcome(4, 4, 0, 0.04, 0.0, 0.03, False, False),
    ).to_json()
    assert set(doc) >= CONTRACT_KEYS
    assert {"answers", "answers_unrecorded", "latency_histograms", "parameters"} <= set(doc)
    assert doc["counts"] == {"v1": 3, "v2": 1}  # the existing fields are unchanged
