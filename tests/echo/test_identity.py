from __future__ import annotations

import pytest

from echo.identity import UNKNOWN_VERSION, Identity, identity_from_environ, parse_labels
from echo.mesh import PodMesh

FULL_ENV = {
    "POD_NAME": "echo-v1-7d9c-abcde",
    "POD_NAMESPACE": "echo",
    "POD_IP": "10.1.2.3",
    "NODE_NAME": "node-a",
    "POD_SERVICE_ACCOUNT": "echo",
    "SERVICE_VERSION": "v1",
}


def test_full_downward_api() -> None:
    identity = identity_from_environ(FULL_ENV, "host-1", 'app="echo"\nversion="v9"\n')
    assert identity == Identity(
        name="echo-v1-7d9c-abcde",
        hostname="host-1",
        version="v1",
        namespace="echo",
        ip="10.1.2.3",
        node="node-a",
        service_account="echo",
        labels={"app": "echo", "version": "v9"},
        # A labels file without the injector's security.istio.io/tlsMode: the pod has no sidecar.
        mesh=PodMesh(sidecar=False, ambient=None),
    )
    assert identity.to_json() == {
        "name": "echo-v1-7d9c-abcde",
        "namespace": "echo",
        "ip": "10.1.2.3",
        "node": "node-a",
        "service_account": "echo",
        "version": "v1",
        "labels": {"app": "echo", "version": "v9"},
    }


@pytest.mark.parametrize(
    ("environ", "labels", "name", "version"),
    [
        pytest.param({}, None, "host-1", UNKNOWN_VERSION, id="nothing"),
        pytest.param({"POD_NAME": "  "}, None, "host-1", UNKNOWN_VERSION, id="blank-is-absent"),
        pytest.param({}, 'version="v2"', "host-1", "v2", id="version-from-label"),
        pytest.param({"SERVICE_VERSION": "v3"}, 'version="v2"', "host-1", "v3", id="env-beats-label"),
        pytest.param({"POD_NAME": "p"}, 'app="x"', "p", UNKNOWN_VERSION, id="label-without-version"),
    ],
)
def test_fallbacks(environ: dict[str, str], labels: str | None, name: str, version: str) -> None:
    identity = identity_from_environ(environ, "host-1", labels)
    assert (identity.name, identity.version) == (name, version)
    assert identity.namespace is None or "POD_NAMESPACE" in environ


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('app="echo"\nversion="v1"', {"app": "echo", "version": "v1"}, id="plain"),
        pytest.param('app="echo"\n\n', {"app": "echo"}, id="blank-lines"),
        pytest.param('a="x=y"', {"a": "x=y"}, id="equals-in-value"),
        pytest.param('a=""', {"a": ""}, id="empty-value"),
        pytest.param(r'a="say \"hi\""', {"a": 'say "hi"'}, id="escaped-quote"),
        pytest.param(r'a="back\\slash"', {"a": "back\\slash"}, id="escaped-backslash"),
        pytest.param(r'a="tab\there"', {"a": "tab\there"}, id="escaped-tab"),
        pytest.param(r'a="\u00e9t\u00e9"', {"a": "été"}, id="unicode-escape"),
        pytest.param(r'a="\xc3\xa9"', {"a": "é"}, id="utf8-byte-escapes"),
        pytest.param(r'a="\U0001F600"', {"a": "\U0001f600"}, id="long-unicode-escape"),
        pytest.param(r'a="\xc3\xa9t\xc3\xa9"', {"a": "été"}, id="byte-escapes-then-text"),
        pytest.param(r'a="\xc3\xa9\u00e9\xc3\xa9\n"', {"a": "ééé\n"}, id="byte-escapes-around-escapes"),
        pytest.param(r'a="\xff!"', {"a": "\ufffd!"}, id="invalid-utf8-bytes-replaced"),
        pytest.param(r'a="\U00110000"', {"a": "\ufffd"}, id="beyond-unicode"),
        pytest.param('a="été"', {"a": "été"}, id="raw-unicode"),
        pytest.param(
            'app.kubernetes.io/name="echo"\npod-template-hash="7d9c"',
            {"app.kubernetes.io/name": "echo", "pod-template-hash": "7d9c"},
            id="kubernetes-keys",
        ),
        pytest.param('no equals sign\nb="ok"', {"b": "ok"}, id="skip-no-equals"),
        pytest.param('a=unquoted\nb="ok"', {"b": "ok"}, id="skip-unquoted"),
        pytest.param('a="open\nb="ok"', {"b": "ok"}, id="skip-unterminated"),
        pytest.param('a="in"side"', {}, id="skip-bare-quote"),
        pytest.param(r'a="bad\q"', {}, id="skip-unknown-escape"),
        pytest.param(r'a="bad\x4"', {}, id="skip-short-hex"),
        pytest.param(r'a="bad\xzz"', {}, id="skip-non-hex"),
        pytest.param('a="trailing\\"', {}, id="skip-dangling-backslash"),
        pytest.param('="v"', {}, id="skip-empty-key"),
    ],
)
def test_parse_labels(text: str, expected: dict[str, str]) -> None:
    assert parse_labels(text) == expected
