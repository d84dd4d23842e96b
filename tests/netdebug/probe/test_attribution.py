from __future__ import annotations

import pytest

from netdebug.probe.attribution import MISSING, By, attribute, json_path, parse_by

ECHO = {"pod": {"name": "echo-v2-abc", "version": "v2", "labels": {"track": "canary"}}, "list": [{"x": "y"}]}


@pytest.mark.parametrize(
    ("text", "kind", "argument"),
    [
        pytest.param("", "auto", "", id="empty"),
        pytest.param("auto", "auto", "", id="auto"),
        pytest.param("pod", "pod", "", id="pod"),
        pytest.param("header:X-Version", "header", "x-version", id="header-lowercased"),
        pytest.param("json:pod.labels.track", "json", "pod.labels.track", id="json"),
        pytest.param("regex:version=(\\w+)", "regex", "version=(\\w+)", id="regex"),
    ],
)
def test_parse_by(text: str, kind: str, argument: str) -> None:
    by = parse_by(text)
    assert (by.kind, by.argument) == (kind, argument)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("header:", "use header:NAME", id="header-empty"),
        pytest.param("json:a..b", "empty element", id="json-empty-element"),
        pytest.param("regex:(", "bad regular expression", id="bad-regex"),
        pytest.param("cookie:x", "unknown kind", id="unknown"),
        pytest.param("nonsense", "use header:NAME", id="no-colon"),
    ],
)
def test_parse_by_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_by(text)


@pytest.mark.parametrize(
    ("headers", "body", "document", "by", "expected"),
    [
        pytest.param({"x-echo-version": "v1"}, b"", ECHO, "auto", "v1", id="header-wins"),
        pytest.param({}, b"", ECHO, "auto", "v2", id="json-fallback"),
        pytest.param({}, b"plain", MISSING, "auto", None, id="non-json"),
        pytest.param({"x-v": "blue"}, b"", ECHO, "header:x-v", "blue", id="by-header"),
        pytest.param({"x-echo-version": "v1"}, b"", ECHO, "json:pod.labels.track", "canary", id="by-json"),
        pytest.param({}, b"", ECHO, "json:list.0.x", "y", id="by-json-index"),
        pytest.param({}, b"", ECHO, "json:pod.labels", None, id="by-json-not-scalar"),
        pytest.param({}, b"<p>version=v3</p>", MISSING, "regex:version=(\\w+)", "v3", id="by-regex-group"),
        pytest.param({}, b"build v4 ok", MISSING, "regex:v\\d", "v4", id="by-regex-whole"),
        pytest.param({}, b"nothing", MISSING, "regex:v\\d", None, id="by-regex-miss"),
        pytest.param({"x-echo-pod": "echo-v1-xyz"}, b"", ECHO, "pod", "echo-v1-xyz", id="by-pod-header"),
        pytest.param({}, b"", ECHO, "pod", "echo-v2-abc", id="by-pod-json"),
    ],
)
def test_attribute(
    headers: dict[str, str], body: bytes, document: object, by: str, expected: str | None
) -> None:
    assert attribute(headers, body, document, parse_by(by)) == expected


def test_json_path_missing() -> None:
    assert json_path(ECHO, "pod.nope") is MISSING
    assert json_path(ECHO, "list.5") is MISSING
    assert By("json", "a").describe() == "json:a"
