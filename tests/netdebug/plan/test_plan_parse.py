"""Plan parser: YAML -> typed plan (ok table); one-line errors naming file, step and field (error table)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from netdebug.plan.model import (
    DnsSpec,
    HttpExpect,
    HttpSpec,
    Plan,
    PlanError,
    ProbeSpec,
    Repeat,
    StepSpec,
    TcpSpec,
    TlsSpec,
)
from netdebug.plan.parse import env_var_name, parse_plan, parse_var_flags

REPO = Path(__file__).resolve().parents[3]


def plan(text: str, overrides: dict[str, str] | None = None, env: dict[str, str] | None = None) -> Plan:
    return parse_plan(textwrap.dedent(text), "p.yaml", overrides or {}, env or {})


def only_spec(text: str, **kwargs: dict[str, str]) -> StepSpec:
    parsed = plan(text, **kwargs)
    assert len(parsed.steps) == 1
    return parsed.steps[0].spec


OK_CASES = [
    pytest.param(
        "steps: [{name: a, dns: {name: localhost}}]",
        None,
        None,
        DnsSpec("localhost"),
        id="dns-minimal",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x.invalid, timeout: 2, expect: {resolves: false}}}]",
        None,
        None,
        DnsSpec("x.invalid", 2.0, False),
        id="dns-expect-failure",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: localhost, expect: {addresses: [127.0.0.1]}}}]",
        None,
        None,
        DnsSpec("localhost", addresses=("127.0.0.1",)),
        id="dns-expect-addresses",
    ),
    pytest.param(
        "steps: [{name: a, tcp: {address: 'h:80', expect: {connects: false}}}]",
        None,
        None,
        TcpSpec("h:80", connects=False),
        id="tcp-expect-refused",
    ),
    pytest.param(
        "steps: [{name: a, tls: {address: 'h:443', sni: echo.local, expect_alpn: h2}}]",
        None,
        None,
        TlsSpec("h:443", sni="echo.local", expect_alpn="h2"),
        id="tls-brief-shape",
    ),
    pytest.param(
        "steps: [{name: a, tls: {address: h, alpn: [http/1.1], insecure: true,"
        " expect: {alpn: http/1.1, version: TLSv1.3, san: [echo.local]}}}]",
        None,
        None,
        TlsSpec(
            "h",
            alpn=("http/1.1",),
            insecure=True,
            expect_alpn="http/1.1",
            expect_version="TLSv1.3",
            expect_san=("echo.local",),
        ),
        id="tls-expect-mapping-default-port",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://h/', expect: {status: 404, local_reply: true}}}]",
        None,
        None,
        HttpSpec("http://h/", expect=HttpExpect(status=("404",), local_reply=True)),
        id="http-local-reply",
    ),
    pytest.param(
        """
        steps:
          - name: a
            http:
              url: https://h/x
              method: post
              headers: {Host: echo.local}
              body: hi
              timeout: 2.5
              http2: true
              insecure: true
              expect:
                status: [200, 2xx]
                headers: {X-Echo-Version: v1}
                headers_present: [X-Request-Id]
                headers_absent: [x-envoy-upstream-service-time]
                body_contains: echo
                body_regex: "v[12]"
        """,
        None,
        None,
        HttpSpec(
            "https://h/x",
            "POST",
            (("Host", "echo.local"),),
            "hi",
            2.5,
            True,
            True,
            None,
            HttpExpect(
                status=("200", "2xx"),
                headers=(("x-echo-version", "v1"),),
                headers_present=("x-request-id",),
                headers_absent=("x-envoy-upstream-service-time",),
                body_contains=("echo",),
                body_regex="v[12]",
            ),
        ),
        id="http-everything",
    ),
    pytest.param(
        """
        vars: {svc: "http://s", n: 100}
        steps:
          - name: a
            probe: {url: "${svc}/echo", requests: "${n}", expect: "v1=75,v2=25", headers: {host: "${svc}"}}
        """,
        None,
        None,
        ProbeSpec(
            {
                "url": "http://s/echo",
                "requests": 100,
                "expect": "v1=75,v2=25",
                "headers": {"host": "http://s"},
            }
        ),
        id="probe-vars-keep-type",
    ),
    pytest.param(
        """
        vars: {svc: "http://s", n: 100}
        steps: [{name: a, probe: {url: "${svc}/echo", requests: "${n}"}}]
        """,
        {"n": "2000"},
        {"NETDEBUG_VAR_SVC": "http://env"},
        ProbeSpec({"url": "http://env/echo", "requests": 2000}),
        id="flag-and-env-override-typed",
    ),
    pytest.param(
        """
        vars: {svc: "http://s"}
        steps: [{name: a, probe: {url: "${svc}/echo"}}]
        """,
        {"svc": "http://flag"},
        {"NETDEBUG_VAR_SVC": "http://env"},
        ProbeSpec({"url": "http://flag/echo"}),
        id="flag-beats-env",
    ),
    pytest.param(
        "steps: [{name: a, probe: {url: 'http://h/${path}', rps: '${rate}'}}]",
        {"path": "echo"},
        {"NETDEBUG_VAR_RATE": "0.5"},
        ProbeSpec({"url": "http://h/echo", "rps": 0.5}),
        id="undeclared-vars-typed-like-yaml",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://h/$${x}', body: 'a$b $$ ${n}'}}]",
        {"n": "1"},
        None,
        HttpSpec("http://h/${x}", body="a$b $ 1"),
        id="dollar-escapes-and-embedded-number",
    ),
    pytest.param(
        """
        vars: {tls: true}
        steps: [{name: a, tls: {address: 'h:1', insecure: "${tls}"}}]
        """,
        {"tls": "no"},
        None,
        TlsSpec("h:1", insecure=False),
        id="boolean-var-override",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: 'my-${dash.var}'}}]",
        None,
        {"NETDEBUG_VAR_DASH_VAR": "svc"},
        DnsSpec("my-svc"),
        id="env-name-of-dotted-var",
    ),
]


@pytest.mark.parametrize(("text", "overrides", "env", "expected"), OK_CASES)
def test_parse_ok(
    text: str, overrides: dict[str, str] | None, env: dict[str, str] | None, expected: StepSpec
) -> None:
    assert only_spec(text, overrides=overrides or {}, env=env or {}) == expected


REPEAT_CASES = [
    pytest.param("", Repeat(1, 1, 1.0), id="no-repeat"),
    pytest.param("repeat: {until_passes: 3}", Repeat(3, 10, 1.0), id="default-max-attempts"),
    pytest.param("repeat: {until_passes: 12}", Repeat(12, 12, 1.0), id="max-at-least-until"),
    pytest.param("repeat: {until_passes: 2, max_attempts: 5, interval: 0}", Repeat(2, 5, 0.0), id="all"),
    pytest.param("repeat: {max_attempts: 4}", Repeat(1, 4, 1.0), id="retry-until-one-pass"),
]


@pytest.mark.parametrize(("repeat", "expected"), REPEAT_CASES)
def test_repeat(repeat: str, expected: Repeat) -> None:
    text = f"steps:\n  - name: a\n    dns: {{name: localhost}}\n    {repeat}\n"
    assert plan(text).steps[0].repeat == expected


def test_steps_numbered_and_vars_resolved() -> None:
    parsed = plan(
        """
        vars: {a: 1, b: x}
        steps:
          - {name: "first ${b}", dns: {name: localhost}}
          - {name: second, tcp: {address: "localhost:${a}"}}
        """,
        overrides={"b": "y"},
    )
    assert [(s.number, s.name, s.kind) for s in parsed.steps] == [(1, "first y", "dns"), (2, "second", "tcp")]
    assert parsed.vars == {"a": 1, "b": "y"}
    assert parsed.steps[0].label == 'step 1 "first y"'


ERROR_CASES = [
    pytest.param("steps: [", {}, "p.yaml: not valid YAML at line 1", id="bad-yaml"),
    pytest.param("- a\n- b\n", {}, "p.yaml: expected a mapping with steps:", id="top-level-list"),
    pytest.param(
        "", {}, "p.yaml: expected a mapping with steps: (and optional vars:), got nothing", id="empty"
    ),
    pytest.param("stepz: []", {}, "p.yaml: unknown top-level field 'stepz'", id="unknown-top-level"),
    pytest.param("steps: []", {}, "p.yaml: steps: expected a non-empty list", id="no-steps"),
    pytest.param(
        "vars: [a]\nsteps: [{name: a, dns: {name: x}}]",
        {},
        "p.yaml: vars: expected a mapping",
        id="vars-list",
    ),
    pytest.param(
        "vars: {a: [1]}\nsteps: [{name: a, dns: {name: x}}]",
        {},
        "p.yaml: vars.a: expected a string",
        id="var-not-scalar",
    ),
    pytest.param(
        "vars: {'a b': 1}\nsteps: [{name: a, dns: {name: x}}]",
        {},
        "p.yaml: vars: bad variable name 'a b'",
        id="var-bad-name",
    ),
    pytest.param("steps: [&a {name: x, http: *a}]", {}, "p.yaml: step 1: nested too deeply", id="self-alias"),
    pytest.param("steps: [42]", {}, "p.yaml: step 1: expected a mapping with a name", id="step-not-mapping"),
    pytest.param("steps: [{dns: {name: x}}]", {}, "p.yaml: step 1: field name: required", id="missing-name"),
    pytest.param(
        "steps: [{name: a, dns: {name: x}}, {name: a, dns: {name: y}}]",
        {},
        'p.yaml: step 2 "a": duplicate name (step 1 has it too)',
        id="duplicate-name",
    ),
    pytest.param(
        "steps: [{name: a, htp: {url: x}}]",
        {},
        "p.yaml: step 1 \"a\": unknown step kind or field 'htp' (step kinds: probe, http, dns, tcp, tls",
        id="unknown-kind",
    ),
    pytest.param(
        "steps: [{name: a}]",
        {},
        'p.yaml: step 1 "a": no step kind; add one of probe, http, dns, tcp, tls',
        id="no-kind",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, tcp: {address: 'h:1'}}]",
        {},
        'p.yaml: step 1 "a": one step kind per step, got dns and tcp',
        id="two-kinds",
    ),
    pytest.param(
        "steps: [{name: a, probe: {url: '${svc}/echo'}}]",
        {},
        'p.yaml: step 1 "a": field probe.url: undefined variable ${svc} '
        "(define it under vars:, pass --var svc=VALUE or set NETDEBUG_VAR_SVC)",
        id="missing-var",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: '${a b}'}}]",
        {},
        'p.yaml: step 1 "a": field dns.name: bad variable reference ${a b}',
        id="bad-reference",
    ),
    pytest.param(
        "steps: [{name: a, probe: {requests: 5}}]",
        {},
        'p.yaml: step 1 "a": field probe.url: required',
        id="probe-no-url",
    ),
    pytest.param(
        "steps: [{name: a, probe: 'http://x'}]",
        {},
        "p.yaml: step 1 \"a\": field probe: expected a mapping, got 'http://x'",
        id="probe-not-mapping",
    ),
    pytest.param(
        "steps: [{name: a, http: {}}]", {}, 'p.yaml: step 1 "a": field http.url: required', id="http-no-url"
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'ftp://x'}}]",
        {},
        'p.yaml: step 1 "a": field http.url: expected an http:// or https:// URL',
        id="http-bad-scheme",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', method: 'G T'}}]",
        {},
        'p.yaml: step 1 "a": field http.method: expected an HTTP method',
        id="http-bad-method",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', timeout: 0}}]",
        {},
        'p.yaml: step 1 "a": field http.timeout: must be a finite number > 0, got 0',
        id="http-zero-timeout",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', timeout: soon}}]",
        {},
        "p.yaml: step 1 \"a\": field http.timeout: expected a number, got 'soon'",
        id="http-timeout-not-number",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', timeout: .nan}}]",
        {},
        'p.yaml: step 1 "a": field http.timeout: expected a number, got nan',
        id="http-nan-timeout",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: {max_attempts: .inf}}]",
        {},
        'p.yaml: step 1 "a": field repeat.max_attempts: expected an integer, got inf',
        id="repeat-infinite",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', http2: maybe}}]",
        {},
        'p.yaml: step 1 "a": field http.http2: expected true or false',
        id="http-bad-bool",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', headers: [a]}}]",
        {},
        'p.yaml: step 1 "a": field http.headers: expected a mapping, got a list',
        id="http-headers-list",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', expect: {stauts: 200}}}]",
        {},
        'p.yaml: step 1 "a": field http.expect.stauts: unknown field',
        id="http-expect-typo",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', expect: {status: 999}}}]",
        {},
        'p.yaml: step 1 "a": field http.expect.status: expected a status such as 200',
        id="http-bad-status",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', expect: {status: []}}}]",
        {},
        'p.yaml: step 1 "a": field http.expect.status: '
        "expected a status such as 200, [301, 302] or 2xx, got an empty list",
        id="http-empty-status",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', expect: {body_regex: '('}}}]",
        {},
        'p.yaml: step 1 "a": field http.expect.body_regex: not a valid regular expression',
        id="http-bad-regex",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', expect: {local_reply: 3}}}]",
        {},
        'p.yaml: step 1 "a": field http.expect.local_reply: expected true or false',
        id="http-bad-local-reply",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', expect: {body_contains: [{a: 1}]}}}]",
        {},
        'p.yaml: step 1 "a": field http.expect.body_contains[0]: expected a string, got a mapping',
        id="http-body-contains-mapping",
    ),
    pytest.param(
        "steps: [{name: a, http: {url: 'http://x', verbose: true}}]",
        {},
        'p.yaml: step 1 "a": field http.verbose: unknown field',
        id="http-unknown-field",
    ),
    pytest.param(
        "steps: [{name: a, dns: {}}]", {}, 'p.yaml: step 1 "a": field dns.name: required', id="dns-no-name"
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: ''}}]",
        {},
        'p.yaml: step 1 "a": field dns.name: must not be empty',
        id="dns-empty-name",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x, expect: {resolves: 2}}}]",
        {},
        'p.yaml: step 1 "a": field dns.expect.resolves: expected true or false',
        id="dns-bad-expect",
    ),
    pytest.param(
        "steps: [{name: a, tcp: {address: 'h'}}]",
        {},
        "p.yaml: step 1 \"a\": field tcp.address: address 'h': missing port",
        id="tcp-no-port",
    ),
    pytest.param(
        "steps: [{name: a, tcp: {address: 'h:99999'}}]",
        {},
        "p.yaml: step 1 \"a\": field tcp.address: address 'h:99999': port must be 1-65535",
        id="tcp-bad-port",
    ),
    pytest.param(
        "steps: [{name: a, tcp: {address: 'h:1', expect: {open: true}}}]",
        {},
        'p.yaml: step 1 "a": field tcp.expect.open: unknown field',
        id="tcp-bad-expect",
    ),
    pytest.param(
        "steps: [{name: a, tls: {address: '::1'}}]",
        {},
        "p.yaml: step 1 \"a\": field tls.address: address '::1': write IPv6 addresses as [ADDRESS]:PORT",
        id="tls-bare-v6",
    ),
    pytest.param(
        "steps: [{name: a, tls: {address: 'h', alpn: []}}]",
        {},
        'p.yaml: step 1 "a": field tls.alpn: expected at least one protocol',
        id="tls-empty-alpn",
    ),
    pytest.param(
        "steps: [{name: a, tls: {address: 'h', expect: {cipher: x}}}]",
        {},
        'p.yaml: step 1 "a": field tls.expect.cipher: unknown field',
        id="tls-bad-expect",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: {until_passes: 0}}]",
        {},
        'p.yaml: step 1 "a": field repeat.until_passes: must be >= 1, got 0',
        id="repeat-zero",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: {until_passes: 1.5}}]",
        {},
        'p.yaml: step 1 "a": field repeat.until_passes: expected an integer, got 1.5',
        id="repeat-fraction",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: {until_passes: 3, max_attempts: 2}}]",
        {},
        'p.yaml: step 1 "a": field repeat.max_attempts: must be >= until_passes (3), got 2',
        id="repeat-max-below-until",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: {interval: -1}}]",
        {},
        'p.yaml: step 1 "a": field repeat.interval: must be a finite number >= 0, got -1',
        id="repeat-negative-interval",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: {untill: 3}}]",
        {},
        'p.yaml: step 1 "a": field repeat.untill: unknown field',
        id="repeat-typo",
    ),
    pytest.param(
        "steps: [{name: a, dns: {name: x}, repeat: 3}]",
        {},
        'p.yaml: step 1 "a": field repeat: expected a mapping, got 3',
        id="repeat-not-mapping",
    ),
    pytest.param(
        "vars: {n: 5}\nsteps: [{name: a, probe: {url: 'http://x', requests: '${n}'}}]",
        {"n": "many"},
        "--var n='many': vars.n is an integer in the plan",
        id="override-wrong-type",
    ),
    pytest.param(
        "vars: {h2: true}\nsteps: [{name: a, http: {url: 'http://x', http2: '${h2}'}}]",
        {"h2": "perhaps"},
        "--var h2='perhaps': vars.h2 is a boolean in the plan",
        id="override-wrong-bool",
    ),
    pytest.param(
        "vars: {n: 5}\nsteps: [{name: a, dns: {name: x}}]",
        {"n": "many"},
        "--var n='many': vars.n is an integer",
        id="unused-override-wrong-type",
    ),
]


@pytest.mark.parametrize(("text", "overrides", "message"), ERROR_CASES)
def test_parse_errors(text: str, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "p.yaml", overrides, {})
    error = str(info.value)
    assert message in error
    assert "\n" not in error


def test_env_override_of_typed_var_names_the_env_var() -> None:
    with pytest.raises(PlanError, match=r"NETDEBUG_VAR_N n='x': vars.n is a number"):
        parse_plan(
            "vars: {n: 0.5}\nsteps: [{name: a, dns: {name: '${n}'}}]", "p.yaml", {}, {"NETDEBUG_VAR_N": "x"}
        )


VAR_FLAG_CASES = [
    pytest.param(["a=1"], {"a": "1"}, id="one"),
    pytest.param(["a=1", "a=2"], {"a": "2"}, id="last-wins"),
    pytest.param(["url=http://h/?x=1"], {"url": "http://h/?x=1"}, id="value-with-equals"),
    pytest.param(["empty="], {"empty": ""}, id="empty-value"),
]


@pytest.mark.parametrize(("flags", "expected"), VAR_FLAG_CASES)
def test_var_flags(flags: list[str], expected: dict[str, str]) -> None:
    assert parse_var_flags(flags) == expected


@pytest.mark.parametrize(
    "flag",
    [
        pytest.param("novalue", id="no-equals"),
        pytest.param("=1", id="no-name"),
        pytest.param("a b=1", id="space-in-name"),
    ],
)
def test_var_flag_errors(flag: str) -> None:
    with pytest.raises(PlanError, match="expected NAME=VALUE"):
        parse_var_flags([flag])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("svc", "NETDEBUG_VAR_SVC", id="plain"),
        pytest.param("gw-url.x", "NETDEBUG_VAR_GW_URL_X", id="dash-dot"),
    ],
)
def test_env_var_name(name: str, expected: str) -> None:
    assert env_var_name(name) == expected


def test_tutorial_plan_parses_and_points_at_the_local_setup_with_vars() -> None:
    text = (REPO / "k8s" / "netdebug" / "plan.yaml").read_text()
    in_cluster = parse_plan(text, "plan.yaml")
    kinds = [s.kind for s in in_cluster.steps]
    assert kinds == ["dns", "tcp", "probe", "http"]
    mesh, no_route = in_cluster.steps[2].spec, in_cluster.steps[3].spec
    assert isinstance(mesh, ProbeSpec)
    assert isinstance(no_route, HttpSpec)
    assert mesh.options["url"] == "http://echo-service.echo.svc.cluster.local/echo"
    assert mesh.options["require_path"] == ["client-sidecar"]
    assert mesh.options["expect"] == {"v1": 75, "v2": 25}
    assert no_route.expect == HttpExpect(status=("404",), local_reply=True)
    local = parse_plan(text, "plan.yaml", {"svc": "http://127.0.0.1:1", "requests": "200"})
    assert isinstance(local.steps[2].spec, ProbeSpec)
    assert local.steps[2].spec.options["url"] == "http://127.0.0.1:1/echo"
    assert local.steps[2].spec.options["requests"] == 200


def test_gateway_plan_checks_the_ingress_from_outside_the_mesh() -> None:
    text = (REPO / "k8s" / "netdebug" / "gateway-plan.yaml").read_text()
    in_cluster = parse_plan(text, "gateway-plan.yaml")
    assert [s.kind for s in in_cluster.steps] == ["probe", "http"]
    gateway, no_route = in_cluster.steps[0].spec, in_cluster.steps[1].spec
    assert isinstance(gateway, ProbeSpec)
    assert isinstance(no_route, HttpSpec)
    assert gateway.options["url"] == "http://istio-ingressgateway.istio-system.svc.cluster.local/echo"
    assert gateway.options["headers"] == {"host": "echo.local"}
    assert gateway.options["require_path"] == ["gateway"]
    assert no_route.expect == HttpExpect(status=("404",), local_reply=True)
    local = parse_plan(text, "gateway-plan.yaml", {"gateway": "http://127.0.0.1:2"})
    assert isinstance(local.steps[0].spec, ProbeSpec)
    assert local.steps[0].spec.options["url"] == "http://127.0.0.1:2/echo"
