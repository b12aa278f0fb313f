"""Kubernetes manifests checked offline against the API's schemas, as the `kubernetes` client models them.

Every field of a manifest must be one the model of its kind has (a typo is an
error, not a silently ignored key), of the model's type, and the models'
own client-side checks (required fields, enums) run as each level is built.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client as k8s

KINDS: dict[tuple[str, str], str] = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
}
SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
                                        "object": (str, int, dict, list, bool), "datetime": (str,), "date": (str,)}


class SchemaError(ValueError):
    """A manifest field the Kubernetes API would reject."""


def validate(doc: dict[str, Any]) -> Any:
    """Build the client model of ``doc`` (a parsed manifest), raising SchemaError on any mismatch."""
    model = KINDS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if model is None:
        raise SchemaError(f"no schema for {doc.get('apiVersion')} {doc.get('kind')}")
    return _build(doc, model, doc.get("kind", ""))


def _build(value: Any, kind: str, path: str) -> Any:
    """``value`` as the model type named ``kind`` ('V1PodSpec', 'List[str]', 'Dict[str, str]', 'int')."""
    if m := re.fullmatch(r"List\[(.+)\]", kind):
        if not isinstance(value, list):
            raise SchemaError(f"{path}: a list expected, got {value!r}")
        return [_build(v, m.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    if m := re.fullmatch(r"Dict\[str, (.+)\]", kind):
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: a mapping expected, got {value!r}")
        return {k: _build(v, m.group(1), f"{path}.{k}") for k, v in value.items()}
    if kind in SCALARS:
        if not isinstance(value, SCALARS[kind]) or (kind == "int" and isinstance(value, bool)):
            raise SchemaError(f"{path}: {kind} expected, got {value!r}")
        return value
    return _build_model(value, getattr(k8s, kind), path)


def _build_model(value: Any, cls: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise SchemaError(f"{path}: an object ({cls.__name__}) expected, got {value!r}")
    attributes = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(attributes))
    if unknown:
        raise SchemaError(f"{path}: {cls.__name__} has no field {', '.join(unknown)}")
    kwargs = {attributes[key]: _build(v, cls.openapi_types[attributes[key]], f"{path}.{key}")
              for key, v in value.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the model's own checks: required fields, enum values
        raise SchemaError(f"{path}: {exc}") from exc
