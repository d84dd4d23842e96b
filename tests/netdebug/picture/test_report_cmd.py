"""`netdebug report FILE.json -o FILE.html`, `netdebug probe --report` and `netdebug plan --report`,
through the CLI's `main_impl` (the probe and plan against the scripted loopback server)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from netdebug.cli import main_impl
from netdebug.context import UsageError
from netdebug.picture import command
from netdebug.picture.model import ReportError, read_probe
from tests.netdebug.picture import reports
from tests.netdebug.picture.page_tree import by_class, graph_of, html_nesting_errors, parse, table_rows, text
from tests.netdebug.probe.probe_support import Answer, scripted, split

ENV = {"NETDEBUG_WAIT_SIDECAR": "no"}
MESH = {"client_identity": reports.MESH_ID}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(list(args), {**ENV, **(env or {})}, out, err)
    return code, out.getvalue(), err.getvalue()


def test_report_writes_the_page(tmp_path: Path) -> None:
    source = tmp_path / "run.json"
    source.write_text(json.dumps(reports.gateway_report()))
    target = tmp_path / "run.html"
    code, out, err = run("report", str(source), "-o", str(target))
    assert (code, out) == (0, "")
    assert err.startswith(f"netdebug report: wrote {target} (")
    page = target.read_text()
    assert html_nesting_errors(page) == []
    nodes, _ = graph_of(parse(page))
    assert next(n for n in nodes.values() if n.role == "path").label == "gateway"
    assert not list(tmp_path.glob(".run.html.*")), "no temporary file left behind"


def test_report_to_stdout_and_from_env(tmp_path: Path) -> None:
    source = tmp_path / "run.json"
    source.write_text(json.dumps(reports.pass_report()))
    code, out, _ = run("report", str(source))
    assert code == 0
    assert out.startswith("<!DOCTYPE html>")
    target = tmp_path / "from-env.html"
    code, out, _ = run("report", str(source), env={"NETDEBUG_REPORT": str(target)})
    assert (code, out) == (0, "")
    assert target.read_text().startswith("<!DOCTYPE html>")


def test_stdin_is_read_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = command.load_report("-", io.BytesIO(json.dumps({"a": 1}).encode()))
    assert doc == {"a": 1}
    monkeypatch.setattr(command, "MAX_INPUT", 10)
    with pytest.raises(UsageError, match="larger than 0 MiB"):
        command.load_report("-", io.BytesIO(b"{" + b" " * 20 + b"}"))


BAD_INPUT = [
    pytest.param(None, "no such file", id="missing"),
    pytest.param("not json", "not JSON", id="not-json"),
    pytest.param("[1, 2]", "expected a JSON object", id="a-list"),
    pytest.param("{}", "not a netdebug probe report (no url/verdict)", id="not-a-report"),
    pytest.param(
        '{"url": "http://x/", "verdict": "pass", "versions": "v1"}',
        "field versions: expected a list, got a string",
        id="bad-field",
    ),
    pytest.param(
        '{"url": "http://x/", "verdict": "pass", "versions": [{"version": "v1", "count": -3}]}',
        "field versions[0].count: expected a count >= 0, got -3",
        id="negative-count",
    ),
    pytest.param(
        '{"url": "http://x/", "verdict": "pass", "answers": [{"count": "many"}]}',
        "field answers[0].count: expected an integer, got a string",
        id="bad-answer-row",
    ),
    pytest.param(
        '{"url": "http://x/", "verdict": "pass", "latency_histograms": '
        '{"versions": {"v1": {"le_ms": [2, 1], "count": [1, 1]}}}}',
        "field latency_histograms.versions.v1: expected le_ms (ascending)",
        id="bad-histogram",
    ),
    pytest.param(
        '{"plan": "p.yaml", "steps": [{"kind": "probe", "attempts": [{"details": '
        '{"url": "http://x/", "verdict": "pass", "pods": []}}]}]}',
        "field steps[0].attempts[0].details.pods: expected an object of counts, got a list",
        id="bad-plan-step",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: str | None, message: str) -> None:
    source = tmp_path / "in.json"
    if content is not None:
        source.write_text(content)
    target = tmp_path / "out.html"
    code, _out, err = run("report", str(source), "-o", str(target))
    assert code == 2
    assert message in err.splitlines()[0]
    assert not target.exists()


def test_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "run.json"
    source.write_text(json.dumps(reports.pass_report()))
    code, _, err = run("report", str(source), "-o", str(tmp_path / "missing" / "x.html"))
    assert code == 2
    assert "--output: no such directory" in err
    code, _, err = run("report", str(source), "-o", str(tmp_path))
    assert code == 2
    assert "is a directory" in err


def test_read_probe_names_the_field() -> None:
    with pytest.raises(ReportError, match=r"field mtls\.identities\.x: expected an integer"):
        read_probe({"url": "u", "verdict": "pass", "mtls": {"identities": {"x": "y"}}})


def test_probe_report_flag_writes_the_picture(tmp_path: Path) -> None:
    target = tmp_path / "probe.html"
    answers = split({"v1": 3, "v2": 1}, server="envoy", upstream_time=True, mesh=MESH)
    with scripted({"/echo": answers}) as server:
        code, out, err = run(
            "probe",
            server.url(),
            "--rps",
            "2000",
            "-n",
            "400",
            "--expect",
            "v1=75,v2=25",
            "--report",
            str(target),
        )
    assert code == 0, err
    assert "verdict: PASS" in out
    root = parse(target.read_text())
    nodes, edges = graph_of(root)
    by_pair = {(nodes[e.source].label, nodes[e.target].label): e for e in edges}
    assert by_pair[("caller", "client sidecar")].count == 400
    service = nodes["service"].label
    assert by_pair[(service, "v1")].share == 75.0
    assert by_pair[(service, "v2")].share == 25.0
    assert by_pair[("v1", "echo-v1-0")].count == 300
    assert by_pair[("client sidecar", service)].mtls == 400
    assert text(by_class(root, "banner", "div")[0]).startswith("✔ verdict: PASS")


def test_probe_report_path_is_checked_before_any_request(tmp_path: Path) -> None:
    with scripted({"/echo": split({"v1": 1})}) as server:
        code, _, err = run("probe", server.url(), "-n", "5", "--report", str(tmp_path / "no" / "p.html"))
        assert server.requests == []
    assert code == 2
    assert "--report: no such directory" in err


def test_probe_report_is_written_for_an_unreachable_target(tmp_path: Path) -> None:
    from tests.procs import free_port

    target = tmp_path / "down.html"
    code, _, _ = run("probe", f"http://127.0.0.1:{free_port()}/echo", "-n", "3", "--report", str(target))
    assert code == 4
    nodes, _edges = graph_of(parse(target.read_text()))
    assert nodes["no-answer"].lines[1:] == ("connect × 3",)


def test_plan_report_draws_each_probe_step(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    target = tmp_path / "plan.html"
    with scripted(
        {
            "/echo": split({"v1": 3, "v2": 1}, server="envoy", upstream_time=True, mesh=MESH),
            "/": [Answer(404, {"server": "envoy"}, b"")],
        }
    ) as server:
        plan.write_text(
            textwrap.dedent(
                f"""\
                steps:
                  - name: split
                    probe: {{url: "{server.url()}", requests: 400, rps: 2000, expect: {{v1: 75, v2: 25}}}}
                    repeat: {{until_passes: 2, max_attempts: 3, interval: 0}}
                  - name: no route
                    http: {{url: "{server.url("/")}", expect: {{status: 404, local_reply: true}}}}
                  - name: bypass
                    probe: {{url: "{server.url("/other")}", requests: 20, rps: 2000}}
                """
            )
        )
        code, out, err = run("plan", str(plan), "--wait-sidecar", "never", "--report", str(target))
    assert code == 0, out + err
    page = target.read_text()
    assert html_nesting_errors(page) == []
    root = parse(page)
    assert [r[:4] for r in table_rows(root, "steps")] == [
        ["1", "split", "pass", "probe"],
        ["2", "no route", "pass", "http"],
        ["3", "bypass", "pass", "probe"],
    ]
    steps = by_class(root, "step", "section")
    assert [s.get("data-step") for s in steps] == ["1", "3"]
    nodes, edges = graph_of(root, steps[0])
    assert {nodes[e.target].label: e.share for e in edges if e.source == "service"} == {
        "v1": 75.0,
        "v2": 25.0,
    }
    assert len(table_rows(steps[0], "attempts")) == 2
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids)), "ids are unique across steps"


WRONG_VALUES = [None, "x", [], {}, -1, 1.5, True, [1], {"a": "b"}]


@pytest.mark.parametrize("key", sorted(reports.mixed_report()))
def test_any_wrong_field_is_a_report_error_or_drawn(key: str) -> None:
    """Every top-level field replaced by values of every other JSON type: the page is drawn or a
    ReportError names the field; nothing else escapes."""
    from netdebug.picture.render import render_page

    for value in WRONG_VALUES:
        doc = reports.mixed_report()
        doc[key] = value
        try:
            render_page(doc)
        except ReportError as exc:
            message = str(exc)
        else:
            continue
        assert key in message or "report" in message


def test_help_gives_the_report_commands_own_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("report", "--help")
    assert code == 0
    said = capsys.readouterr().out
    assert "0  the page was written (whatever the run's verdict)" in said
    assert "split mismatch" not in said
