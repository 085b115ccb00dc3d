"""One FHIR Library per form: the policy version's CQL (``text/cql``) and its ELM
(``application/elm+json``), base64 in ``Library.content``, with the parameters it takes and the
defines it offers. A form names its Library with the ``cqf-library`` extension, reads its
pre-population defines as ``"<Library name>"."<define>"`` and its answers functions as
``"<Library name>"."Answers: <define>"(%resource)`` (CQL, docs/dtr.md "Libraries")."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from engine.evaluation.needs import needs_of
from engine.policy import Policy
from service.dtr.cql import cql_text, elm_library, library_logic, library_name
from service.dtr.cqlanswers import add_answers_functions
from service.dtr.cqlexpr import elm_text
from service.dtr.fhirpath import variable_facts

#: The Using CQL with FHIR IG's profiles the DTR IG names for libraries: CQL and ELM content.
PROFILES = ("http://hl7.org/fhir/uv/cql/StructureDefinition/cql-library",
            "http://hl7.org/fhir/uv/cql/StructureDefinition/elm-json-library")
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
#: CQL types as FHIR ParameterDefinition types.
_FHIR_TYPES = {"String": "string", "Boolean": "boolean", "Decimal": "decimal", "Date": "date", "Integer": "integer"}


@dataclass(frozen=True)
class Library:
    """The Library resource of one policy version, with its CQL text and ELM as generated."""

    resource: dict[str, Any]
    cql: str
    elm: dict[str, Any]

    @property
    def canonical(self) -> str:
        """``url|version``."""
        return f"{self.resource['url']}|{self.resource['version']}"

    @property
    def full_url(self) -> str:
        """Where the Library is read: ``{base}/Library/{id}``."""
        return self.resource["url"].rsplit("/", 1)[0] + "/" + self.resource["id"]

    @property
    def name(self) -> str:
        """The CQL library name, which expressions that read it start with."""
        return str(self.resource["name"])

    def expression(self, define: str) -> dict[str, Any]:
        """A CQL Expression that reads one of the library's defines."""
        return cql_expression(self.name, define)


def cql_expression(library: str, define: str) -> dict[str, Any]:
    """A CQL Expression that reads ``define`` of the library named ``library`` (``"<library>"."<define>"``,
    the shape the DTR test kit checks: ``text/cql``, starting with the library's name)."""
    return {"language": "text/cql", "expression": f'"{library}"."{define}"'}


def library_url(base: str, policy_id: str) -> str:
    """The canonical url of a policy's Library (without the version)."""
    return f"{base}/Library/{policy_id}"


def _parameter(name: str, use: str, cql_type: str) -> dict[str, Any]:
    many = cql_type.startswith("List<")
    element = cql_type[5:-1] if many else cql_type
    return {"name": name, "use": use, "min": 0, "max": "*" if many else "1",
            "type": _FHIR_TYPES.get(element, element.removeprefix("FHIR."))}


def build_library(base: str, policy: Policy, resource_id: str) -> Library:
    """The Library of one policy version under the canonical ``base``, with id ``resource_id``
    (the form's own)."""
    logic = library_logic(policy)
    add_answers_functions(logic, variable_facts(read.spec.name for read in needs_of(policy).facts))
    text = cql_text(policy, logic)
    elm = elm_library(policy, logic)
    content = [{"contentType": "text/cql", "data": base64.b64encode(text.encode()).decode()},
               {"contentType": "application/elm+json", "data": base64.b64encode(elm_text(elm).encode()).decode()}]
    parameters = [_parameter(name, "in", type_) for name, type_ in logic.parameters.items()]
    parameters += [_parameter(d.name, "out", d.result) for d in logic.defines.values()]
    resource = {
        "resourceType": "Library", "id": resource_id, "meta": {"profile": list(PROFILES)},
        "url": library_url(base, policy.id), "version": policy.version, "name": library_name(policy),
        "title": f"Logic of {policy.title}", "status": "active",
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "logic-library"}]},
        "date": policy.effective.isoformat(), "publisher": policy.payer,
        "description": f"The facts, rules and documentation requirements of policy {policy.id} version "
                       f"{policy.version} ({policy.url}) in CQL, generated from its conditions: which "
                       "documentation is owed and whether prior authorization is needed.",
        "parameter": parameters,
        "dataRequirement": [{"type": t} for t in ("Patient", "Condition")],
        "content": content,
    }
    return Library(resource, text, elm)
