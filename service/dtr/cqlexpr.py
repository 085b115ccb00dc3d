"""CQL expressions written twice at once: as CQL text for people and as ELM JSON for engines.

Every builder returns one :class:`Cql`, so the text and the tree cannot drift apart; callers
compose builders and never write either form by hand. The ELM follows the ELM r1 JSON schema
that the CQL-to-ELM translator emits and ``cql-execution`` runs.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

SYSTEM = "urn:hl7-org:elm-types:r1"
FHIR = "http://hl7.org/fhir"
#: CQL operators with their ELM node types, for binary expressions.
_BINARY = {"=": "Equal", "!=": "NotEqual", "<": "Less", "<=": "LessOrEqual", ">": "Greater",
           ">=": "GreaterOrEqual", "in": "In", "+": "Add", "-": "Subtract"}


@dataclass(frozen=True)
class Cql:
    """One expression: its CQL text (parenthesized where it is compound) and its ELM node."""

    text: str
    elm: dict[str, Any]


def system_type(name: str) -> str:
    """The qualified name of a CQL system type (``String`` -> ``{urn:hl7-org:elm-types:r1}String``)."""
    return f"{{{SYSTEM}}}{name}"


def type_specifier(type_: str) -> dict[str, Any]:
    """The ELM type specifier of ``String``, ``Date``, ... or ``List<String>``."""
    if type_.startswith("List<"):
        return {"type": "ListTypeSpecifier", "elementType": type_specifier(type_[5:-1])}
    if type_.startswith("FHIR."):
        return {"type": "NamedTypeSpecifier", "name": f"{{{FHIR}}}{type_[5:]}"}
    return {"type": "NamedTypeSpecifier", "name": system_type(type_)}


def _escaped(text: str, quote: str) -> str:
    """``text`` between ``quote``s, with CQL's escapes: the quote, the backslash and every control
    character (as ``\\uXXXX``), so that no text can end the literal or the line."""
    out = []
    for char in text:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in "\u2028\u2029":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return quote + "".join(out) + quote


def quoted(name: str) -> str:
    """``name`` as a CQL quoted identifier."""
    return _escaped(name, '"')


def _string_text(value: str) -> str:
    return _escaped(value, "'")


def literal(value: object) -> Cql:
    """A Boolean, Decimal, Integer, String or Date literal."""
    if isinstance(value, bool):
        return Cql("true" if value else "false", {"type": "Literal", "valueType": system_type("Boolean"),
                                                  "value": "true" if value else "false"})
    if isinstance(value, int):
        return Cql(str(value), {"type": "Literal", "valueType": system_type("Integer"), "value": str(value)})
    if isinstance(value, float):
        text = repr(value) if "e" not in repr(value) else f"{value:f}"
        return Cql(text, {"type": "Literal", "valueType": system_type("Decimal"), "value": text})
    if isinstance(value, dt.date):
        return Cql("@" + value.isoformat(), {"type": "Date", "year": literal(value.year).elm,
                                             "month": literal(value.month).elm, "day": literal(value.day).elm})
    text = str(value)
    return Cql(_string_text(text), {"type": "Literal", "valueType": system_type("String"), "value": text})


def null(type_: str) -> Cql:
    """``null as <type>``."""
    return Cql(f"(null as {type_})", {"type": "As", "operand": {"type": "Null"}, "asTypeSpecifier": type_specifier(type_),
                                      "strict": False})


def ref(name: str) -> Cql:
    """A reference to a define of the same library."""
    return Cql(quoted(name), {"type": "ExpressionRef", "name": name})


def parameter(name: str) -> Cql:
    """A reference to a parameter of the library."""
    return Cql(quoted(name), {"type": "ParameterRef", "name": name})


def operand(name: str) -> Cql:
    """A reference to an operand of the function being defined."""
    return Cql(quoted(name), {"type": "OperandRef", "name": name})


def external(name: str) -> Cql:
    """An SDC context variable (``%resource``: the QuestionnaireResponse being filled), which CQL
    reads as the parameter of that name, ``%`` included (as the CQL-to-ELM translator does)."""
    return Cql(f"%{name}", {"type": "ParameterRef", "name": f"%{name}"})


def local_function_ref(name: str, *operands: Cql) -> Cql:
    """A call of function ``name`` of the same library: ``"Name"(a, ...)``."""
    return Cql(f"{quoted(name)}({', '.join(o.text for o in operands)})",
               {"type": "FunctionRef", "name": name, "operand": [o.elm for o in operands]})


def function_ref(library: str, name: str, *operands: Cql) -> Cql:
    """A call of function ``name`` of the included library ``library``: ``"Lib"."Name"(a, ...)``."""
    return Cql(f"{quoted(library)}.{quoted(name)}({', '.join(o.text for o in operands)})",
               {"type": "FunctionRef", "libraryName": library, "name": name, "operand": [o.elm for o in operands]})


def alias(name: str) -> Cql:
    """A query alias (``X`` in ``[Condition] X where ...``)."""
    return Cql(name, {"type": "AliasRef", "name": name})


def prop(source: Cql, path: str) -> Cql:
    """``source.path`` (a FHIR element; ``.value`` of a FHIR primitive is its CQL value)."""
    return Cql(f"{source.text}.{path}", {"type": "Property", "path": path, "source": source.elm})


def retrieve(resource: str) -> Cql:
    """``[Resource]``: the patient's resources of a type."""
    return Cql(f"[{resource}]", {"type": "Retrieve", "dataType": f"{{{FHIR}}}{resource}",
                                 "templateId": f"{FHIR}/StructureDefinition/{resource}"})


