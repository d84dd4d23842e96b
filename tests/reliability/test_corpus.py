"""The bad-input corpus (tests/reliability/corpus.py) against one echo-server with default settings
(request log on, every listener): each case gets only answers it is allowed, the process answers
/_echo/livez after each, and over the whole corpus its peak RSS stays within 150 MB and nothing it
writes is a traceback. Then what cannot share that server: redaction with the environment echoed,
and a readiness flip from a peer that is not loopback (in a network namespace of its own)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.echo.serving import Echo, assert_no_traceback, echo_server, make_pki
from tests.procs import REPO
from tests.reliability.client import PEAK_RSS_LIMIT_KIB
from tests.reliability.corpus import CASES, Case, Target

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(300)]

SECRET = "corpus-secret-7d1f"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    # Defaults everywhere; the request log is on, as it is by default.
    with echo_server(pki.env() | {"DISABLE_REQUEST_LOGS": "false"}, h2c=True) as echo:
        yield Target(echo, pki)


PARAMS = [pytest.param(case, scheme, id=f"{case.name}-{scheme}") for case in CASES for scheme in case.schemes]


@pytest.mark.parametrize(("case", "scheme"), PARAMS)
def test_case(target: Target, case: Case, scheme: str) -> None:
    outcomes = case.run(target, scheme)
    assert outcomes, "no outcome"
    assert set(outcomes) <= case.expect, (
        f"{case.name} on {scheme}: got {outcomes}, allowed {sorted(map(str, case.expect))}"
    )
    assert target.echo.proc.poll() is None, "echo-server died"
    assert httpx.get(target.echo.url("/_echo/livez"), timeout=10).status_code == 200


def test_credentials_stay_out_of_the_request_log(target: Target) -> None:
    names = ("authorization", "x-api-key", "x-auth-token", "x-amz-security-token", "cookie")
    headers = {name: f"{SECRET}-{name}" for name in names}
    assert httpx.get(target.echo.url("/with-credentials"), headers=headers).status_code == 200
    log = target.echo.log()
    assert "/with-credentials" in log
    assert SECRET not in log


def test_the_whole_corpus_within_150_mb_and_without_a_traceback(target: Target) -> None:
    """Runs after every case above (pytest keeps a module's order)."""
    peak = target.echo.peak_rss_kib()
    print(f"peak RSS over the corpus: {peak / 1024:.1f} MiB")
    assert peak <= PEAK_RSS_LIMIT_KIB, f"peak RSS {peak / 1024:.1f} MiB"
    assert_no_traceback(target.echo)


@pytest.fixture
def echo_with_env() -> Iterator[Echo]:
    secrets = {
        "DATABASE_URL": f"postgres://app:{SECRET}@db.internal/app",
        "REDIS_URL": f"redis://:{SECRET}@cache:6379",
        "PGPASS": SECRET,
        "APP_DSN": f"mysql://root:{SECRET}@db/x",
        "TLS_PASSPHRASE": SECRET,
    }
    with echo_server({"ECHO_INCLUDE_ENV_VARS": "true", **secrets}, https=False) as echo:
        yield echo


def test_secrets_in_the_environment_are_redacted(echo_with_env: Echo) -> None:
    body = httpx.get(echo_with_env.url("/env")).json()
    env = body["env"]
    assert {"DATABASE_URL", "REDIS_URL", "PGPASS", "APP_DSN", "TLS_PASSPHRASE"} <= set(env)
    assert SECRET not in json.dumps(body)


def _namespace_prefix() -> list[str] | None:
    """`unshare` arguments for a network namespace with a private address, or None if refused."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for prefix in (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"]):
        probe = subprocess.run(
            [*prefix, "ip", "addr", "add", "10.213.0.1/32", "dev", "lo"], capture_output=True
        )
        if probe.returncode == 0:
            return prefix
    return None


def test_readyz_from_a_non_loopback_peer_is_refused() -> None:
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("this machine does not allow a network namespace (unshare --net): no non-loopback peer")
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "tests.reliability.netns_readyz"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "from_private_address": 403,
        "ready_after_refused_flip": 200,
        "from_loopback": 200,
        "ready_after_loopback_flip": 503,
    }
