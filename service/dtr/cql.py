"""A policy version's logic as one CQL library, written from its checked conditions (never from
rule text): CQL text for people, ELM JSON for engines.

The library reads the patient's FHIR data (the Patient, Conditions) and the order the form is
filled for, which the DTR client passes as the parameter ``service_request`` or ``device_request``
(the names the DTR reference app and the DTR test kit's libraries use). It takes each fact as a
parameter too, named as the fact catalogue names it (``place_of_service``,
``patient.birth_date``): a parameter given wins over what the record says. Its defines:

- one per fact, named for people (``"Place of service"``), normalized as the engine normalizes
  requests: what pre-populates the form;
- ``"Rule: <id>"``: each rule's condition;
- ``"Prior authorization"`` and ``"Coverage"``: the policy's answer under hit policy ``first``
  with unknowns, ``conditional`` when rules left unknown could answer differently;
- ``"Documentation owed: <id>"``: true when the item is owed, false when it is not, null while it
  may be (the engine lists an item exactly when this is not false).

A missing fact is null and CQL's ``and``, ``or``, ``not`` and comparisons are Kleene's, as
covreq's are. Where CQL is not null-propagating (``in`` a list, ``exists``, ``contains``) the test
is guarded so that an unknown fact gives null (docs/dtr.md, "Libraries").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.language import ast
from engine.language.codes import CodeSet
from engine.language.facts import ALWAYS, BOOL, CODE, DATE, FACTS, ICD, NUMBER
from engine.language.logic import Analysed, analyse
from engine.evaluation.needs import Route, needs_of
from engine.policy import CONDITIONAL, NO_AUTH, Outcome, Policy
from service.dtr import cqlexpr as c
from service.dtr.cqlexpr import Cql
from service.dtr.facts import ORDER_COMPLETE
from service.fhir.systems import BILLING_SYSTEMS, ICD10CM, POS

#: What the engine does to a given text before comparing it (codes: upper case, no dots).
_UPPER = {"state", "modifiers", "system"}
_LOWER = {"patient.sex", "stage"}
_CQL_TYPES = {NUMBER: "Decimal", DATE: "Date", BOOL: "Boolean"}
_OPS = {"==": "=", "!=": "!="}
#: The parameters that pass the order the form is filled for (as the DTR reference app names them).
SERVICE_REQUEST, DEVICE_REQUEST = "service_request", "device_request"
#: The answers a policy can give about prior authorization and coverage.
PA, COVERAGE = "Prior authorization", "Coverage"
_HCPCS_SHAPE = "^[A-V][0-9]{4}$"


def define_name(fact: str) -> str:
    """The define that holds a fact (``patient.birth_date`` -> ``Patient birth date``)."""
    words = re.sub(r"[._]", " ", fact)
    return words[:1].upper() + words[1:]


def rule_define(rule_id: str) -> str:
    """The define that holds a rule's condition."""
    return f"Rule: {rule_id}"


def documentation_define(item_id: str) -> str:
    """The define that says whether a documentation item is owed."""
    return f"Documentation owed: {item_id}"


def parameter_type(fact: str) -> str:
    """The CQL type of the parameter that gives a fact."""
    spec = FACTS[fact] if fact in FACTS else ORDER_COMPLETE
    element = _CQL_TYPES.get(spec.type, "String")
    return f"List<{element}>" if spec.many else element


@dataclass
class Define:
    """One ``define`` of the library."""

    name: str
    expression: Cql
    result: str  # the CQL type of its value, for Library.parameter


@dataclass
class Function:
    """One ``define function`` of the library."""

    name: str
    operands: tuple[tuple[str, str], ...]  # each one's name and CQL type
    expression: Cql


@dataclass
class Logic:
    """The statements of one library as they are written: parameters, then defines in order, then
    functions."""

    parameters: dict[str, str] = field(default_factory=dict)  # name -> CQL type
    defines: dict[str, Define] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)

    def define(self, name: str, result: str, build: Callable[[], Cql]) -> Cql:
        """A reference to define ``name``, written (once, after those it reads) by ``build``."""
        if name not in self.defines:
            expression = build()
            self.defines[name] = Define(name, expression, result)
        return c.ref(name)

    def parameter(self, name: str, type_: str | None = None) -> Cql:
        """A reference to parameter ``name``, declared with ``type_`` (default: the fact's type)."""
        self.parameters.setdefault(name, type_ or parameter_type(name))
        return c.parameter(name)


