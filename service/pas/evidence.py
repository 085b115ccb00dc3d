"""The supporting documentation a PAS request carries, and how far covreq may trust it.

A QuestionnaireResponse is untrusted input even when covreq made it. One that carries covreq's
signed DTR context (service/dtr/signing.py) is opened and checked as ``$next-question`` checks it
(service/dtr/adaptive.py ``verified``): then its answers, its attachments and its attestations count
for the policy its form belongs to. Any other response (unsigned, signed by another server, altered,
expired) is kept as unverified: a reviewer reads it, the rules never certify on it.

A DocumentReference (or a Claim ``supportingInfo`` attachment) counts for a documentation item when
its ``type`` (or the supportingInfo ``code``) carries a coding of :data:`DOCUMENTATION_SYSTEM` whose
code is the item's id (``preop-photos``) and it holds content (an attachment with data or a url).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from service.dtr.adaptive import verified
from service.dtr.catalogue import Catalogue
from service.dtr.questionnaire import DOC_PREFIX
from service.dtr.signing import CONTEXT_URL, Keyring
from service.fhir.index import ResourceIndex
from service.fhir.outcome import FhirError
from service.fhir.values import as_list, codings, member

#: The code system naming covreq documentation items on a DocumentReference (code: the item's id).
DOCUMENTATION_SYSTEM = "urn:covreq:documentation"


@dataclass(frozen=True)
class FormEvidence:
    """What one verified DTR response gives for its policy."""

    policy: str
    known: Mapping[str, Any]  # facts the server filled from the order, as it signed them
    facts: Mapping[str, Any]  # every fact: the order's and the user's answers
    documents: frozenset[str]  # documentation item ids attached or attested


@dataclass
class Evidence:
    """The documentation of one request: verified forms by policy id, documents attached by item id,
    and why each other response is not trusted (for the reviewer)."""

    forms: dict[str, FormEvidence] = field(default_factory=dict)
    documents: set[str] = field(default_factory=set)
    unverified: list[str] = field(default_factory=list)

    def present(self, policy: str) -> frozenset[str]:
        """The documentation item ids present for ``policy``: its verified form's and the attachments."""
        form = self.forms.get(policy)
        return frozenset(self.documents | (form.documents if form else set()))


def gather(index: ResourceIndex, claim: Mapping[str, Any], forms: Catalogue, keys: Keyring) -> Evidence:
    """The documentation the request Bundle carries."""
    found = Evidence()
    for number, response in enumerate(index.of_type("QuestionnaireResponse")):
        if not any(member(e, "url") == CONTEXT_URL for e in as_list(response.get("extension"))):
            found.unverified.append(f"QuestionnaireResponse {number + 1} carries no context signed by covreq")
            continue
        try:
            form, answers, _version, _signed = verified(response, forms, keys)
        except FhirError as err:
            found.unverified.append(f"QuestionnaireResponse {number + 1} is not trusted: {err.message}")
            continue
        if response.get("status") not in ("completed", "amended"):
            found.unverified.append(f"QuestionnaireResponse {number + 1} is not completed")
            continue
        documents = frozenset(link[len(DOC_PREFIX):] for link in answers.items if link.startswith(DOC_PREFIX))
        found.forms[form.policy.id] = FormEvidence(form.policy.id, dict(answers.known), answers.facts(), documents)
    for document in index.of_type("DocumentReference"):
        if any(isinstance(member(c, "attachment"), dict) and (c["attachment"].get("data") or c["attachment"].get("url"))
               for c in as_list(document.get("content"))):
            found.documents |= _items_named(document.get("type"))
    for info in as_list(claim.get("supportingInfo")):
        attachment = member(info, "valueAttachment")
        if isinstance(attachment, dict) and (attachment.get("data") or attachment.get("url")):
            found.documents |= _items_named(member(info, "code"))
    return found


def _items_named(concept: Any) -> set[str]:
    return {c["code"] for c in codings(concept) if c.get("system") == DOCUMENTATION_SYSTEM}
