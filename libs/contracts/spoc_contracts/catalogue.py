"""The event catalogue as JSON Schema, and the rule that a published contract only ever grows.

A released event version has producers and consumers already written against it, each
validating what it sends or reads. So besides a field removed, retyped or newly required, any
change to what a value may be breaks one side: a constraint tightened (a new or lower
`maxLength`, a higher `minLength`, a new `pattern`, fewer `enum` values, narrower bounds, an
object closed to unknown fields) refuses what released producers send; one loosened (the
reverse) lets through what released consumers refuse. A new field, optional, is the only
growth; anything else is a new version of the event."""

from __future__ import annotations

import inspect
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
            # cleandoc: Python 3.13 strips docstrings' indentation itself, 3.11 does not.
            "description": inspect.cleandoc(cls.__doc__ or ""),
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


# Bounds by the direction that narrows them.
_LOWER_NARROWS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_HIGHER_NARROWS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
# Constraints whose every change may refuse a value the other admitted.
_ANY_CHANGE_NARROWS = ("pattern", "multipleOf", "uniqueItems")


def _bound_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    for key in (*_LOWER_NARROWS, *_HIGHER_NARROWS):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if after is None:
            problems.append(f"{where}: {key} {before} dropped (loosened)")
        elif before is None:
            problems.append(f"{where}: {key} {after} added (tightened)")
        else:
            narrower = after < before if key in _LOWER_NARROWS else after > before
            verdict = "tightened" if narrower else "loosened"
            problems.append(f"{where}: {key} changed from {before} to {after} ({verdict})")
    for key in _ANY_CHANGE_NARROWS:
        before, after = old.get(key), new.get(key)
        if before == after or (key == "uniqueItems" and not before and not after):
            continue
        if after is None or after is False:
            problems.append(f"{where}: {key} {before!r} dropped (loosened)")
        elif before is None or before is False:
            problems.append(f"{where}: {key} {after!r} added (tightened)")
        else:
            problems.append(f"{where}: {key} changed from {before!r} to {after!r}")
    return problems


def _enum_of(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None


def _enum_changes(where: str, old: list[Any], new: list[Any]) -> list[str]:
    problems = []
    gone = [value for value in old if value not in new]
    added = [value for value in new if value not in old]
    if gone:
        problems.append(f"{where}: enum narrowed: no longer admits {gone} (tightened)")
    if added:
        problems.append(
            f"{where}: enum widened: admits {added}, which released consumers refuse (loosened)"
        )
    return problems


def _closed(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties") is False


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
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{where}.{name}: newly required")
    if _closed(new) and not _closed(old):
        problems.append(f"{where}: closed to unknown fields (tightened)")
    problems += _bound_changes(where, old, new)


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
        problems += _bound_changes(where, old_r, new_r)
        _compare_value(
            f"{where}[]",
            old_r.get("items", {}),
            new_r.get("items", {}),
            old_root,
            new_root,
            problems,
        )
        return
    if "anyOf" in old_r and "anyOf" in new_r:
        _compare_alternatives(where, old_r["anyOf"], new_r["anyOf"], old_root, new_root, problems)
        return
    old_enum, new_enum = _enum_of(old_r), _enum_of(new_r)
    if old_enum is not None and new_enum is not None:
        problems += _enum_changes(where, old_enum, new_enum)
        return
    before, after = _type_of(old_r, old_root), _type_of(new_r, new_root)
    if before != after:
        problems.append(f"{where}: type changed from {before} to {after}")
        return
    problems += _bound_changes(where, old_r, new_r)


def _kind_of(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """What an alternative of an anyOf is, whatever its constraints: `string`, `enum string`,
    `null`, the model a $ref names..."""
    ref = schema.get("$ref")
    resolved = _resolve(schema, root)
    kind = "enum " if _enum_of(resolved) is not None else ""
    return f"{kind}{resolved.get('type') or ref or 'any'} {resolved.get('format') or ''}".strip()


def _compare_alternatives(
    where: str,
    old: list[dict[str, Any]],
    new: list[dict[str, Any]],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    problems: list[str],
) -> None:
    """`str | None` against its new self: each alternative with its counterpart."""
    old_kinds = {_kind_of(branch, old_root): branch for branch in old}
    new_kinds = {_kind_of(branch, new_root): branch for branch in new}
    if old_kinds.keys() != new_kinds.keys():
        problems.append(
            f"{where}: type changed from one of {sorted(old_kinds)} to one of {sorted(new_kinds)}"
        )
        return
    for kind, branch in old_kinds.items():
        _compare_value(where, branch, new_kinds[kind], old_root, new_root, problems)


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