def normal_code(text: Cql) -> Cql:
    """A code as facts hold it: upper case, without dots or blanks."""
    return c.call("Upper", c.replace_matches(text, "[.\\s]", ""))


def _codes(concepts: Cql, systems: list[str]) -> Cql:
    """The codes of a list of CodeableConcepts whose coding system is one of ``systems``."""
    coding = c.alias("K")
    in_system = c.binary("in", c.prop(coding, "system.value"), c.list_of([c.literal(s) for s in systems], "String"))
    codings = c.elements(c.prop(c.alias("C"), "coding"), "FHIR.Coding")
    per_concept = c.query(codings, "K", in_system, c.prop(coding, "code.value"))
    return c.flatten(c.query(c.elements(concepts, "FHIR.CodeableConcept"), "C", None, per_concept))


def _empty_is_unknown(values: Cql) -> Cql:
    """A list the record leaves empty is unknown, as a request without the fact is."""
    return c.if_(c.binary("=", c.count(values), c.literal(0)), c.null("List<String>"), values)


class FactDefines:
    """The fact defines: from a parameter when given, else from the FHIR record, normalized."""

    def __init__(self, logic: Logic, payer: str) -> None:
        self.logic = logic
        self.payer = payer

    def ref(self, fact: str) -> Cql:
        """A reference to the define of ``fact`` (written on first use)."""
        builder = getattr(self, "_" + re.sub(r"\W", "_", fact), None)
        spec = FACTS[fact] if fact in FACTS else ORDER_COMPLETE
        result = parameter_type(fact)
        return self.logic.define(define_name(fact), result, builder or (lambda: self._given(fact, spec.many)))

    def _given(self, fact: str, many: bool) -> Cql:
        """A fact only a parameter gives: multi-valued ones every request carries default to empty."""
        given = self.logic.parameter(fact)
        if many:
            given = c.coalesce(given, c.list_of([], "String")) if fact in ALWAYS else given
            if fact in _UPPER or FACTS[fact].type in (CODE, ICD):
                normal = normal_code(c.alias("X")) if FACTS[fact].type in (CODE, ICD) else c.call("Upper", c.alias("X"))
                given = c.query(given, "X", None, normal)
            return given
        if fact in _UPPER:
            return c.call("Upper", given)
        if fact in _LOWER:
            return c.call("Lower", given)
        return given

    def _record(self, fact: str, found: Cql) -> Cql:
        return c.coalesce(self.logic.parameter(fact), found)

    def orders(self) -> tuple[Cql, Cql]:
        """The order the form is filled for, as the DTR client passes it: a ServiceRequest or a
        DeviceRequest parameter (null when not given: the patient's other orders are not it)."""
        return (self.logic.parameter(SERVICE_REQUEST, "FHIR.ServiceRequest"),
                self.logic.parameter(DEVICE_REQUEST, "FHIR.DeviceRequest"))

    def _order_concepts(self, element: str) -> Cql:
        """The CodeableConcepts of a list ``element`` of whichever order is given."""
        return c.flatten(c.list_of([c.elements(c.prop(order, element), "FHIR.CodeableConcept")
                                    for order in self.orders()], "List<FHIR.CodeableConcept>"))

    def patient(self) -> Cql:
        """The Patient."""
        return self.logic.define("Patient", "Patient", lambda: c.singleton(c.retrieve("Patient")))

    def _payer(self) -> Cql:
        return c.literal(self.payer)

    def _code(self) -> Cql:
        service, device = self.orders()
        concepts = c.list_of([c.prop(service, "code"), c.as_fhir(c.prop(device, "code"), "CodeableConcept")],
                             "FHIR.CodeableConcept")
        return normal_code(self._record("code", c.first(_codes(concepts, sorted(BILLING_SYSTEMS)))))

    def _system(self) -> Cql:
        code = self.ref("code")
        shape = c.if_(c.matches(code, _HCPCS_SHAPE), c.literal("HCPCS"), c.literal("CPT"))
        return c.call("Upper", c.coalesce(self.logic.parameter("system"), shape))

    def _date_of_service(self) -> Cql:
        days = []
        for order in self.orders():
            occurrence = c.prop(order, "occurrence")
            days.append(c.date_from(c.prop(c.as_fhir(occurrence, "dateTime"), "value")))
            days.append(c.date_from(c.prop(c.as_fhir(occurrence, "Period"), "start.value")))
        # CQL's Coalesce takes at most five operands
        return c.coalesce(self.logic.parameter("date_of_service"), c.coalesce(*days), c.today())

    def _place_of_service(self) -> Cql:
        service, _device = self.orders()  # a DeviceRequest has no location code
        return self._record("place_of_service", c.first(_codes(c.prop(service, "locationCode"), [POS])))

    def _patient_birth_date(self) -> Cql:
        return self._record("patient.birth_date", c.prop(self.patient(), "birthDate.value"))

    def _patient_age(self) -> Cql:
        """Whole years from the birth date to the date of service, counted as the engine counts them
        (``years between`` in cql-execution makes 2000-02-29 to 2001-02-28 a year)."""
        born, day = self.ref("patient.birth_date"), self.ref("date_of_service")
        month, born_month = c.component(day, "Month"), c.component(born, "Month")
        before = c.or_(c.binary("<", month, born_month), c.and_(c.binary("=", month, born_month), c.binary(
            "<", c.component(day, "Day"), c.component(born, "Day"))))
        years = c.binary("-", c.component(day, "Year"), c.component(born, "Year"))
        return c.binary("-", years, c.if_(before, c.literal(1), c.literal(0)))

    def _patient_sex(self) -> Cql:
        return c.call("Lower", self._record("patient.sex", c.prop(self.patient(), "gender.value")))

    def _state(self) -> Cql:
        address = c.alias("A")
        current = c.or_(c.is_null(c.prop(address, "use")), c.binary("!=", c.prop(address, "use.value"),
                                                                        c.literal("old")))
        where = c.and_(current, c.not_(c.is_null(c.prop(address, "state.value"))))
        addresses = c.elements(c.prop(self.patient(), "address"), "FHIR.Address")
        home = c.first(c.query(addresses, "A", where, c.prop(address, "state.value")))
        return c.call("Upper", self._record("state", home))

    def _diagnoses(self) -> Cql:
        conditions = _codes(c.query(c.retrieve("Condition"), "D", None, c.prop(c.alias("D"), "code")), [ICD10CM])
        reasons = _codes(self._order_concepts("reasonCode"), [ICD10CM])
        recorded = c.flatten(c.list_of([conditions, reasons], "List<String>"))
        given = self._record("diagnoses", recorded)
        return _empty_is_unknown(c.query(given, "X", None, normal_code(c.alias("X"))))

    def _type_of_bill(self) -> Cql:
        return c.replace_matches(c.call("Upper", self.logic.parameter("type_of_bill")), "^0+", "")

    def _units(self) -> Cql:
        return c.coalesce(self.logic.parameter("units"), c.literal(1.0))

    def _request_codes(self) -> Cql:
        return self.ref("other_codes")

    def _order_complete(self) -> Cql:
        return c.coalesce(self.logic.parameter(ORDER_COMPLETE.name), c.literal(False))


