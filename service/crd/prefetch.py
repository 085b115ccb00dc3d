"""The prefetch templates of covreq's CRD services (CRD found-24..29).

Each asks only for data covreq reads. The Patient, the active Coverages and Conditions, the user's
Practitioner and the Encounter use tokens every CDS Hooks 2.0 EHR can fill. What covreq reads of
the orders' related resources (their requesters and performers, PractitionerRoles, Organizations,
Locations, Medications; an Appointment's ``basedOn`` order; dispatched orders) is asked for with
CRD's standard prefetch (foundation.html, "Standard Prefetch"), verbatim: found-29 says a server
SHALL use those expressions for data relevant to its decision. They use CDS Hooks 3.0 FHIRPath
tokens (found-23: CRD clients SHALL parse them); a client that cannot fill one leaves it out, and
covreq then reads what it misses from the EHR when the call allows (service/crd/gather.py).
"""
from __future__ import annotations

_COMMON = {
    "patient": "Patient/{{context.patientId}}",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
}
_USER = {"practitioner": "Practitioner/{{userPractitionerId}}"}
#: CRD's standard prefetch names the Encounter so; its other templates refer to it as %encounter
_ENCOUNTER = {"encounter": "Encounter/{{context.encounterId}}"}
#: CRD 2.2.1's standard prefetch (HL7/davinci-crd input/resources/CRDServices.json), the keys covreq reads
STANDARD: dict[str, dict[str, str]] = {
    "order-sign": {
        "medications": (
            "Medication?_id={{context.draftOrders.entry.resource.ofType(MedicationRequest).medication.resolve"
            "().id}}"),
        "practitionerRoles": (
            "PractitionerRole?_id={{%encounter.participant.individual.resolve().ofType(PractitionerRole).id"
            "|context.draftOrders.entry.resource.sender.resolve().ofType(PractitionerRole).id|context"
            ".draftOrders.entry.resource.recipient.resolve().ofType(PractitionerRole).id|context.draftOrders"
            ".entry.resource.requester.resolve().ofType(PractitionerRole).id|context.draftOrders.entry"
            ".resource.performer.resolve().ofType(PractitionerRole).id|context.draftOrders.entry.resource"
            ".orderer.resolve().ofType(PractitionerRole).id|context.draftOrders.entry.resource.prescriber"
            ".resolve().ofType(PractitionerRole).id}}"),
        "practitioners": (
            "Practitioner?_id={{%practitionerRoles.entry.resource.practitioner.resolve().id|%encounter"
            ".participant.individual.resolve().ofType(Practitioner).id|context.draftOrders.entry.resource"
            ".sender.resolve().ofType(Practitioner).id|context.draftOrders.entry.resource.recipient.resolve()"
            ".ofType(Practitioner).id|context.draftOrders.entry.resource.requester.resolve().ofType"
            "(Practitioner).id|context.draftOrders.entry.resource.performer.resolve().ofType(Practitioner).id"
            "|context.draftOrders.entry.resource.orderer.resolve().ofType(Practitioner).id|context"
            ".draftOrders.entry.resource.prescriber.resolve().ofType(Practitioner).id}}"),
        "organizations": (
            "Organization?_id={{%practitionerRoles.entry.resource.organization.resolve().id|%encounter"
            ".serviceProvider.resolve().ofType(Organization).id|context.draftOrders.entry.resource"
            ".dispenseRequest.performer.resolve().id|context.draftOrders.entry.resource.sender.resolve()"
            ".ofType(Organization).id|context.draftOrders.entry.resource.recipient.resolve().ofType"
            "(Organization).id|context.draftOrders.entry.resource.performer.resolve().ofType(Organization)"
            ".id}}"),
        "locations": (
            "Location?_id={{%practitionerRoles.entry.resource.location.resolve().id|%encounter.location"
            ".location.resolve().id|context.draftOrders.entry.resource.locationReference.resolve().id}}"),
    },
    "appointment-book": {
        "serviceRequests": (
            "ServiceRequest?_id={{context.appointments.entry.resource.basedOn.resolve().ofType"
            "(ServiceRequest).id}}"),
        "deviceRequests": (
            "DeviceRequest?_id={{context.appointments.entry.resource.basedOn.extension('http://hl7"
            ".org/fhir/StructureDefinition/alternate-reference').value.resolve().ofType(DeviceRequest).id}}"),
        "medicationRequests": (
            "MedicationRequest?_id={{context.appointments.entry.resource.basedOn.extension('http://hl7"
            ".org/fhir/StructureDefinition/alternate-reference').value.resolve().ofType(MedicationRequest)"
            ".id}}"),
        "medications": "Medication?_id={{%medicationRequests.entry.resource.medication.resolve().id}}",
        "practitionerRoles": (
            "PractitionerRole?_id={{%encounter.participant.individual.resolve().ofType(PractitionerRole).id"
            "|context.appointments.entry.resource.participant.actor.resolve().ofType(PractitionerRole).id"
            "|%deviceRequests.entry.resource.performer.resolve().ofType(PractitionerRole).id|%deviceRequests"
            ".entry.resource.requester.resolve().ofType(PractitionerRole).id|%medicationRequests.entry"
            ".resource.performer.resolve().ofType(PractitionerRole).id|%medicationRequests.entry.resource"
            ".requester.resolve().ofType(PractitionerRole).id|%serviceRequests.entry.resource.performer"
            ".resolve().ofType(PractitionerRole).id|%serviceRequests.entry.resource.requester.resolve()"
            ".ofType(PractitionerRole).id}}"),
        "practitioners": (
            "Practitioner?_id={{%practitionerRoles.entry.resource.practitioner.resolve().id|%encounter"
            ".participant.individual.resolve().ofType(Practitioner).id|context.appointments.entry.resource"
            ".participant.actor.resolve().ofType(Practitioner).id|%deviceRequests.entry.resource.performer"
            ".resolve().ofType(Practitioner).id|%deviceRequests.entry.resource.requester.resolve().ofType"
            "(Practitioner).id|%medicationRequests.entry.resource.performer.resolve().ofType(Practitioner).id"
            "|%medicationRequests.entry.resource.requester.resolve().ofType(Practitioner).id|%serviceRequests"
            ".entry.resource.performer.resolve().ofType(Practitioner).id|%serviceRequests.entry.resource"
            ".requester.resolve().ofType(Practitioner).id}}"),
        "organizations": (
            "Organization?_id={{%practitionerRoles.entry.resource.organization.resolve().id|%encounter"
            ".serviceProvider.resolve().ofType(Organization).id|%medicationRequests.entry.resource"
            ".dispenseRequest.performer.resolve().ofType(Organization).id|%serviceRequests.entry.resource"
            ".performer.resolve().ofType(Organization).id}}"),
        "locations": (
            "Location?_id={{%practitionerRoles.entry.resource.location.resolve().id|%encounter.location"
            ".location.resolve().id|context.appointments.entry.resource.participant.actor.resolve().ofType"
            "(Location).id|%serviceRequests.entry.resource.locationReference.resolve().ofType(Location).id}}"),
    },
    "order-dispatch": {
        "communicationRequests": (
            "CommunicationRequest?_id={{context.dispatchedOrders.resolve().ofType(CommunicationRequest).id}}"),
        "deviceRequests": "DeviceRequest?_id={{context.dispatchedOrders.resolve().ofType(DeviceRequest).id}}",
        "medicationRequests": (
            "MedicationRequest?_id={{context.dispatchedOrders.resolve().ofType(MedicationRequest).id}}"),
        "nutritionOrders": "NutritionOrder?_id={{context.dispatchedOrders.resolve().ofType(NutritionOrder).id}}",
        "serviceRequests": "ServiceRequest?_id={{context.dispatchedOrders.resolve().ofType(ServiceRequest).id}}",
        "visionPrescriptions": (
            "VisionPrescription?_id={{context.dispatchedOrders.resolve().ofType(VisionPrescription).id}}"),
        "medications": "Medication?_id={{%medicationRequests.entry.resource.medication.resolve().id}}",
        "practitionerRoles": (
            "PractitionerRole?_id={{%encounter.participant.individual.resolve().ofType(PractitionerRole).id"
            "|%communicationRequests.entry.resource.sender.resolve().ofType(PractitionerRole).id"
            "|%communicationRequests.entry.resource.recipient.resolve().ofType(PractitionerRole).id"
            "|%communicationRequests.entry.resource.requester.resolve().ofType(PractitionerRole).id"
            "|%deviceRequests.entry.resource.performer.resolve().ofType(PractitionerRole).id|%deviceRequests"
            ".entry.resource.requester.resolve().ofType(PractitionerRole).id|%medicationRequests.entry"
            ".resource.performer.resolve().ofType(PractitionerRole).id|%medicationRequests.entry.resource"
            ".requester.resolve().ofType(PractitionerRole).id|%serviceRequests.entry.resource.performer"
            ".resolve().ofType(PractitionerRole).id|%serviceRequests.entry.resource.requester.resolve()"
            ".ofType(PractitionerRole).id|%nutritionOrders.entry.resource.orderer.resolve().ofType"
            "(PractitionerRole).id|%visionPrescriptions.entry.resource.prescriber.resolve().ofType"
            "(PractitionerRole).id}}"),
        "practitioners": (
            "Practitioner?_id={{%practitionerRoles.entry.resource.practitioner.resolve().id|%encounter"
            ".participant.individual.resolve().ofType(Practitioner).id|%communicationRequests.entry.resource"
            ".sender.resolve().ofType(Practitioner).id|%communicationRequests.entry.resource.recipient"
            ".resolve().ofType(Practitioner).id|%communicationRequests.entry.resource.requester.resolve()"
            ".ofType(Practitioner).id|%deviceRequests.entry.resource.performer.resolve().ofType(Practitioner)"
            ".id|%deviceRequests.entry.resource.requester.resolve().ofType(Practitioner).id"
            "|%medicationRequests.entry.resource.performer.resolve().ofType(Practitioner).id"
            "|%medicationRequests.entry.resource.requester.resolve().ofType(Practitioner).id|%serviceRequests"
            ".entry.resource.performer.resolve().ofType(Practitioner).id|%serviceRequests.entry.resource"
            ".requester.resolve().ofType(Practitioner).id|%nutritionOrders.entry.resource.orderer.resolve()"
            ".ofType(Practitioner).id|%visionPrescriptions.entry.resource.prescriber.resolve().ofType"
            "(Practitioner).id}}"),
        "organizations": (
            "Organization?_id={{%practitionerRoles.entry.resource.organization.resolve().id|%encounter"
            ".serviceProvider.resolve().ofType(Organization).id|%communicationRequests.entry.resource"
            ".recipient.resolve().ofType(Organization).id|%communicationRequests.entry.resource.sender"
            ".resolve().ofType(Organization).id|%medicationRequests.entry.resource.dispenseRequest.performer"
            ".resolve().id|%serviceRequests.entry.resource.performer.resolve().ofType(Organization).id}}"),
        "locations": (
            "Location?_id={{%practitionerRoles.entry.resource.location.resolve().id|%encounter.location"
            ".location.resolve().id|%serviceRequests.entry.resource.locationReference.resolve().id}}"),
    },
}
STANDARD["order-select"] = STANDARD["order-sign"]  # the IG's are the same for both draft-order hooks
#: hook -> its prefetch templates
PREFETCH: dict[str, dict[str, str]] = {
    "order-select": {**_COMMON, **_USER, **_ENCOUNTER, **STANDARD["order-select"]},
    "order-sign": {**_COMMON, **_USER, **_ENCOUNTER, **STANDARD["order-sign"]},
    "appointment-book": {**_COMMON, **_USER, **_ENCOUNTER, **STANDARD["appointment-book"]},
    # CRD's standard order-dispatch prefetch names the Encounter too (the hook's context has no
    # encounterId, so most clients leave it out), and its other templates refer to %encounter
    "order-dispatch": {**_COMMON, **_ENCOUNTER, **STANDARD["order-dispatch"]},
}
