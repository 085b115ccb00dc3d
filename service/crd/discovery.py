"""The CRD services covreq offers, their discovery document and their configuration options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.crd.prefetch import PREFETCH
from service.fhir.outcome import FhirError

#: the CRD versions covreq answers in, each in exactly its own shapes: the first two parts of the IG
#: version (CRD deviations.md dev-1..3: "2.0, not 2.0.0 or 2.0.1"); the last is the newest
CRD_VERSIONS = ["2.0", "2.1", "2.2"]
CURRENT_VERSION = CRD_VERSIONS[-1]
#: the version a call that names none is answered in, unless the operator says otherwise
#: (``COVREQ_CRD_VERSION``): CRD STU 2.0.1, the version CMS-0057-F names and the Inferno CRD kit checks
DEFAULT_VERSION = "2.0"
#: hook -> the context field that carries its orders
HOOKS = {"order-select": "draftOrders", "order-sign": "draftOrders",
         "order-dispatch": "dispatchedOrders", "appointment-book": "appointments"}
#: hooks CRD calls "supporting": their coverage information asks for no clinical/admin documents
SUPPORTING_HOOKS = {"order-select"}

CONFIGURATION_OPTIONS = [
    {"code": "coverage-info", "type": "boolean", "name": "Coverage Information",
     "description": "Whether the service is covered, needs prior authorization and needs "
                    "documentation: coverage-information on each order, and cards for orders that "
                    "need prior authorization or whose answer depends on missing information",
     "default": True},
    {"code": "max-cards", "type": "integer", "name": "Maximum cards",
     "description": "The most cards returned; prior-authorization cards come before conditional ones",
     "default": 10},
]


def service_id(hook: str) -> str:
    """The CDS service id of a hook, ``{hook}-crd`` as in the CRD examples."""
    return f"{hook}-crd"


SERVICES = {service_id(hook): hook for hook in HOOKS}


def served_version(text: str) -> str:
    """The served version an operator's ``COVREQ_CRD_VERSION`` names (``2.0`` or ``2.0.1``: the
    patch part never matters); raises ValueError for a version covreq does not answer in."""
    two = ".".join(text.strip().split(".")[:2])
    if two not in CRD_VERSIONS:
        raise ValueError(f"COVREQ_CRD_VERSION {text!r} is not a CRD version covreq answers in "
                         f"({', '.join(CRD_VERSIONS)})")
    return two


def discovery() -> dict[str, Any]:
    """The ``GET /cds-services`` document: every version served (CRD dev-2)."""
    return {"services": [{
        "hook": hook,
        "title": f"covreq coverage requirements ({hook})",
        "description": "Da Vinci CRD: whether each ordered CPT/HCPCS service needs prior "
                       "authorization, whether it is covered and which documentation is needed, "
                       "with links to the payer's published policy.",
        "id": service_id(hook),
        "prefetch": PREFETCH[hook],
        "extension": {"davinci-crd.version": CRD_VERSIONS,
                      "davinci-crd.configuration-options": CONFIGURATION_OPTIONS},
    } for hook in HOOKS]}


@dataclass(frozen=True)
class Configuration:
    """The client's ``davinci-crd.configuration`` for one call; unknown options are ignored."""

    coverage_info: bool = True
    max_cards: int = 10
    version: str = DEFAULT_VERSION

    @classmethod
    def from_request(cls, extension: Any, default_version: str = DEFAULT_VERSION) -> "Configuration":
        """Read the request ``extension``: check the version asked for (absent: ``default_version``,
        the operator's choice, as a CRD 2.0 client, which had no requestedVersion, sends) and the
        option types."""
        if extension is None:
            return cls(version=default_version)
        if not isinstance(extension, dict):
            raise FhirError(400, "extension must be a JSON object", "extension")
        version = extension.get("davinci-crd.requestedVersion")
        if version is not None and version not in CRD_VERSIONS:
            raise FhirError(400, f"davinci-crd.requestedVersion {version!r} is not supported; "
                                f"this service implements {', '.join(CRD_VERSIONS)} (the first two "
                                "parts of the CRD version)",
                           "extension.davinci-crd.requestedVersion")
        options = extension.get("davinci-crd.configuration", {})
        if not isinstance(options, dict):
            raise FhirError(400, "davinci-crd.configuration must be a JSON object",
                           "extension.davinci-crd.configuration")
        coverage_info = options.get("coverage-info", True)
        if not isinstance(coverage_info, bool):
            raise FhirError(400, "coverage-info must be true or false",
                           "extension.davinci-crd.configuration.coverage-info")
        max_cards = options.get("max-cards", 10)
        if isinstance(max_cards, bool) or not isinstance(max_cards, int) or max_cards < 0:
            raise FhirError(400, "max-cards must be a whole number, 0 or more",
                           "extension.davinci-crd.configuration.max-cards")
        return cls(coverage_info, max_cards, version or default_version)
