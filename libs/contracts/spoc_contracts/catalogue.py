"""The event catalogue as JSON Schema, and the rule that a published contract only ever grows."""

from __future__ import annotations

import json
from typing import Any

from spoc_contracts.envelope import Envelope
from spoc_contracts.registry import EVENT_CLASSES

CatalogueDoc = dict[str, Any]


def build_catalogue() -> CatalogueDoc:
    events = {
        f"{cls.TYPE}.v{cls.VERSION}": {
            "type": cls.TYPE,
            "version": cls.VERSION,
            "description": (cls.__doc__ or "").strip(),
            "schema": cls.model_json_schema(mode="serialization"),
        }
        for cls in EVENT_CLASSES
    }
    return {
        "envelope": Envelope.model_json_schema(mode="serialization"),
        "events": dict(sorted(events.items())),
    }


def render_catalogue() -> str:
    return json.dumps(build_catalogue(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)
    return schema


def _type_of(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A comparable summary of what values a schema admits (type, enum, shape of nested parts)."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return (
            "anyOf",
            sorted(json.dumps(_type_of(s, root), sort_keys=True) for s in schema["anyOf"]),
        )
    if "enum" in schema:
        return ("enum", sorted(map(str, schema["enum"])))
    if "const" in schema:
        return ("enum", [str(schema["const"])])
    kind = schema.get("type")
    if kind == "array":
        return ("array", _type_of(schema.get("items", {}), root))
    return (kind, schema.get("format"))


def _compare_object(
    where: str,
    old: dict[str, Any],
    new: dict[str, Any],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    problems: list[str],
) -> None:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{where}.{name}: field removed")
            continue
        _compare_value(f"{where}.{name}", old_prop, new_props[name], old_root, new_root, problems)
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{where}.{name}: newly required")


def _compare_value(
    where: str,
    old: dict[str, Any],
    new: dict[str, Any],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    problems: list[str],
) -> None:
    old_r, new_r = _resolve(old, old_root), _resolve(new, new_root)
    if old_r.get("type") == "object" and new_r.get("type") == "object" and "properties" in old_r:
        _compare_object(where, old_r, new_r, old_root, new_root, problems)
        return
    if old_r.get("type") == "array" and new_r.get("type") == "array":
        _compare_value(
            f"{where}[]",
            old_r.get("items", {}),
            new_r.get("items", {}),
            old_root,
            new_root,
            problems,
        )
        return
    before, after = _type_of(old_r, old_root), _type_of(new_r, new_root)
    if before != after:
        problems.append(f"{where}: type changed from {before} to {after}")


def schema_breaking_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every way schema `new` breaks a consumer or producer written against `old` (one event
    version, or the envelope); empty if additive. Problems are prefixed with `where`."""
    problems: list[str] = []
    _compare_object(where, old, new, old, new, problems)
    return problems


def breaking_changes(old: CatalogueDoc, new: CatalogueDoc) -> list[str]:
    """Every way `new` breaks a consumer or producer written against `old`; empty if additive."""
    problems = schema_breaking_changes("envelope", old["envelope"], new["envelope"])
    for key, old_event in old["events"].items():
        new_event = new["events"].get(key)
        if new_event is None:
            problems.append(f"{key}: event removed (publish a new version beside it instead)")
            continue
        problems += schema_breaking_changes(key, old_event["schema"], new_event["schema"])
    return problems