class _Conditions:
    """Conditions of the policy language as CQL booleans, from their checked syntax trees."""

    def __init__(self, facts: FactDefines) -> None:
        self.facts = facts

    def test(self, info: Analysed, node: ast.Expr) -> Cql:  # noqa: C901 - one branch per node kind
        if isinstance(node, ast.Literal):
            return c.literal(bool(info.checked.values[node]))
        if isinstance(node, ast.Known):
            return c.literal(True) if node.fact.name in ALWAYS else c.not_(c.is_null(self.facts.ref(node.fact.name)))
        if isinstance(node, ast.And):
            return c.and_(*(self.test(info, o) for o in node.operands))
        if isinstance(node, ast.Or):
            return c.or_(*(self.test(info, o) for o in node.operands))
        if isinstance(node, ast.Not):
            return c.not_(self.test(info, node.operand))
        if isinstance(node, ast.Compare):
            return c.binary(_OPS.get(node.op, node.op), self.value(info, node.left), self.value(info, node.right))
        if isinstance(node, ast.Member):
            item = self.value(info, node.item)
            found = _guarded([item], _member(item, info.checked.sets[node.set]))
            return c.not_(found) if node.negated else found
        if isinstance(node, ast.Overlaps):
            return self._some(node.many, lambda x: _member(x, info.checked.sets[node.set]), [])
        if isinstance(node, ast.Contains):
            value = self.value(info, node.value)
            unknowable = [] if isinstance(node.value, ast.Literal) else [value]
            return self._some(node.many, lambda x: c.binary("=", x, value), unknowable)
        if isinstance(node, ast.Fact):
            return self.facts.ref(node.name)
        raise TypeError(f"not a condition: {node!r}")

    def value(self, info: Analysed, node: ast.Expr) -> Cql:
        """A fact, a literal or a shifted date."""
        if isinstance(node, ast.Fact):
            return self.facts.ref(node.name)
        if isinstance(node, ast.Literal):
            return c.literal(info.checked.values[node])
        if isinstance(node, ast.Shift):
            op = "+" if node.sign > 0 else "-"
            return c.binary(op, self.value(info, node.base), c.quantity(node.amount, node.unit))
        return self.test(info, node)

    def _some(self, many: ast.Expr, test: Callable[[Cql], Cql], values: list[Cql]) -> Cql:
        """Some element of a multi-valued fact passes ``test``; null when the fact (or a value the
        test reads) is unknown; on ``other_codes`` a miss is unknown unless the order is complete."""
        assert isinstance(many, ast.Fact)
        elements = self.facts.ref(many.name)
        found = c.exists(c.query(elements, "X", test(c.alias("X"))))
        if many.name == "other_codes":
            complete = self.facts.ref(ORDER_COMPLETE.name)
            return _guarded(values, c.if_(found, c.literal(True), c.if_(complete, c.literal(False), c.null("Boolean"))))
        return _guarded(values if many.name in ALWAYS else [elements, *values], found)


