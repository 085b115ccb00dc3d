"""``GET /fhir/Library``: the forms' CQL Libraries, read by id or resolved by canonical url, as
the ``cqf-library`` extension of a Questionnaire names them."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.dtr.catalogue import PREFIX, forms_of
from service.dtr.library import library_url
from service.fhir.outcome import operation_outcome
from service.responses import json_response

FHIR_JSON = {"Content-Type": "application/fhir+json"}
router = APIRouter(tags=["FHIR: Da Vinci DTR"])


@router.get(PREFIX + "/Library", summary="Search the generated CQL Libraries by canonical url")
def search_libraries(request: Request, url: str | None = None, version: str | None = None) -> JSONResponse:
    """A searchset Bundle of the Libraries whose url (``url|version`` accepted) and version match;
    the Library of every policy's current form without a url."""
    forms = forms_of(request)
    if url is not None and "|" in url and version is None:
        url, version = url.split("|", 1)
    prefix = library_url(forms.base, "")
    if url is None:
        found = forms.forms(None)
    elif url.startswith(prefix):
        found = forms.forms(url[len(prefix):], version)
    else:
        found = []
    libraries = [form.library for form in found]
    return _fhir(request, {"resourceType": "Bundle", "type": "searchset", "total": len(libraries),
                           "entry": [{"fullUrl": lib.full_url, "resource": lib.resource, "search": {"mode": "match"}}
                                     for lib in libraries]})


@router.get(PREFIX + "/Library/{resource_id}", summary="Read a generated CQL Library")
def read_library(resource_id: str, request: Request) -> JSONResponse:
    """One Library by id (its form's: ``<policy id>.<version>``, or a policy id for its current version)."""
    form = forms_of(request).form_by_id(resource_id)
    if form is not None:
        return _fhir(request, form.library.resource)
    return operation_outcome(404, f"no Library {resource_id!r}", request.app.state.holder.current.digest, "id")


def _fhir(request: Request, body: dict[str, Any]) -> JSONResponse:
    """``body`` as FHIR JSON, named with the rule set in service."""
    return json_response(body, request.app.state.holder.current.digest, headers=FHIR_JSON)
