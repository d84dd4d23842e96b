"""A probe's JSON report (`netdebug probe -o json`, or a plan attempt's `details`) read into typed
views for the page. Pure.

The report may come from a file written by another (older or newer) netdebug: every field is checked
for its type, an error names the field (`ReportError`), and the fields added for the picture
(`answers`, `latency_histograms`, `parameters`) are optional — without them the page draws what the
older fields allow and says what is missing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

MAX_NAME: Final = 200  # names longer than this are cut (a hostile server can send any header)


class ReportError(ValueError):
    """The document is not a usable netdebug report; the message names the field."""


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: str
    count: int
    observed_pct: float
    expected_pct: float | None
    ci_low_pct: float
    ci_high_pct: float


@dataclass(frozen=True, slots=True)
class AnswerRow:
    path: str | None
    version: str | None
    pod: str | None
    status: int | None
    mtls: bool
    identity: str | None
    count: int


@dataclass(frozen=True, slots=True)
class HistogramView:
    le_ms: tuple[float, ...]
    count: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.count)

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (0 < q <= 1); None when empty."""
        total = self.total
        if total == 0:
            return None
        need = q * total
        running = 0
        for bound, n in zip(self.le_ms, self.count, strict=True):
            running += n
            if running >= need:
                return bound
        return self.le_ms[-1]


@dataclass(frozen=True)
class ProbeView:
    url: str
    verdict: str
    exit_code: int | None
    requests: int
    launched: int
    dropped: int
    versions: tuple[VersionRow, ...]
    p_value: float | None
    alpha: float | None
    tolerance_pct: float | None
    needed_requests: int | None
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    fingerprints: dict[str, int]
    mtls_answers: int
    identities: dict[str, int]
    retried: int
    pods: dict[str, int]
    errors: dict[str, int]
    error_details: dict[str, str]
    status_codes: dict[str, int]
    latency_ms: dict[str, float | None]
    lateness_ms: dict[str, float | None]
    achieved_rps: float | None
    elapsed_s: float | None
    interrupted: bool
    stopped_early: bool
    message: str | None
    answers: tuple[AnswerRow, ...] | None  # None: the report predates per-answer rows
    answers_unrecorded: int
    histograms: dict[str, HistogramView] | None
    unversioned_histogram: HistogramView | None
    parameters: dict[str, object]

    @property
    def expected(self) -> bool:
        return any(v.expected_pct is not None for v in self.versions)


class _Reader:
    """Typed access to one JSON object, naming the field in every error."""

    def __init__(self, doc: object, where: str) -> None:
        if not isinstance(doc, Mapping):
            raise ReportError(f"{where or 'the report'}: expected a JSON object, got {_type(doc)}")
        self.doc = doc
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.doc.get(key) is not None

    def _get(self, key: str, default: object) -> object:
        value = self.doc.get(key)
        return default if value is None else value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.doc.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise ReportError(f"field {self._name(key)}: expected a string, got {_type(value)}")
        return _cut(value)

    def opt_text(self, key: str) -> str | None:
        return None if self.doc.get(key) is None else self.text(key)

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.doc.get(key)
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportError(f"field {self._name(key)}: expected an integer, got {_type(value)}")
        if value < 0:
            raise ReportError(f"field {self._name(key)}: expected a count >= 0, got {value}")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self.doc.get(key) is None else self.integer(key)

    def number(self, key: str) -> float | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ReportError(f"field {self._name(key)}: expected a number, got {_type(value)}")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self.doc.get(key, False)
        if not isinstance(value, bool):
            raise ReportError(f"field {self._name(key)}: expected true or false, got {_type(value)}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ReportError(f"field {self._name(key)}: expected a list of strings")
        return tuple(value)

    def counts(self, key: str) -> dict[str, int]:
        value = self._get(key, {})
        if not isinstance(value, Mapping):
            raise ReportError(f"field {self._name(key)}: expected an object of counts, got {_type(value)}")
        sub = _Reader(value, self._name(key))
        return {_cut(str(k)): sub.integer(str(k)) for k in value}

    def texts(self, key: str) -> dict[str, str]:
        value = self._get(key, {})
        if not isinstance(value, Mapping):
            raise ReportError(f"field {self._name(key)}: expected an object, got {_type(value)}")
        sub = _Reader(value, self._name(key))
        return {_cut(str(k)): sub.text(str(k)) for k in value}

    def millis(self, key: str) -> dict[str, float | None]:
        value = self._get(key, {})
        if not isinstance(value, Mapping):
            raise ReportError(f"field {self._name(key)}: expected an object, got {_type(value)}")
        sub = _Reader(value, self._name(key))
        return {str(k): sub.number(str(k)) for k in value}

    def objects(self, key: str) -> list[_Reader]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise ReportError(f"field {self._name(key)}: expected a list, got {_type(value)}")
        return [_Reader(item, f"{self._name(key)}[{i}]") for i, item in enumerate(value)]

    def child(self, key: str) -> _Reader:
        return _Reader(self._get(key, {}), self._name(key))


def _type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "nothing" if value is None else type(value).__name__
    )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _histogram(reader: _Reader) -> HistogramView:
    bounds = reader.doc.get("le_ms", [])
    counts = reader.doc.get("count", [])
    if (
        not isinstance(bounds, list)
        or not isinstance(counts, list)
        or len(bounds) != len(counts)
        or not all(isinstance(b, int | float) and not isinstance(b, bool) and b >= 0 for b in bounds)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
        or any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds))
    ):
        raise ReportError(
            f"field {reader.where}: expected le_ms (ascending) and count lists of the same length"
        )
    return HistogramView(tuple(float(b) for b in bounds), tuple(counts))


