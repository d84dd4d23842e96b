"""Who this echo process is: pod identity from the Kubernetes Downward API.

Pure: the caller (the CLI edge) reads the hostname and the labels file and passes them in.
Precedence for the version (the Istio helloworld convention): ``SERVICE_VERSION``, else the pod's
``version`` label, else ``"unknown"``. The pod name falls back to the hostname, which Kubernetes sets
to the pod name anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from echo.mesh import UNKNOWN_POD, PodMesh, pod_mesh

UNKNOWN_VERSION = "unknown"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    hostname: str
    version: str = UNKNOWN_VERSION
    namespace: str | None = None
    ip: str | None = None
    node: str | None = None
    service_account: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # What the Downward API files say about the pod's own mesh (sidecar, ztunnel), for `mesh`.
    mesh: PodMesh = UNKNOWN_POD

    def to_json(self) -> dict[str, object]:
        """The echo document's ``pod`` field."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "ip": self.ip,
            "node": self.node,
            "service_account": self.service_account,
            "version": self.version,
            "labels": dict(self.labels),
        }


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def identity_from_environ(
    environ: Mapping[str, str],
    hostname: str,
    labels_text: str | None = None,
    annotations_text: str | None = None,
) -> Identity:
    """``labels_text``/``annotations_text``: the Downward API files' content, None when not mounted."""
    labels = parse_labels(labels_text) if labels_text else {}
    annotations = parse_labels(annotations_text) if annotations_text is not None else None
    return Identity(
        name=_env(environ, "POD_NAME") or hostname,
        hostname=hostname,
        version=_env(environ, "SERVICE_VERSION") or labels.get("version") or UNKNOWN_VERSION,
        namespace=_env(environ, "POD_NAMESPACE"),
        ip=_env(environ, "POD_IP"),
        node=_env(environ, "NODE_NAME"),
        service_account=_env(environ, "POD_SERVICE_ACCOUNT"),
        labels=labels,
        mesh=pod_mesh(labels if labels_text is not None else None, annotations),
    )


def parse_labels(text: str) -> dict[str, str]:
    """Parse a Downward API ``labels`` file: one ``key="value"`` per line, values Go-quoted (%q).

    Lines that do not have that shape are skipped: a pod must keep serving even if the file is odd.
    """
    labels: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, quoted = line.strip().partition("=")
        if not sep or not key:
            continue
        value = _unquote_go(quoted)
        if value is not None:
            labels[key] = value
    return labels


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _unquote_go(quoted: str) -> str | None:
    """Undo Go's strconv.Quote; None when the text is not one complete quoted string."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        return None
    body = quoted[1:-1]
    if "\\" not in body:
        return None if '"' in body else body
    out: list[str] = []
    pending_bytes = bytearray()  # \xNN escapes are bytes of a UTF-8 sequence
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            return None
        if char != "\\":
            if pending_bytes:
                out.append(pending_bytes.decode("utf-8", "replace"))
                pending_bytes.clear()
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        esc = body[i + 1]
        if esc in _HEX_ESCAPES:
            width = _HEX_ESCAPES[esc]
            digits = body[i + 2 : i + 2 + width]
            try:
                number = int(digits, 16)
            except ValueError:
                return None
            if len(digits) != width:
                return None
            if esc == "x":
                pending_bytes.append(number)
            else:
                if pending_bytes:
                    out.append(pending_bytes.decode("utf-8", "replace"))
                    pending_bytes.clear()
                out.append(chr(number) if number <= 0x10FFFF else "\ufffd")
            i += 2 + width
            continue
        if esc not in _SIMPLE_ESCAPES:
            return None
        if pending_bytes:
            out.append(pending_bytes.decode("utf-8", "replace"))
            pending_bytes.clear()
        out.append(_SIMPLE_ESCAPES[esc])
        i += 2
    if pending_bytes:
        out.append(pending_bytes.decode("utf-8", "replace"))
    return "".join(out)
