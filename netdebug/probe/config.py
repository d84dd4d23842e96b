"""`ProbeConfig`: the one frozen, validated configuration of `netdebug probe`, built from flag values
(or a plan's mapping) and the environment: flag > env (`NETDEBUG_*`) > default. Pure: the only input it
reads is `--expect-from` (a file, a directory, or a kustomization rendered by kubectl), through an
injected reader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args
from urllib.parse import urlsplit

from netdebug.context import UsageError
from netdebug.k8s.documents import ManifestError
from netdebug.k8s.load import read_manifest_text
from netdebug.probe.attribution import By, parse_by
from netdebug.probe.fingerprint import KINDS
from netdebug.probe.stats import normalise_weights
from netdebug.probe.weights import parse_weights, weights_from_mapping, weights_from_routes
from netdebug.proxy import Proxy, ProxyError, select_proxy
from netdebug.sidecar import Policy, SidecarEndpoints, in_job_from_env, parse_policy

OutputFormat = Literal["text", "json"]

DEFAULT_REQUESTS = 500
DEFAULT_RPS = 50.0

# option name -> environment variable. Flags win over these, these over the defaults.
ENV_VARS: dict[str, str] = {
    "url": "NETDEBUG_URL",
    "requests": "NETDEBUG_REQUESTS",
    "duration": "NETDEBUG_DURATION",
    "rps": "NETDEBUG_RPS",
    "poisson": "NETDEBUG_POISSON",
    "concurrency": "NETDEBUG_CONCURRENCY",
    "max_in_flight": "NETDEBUG_MAX_IN_FLIGHT",
    "method": "NETDEBUG_METHOD",
    "data": "NETDEBUG_DATA",
    "headers": "NETDEBUG_HEADERS",
    "http2": "NETDEBUG_HTTP2",
    "insecure": "NETDEBUG_INSECURE",
    "cacert": "NETDEBUG_CACERT",
    "cert": "NETDEBUG_CERT",
    "key": "NETDEBUG_KEY",
    "timeout": "NETDEBUG_TIMEOUT",
    "new_connection": "NETDEBUG_NEW_CONNECTION",
    "resolve": "NETDEBUG_RESOLVE",
    "connect_to": "NETDEBUG_CONNECT_TO",
    "proxy": "NETDEBUG_PROXY",
    "noproxy": "NETDEBUG_NOPROXY",
    "by": "NETDEBUG_BY",
    "expect": "NETDEBUG_EXPECT",
    "expect_from": "NETDEBUG_EXPECT_FROM",
    "tolerance": "NETDEBUG_TOLERANCE",
    "alpha": "NETDEBUG_ALPHA",
    "confidence": "NETDEBUG_CONFIDENCE",
    "early_stop": "NETDEBUG_EARLY_STOP",
    "max_error_rate": "NETDEBUG_MAX_ERROR_RATE",
    "require_path": "NETDEBUG_REQUIRE_PATH",
    "output": "NETDEBUG_OUTPUT",
    "output_requests": "NETDEBUG_OUTPUT_REQUESTS",
    "wait_sidecar": "NETDEBUG_WAIT_SIDECAR",
    "sidecar_timeout": "NETDEBUG_SIDECAR_TIMEOUT",
    "quit_sidecar": "NETDEBUG_QUIT_SIDECAR",
    "seed": "NETDEBUG_SEED",
    "live": "NETDEBUG_LIVE",
    "report": "NETDEBUG_REPORT",
}


@dataclass(frozen=True)
class ProbeConfig:
    url: str
    method: str = "GET"
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    requests: int | None = DEFAULT_REQUESTS
    duration: float | None = None
    rps: float | None = DEFAULT_RPS  # None: closed model
    poisson: bool = False
    concurrency: int | None = None
    max_in_flight: int = 1000
    http2: bool = False
    insecure: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 5.0
    new_connection: bool = False
    resolve: tuple[tuple[str, int, str], ...] = ()
    connect_to: tuple[tuple[str, int | None, str, int | None], ...] = ()
    proxy: Proxy | None = None  # chosen as curl chooses (netdebug/proxy.py)
    by: By = field(default_factory=lambda: By("auto"))
    expected: tuple[tuple[str, float], ...] | None = None  # percentages summing to 100
    expect_source: str | None = None
    tolerance: float = 5.0  # percentage points
    alpha: float = 0.001
    confidence: float = 0.95
    early_stop: bool = False
    max_error_rate: float = 0.05
    require_path: tuple[str, ...] = ()
    output: OutputFormat = "text"
    output_requests: str | None = None
    wait_sidecar: Policy = "auto"
    sidecar_timeout: float = 60.0
    quit_sidecar: Policy = "auto"
    in_job: bool = False  # --job / NETDEBUG_IN_JOB: the auto quit applies
    seed: int | None = None
    live: Policy = "auto"
    report: str | None = None  # --report FILE.html: the HTML picture (netdebug/picture/)
    sidecar: SidecarEndpoints = field(default_factory=SidecarEndpoints)
    pod_annotations_file: str | None = None  # Downward API annotations: classic or native sidecar

    @property
    def expected_map(self) -> dict[str, float] | None:
        return dict(self.expected) if self.expected is not None else None

    @property
    def host_header(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "host"), None)


_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


def _raw(name: str, values: Mapping[str, object], env: Mapping[str, str]) -> tuple[object, str]:
    """The value (flag first, then env) and where it came from, for error messages."""
    value = values.get(name)
    if value is not None and value != []:
        return value, "--" + name.replace("_", "-")
    var = ENV_VARS.get(name)
    if var and var in env:
        return env[var], var
    return None, ""


def _bool(name: str, values: Mapping[str, object], env: Mapping[str, str], default: bool) -> bool:
    value, src = _raw(name, values, env)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{src}: '{value}' is not a boolean (use true/false)")


def _number(
    name: str,
    values: Mapping[str, object],
    env: Mapping[str, str],
    *,
    kind: Callable[[str], float | int],
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float | int | None:
    value, src = _raw(name, values, env)
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"{src}: '{value}' is not a number")
    try:
        number = kind(str(value).strip()) if not isinstance(value, int | float) else kind(str(value))
    except ValueError:
        raise UsageError(f"{src}: '{value}' is not a valid number") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise UsageError(f"{src}: '{value}' must be finite")
    if low is not None and (number <= low if low_open else number < low):
        raise UsageError(f"{src}: {value} must be {'>' if low_open else '>='} {low:g}")
    if high is not None and number > high:
        raise UsageError(f"{src}: {value} must be <= {high:g}")
    return number


def _int_kind(text: str) -> int:
    if re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        return int(float(text))
    raise ValueError(text)


def _duration(text: str) -> float:
    """'10', '10s', '1.5m', '500ms', '1h' -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(text)
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def _policy(name: str, values: Mapping[str, object], env: Mapping[str, str]) -> Policy:
    value, src = _raw(name, values, env)
    if value is None:
        return "auto"
    try:
        return parse_policy(value, src)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _choice(
    name: str, values: Mapping[str, object], env: Mapping[str, str], choices: tuple[str, ...], default: str
) -> str:
    value, src = _raw(name, values, env)
    if value is None:
        return default
    text = str(value).strip().lower()
    if text not in choices:
        raise UsageError(f"{src}: '{value}' is not one of {', '.join(choices)}")
    return text