def _guarded(values: list[Cql], test: Cql) -> Cql:
    """``test``, but null when one of ``values`` is null (CQL's ``in`` and ``exists`` are not
    null-propagating: ``null in {'a'}`` is false)."""
    if not values:
        return test
    return c.if_(c.or_(*(c.is_null(v) for v in values)), c.null("Boolean"), test)


def _member(value: Cql, members: object) -> Cql:
    """``value`` (not null) is a member of a resolved set: exact members, prefixes, code ranges."""
    if isinstance(members, CodeSet):
        exact, prefixes, ranges = sorted(members.exact), members.prefixes, members.ranges
    else:
        exact, prefixes, ranges = sorted(members, key=str), (), ()  # type: ignore[call-overload]
    element = "String" if not exact or isinstance(exact[0], str) else "Decimal" if isinstance(exact[0], float) else "Date"
    tests = [c.binary("in", value, c.list_of([c.literal(m) for m in exact], element))] if exact else []
    tests += [c.starts_with(value, c.literal(p)) for p in prefixes]
    for span in ranges:
        shape = f"^{re.escape(span.prefix)}[0-9]{{{span.width}}}{re.escape(span.suffix)}$"
        number = c.call("ToInteger", c.substring(value, len(span.prefix), span.width))
        tests.append(c.and_(c.matches(value, shape), c.binary(">=", number, c.literal(span.low)),
                            c.binary("<=", number, c.literal(span.high))))
    return c.or_(*tests) if tests else c.literal(False)


def _answers(logic: Logic, policy: Policy, tests: list[Cql], attribute: str) -> Cql:
    """What the policy answers for ``attribute`` (``pa_needed`` or ``covered``) under hit policy
    ``first`` with unknowns: the value of every outcome that may be the first to hold (no earlier
    rule holds, its own is not known to fail), ``conditional`` when they differ. Each value gets
    a define ``"May answer: <value>"``."""
    outcomes: list[Outcome] = [rule.outcome for rule in policy.rules] + [policy.default]
    may: dict[str, list[Cql]] = {}
    for index, outcome in enumerate(outcomes):
        earlier = [c.not_(c.is_true(test)) for test in tests[:index]]
        own = [c.not_(c.is_false(tests[index]))] if index < len(tests) else []
        may.setdefault(getattr(outcome, attribute), []).append(c.and_(*earlier, *own) if earlier or own else c.literal(True))
    if len(may) == 1:
        return c.literal(next(iter(may)))
    possible = {value: logic.define(f"May answer: {value}", "Boolean", lambda ways=ways: c.or_(*ways))
                for value, ways in may.items()}
    branches = [(c.and_(possible[value], *(c.not_(possible[o]) for o in possible if o != value)), c.literal(value))
                for value in possible]
    return c.case(branches, c.literal(CONDITIONAL))


def _route(route: Route, tests: list[Cql], own: Cql | None) -> Cql:
    """Kleene value of one way an item comes to be owed: no earlier rule holds, the rule does, and
    so does the item's own condition (``route.unless`` are the rules before ``route.rule``)."""
    earlier = len(route.unless)
    parts = [c.not_(test) for test in tests[:earlier]]
    if route.rule is not None:
        parts.append(tests[earlier])
    if own is not None:
        parts.append(own)
    return c.and_(*parts) if parts else c.literal(True)