def read_probe(doc: object, where: str = "") -> ProbeView:
    """A probe JSON report -> ProbeView; raises ReportError naming the first bad field."""
    r = _Reader(doc, where)
    if not r.has("verdict") or not r.has("url"):
        raise ReportError(f"{where or 'the document'} is not a netdebug probe report (no url/verdict)")
    versions = tuple(
        VersionRow(
            version=v.text("version"),
            count=v.integer("count"),
            observed_pct=v.number("observed_pct") or 0.0,
            expected_pct=v.number("expected_pct"),
            ci_low_pct=v.number("ci_low_pct") or 0.0,
            ci_high_pct=v.number("ci_high_pct") or 0.0,
        )
        for v in r.objects("versions")
    )
    answers: tuple[AnswerRow, ...] | None = None
    if r.has("answers"):
        answers = tuple(
            AnswerRow(
                path=a.opt_text("path"),
                version=a.opt_text("version"),
                pod=a.opt_text("pod"),
                status=a.opt_integer("status"),
                mtls=a.flag("mtls"),
                identity=a.opt_text("identity"),
                count=a.integer("count"),
            )
            for a in r.objects("answers")
        )
    histograms: dict[str, HistogramView] | None = None
    unversioned: HistogramView | None = None
    if r.has("latency_histograms"):
        h = r.child("latency_histograms")
        per_version = h.child("versions")
        histograms = {_cut(str(name)): _histogram(per_version.child(str(name))) for name in per_version.doc}
        unversioned = _histogram(h.child("unversioned"))
    mtls = r.child("mtls")
    parameters = r.child("parameters").doc
    return ProbeView(
        url=r.text("url"),
        verdict=r.text("verdict"),
        exit_code=r.opt_integer("exit_code"),
        requests=r.integer("requests", 0),
        launched=r.integer("launched", 0),
        dropped=r.integer("dropped", 0),
        versions=versions,
        p_value=r.number("p_value"),
        alpha=r.number("alpha"),
        tolerance_pct=r.number("tolerance_pct"),
        needed_requests=r.opt_integer("needed_requests"),
        reasons=r.strings("reasons"),
        warnings=r.strings("warnings"),
        fingerprints=r.counts("fingerprints"),
        mtls_answers=mtls.integer("answers", 0),
        identities=mtls.counts("identities"),
        retried=r.integer("retried", 0),
        pods=r.counts("pods"),
        errors=r.counts("errors"),
        error_details=r.texts("error_details"),
        status_codes=r.counts("status_codes"),
        latency_ms=r.millis("latency_ms"),
        lateness_ms=r.millis("lateness_ms"),
        achieved_rps=r.number("achieved_rps"),
        elapsed_s=r.number("elapsed_s"),
        interrupted=r.flag("interrupted"),
        stopped_early=r.flag("stopped_early"),
        message=r.opt_text("message"),
        answers=answers,
        answers_unrecorded=r.integer("answers_unrecorded", 0),
        histograms=histograms,
        unversioned_histogram=unversioned,
        parameters={str(k): v for k, v in parameters.items()},
    )


def display_url(url: str) -> str:
    """The URL without a password in its user part (reports may be shared)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def transport_errors(view: ProbeView) -> dict[str, int]:
    """Requests that got no answer at all (not `no-version`, which is an answer without a version)."""
    return {k: n for k, n in view.errors.items() if k != "no-version" and n}
