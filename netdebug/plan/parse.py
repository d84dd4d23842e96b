"""Plan files for `netdebug plan`: YAML text -> a validated, typed, frozen `Plan` (plan/model.py).
Pure, no I/O.

Rules (the reference is docs/netdebug-plan.md):
1. A plan is a mapping with `steps:` (a non-empty list) and optional `vars:` (name -> scalar).
2. Every step has a unique `name`, exactly one kind (`probe`, `http`, `dns`, `tcp`, `tls`) and an
   optional `repeat: {until_passes, max_attempts, interval}`. Unknown keys are errors, so a typo
   never silently turns a check off.
3. `${name}` in any string value is replaced; `$$` is a literal `$`. A value comes from `--var
   name=value`, else env `NETDEBUG_VAR_<NAME>` (upper-cased, `-`/`.` become `_`), else `vars:`.
   An override of a var declared with a number/boolean is converted to that type. A string that is
   exactly `${name}` takes the value's type; inside a longer string the value is formatted as text.
4. Every error is one line naming the file, the step (number and name) and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import yaml

from netdebug.context import UsageError
from netdebug.diag import parse_address
from netdebug.plan.model import (
    DEFAULT_CHECK_TIMEOUT,
    DEFAULT_HTTP_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_REPEAT_INTERVAL,
    STEP_KINDS,
    DnsSpec,
    HttpExpect,
    HttpSpec,
    Plan,
    PlanError,
    ProbeSpec,
    Repeat,
    Scalar,
    Step,
    StepKind,
    StepSpec,
    TcpSpec,
    TlsSpec,
)

VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# `$$` escapes a dollar; `${...}` is a reference (its content is checked separately for a clear error).
VAR_REFERENCE = re.compile(r"\$(\$|\{([^}]*)\})")


# ---------------------------------------------------------------------------------------------
# Variables


def parse_var_flags(items: Sequence[str]) -> dict[str, str]:
    """`--var name=value` flags -> {name: value}; the last one for a name wins."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not VAR_NAME.match(name):
            raise PlanError(f"--var {item!r}: expected NAME=VALUE with NAME like svc or gateway_url")
        result[name] = value
    return result


def env_var_name(name: str) -> str:
    return "NETDEBUG_VAR_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert_override(name: str, value: str, declared: Scalar | None, origin: str) -> Scalar:
    """An override is text; a var declared with a number or boolean keeps that type."""
    if isinstance(declared, bool):
        lowered = value.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise PlanError(f"{origin} {name}={value!r}: vars.{name} is a boolean in the plan; use true or false")
    if isinstance(declared, int):
        try:
            return int(value)
        except ValueError:
            raise PlanError(f"{origin} {name}={value!r}: vars.{name} is an integer in the plan") from None
    if isinstance(declared, float):
        try:
            return float(value)
        except ValueError:
            raise PlanError(f"{origin} {name}={value!r}: vars.{name} is a number in the plan") from None
    if declared is None:
        # Undeclared: a bare number/boolean is typed as YAML would type it, so `requests: ${n}` works.
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(loaded, bool | int | float) and not isinstance(loaded, str):
            return loaded
    return value


@dataclass(frozen=True)
class _Vars:
    declared: Mapping[str, Scalar]
    flags: Mapping[str, str]
    env: Mapping[str, str]

    def lookup(self, name: str) -> Scalar | None:
        declared = self.declared.get(name)
        if name in self.flags:
            return _convert_override(name, self.flags[name], declared, "--var")
        env_name = env_var_name(name)
        if env_name in self.env:
            return _convert_override(name, self.env[env_name], declared, env_name)
        return declared


