"""Is this FHIR R4? Incoming resources checked with ``fhir.resources``' R4B models.

R4B changed no element of the resources covreq reads (the request resources, Coverage, Patient,
Encounter, Location, Practitioner(Role), Organization, Condition, Medication, Device), so its
models read R4 as it is; tests/service/test_crd_r4.py holds R4 examples of each to keep that so.
The models check structure, cardinality and primitive formats; the few required code bindings
covreq decides by, which the models leave unchecked, are checked here (``REQUIRED_CODES``).

Checking takes ~100-350 us a resource, most of a CRD call. The hooks of one encounter send the
same prefetch (Patient, Coverage, Practitioner, Location ...) again and again, so each process
keeps the digests of the resources it last found valid (``KNOWN_VALID``): a resource sent again,
byte for byte the same JSON, is not checked again; any change, however small, is checked anew,
and invalid resources are always checked, so their messages are the models' own. A Bundle's
resources are checked and remembered one by one, so a search answered anew (a new Bundle id)
costs only its Bundle.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import typing
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase
from pydantic import BaseModel, ValidationError

#: R4 required bindings of elements covreq decides by: (resource type, element) -> codes
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Coverage", "status"): frozenset({"active", "cancelled", "draft", "entered-in-error"}),
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
}
#: the resource types covreq reads (orders, their Bundles, what an answer is decided by, and a PAS
#: request's Claim and supporting documentation)
READ_TYPES = ("Bundle", "ServiceRequest", "DeviceRequest", "MedicationRequest", "NutritionOrder",
              "VisionPrescription", "CommunicationRequest", "Appointment", "Coverage", "Patient", "Encounter",
              "Location", "Practitioner", "PractitionerRole", "Organization", "Condition", "Medication", "Device",
              "Claim", "DocumentReference", "QuestionnaireResponse")
#: how many digests of valid resources each process keeps (32 bytes each)
KNOWN_VALID = 4096
_SHOWN = 3  # problems named in one message; the rest are counted


@dataclass(frozen=True)
class Problem:
    """Where a resource breaks R4 (a FHIRPath-like path from the request's root) and how."""

    path: str
    message: str


_known_valid: LRUCache[bytes, bool] = LRUCache(KNOWN_VALID)  # digest -> True
_known_valid_lock = threading.Lock()  # large CRD calls are checked in the threadpool


def problems(resource: dict[str, Any], where: str) -> list[Problem]:
    """Every way ``resource`` (found at ``where``) breaks FHIR R4; empty when it is valid R4."""
    digest = _digest(resource)
    if digest is not None:
        with _known_valid_lock:
            if _known_valid.get(digest):  # and now the most recently seen
                return []
    parts = _parts(resource)
    valid = all(not problems(part, where) for part in parts) if parts else False
    found = [] if valid else _check(resource, where)
    if digest is not None and not found:
        with _known_valid_lock:
            _known_valid[digest] = True
    return found


def _parts(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """A Bundle checked in parts, each remembered alone: the Bundle without its entries' resources,
    and those resources (the models check an entry's resource as they check it alone, and nothing
    of the Bundle depends on it), so that the same resources found again by a new search (a new
    Bundle id) are not checked again. Empty unless every entry is an object whose resource, if
    any, is one of :data:`READ_TYPES`; such Bundles are checked whole."""
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        return []
    inner = [entry["resource"] for entry in entries if entry.get("resource") is not None]
    if not inner or not all(isinstance(r, dict) and r.get("resourceType") in READ_TYPES for r in inner):
        return []
    shell = [{key: value for key, value in entry.items() if key != "resource"} for entry in entries]
    return [{**resource, "entry": shell}, *inner]


def _digest(resource: dict[str, Any]) -> bytes | None:
    """A digest of the resource's exact JSON (``1``, ``1.0`` and ``true`` differ); None for what
    orjson cannot write (an integer beyond 64 bits, a lone surrogate), which is always checked."""
    try:
        return hashlib.blake2b(orjson.dumps(resource), digest_size=32).digest()
    except orjson.JSONEncodeError:
        return None


def _check(resource: dict[str, Any], where: str) -> list[Problem]:
    """:func:`problems`, computed by the models."""
    kind = resource.get("resourceType")
    try:
        model = get_fhir_model_class(kind) if isinstance(kind, str) else None
    except (KeyError, ValueError):
        model = None
    if model is None:
        return [Problem(f"{where}.resourceType", f"{kind!r} is not a FHIR R4 resource type")]
    try:
        model.model_validate(resource)
    except ValidationError as err:
        return [Problem(_path(where, e["loc"]), _message(e)) for e in err.errors()]
    except RecursionError:  # the models recurse per level: ~150 nested extensions are past them
        return [Problem(where, "nests too deeply to be checked as FHIR R4")]
    except (KeyError, TypeError, ValueError, AttributeError):  # the models trip on hostile resourceTypes
        if kind == "Bundle":  # find the entry
            for number, entry in enumerate(resource.get("entry") if isinstance(resource.get("entry"), list) else []):
                inner = entry.get("resource") if isinstance(entry, dict) else None
                found = _check(inner, f"{where}.entry[{number}].resource") if isinstance(inner, dict) else []
                if found:
                    return found
        return [Problem(where, "holds a resource whose resourceType is not an R4 resource type")]
    return _codes(resource, where)


@functools.cache
def prepare() -> int:
    """Import the models of :data:`READ_TYPES` and of every element they are built from, once per
    process, and return how many there are. The models import an element's model on first use, so
    without this the first call of each worker pays ~200 ms for them."""
    seen: set[type[BaseModel]] = set()
    pending: list[type[BaseModel]] = [get_fhir_model_class(kind) for kind in READ_TYPES]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        annotations = [field.annotation for field in model.model_fields.values()]
        while annotations:  # element types sit inside Optional[...] and List[...]
            annotation = annotations.pop()
            annotations += typing.get_args(annotation)
            if isinstance(annotation, type) and issubclass(annotation, FhirBase):
                pending.append(annotation.get_model_klass())
    return len(seen)


def describe(found: list[Problem]) -> str:
    """One message naming the first problems and counting the rest."""
    shown = "; ".join(f"{p.path}: {p.message}" for p in found[:_SHOWN])
    more = f" (and {len(found) - _SHOWN} more)" if len(found) > _SHOWN else ""
    return f"not valid FHIR R4: {shown}{more}"


def _codes(resource: dict[str, Any], where: str) -> list[Problem]:
    """Required bindings of ``resource`` and, for a Bundle, of its entries' resources."""
    found = [Problem(f"{where}.{element}", f"{resource[element]!r} is not one of {', '.join(sorted(codes))}")
             for (kind, element), codes in REQUIRED_CODES.items()
             if resource.get("resourceType") == kind and element in resource and resource[element] not in codes]
    if resource.get("resourceType") == "Bundle":
        for number, entry in enumerate(resource.get("entry") or []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                found += _codes(entry["resource"], f"{where}.entry[{number}].resource")
    return found


def _path(where: str, loc: tuple[Any, ...]) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            path += f".{part}"
    return path


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "is not an element of this R4 resource (another FHIR version?)"
    if kind == "list_type":
        return "must be a list (a JSON array) in R4"
    if kind.endswith("missing") or kind == "missing":
        return "is required in R4"
    return str(error.get("msg", "is invalid")).removeprefix("Value error, ")
