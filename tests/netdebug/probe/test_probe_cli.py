"""`netdebug probe` end to end through `main_impl`, against the scripted loopback server (exact,
deterministic splits): exit codes, messages, outputs, environment, sidecar hooks."""

from __future__ import annotations

import io
import json
import ssl
from pathlib import Path

import pytest
import trustme

from netdebug.cli import main_impl
from tests.netdebug.probe.probe_support import Answer, scripted, split
from tests.procs import free_port

ENV = {"NETDEBUG_WAIT_SIDECAR": "no"}
FAST = ["--rps", "2000"]


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main_impl(["probe", *args], {**ENV, **(env or {})}, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("script", "args", "code", "verdict"),
    [
        pytest.param({"v1": 3, "v2": 1}, ["-n", "400", "--expect", "v1=75,v2=25"], 0, "pass", id="pass"),
        pytest.param({"v1": 3, "v2": 1}, ["-n", "400", "--expect", "v1=50,v2=50"], 1, "fail", id="mismatch"),
        pytest.param(
            {"v1": 3, "v2": 1}, ["-n", "40", "--expect", "v1=75,v2=25"], 3, "inconclusive", id="inconclusive"
        ),
        pytest.param(
            {"v1": 3, "v3": 1}, ["-n", "400", "--expect", "v1=75,v2=25"], 1, "fail", id="unknown-version"
        ),
        pytest.param({"v1": 1}, ["-n", "20"], 0, "none", id="no-expectation"),
        pytest.param(
            {"v1": 3, "v2": 1},
            ["-n", "400", "-c", "4", "--expect", "v1=3,v2=1"],
            0,
            "pass",
            id="closed-model",
        ),
        pytest.param(
            {"v1": 3, "v2": 1},
            ["-n", "400", "--poisson", "--seed", "7", "--expect", "v1=75,v2=25"],
            0,
            "pass",
            id="poisson",
        ),
    ],
)
def test_verdicts_and_exit_codes(script: dict[str, int], args: list[str], code: int, verdict: str) -> None:
    with scripted({"/echo": split(script)}) as server:
        load = [] if "-c" in args else FAST
        got, out, err = probe(server.url(), *load, *args, "-o", "json")
    doc = json.loads(out)
    assert (got, doc["verdict"], doc["exit_code"]) == (code, verdict, code), err


def test_inconclusive_says_how_many_and_unknown_version_is_named() -> None:
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server:
        _, out, _ = probe(server.url(), *FAST, "-n", "40", "--expect", "v1=75,v2=25")
    assert "you need about" in out
    with scripted({"/echo": split({"v1": 3, "v3": 1})}) as server:
        _, out, _ = probe(server.url(), *FAST, "-n", "40", "--expect", "v1=75,v2=25")
    assert "unexpected version(s): v3 (10)" in out


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param("http://nonexistent.invalid/echo", "dns", id="dns"),
        pytest.param("http://127.0.0.1:{closed}/echo", "connect", id="refused"),
        pytest.param("https://127.0.0.1:{tls}/echo", "tls", id="tls-untrusted-certificate"),
    ],
)
def test_unreachable_is_exit_4_with_one_line(url: str, kind: str) -> None:
    ca = trustme.CA()  # the server's CA is not in the client's trust store
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with scripted({"/echo": split({"v1": 1})}, tls=tls) as server:
        code, _, err = probe(url.format(closed=free_port(), tls=server.port), "-n", "3", "--expect", "v1=1")
    assert code == 4
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("netdebug probe: unreachable: 3/3 requests failed")
    assert f"; {kind}: " in lines[0]