def _format(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _substitute(value: object, vars_: _Vars, where: str) -> object:
    if isinstance(value, Mapping):
        return {k: _substitute(v, vars_, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, vars_, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def resolve(match: re.Match[str]) -> Scalar:
        if match.group(1) == "$":
            return "$"
        name = match.group(2).strip()
        if not VAR_NAME.match(name):
            raise _FieldError(where, f"bad variable reference ${{{match.group(2)}}}")
        found = vars_.lookup(name)
        if found is None:
            raise _FieldError(
                where,
                f"undefined variable ${{{name}}} (define it under vars:, pass --var {name}=VALUE "
                f"or set {env_var_name(name)})",
            )
        return found

    whole = VAR_REFERENCE.fullmatch(value)
    if whole is not None and whole.group(1) != "$":
        return resolve(whole)
    return VAR_REFERENCE.sub(lambda m: _format(resolve(m)), value)


# ---------------------------------------------------------------------------------------------
# Field readers: each raises _FieldError(path, message); parse_plan adds the file and step.


class _FieldError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {_format(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Fields:
    """A mapping being read field by field; `done()` rejects keys nobody asked for."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            raise _FieldError(path, f"expected a mapping, got {_describe(value)}")
        self.data: Mapping[str, object] = {str(k): v for k, v in value.items()}
        self.path = path
        self.used: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str) -> object:
        self.used.add(key)
        return self.data.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise _FieldError(self.sub(key), "required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _FieldError(self.sub(key), f"expected a string, got {_describe(value)}")
        text = str(value)
        if required and not text.strip():
            raise _FieldError(self.sub(key), "must not be empty")
        return text

    def required_string(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0, above: bool = False) -> float:
        value = self.raw(key)
        if value is None:
            return default
        number = _as_number(value)
        if number is None:
            raise _FieldError(self.sub(key), f"expected a number, got {_describe(value)}")
        if number < minimum or (above and number == minimum):
            bound = f"> {minimum:g}" if above else f">= {minimum:g}"
            raise _FieldError(self.sub(key), f"must be a finite number {bound}, got {number:g}")
        return number

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        number = _as_number(value)
        if number is None or number != int(number):
            raise _FieldError(self.sub(key), f"expected an integer, got {_describe(value)}")
        if number < minimum:
            raise _FieldError(self.sub(key), f"must be >= {minimum}, got {int(number)}")
        return int(number)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _FieldError(self.sub(key), f"expected true or false, got {_describe(value)}")

    def optional_boolean(self, key: str) -> bool | None:
        return None if self.raw(key) is None else self.boolean(key, False)

    def strings(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings."""
        value = self.raw(key)
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        result = []
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                where = self.sub(key) + (f"[{i}]" if isinstance(value, list) else "")
                raise _FieldError(where, f"expected a string, got {_describe(item)}")
            result.append(str(item))
        return tuple(result)

    def string_map(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.raw(key)
        if value is None:
            return ()
        inner = _Fields(value, self.sub(key))
        return tuple((name, inner.required_string(name)) for name in inner.data)

    def done(self, known: Sequence[str]) -> None:
        unknown = [k for k in self.data if k not in self.used and k not in known]
        if unknown:
            raise _FieldError(
                self.sub(unknown[0]), f"unknown field (known: {', '.join(sorted(set(known) | self.used))})"
            )


def _as_number(value: object) -> float | None:
    """A finite number from a number or a numeric string; None otherwise (NaN and infinity too)."""
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------------------------------------
# Steps


STATUS_PATTERN = re.compile(r"[1-5][0-9x][0-9x]\Z")


def _status_patterns(value: object, path: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _FieldError(path, "expected a status such as 200, [301, 302] or 2xx, got an empty list")
    patterns = []
    for item in items:
        text = str(item).strip().lower() if not isinstance(item, bool) else ""
        if not STATUS_PATTERN.match(text):
            raise _FieldError(
                path, f"expected a status such as 200, [301, 302] or 2xx, got {_describe(item)}"
            )
        patterns.append(text)
    return tuple(patterns)


def _http_spec(value: object) -> HttpSpec:
    f = _Fields(value, "http")
    url = f.required_string("url")
    if not url.startswith(("http://", "https://")):
        raise _FieldError("http.url", f"expected an http:// or https:// URL, got {url!r}")
    method = (f.string("method", "GET") or "GET").upper()
    if not re.fullmatch(r"[A-Z]+", method):
        raise _FieldError("http.method", f"expected an HTTP method such as GET, got {method!r}")
    spec = HttpSpec(
        url=url,
        method=method,
        headers=f.string_map("headers"),
        body=f.string("body"),
        timeout=f.number("timeout", DEFAULT_HTTP_TIMEOUT, above=True),
        http2=f.boolean("http2", False),
        insecure=f.boolean("insecure", False),
        ca=f.string("ca"),
        expect=_http_expect(f.raw("expect")) if f.has("expect") else HttpExpect(),
    )
    f.done(())
    return spec


def _http_expect(value: object) -> HttpExpect:
    f = _Fields(value, "http.expect")
    status = _status_patterns(f.raw("status"), "http.expect.status") if f.has("status") else None
    regex = f.string("body_regex")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise _FieldError("http.expect.body_regex", f"not a valid regular expression: {exc}") from None
    expect = HttpExpect(
        status=status,
        headers=tuple((k.lower(), v) for k, v in f.string_map("headers")),
        headers_present=tuple(h.lower() for h in f.strings("headers_present")),
        headers_absent=tuple(h.lower() for h in f.strings("headers_absent")),
        body_contains=f.strings("body_contains"),
        body_regex=regex,
        local_reply=f.optional_boolean("local_reply"),
    )
    f.done(())
    return expect


def _dns_spec(value: object) -> DnsSpec:
    f = _Fields(value, "dns")
    name = f.required_string("name")
    timeout = f.number("timeout", DEFAULT_CHECK_TIMEOUT, above=True)
    resolves = True
    addresses: tuple[str, ...] = ()
    if f.has("expect"):
        e = _Fields(f.raw("expect"), "dns.expect")
        resolves = e.boolean("resolves", True)
        addresses = e.strings("addresses")
        e.done(())
    f.done(())
    return DnsSpec(name, timeout, resolves, addresses)


def _checked_address(f: _Fields, default_port: int | None) -> str:
    address = f.required_string("address")
    try:
        parse_address(address, default_port)
    except UsageError as exc:
        raise _FieldError(f.sub("address"), str(exc)) from None
    return address


def _tcp_spec(value: object) -> TcpSpec:
    f = _Fields(value, "tcp")
    address = _checked_address(f, None)
    timeout = f.number("timeout", DEFAULT_CHECK_TIMEOUT, above=True)
    connects = True
    if f.has("expect"):
        e = _Fields(f.raw("expect"), "tcp.expect")
        connects = e.boolean("connects", True)
        e.done(())
    f.done(())
    return TcpSpec(address, timeout, connects)


def _tls_spec(value: object) -> TlsSpec:
    f = _Fields(value, "tls")
    address = _checked_address(f, 443)
    alpn = f.strings("alpn")
    if f.has("alpn") and not alpn:
        raise _FieldError("tls.alpn", "expected at least one protocol, such as [h2, http/1.1]")
    expect_alpn = f.string("expect_alpn")
    expect_version = f.string("expect_version")
    expect_san = f.strings("expect_san")
    # `expect: {alpn, version, san}` is the same as the expect_* fields, for symmetry with http.
    if f.has("expect"):
        e = _Fields(f.raw("expect"), "tls.expect")
        expect_alpn = e.string("alpn", expect_alpn)
        expect_version = e.string("version", expect_version)
        expect_san = expect_san + e.strings("san")
        e.done(())
    spec = TlsSpec(
        address=address,
        sni=f.string("sni"),
        alpn=alpn or ("h2", "http/1.1"),
        insecure=f.boolean("insecure", False),
        ca=f.string("ca"),
        timeout=f.number("timeout", DEFAULT_CHECK_TIMEOUT, above=True),
        expect_alpn=expect_alpn,
        expect_version=expect_version,
        expect_san=expect_san,
    )
    f.done(())
    return spec


def _probe_spec(value: object) -> ProbeSpec:
    f = _Fields(value, "probe")
    f.required_string("url")
    return ProbeSpec(options=dict(f.data))


def _repeat(value: object) -> Repeat:
    f = _Fields(value, "repeat")
    until = f.integer("until_passes", 1, minimum=1)
    attempts = f.integer("max_attempts", max(DEFAULT_MAX_ATTEMPTS, until), minimum=1)
    if attempts < until:
        raise _FieldError("repeat.max_attempts", f"must be >= until_passes ({until}), got {attempts}")
    interval = f.number("interval", DEFAULT_REPEAT_INTERVAL)
    f.done(())
    return Repeat(until, attempts, interval)


_SPEC_READERS: dict[StepKind, Callable[[object], StepSpec]] = {
    "probe": _probe_spec,
    "http": _http_spec,
    "dns": _dns_spec,
    "tcp": _tcp_spec,
    "tls": _tls_spec,
}
STEP_FIELDS = ("name", *STEP_KINDS, "repeat")


def _step(number: int, value: object, vars_: _Vars, source: str) -> Step:
    where = f"{source}: step {number}"
    if not isinstance(value, Mapping):
        raise PlanError(f"{where}: expected a mapping with a name and a step kind, got {_describe(value)}")
    raw_name = value.get("name")
    if raw_name is not None:
        where = f'{where} "{raw_name}"'
    try:
        data = cast(Mapping[str, object], _substitute(dict(value), vars_, ""))
        f = _Fields(data, "")
        name = f.required_string("name").strip()
        where = f'{source}: step {number} "{name}"'
        unknown = [k for k in data if k not in STEP_FIELDS]
        if unknown:
            raise PlanError(
                f"{where}: unknown step kind or field {unknown[0]!r} "
                f"(step kinds: {', '.join(STEP_KINDS)}; other fields: name, repeat)"
            )
        kinds = [k for k in STEP_KINDS if k in data]
        if not kinds:
            raise PlanError(f"{where}: no step kind; add one of {', '.join(STEP_KINDS)}")
        if len(kinds) > 1:
            raise PlanError(f"{where}: one step kind per step, got {' and '.join(kinds)}")
        kind = kinds[0]
        spec = _SPEC_READERS[kind](data[kind])
        repeat = _repeat(data["repeat"]) if data.get("repeat") is not None else Repeat()
    except _FieldError as exc:
        raise PlanError(f"{where}: field {exc.path}: {exc.message}") from None
    return Step(number, name, kind, spec, repeat)


def _declared_vars(value: object, source: str) -> dict[str, Scalar]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PlanError(f"{source}: vars: expected a mapping of name: value, got {_describe(value)}")
    result: dict[str, Scalar] = {}
    for name, var in value.items():
        if not isinstance(name, str) or not VAR_NAME.match(name):
            raise PlanError(f"{source}: vars: bad variable name {name!r} (letters, digits, _ . -)")
        if not isinstance(var, str | int | float | bool):
            raise PlanError(
                f"{source}: vars.{name}: expected a string, number or boolean, got {_describe(var)}"
            )
        result[name] = var
    return result


def parse_plan(
    text: str, source: str, overrides: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> Plan:
    """Parse and validate a whole plan; raises PlanError with a one-line message."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PlanError(f"{source}: not valid YAML{at}: {problem}") from None
    if not isinstance(doc, Mapping):
        raise PlanError(
            f"{source}: expected a mapping with steps: (and optional vars:), got {_describe(doc)}"
        )
    unknown = [k for k in doc if k not in ("vars", "steps")]
    if unknown:
        raise PlanError(f"{source}: unknown top-level field {unknown[0]!r} (known: steps, vars)")
    declared = _declared_vars(doc.get("vars"), source)
    vars_ = _Vars(declared, overrides or {}, env or {})
    # Converting every override now reports a mistyped --var even when no step uses it.
    resolved = {name: vars_.lookup(name) for name in declared}
    steps_value = doc.get("steps")
    if not isinstance(steps_value, list) or not steps_value:
        raise PlanError(f"{source}: steps: expected a non-empty list of steps, got {_describe(steps_value)}")
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for number, value in enumerate(steps_value, start=1):
        try:
            step = _step(number, value, vars_, source)
        except RecursionError:
            # YAML aliases can build a structure that contains itself (`&a {x: *a}`).
            raise PlanError(
                f"{source}: step {number}: nested too deeply (a YAML alias refers to itself?)"
            ) from None
        if step.name in seen:
            raise PlanError(f"{source}: {step.label}: duplicate name (step {seen[step.name]} has it too)")
        seen[step.name] = number
        steps.append(step)
    return Plan(source, tuple(steps), {k: v for k, v in resolved.items() if v is not None})
