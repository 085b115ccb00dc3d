"""Checking a rule file against its shipped JSON Schema, each problem worded and located."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema.exceptions import ValidationError, best_match

from engine.errors import did_you_mean
from engine.loading.source import Problems, Source
from engine.loading.yamlsource import KEY
from engine.resources import schema_path


@lru_cache(maxsize=None)
def _schema(name: str) -> dict[str, Any]:
    return json.loads(schema_path(name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@lru_cache(maxsize=None)
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = _schema(name)
    return jsonschema.Draft202012Validator(_inline_refs(schema, schema.get("$defs", {}), ()))


@lru_cache(maxsize=None)
def gate(name: str) -> jsonschema_rs.Validator:
    """jsonschema-rs for the same schema: it only says whether a file is valid, about fifty times
    faster than jsonschema, which still words and locates every reported problem."""
    return jsonschema_rs.validator_for(_schema(name))


def _inline_refs(node: Any, defs: dict[str, Any], stack: tuple[str, ...]) -> Any:
    """The schema with each lone local ``{"$ref": "#/$defs/x"}`` replaced by ``x`` itself: the same
    checks, without a reference lookup per validated value (which halves validation time).
    Recursive references stay as they are; ``$defs`` is kept for them."""
    if isinstance(node, list):
        return [_inline_refs(item, defs, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else None
    if len(node) == 1 and name in defs and name not in stack:
        return _inline_refs(defs[name], defs, (*stack, name))
    return {key: _inline_refs(value, defs, stack) for key, value in node.items()}


def check_schema(source: Source, schema: str, problems: Problems) -> list[ValidationError]:
    """Validate ``source`` against the shipped JSON Schema ``schema``: record each problem (unknown
    keys with a "did you mean") and return the errors, none when the file is valid."""
    # A file is rejected only on jsonschema's word: where the two were found to differ, jsonschema is
    # the more lenient (Python's ``$`` also matches before a final newline, its ``\d`` any digit).
    if gate(schema).is_valid(source.data):
        return []
    errors = sorted(_validator(schema).iter_errors(source.data), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            _unknown_keys(source, error, problems)
            continue
        alternatives = _required_alternatives(error)
        detail = error if alternatives or not error.context else best_match(error.context)
        path = list(detail.absolute_path)  # a context error's path starts at the top, like its parent's
        field_name = ".".join(str(p) for p in path) or "(top level)"
        message = f"needs {' or '.join(alternatives)}" if alternatives else _schema_message(detail)
        problems.add(source.at(*path), "E-schema", f"{field_name}: {message}")
    return errors


def _unknown_keys(source: Source, error: ValidationError, problems: Problems) -> None:
    known = list(error.schema.get("properties", {}))
    for key in error.instance:
        if key not in known:
            hint = did_you_mean(str(key), known) or f"; expected one of {', '.join(known)}"
            problems.add(source.at(*error.absolute_path, key, KEY), "E-schema", f"unknown key '{key}'{hint}")


def _required_alternatives(error: ValidationError) -> list[str]:
    """For an ``anyOf`` of ``required`` keys (a tests case needs ``expect`` or ``error``), the keys."""
    options = error.validator_value if error.validator == "anyOf" else None
    if not options or any(set(option) != {"required"} for option in options):
        return []
    return [f"'{key}'" for option in options for key in option["required"]]


def _schema_message(error: ValidationError) -> str:
    if error.validator == "pattern":
        return f"{error.instance!r} does not have the expected form ({error.schema.get('description') or error.validator_value})"
    if error.validator == "not" and isinstance(error.validator_value, dict) and "description" in error.validator_value:
        return str(error.validator_value["description"])  # a forbidden combination, worded by the schema
    return error.message