def test_unreachable_error_is_printed_once_on_a_terminal() -> None:
    """On a terminal the report already says it: the detail appears once, and nothing on stderr."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, err = Terminal(), io.StringIO()
    closed = free_port()
    code = main_impl(
        ["probe", f"http://127.0.0.1:{closed}/echo", "-n", "3", "--expect", "v1=1"], ENV, out, err
    )
    assert code == 4
    assert err.getvalue() == ""
    text = out.getvalue()
    assert text.count("Connect call failed") + text.count("Connection refused") == 1, text
    assert "unreachable: 3/3 requests failed" in text


def test_non_json_answer_with_an_expectation() -> None:
    with scripted({"/echo": [Answer(200, {"content-type": "text/html"}, b"<html>hi</html>")]}) as server:
        code, _, err = probe(server.url(), *FAST, "-n", "10", "--expect", "v1=1")
    assert code == 4
    assert "no-version: the answer names no version (by auto; body not JSON)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--expect", "v1=75,v2"], "--expect: 'v2' is not NAME=WEIGHT", id="bad-expect"),
        pytest.param(["--rps", "-1"], "--rps: -1 must be > 0", id="negative-rps"),
        pytest.param(["--by", "xml:a"], "unknown kind", id="bad-by"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    code, out, err = probe("http://127.0.0.1:1/echo", *args)
    assert code == 2
    assert out == ""
    assert message in err.splitlines()[0]


def test_local_replies_and_bypass_are_reported() -> None:
    routes = {
        "/echo": split({"v1": 3, "v2": 1}),
        "/": [Answer(404, {"server": "envoy", "content-length": "0"}, b"")],
    }
    with scripted(routes) as server:
        _, out, _ = probe(server.url("/"), *FAST, "-n", "20", "-o", "json")
        doc = json.loads(out)
        assert doc["local_replies"] == 20
        assert doc["counts"] == {}
        assert doc["status_codes"] == {"404": 20}
        _, out, _ = probe(server.url(), *FAST, "-n", "400", "--expect", "v1=75,v2=25")
    assert "WARNING: NOT ROUTED BY THE MESH: 400 bypass of 400 answers" in out


def test_envoy_answers_fingerprinted_as_client_sidecar() -> None:
    answers = split(
        {"v1": 3, "v2": 1},
        server="envoy",
        upstream_time=True,
        mesh={"client_identity": "spiffe://cluster.local/ns/echo/sa/netdebug", "attempt": 2},
    )
    with scripted({"/echo": answers}) as server:
        code, out, _ = probe(
            server.url(),
            *FAST,
            "-n",
            "400",
            "--expect",
            "v1=75,v2=25",
            "--require-path",
            "client-sidecar",
            "-o",
            "json",
        )
    doc = json.loads(out)
    assert code == 0
    assert doc["fingerprints"] == {"client-sidecar": 400}
    assert doc["mtls"]["identities"] == {"spiffe://cluster.local/ns/echo/sa/netdebug": 400}
    assert doc["retried"] == 400


def test_env_vars_and_output_requests(tmp_path: Path) -> None:
    lines_file = tmp_path / "requests.jsonl"
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server:
        env = {
            "NETDEBUG_URL": server.url(),
            "NETDEBUG_EXPECT": "v1=75,v2=25",
            "NETDEBUG_REQUESTS": "400",
            "NETDEBUG_RPS": "2000",
            "NETDEBUG_OUTPUT": "json",
        }
        code, out, _ = probe("--output-requests", str(lines_file), env=env)
    assert code == 0
    assert json.loads(out)["requests"] == 400
    rows = [json.loads(line) for line in lines_file.read_text().splitlines()]
    assert len(rows) == 400
    assert {r["version"] for r in rows} == {"v1", "v2"}
    assert all(r["latency_ms"] >= 0 and r["status"] == 200 for r in rows)


def test_early_stop_ends_before_n() -> None:
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server:
        code, out, _ = probe(
            server.url(), *FAST, "-n", "20000", "--early-stop", "--expect", "v1=75,v2=25", "-o", "json"
        )
    doc = json.loads(out)
    assert code == 0
    assert doc["stopped_early"] is True
    assert doc["requests"] < 20000


def test_host_header_and_expect_from(tmp_path: Path) -> None:
    vs = tmp_path / "vs.yaml"
    vs.write_text(
        "kind: VirtualService\nspec:\n  hosts: [echo.local]\n  http:\n  - match: [{uri: {prefix: /echo}}]\n"
        "    route:\n    - {destination: {host: e, subset: v1}, weight: 75}\n"
        "    - {destination: {host: e, subset: v2}, weight: 25}\n"
    )
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server:
        code, _, _ = probe(
            server.url(), *FAST, "-n", "400", "-H", "Host: echo.local", "--expect-from", str(vs)
        )
        assert code == 0
        assert all(b"Host: echo.local" in r for r in server.requests)


def test_sidecar_wait_and_quit_hooks() -> None:
    routes = {"/echo": split({"v1": 1}), "/healthz/ready": [Answer(200)], "/quitquitquit": [Answer(200)]}
    with scripted(routes) as server:
        env = {
            "NETDEBUG_SIDECAR_HEALTH_URL": server.url("/healthz/ready"),
            "NETDEBUG_SIDECAR_QUIT_URL": server.url("/quitquitquit"),
        }
        code, _, err = probe(
            server.url(), *FAST, "-n", "5", "--wait-sidecar", "auto", "--quit-sidecar", "yes", env=env
        )
        paths = [r.split(b" ")[1] for r in server.requests]
    assert code == 0
    assert b"/healthz/ready" in paths
    assert paths[-1] == b"/quitquitquit"
    assert "sidecar ready" in err
    assert "asked the sidecar to exit" in err


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main_impl(["probe", "--help"], {}, out, err) == 0  # argparse prints help to sys.stdout
    text = capsys.readouterr().out
    for line in (
        "0  pass",
        "1  split mismatch",
        "2  usage error",
        "3  inconclusive",
        "4  unreachable",
        "130",
    ):
        assert line in text
    assert "--expect-from" in text


def test_forced_live_view_still_ends_with_the_report() -> None:
    with scripted({"/echo": split({"v1": 3, "v2": 1})}) as server:
        code, out, _ = probe(server.url(), *FAST, "-n", "400", "--expect", "v1=75,v2=25", "--live", "yes")
    assert code == 0
    assert "verdict: PASS (exit 0)" in out