def binary(op: str, left: Cql, right: Cql) -> Cql:
    """``left op right`` for the operators of :data:`_BINARY`."""
    return Cql(f"({left.text} {op} {right.text})", {"type": _BINARY[op], "operand": [left.elm, right.elm]})


def call(function: str, *operands: Cql, elm_type: str | None = None) -> Cql:
    """A system function ``Function(a, b, ...)`` whose ELM node has the same name (or ``elm_type``)."""
    node: dict[str, Any] = {"type": elm_type or function}
    node["operand"] = operands[0].elm if len(operands) == 1 and function in _UNARY else [o.elm for o in operands]
    return Cql(f"{function}({', '.join(o.text for o in operands)})", node)


#: Functions whose ELM node takes one ``operand`` rather than a list of them.
_UNARY = {"Upper", "Lower", "Exists", "Flatten", "ToInteger", "ToDecimal", "Count", "IsTrue", "IsFalse",
          "IsNull", "Not", "DateFrom", "Distinct"}


def first(source: Cql) -> Cql:
    """``First(list)``."""
    return Cql(f"First({source.text})", {"type": "First", "source": source.elm})


def count(source: Cql) -> Cql:
    """``Count(list)``."""
    return Cql(f"Count({source.text})", {"type": "Count", "source": source.elm})


def starts_with(text: Cql, prefix: Cql) -> Cql:
    """``StartsWith(text, prefix)``."""
    return call("StartsWith", text, prefix)


def matches(text: Cql, pattern: str) -> Cql:
    """``Matches(text, pattern)``: the whole of ``text`` matches (``pattern`` is anchored)."""
    return call("Matches", text, literal(pattern))


def replace_matches(text: Cql, pattern: str, substitution: str) -> Cql:
    """``ReplaceMatches(text, pattern, substitution)``."""
    return call("ReplaceMatches", text, literal(pattern), literal(substitution))


def substring(text: Cql, start: int, length: int) -> Cql:
    """``Substring(text, start, length)`` (0-based)."""
    node = {"type": "Substring", "stringToSub": text.elm, "startIndex": literal(start).elm, "length": literal(length).elm}
    return Cql(f"Substring({text.text}, {start}, {length})", node)


def date_from(value: Cql) -> Cql:
    """``date from value``: the date of a DateTime."""
    return Cql(f"(date from {value.text})", {"type": "DateFrom", "operand": value.elm})


def component(value: Cql, precision: str) -> Cql:
    """``year from value`` (``precision`` Year, Month or Day)."""
    return Cql(f"({precision.lower()} from {value.text})",
               {"type": "DateTimeComponentFrom", "precision": precision, "operand": value.elm})


def quantity(amount: int, unit: str) -> Cql:
    """A calendar duration such as ``30 days``."""
    plural = unit + ("" if amount == 1 else "s")
    return Cql(f"{amount} {plural}", {"type": "Quantity", "value": amount, "unit": plural})


def today() -> Cql:
    """``Today()``."""
    return Cql("Today()", {"type": "Today"})


def as_fhir(value: Cql, fhir_type: str) -> Cql:
    """``(value as FHIR.type)``: one choice of a FHIR choice element."""
    return Cql(f"({value.text} as FHIR.{fhir_type})",
               {"type": "As", "operand": value.elm, "asType": f"{{{FHIR}}}{fhir_type}", "strict": False})


