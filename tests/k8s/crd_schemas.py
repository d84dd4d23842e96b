"""Validate Istio and Gateway API resources against their CRDs' openAPIV3Schema (read in place from
the shared schema folder, never copied into the repository).

The API server prunes unknown fields of custom resources silently, and `kubectl --validate=strict`
rejects them; to catch typos like `subset.label`, every object schema that lists properties and does
not preserve unknown fields is made closed (`additionalProperties: false`). CEL rules
(`x-kubernetes-validations`) are not evaluated: that needs an API server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from netdebug.k8s.documents import Doc

# apiVersion ("group/version") and kind -> JSON schema
SchemaKey = tuple[str, str]


def load_crd_schemas(folder: Path) -> dict[SchemaKey, dict[str, Any]]:
    schemas: dict[SchemaKey, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema and version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = strict_schema(schema)
    return schemas


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    closed = copy.deepcopy(dict(schema))
    properties = closed.setdefault("properties", {})
    # The CRD schemas describe spec/status; the envelope is the API server's.
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties.setdefault("metadata", {"type": "object"})
    for node in _objects(closed):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
    return closed


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item)


def schema_errors(doc: Doc, schemas: Mapping[SchemaKey, dict[str, Any]]) -> list[str]:
    """One line per violation, naming the resource and the field path; [] when valid.

    Raises KeyError when no CRD describes the document's apiVersion and kind.
    """
    schema = schemas[(str(doc["apiVersion"]), str(doc["kind"]))]
    validator = jsonschema.Draft7Validator(schema)
    where = f"{doc['kind']} {doc['metadata'].get('name')}"
    return [
        f"{where} {'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