def library_logic(policy: Policy) -> Logic:
    """The parameters and defines of a policy version's library."""
    logic = Logic()
    facts = FactDefines(logic, policy.payer)
    conditions = _Conditions(facts)
    needs = needs_of(policy)
    for read in needs.facts:  # the facts first: they pre-populate the form
        facts.ref(read.spec.name)
    analysed = [analyse(rule.when, policy.value_sets) for rule in policy.rules]
    tests = [logic.define(rule_define(rule.id), "Boolean", lambda info=info: conditions.test(info, info.expr))
             for rule, info in zip(policy.rules, analysed)]
    paused = None
    if policy.pauses:
        day = facts.ref("date_of_service")
        paused = logic.define("Paused", "Boolean", lambda: c.or_(*(
            c.and_(c.binary(">=", day, c.literal(p.start)), *([c.binary("<=", day, c.literal(p.end))] if p.end else []))
            for p in policy.pauses)))
    pa = _answers(logic, policy, tests, "pa_needed")
    logic.define(PA, "String", lambda: c.if_(paused, c.literal(NO_AUTH), pa) if paused is not None else pa)
    coverage = _answers(logic, policy, tests, "covered")
    logic.define(COVERAGE, "String", lambda: coverage)
    for doc, routes in needs.documentation:
        def owed(routes: tuple[Route, ...] = routes) -> Cql:
            ways = []
            for route in routes:
                own = conditions.test(route.own, route.own.expr) if route.own is not None else None
                ways.append(_route(route, tests, own))
            found = c.or_(*ways)
            return c.and_(c.not_(paused), found) if paused is not None else found
        logic.define(documentation_define(doc.id), "Boolean", owed)
    return logic


def library_name(policy: Policy) -> str:
    """The CQL library identifier of a policy (``medicare-opd-blepharoplasty`` -> ``MedicareOpdBlepharoplasty``)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", policy.id) if part) or "Policy"


def cql_text(policy: Policy, logic: Logic) -> str:
    """The library as CQL text."""
    lines = [f"library {library_name(policy)} version {c.literal(policy.version).text}", "",
             "using FHIR version '4.0.1'", ""]
    lines += [f"parameter {c.quoted(name)} {type_} default null" for name, type_ in logic.parameters.items()]
    lines += ["", "context Patient", ""]
    for define in logic.defines.values():
        if define.name == "Patient":  # implicit in the Patient context
            continue
        lines += [f"define {c.quoted(define.name)}:", f"  {define.expression.text}", ""]
    for function in logic.functions.values():
        operands = ", ".join(f"{c.quoted(name)} {type_}" for name, type_ in function.operands)
        lines += [f"define function {c.quoted(function.name)}({operands}):", f"  {function.expression.text}", ""]
    return "\n".join(lines)


def elm_library(policy: Policy, logic: Logic) -> dict[str, Any]:
    """The library as ELM (JSON)."""
    # An explicit null default: cql-execution otherwise answers a parameter given no value with
    # its definition object rather than null.
    parameters = [{"name": name, "accessLevel": "Public", "parameterTypeSpecifier": c.type_specifier(type_),
                   "default": c.null(type_).elm} for name, type_ in logic.parameters.items()]
    statements = [{"name": "Patient", "context": "Patient", "accessLevel": "Public",
                   "expression": c.singleton(c.retrieve("Patient")).elm}]
    statements += [{"name": d.name, "context": "Patient", "accessLevel": "Public", "expression": d.expression.elm}
                   for d in logic.defines.values() if d.name != "Patient"]
    statements += [{"type": "FunctionDef", "name": f.name, "context": "Patient", "accessLevel": "Public",
                    "operand": [{"name": name, "operandTypeSpecifier": c.type_specifier(type_)}
                                for name, type_ in f.operands],
                    "expression": f.expression.elm} for f in logic.functions.values()]
    return {"library": {
        "identifier": {"id": library_name(policy), "version": policy.version},
        "schemaIdentifier": {"id": "urn:hl7-org:elm", "version": "r1"},
        "usings": {"def": [{"localIdentifier": "System", "uri": c.SYSTEM},
                           {"localIdentifier": "FHIR", "uri": c.FHIR, "version": "4.0.1"}]},
        "parameters": {"def": parameters},
        "contexts": {"def": [{"name": "Patient"}]},
        "statements": {"def": statements},
    }}