def _fold(kind: str, word: str, parts: tuple[Cql, ...]) -> Cql:
    if len(parts) == 1:
        return parts[0]
    node = parts[0].elm
    for part in parts[1:]:
        node = {"type": kind, "operand": [node, part.elm]}
    return Cql("(" + f" {word} ".join(p.text for p in parts) + ")", node)


def and_(*parts: Cql) -> Cql:
    """Kleene ``and`` of one or more booleans."""
    return _fold("And", "and", parts)


def or_(*parts: Cql) -> Cql:
    """Kleene ``or`` of one or more booleans."""
    return _fold("Or", "or", parts)


def not_(operand: Cql) -> Cql:
    """Kleene ``not``."""
    return Cql(f"(not {operand.text})", {"type": "Not", "operand": operand.elm})


def is_null(operand: Cql) -> Cql:
    """``operand is null`` (never null itself)."""
    return Cql(f"({operand.text} is null)", {"type": "IsNull", "operand": operand.elm})


def is_true(operand: Cql) -> Cql:
    """``operand is true`` (never null itself)."""
    return Cql(f"({operand.text} is true)", {"type": "IsTrue", "operand": operand.elm})


def is_false(operand: Cql) -> Cql:
    """``operand is false`` (never null itself)."""
    return Cql(f"({operand.text} is false)", {"type": "IsFalse", "operand": operand.elm})


def if_(condition: Cql, then: Cql, otherwise: Cql) -> Cql:
    """``if condition then a else b`` (a null condition takes ``else``)."""
    return Cql(f"(if {condition.text} then {then.text} else {otherwise.text})",
               {"type": "If", "condition": condition.elm, "then": then.elm, "else": otherwise.elm})


def case(branches: list[tuple[Cql, Cql]], otherwise: Cql) -> Cql:
    """``case when c1 then v1 ... else v end``."""
    text = " ".join(f"when {c.text} then {v.text}" for c, v in branches)
    return Cql(f"(case {text} else {otherwise.text} end)",
               {"type": "Case", "caseItem": [{"when": c.elm, "then": v.elm} for c, v in branches],
                "else": otherwise.elm})


def coalesce(*operands: Cql) -> Cql:
    """The first operand that is not null."""
    return Cql(f"Coalesce({', '.join(o.text for o in operands)})",
               {"type": "Coalesce", "operand": [o.elm for o in operands]})


def list_of(items: list[Cql], element_type: str) -> Cql:
    """``{a, b, ...}`` (typed, so that an empty list is ``List<T>{}``)."""
    text = "{" + ", ".join(i.text for i in items) + "}"
    return Cql(text if items else f"List<{element_type}>{text}",
               {"type": "List", "typeSpecifier": type_specifier(f"List<{element_type}>"),
                "element": [i.elm for i in items]})


def flatten(lists: Cql) -> Cql:
    """``Flatten(list of lists)``."""
    return call("Flatten", lists)


def query(source: Cql, name: str, where: Cql | None = None, returns: Cql | None = None) -> Cql:
    """``source X where ... return all ...`` (``all``: duplicates are kept, as FHIRPath keeps them);
    a source other than a retrieve or a name is parenthesized, as CQL's grammar wants."""
    source_text = source.text if source.text.startswith(("(", "[", '"')) and " " not in source.text else f"({source.text})"
    text = f"({source_text} {name}" + (f" where {where.text}" if where else "") + (
        f" return all {returns.text}" if returns else "") + ")"
    node: dict[str, Any] = {"type": "Query", "source": [{"alias": name, "expression": source.elm}], "relationship": []}
    if where is not None:
        node["where"] = where.elm
    if returns is not None:
        node["return"] = {"distinct": False, "expression": returns.elm}
    return Cql(text, node)


def elements(source: Cql, element_type: str) -> Cql:
    """A FHIR list element, empty rather than null when absent (a query over null is null in CQL,
    and ``cql-execution`` reads a null source as one null element)."""
    return coalesce(source, list_of([], element_type))


def exists(source: Cql) -> Cql:
    """``exists list``: the list has an element (false, never null, for a null list)."""
    return Cql(f"(exists {source.text})", {"type": "Exists", "operand": source.elm})


def singleton(source: Cql) -> Cql:
    """``singleton from list``."""
    return Cql(f"(singleton from {source.text})", {"type": "SingletonFrom", "operand": source.elm})


def elm_text(library: dict[str, Any]) -> str:
    """An ELM library as compact, stable JSON."""
    return json.dumps(library, separators=(",", ":"), sort_keys=True)
