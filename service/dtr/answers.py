"""What a user's answer must carry: an ``information-origin`` (DTR: 1..1 on every answer).

The DTR client stamps each answer with where it came from (``auto`` / ``auto-client`` when it
pre-populated it, ``override`` when a person changed that, ``manual`` when a person typed it), and
names the person for ``override`` and ``manual`` (invariant dtrx-1). covreq cannot know who
answered, so it requires the origin from the client rather than inventing one, and refuses (400) an
answer without it, with a code its version does not list, or claiming what only the server fills.
"""
from __future__ import annotations

from typing import Any

from service.dtr.versions import DtrVersion
from service.fhir.outcome import FhirError
from service.fhir.values import as_list, member

ORIGIN = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin"
#: Origins a person stands behind: dtrx-1 wants the author named for these, and only these.
_AUTHORED = frozenset({"override", "manual"})


def check_origin(answer: Any, version: DtrVersion, where: str) -> None:
    """Raises FhirError (400) unless ``answer`` carries one ``information-origin`` a client may give
    in ``version``, with an ``author`` exactly when a person gave it."""
    origins = [e for e in as_list(member(answer, "extension")) if member(e, "url") == ORIGIN]
    if len(origins) != 1:
        raise FhirError(400, "every answer a user gives carries one information-origin extension "
                             f"({ORIGIN}): the DTR client states where the answer came from", f"{where}.extension")
    parts = as_list(member(origins[0], "extension"))
    sources = [member(p, "valueCode") for p in parts if member(p, "url") == "source"]
    authors = [p for p in parts if member(p, "url") == "author"]
    allowed = ", ".join(sorted(version.user_origins))
    if len(sources) != 1 or sources[0] not in version.user_origins:
        shown = str(sources[0])[:32] if len(sources) == 1 else "none"
        raise FhirError(400, f"information-origin source must be one of {allowed} in DTR {version.code} (a "
                             f"user's answer), not {shown!r}", f"{where}.extension.where(url = '{ORIGIN}')")
    if (sources[0] in _AUTHORED) != (len(authors) == 1) or len(authors) > 1:
        raise FhirError(400, "information-origin names one author exactly when a person gave the answer "
                             "(source override or manual; dtrx-1)", f"{where}.extension.where(url = '{ORIGIN}')")