def _string_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise UsageError(f"expected a list, got {type(value).__name__}")


def _headers(values: Mapping[str, object], env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    value, src = _raw("headers", values, env)
    if value is None:
        return ()
    items: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        # From the environment several headers are separated by newlines; flags repeat -H.
        lines = str(value).splitlines() if isinstance(value, str) else _string_list(value)
        for line in lines:
            if not line.strip():
                continue
            name, sep, val = line.partition(":")
            if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
                raise UsageError(f"{src}: '{line}' is not 'Name: value'")
            items.append((name.strip(), val.strip()))
    for name, _ in items:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise UsageError(f"{src}: bad header name '{name}'")
    return tuple(items)


def _resolve_entries(
    values: Mapping[str, object], env: Mapping[str, str]
) -> tuple[tuple[str, int, str], ...]:
    value, src = _raw("resolve", values, env)
    if value is None:
        return ()
    out: list[tuple[str, int, str]] = []
    for entry in _string_list(value) if not isinstance(value, str) else value.split(","):
        m = re.fullmatch(r"([^:\s]+):(\d+):(\[[0-9a-fA-F:.]+\]|[^:\s]+)", entry.strip())
        if not m:
            raise UsageError(f"{src}: '{entry}' is not HOST:PORT:ADDRESS")
        out.append((m.group(1), int(m.group(2)), m.group(3)))
    return tuple(out)


def _connect_to_entries(
    values: Mapping[str, object], env: Mapping[str, str]
) -> tuple[tuple[str, int | None, str, int | None], ...]:
    value, src = _raw("connect_to", values, env)
    if value is None:
        return ()
    out: list[tuple[str, int | None, str, int | None]] = []
    for entry in _string_list(value) if not isinstance(value, str) else value.split(","):
        m = re.fullmatch(r"([^:\s]*):(\d*):(\[[0-9a-fA-F:.]+\]|[^:\s]*):(\d*)", entry.strip())
        if not m:
            raise UsageError(f"{src}: '{entry}' is not HOST1:PORT1:HOST2:PORT2 (parts may be empty)")
        p1 = int(m.group(2)) if m.group(2) else None
        p2 = int(m.group(4)) if m.group(4) else None
        out.append((m.group(1), p1, m.group(3), p2))
    return tuple(out)


def _expected(
    values: Mapping[str, object],
    env: Mapping[str, str],
    url: str,
    host_header: str | None,
    read_source: Callable[[str], str],
) -> tuple[tuple[tuple[str, float], ...] | None, str | None]:
    expect, src = _raw("expect", values, env)
    expect_from, src_from = _raw("expect_from", values, env)
    if expect is not None and expect_from is not None:
        raise UsageError("give --expect or --expect-from, not both")
    try:
        if expect is not None:
            if isinstance(expect, Mapping):
                weights = weights_from_mapping({str(k): v for k, v in expect.items()})
            else:
                weights = parse_weights(str(expect))
            source = "expect"
        elif expect_from is not None:
            path = str(expect_from)
            try:
                text = read_source(path)
            except OSError as exc:
                raise UsageError(f"{src_from}: cannot read {path}: {exc.strerror or exc}") from None
            except ManifestError as exc:
                raise UsageError(f"{src_from}: {exc}") from None
            weights = weights_from_routes(text, url, host_header)
            source = path
        else:
            return None, None
    except ValueError as exc:
        raise UsageError(f"{src or src_from}: {exc}") from None
    pct = normalise_weights(weights)
    return tuple(pct.items()), source


def build_probe_config(
    values: Mapping[str, object],
    env: Mapping[str, str],
    read_source: Callable[[str], str] = read_manifest_text,
) -> ProbeConfig:
    """Validate everything once; raises UsageError with a one-line message."""
    url_value, _ = _raw("url", values, env)
    if url_value is None:
        raise UsageError("a URL is required (argument URL or NETDEBUG_URL)")
    url = str(url_value).strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"'{url_value}' is not an http(s) URL")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError(f"'{url_value}' has an invalid port") from None
    if any(c.isspace() for c in url) or not re.fullmatch(r"[A-Za-z0-9._~\-\[\]:%]+", parts.hostname):
        raise UsageError(f"'{url_value}' has an invalid host name")

    requests = _number("requests", values, env, kind=_int_kind, low=1)
    duration = _number("duration", values, env, kind=_duration, low=0, low_open=True)
    rps = _number("rps", values, env, kind=float, low=0, low_open=True)
    concurrency = _number("concurrency", values, env, kind=_int_kind, low=1, high=10_000)
    if rps is not None and concurrency is not None:
        raise UsageError("--rps (open model) and -c/--concurrency (closed model) exclude each other")
    if requests is None and duration is None:
        requests = DEFAULT_REQUESTS
    if rps is None and concurrency is None:
        rps = DEFAULT_RPS

    headers = _headers(values, env)
    host_header = next((v for k, v in headers if k.lower() == "host"), None)
    expected, expect_source = _expected(values, env, url, host_header, read_source)

    data, _ = _raw("data", values, env)
    method_value, _ = _raw("method", values, env)
    method = str(method_value or ("POST" if data is not None else "GET")).upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise UsageError(f"--method: '{method}' is not an HTTP method")
    body = data.encode("utf-8") if isinstance(data, str) else data if isinstance(data, bytes) else None

    by_value, _ = _raw("by", values, env)
    try:
        by = parse_by(str(by_value)) if by_value is not None else By("auto")
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    require_value, req_src = _raw("require_path", values, env)
    require: tuple[str, ...] = ()
    if require_value is not None:
        raw_list = (
            str(require_value).split(",") if isinstance(require_value, str) else _string_list(require_value)
        )
        require = tuple(k.strip() for k in raw_list if k.strip())
        bad = [k for k in require if k not in KINDS]
        if bad:
            raise UsageError(f"{req_src}: unknown path kind(s) {', '.join(bad)}; use {', '.join(KINDS)}")

    cert, _ = _raw("cert", values, env)
    key, _ = _raw("key", values, env)
    if key is not None and cert is None:
        raise UsageError("--key needs --cert")
    cacert, _ = _raw("cacert", values, env)
    for name, path in (("cacert", cacert), ("cert", cert), ("key", key)):
        if path is not None and not Path(str(path)).is_file():
            raise UsageError(f"--{name}: no such file {path}")
    # _choice only returns one of the choices it is given, so the casts below are checked at run time.
    output = cast(OutputFormat, _choice("output", values, env, get_args(OutputFormat), "text"))
    output_requests, _ = _raw("output_requests", values, env)
    seed = _number("seed", values, env, kind=_int_kind)

    early_stop = _bool("early_stop", values, env, False)
    if early_stop and requests is None:
        raise UsageError("--early-stop needs -n/--requests (the looks are planned over it)")

    explicit_proxy, _ = _raw("proxy", values, env)
    noproxy, _ = _raw("noproxy", values, env)
    try:
        proxy = select_proxy(
            url,
            env,
            None if explicit_proxy is None else str(explicit_proxy),
            None if noproxy is None else str(noproxy),
        )
    except ProxyError as exc:
        raise UsageError(str(exc)) from None

    return ProbeConfig(
        url=url,
        method=method,
        body=body,
        headers=headers,
        requests=int(requests) if requests is not None else None,
        duration=float(duration) if duration is not None else None,
        rps=float(rps) if rps is not None else None,
        poisson=_bool("poisson", values, env, False),
        concurrency=int(concurrency) if concurrency is not None else None,
        max_in_flight=int(_number("max_in_flight", values, env, kind=_int_kind, low=1) or 1000),
        http2=_bool("http2", values, env, False),
        insecure=_bool("insecure", values, env, False),
        cacert=str(cacert) if cacert is not None else None,
        cert=str(cert) if cert is not None else None,
        key=str(key) if key is not None else None,
        timeout=float(_number("timeout", values, env, kind=_duration, low=0, low_open=True) or 5.0),
        new_connection=_bool("new_connection", values, env, False),
        resolve=_resolve_entries(values, env),
        connect_to=_connect_to_entries(values, env),
        proxy=proxy,
        by=by,
        expected=expected,
        expect_source=expect_source,
        tolerance=float(_number("tolerance", values, env, kind=float, low=0, low_open=True, high=100) or 5.0),
        alpha=float(_number("alpha", values, env, kind=float, low=0, low_open=True, high=0.5) or 0.001),
        confidence=float(_number("confidence", values, env, kind=float, low=0.5, high=0.999999999) or 0.95),
        early_stop=early_stop,
        max_error_rate=float(
            v
            if (v := _number("max_error_rate", values, env, kind=float, low=0, high=1)) is not None
            else 0.05
        ),
        require_path=require,
        output=output,
        output_requests=str(output_requests) if output_requests is not None else None,
        wait_sidecar=_policy("wait_sidecar", values, env),
        sidecar_timeout=float(_number("sidecar_timeout", values, env, kind=_duration, low=0) or 60.0),
        quit_sidecar=_policy("quit_sidecar", values, env),
        in_job=bool(values.get("job")) or in_job_from_env(env),
        seed=int(seed) if seed is not None else None,
        live=_policy("live", values, env),
        report=str(r) if (r := _raw("report", values, env)[0]) else None,
        sidecar=SidecarEndpoints.from_env(env),
        pod_annotations_file=env.get("NETDEBUG_POD_ANNOTATIONS_FILE") or None,
    )
