"""Da Vinci PAS subscriptions (R4 Subscriptions Backport): the Subscription a submitter creates to
learn when a pended request is decided, read and checked, and the notification Bundles sent to it.

A PAS Subscription (profile-subscription on backport-subscription) names the PAS topic in
``criteria``, filters on the submitting organization's identifier (one backport-filter-criteria,
``org-identifier=ID[,ID...]``; the IG's own example spells it ``orgIdentifier``), and asks for a
``rest-hook`` channel whose payload content is ``full-resource`` (what PAS 2.2 requires) or
``id-only``. Notifications are ``history`` Bundles: a SubscriptionStatus Parameters first (its
``request`` the subscription's ``$status``), then the focus, a PAS response Bundle.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from service.fhir.outcome import FhirError

TOPIC = "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"
PAS_PROFILE = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-subscription"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BACKPORT_PROFILE = _BACKPORT + "backport-subscription"
FILTER = _BACKPORT + "backport-filter-criteria"
CONTENT = _BACKPORT + "backport-payload-content"
HEARTBEAT = _BACKPORT + "backport-heartbeat-period"
STATUS_PROFILE = _BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = _BACKPORT + "backport-subscription-notification-r4"
FULL_RESOURCE, ID_ONLY = "full-resource", "id-only"
PAYLOAD_TYPES = ("application/fhir+json", "application/json")
#: The filter parameter names accepted: PAS 2.1+ and the test kit, and the topic's own (and the IG example's).
FILTER_NAMES = ("org-identifier", "orgIdentifier")
MAX_ORGS, MAX_ID_CHARS, MAX_URL_CHARS = 20, 256, 2048
MAX_HEADERS, MAX_HEADER_CHARS = 10, 1024
#: Shortest heartbeat period a subscriber may ask for, in seconds.
MIN_HEARTBEAT = 10
STATUS_OPERATION = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"
#: The Subscription entry of the CapabilityStatement (``/fhir/metadata``), as the PAS IG asks of servers.
CAPABILITY: dict[str, Any] = {
    "extension": [{"url": _BACKPORT + "capabilitystatement-subscriptiontopic-canonical", "valueCanonical": TOPIC}],
    "type": "Subscription", "supportedProfile": [PAS_PROFILE],
    "interaction": [{"code": code} for code in ("create", "read", "update", "delete", "search-type")],
    "searchParam": [{"name": "status", "type": "token"}],
    "operation": [{"name": "status", "definition": STATUS_OPERATION}],
}
_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}): ?([\x20-\x7e]*)")
_ORG = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,%d}" % MAX_ID_CHARS)  # printable, no blank, no comma


@dataclass(frozen=True)
class Channel:
    """Where and how notifications of one subscription go."""

    endpoint: str
    payload: str
    content: str
    headers: tuple[tuple[str, str], ...] = ()
    heartbeat: int | None = None


@dataclass(frozen=True)
class SubscriptionRequest:
    """A PAS Subscription as read from a create (or update) request."""

    orgs: tuple[str, ...]
    channel: Channel
    end: dt.datetime | None
    resource: dict[str, Any]


def _fail(message: str, where: str) -> FhirError:
    return FhirError(400, message, where)


def _extensions(node: Any, url: str, where: str) -> list[dict[str, Any]]:
    found = node.get("extension", []) if isinstance(node, dict) else []
    if not isinstance(found, list):
        raise _fail("extension is not a list", where)
    return [e for e in found if isinstance(e, dict) and e.get("url") == url]


def read_orgs(resource: dict[str, Any]) -> tuple[str, ...]:
    """The submitter organization identifiers of the one filter the PAS topic allows."""
    filters = _extensions(resource.get("_criteria"), FILTER, "Subscription.criteria.extension")
    if len(filters) != 1:
        raise _fail(f"a PAS Subscription has exactly one filter on the submitting organization "
                    f"({FILTER}), not {len(filters)}", "Subscription.criteria.extension")
    value = filters[0].get("valueString")
    name, sep, ids = value.partition("=") if isinstance(value, str) else ("", "", "")
    if not sep or name.strip() not in FILTER_NAMES:
        raise _fail("the filter is org-identifier=<submitter identifier>[,<identifier>...]",
                    "Subscription.criteria.extension.valueString")
    orgs = tuple(dict.fromkeys(i.strip() for i in ids.split(",")))
    if not orgs or len(orgs) > MAX_ORGS or not all(_ORG.fullmatch(o) for o in orgs):
        raise _fail(f"the filter names 1 to {MAX_ORGS} organization identifiers, each 1 to {MAX_ID_CHARS} "
                    "printable characters without blanks or commas", "Subscription.criteria.extension.valueString")
    return orgs


def _endpoint(channel: dict[str, Any]) -> str:
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > MAX_URL_CHARS:
        raise _fail(f"a rest-hook channel needs an endpoint URL (at most {MAX_URL_CHARS} characters)",
                    "Subscription.channel.endpoint")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password \
            or parts.fragment:
        raise _fail("the endpoint is an absolute http(s) URL without user information or fragment",
                    "Subscription.channel.endpoint")
    return endpoint


def _headers(channel: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = channel.get("header", [])
    if not isinstance(raw, list) or len(raw) > MAX_HEADERS:
        raise _fail(f"channel.header is a list of at most {MAX_HEADERS} 'Name: value' strings", "Subscription.channel.header")
    found = []
    for text in raw:
        match = _HEADER.fullmatch(text) if isinstance(text, str) and len(text) <= MAX_HEADER_CHARS else None
        if match is None or match.group(1).lower() in ("content-type", "content-length", "host", "transfer-encoding"):
            raise _fail("each channel.header is 'Name: value' in printable ASCII (not Content-Type, "
                        "Content-Length, Host or Transfer-Encoding)", "Subscription.channel.header")
        found.append((match.group(1), match.group(2)))
    return tuple(found)


def _heartbeat(channel: dict[str, Any]) -> int | None:
    beats = _extensions(channel, HEARTBEAT, "Subscription.channel.extension")
    if not beats:
        return None
    period = beats[0].get("valueUnsignedInt")
    if not isinstance(period, int) or isinstance(period, bool) or period < MIN_HEARTBEAT:
        raise _fail(f"the heartbeat period is a whole number of seconds, at least {MIN_HEARTBEAT}",
                    "Subscription.channel.extension")
    return period


def _end(resource: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
    end = resource.get("end")
    if end is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        raise _fail("end is a FHIR instant", "Subscription.end") from None
    if when.tzinfo is None:
        raise _fail("end is a FHIR instant, with its time zone", "Subscription.end")
    if when <= now:
        raise _fail("end is in the past", "Subscription.end")
    return when


def read_subscription(resource: Any, now: dt.datetime) -> SubscriptionRequest:
    """Check a Subscription against the PAS profile and the PAS topic; raises :class:`FhirError`
    (400, naming the element) when it does not conform."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Subscription":
        raise _fail("expected a Subscription resource", "Subscription")
    if resource.get("criteria") != TOPIC:
        raise _fail(f"a PAS Subscription's criteria is the PAS topic {TOPIC}", "Subscription.criteria")
    if resource.get("status") not in ("requested", "active"):
        raise _fail("a new Subscription's status is requested", "Subscription.status")
    if not isinstance(resource.get("reason"), str) or not resource["reason"].strip():
        raise _fail("Subscription.reason is required", "Subscription.reason")
    channel = resource.get("channel")
    if not isinstance(channel, dict) or channel.get("type") != "rest-hook":
        raise _fail("PAS servers support the rest-hook channel only", "Subscription.channel.type")
    if channel.get("payload") not in PAYLOAD_TYPES:
        raise _fail(f"channel.payload is one of {', '.join(PAYLOAD_TYPES)}", "Subscription.channel.payload")
    contents = _extensions(channel.get("_payload"), CONTENT, "Subscription.channel.payload.extension")
    content = contents[0].get("valueCode") if contents else None
    if content not in (FULL_RESOURCE, ID_ONLY):
        raise _fail("the payload content (backport-payload-content) is full-resource (what PAS requires) or id-only",
                    "Subscription.channel.payload.extension")
    orgs = read_orgs(resource)
    return SubscriptionRequest(orgs, Channel(_endpoint(channel), channel["payload"], content, _headers(channel),
                                             _heartbeat(channel)), _end(resource, now), resource)


def stored_resource(resource: dict[str, Any], subscription_id: str, status: str) -> dict[str, Any]:
    """The Subscription as covreq keeps and returns it: its id, status and profiles set; the
    channel's headers (which may carry the subscriber's credentials) are never read back."""
    kept = {**resource, "id": subscription_id, "status": status}
    profiles = kept.get("meta", {}).get("profile", []) if isinstance(kept.get("meta"), dict) else []
    kept["meta"] = {"profile": list(dict.fromkeys([*profiles, BACKPORT_PROFILE, PAS_PROFILE]))}
    kept["channel"] = {k: v for k, v in resource["channel"].items() if k != "header"}
    return kept


def _instant(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(base: str, subscription_id: str, status: str, kind: str, events: int,
                      event: dict[str, Any] | None = None) -> dict[str, Any]:
    """A SubscriptionStatus (backport-subscription-status-r4 Parameters) of ``kind`` handshake,
    heartbeat, event-notification or query-status, with one notification event when given."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{subscription_id}"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events)}]
    if event is not None:
        parameters.append(event)
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()), "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters}


def notification(base: str, subscription_id: str, status: str, kind: str, events: int, now: dt.datetime,
                 focus: dict[str, Any] | None = None, content: str = FULL_RESOURCE) -> dict[str, Any]:
    """A notification Bundle (backport-subscription-notification-r4, type history). With ``focus``
    (a PAS response Bundle) it is an event numbered ``events``, carrying the Bundle itself
    (full-resource) or only its URL (id-only)."""
    event = None
    entries = []
    if focus is not None:
        focus_url = f"{base}/Bundle/{focus.get('id') or uuid.uuid4()}"
        event = {"name": "notification-event", "part": [
            {"name": "event-number", "valueString": str(events)},
            {"name": "timestamp", "valueInstant": _instant(now)},
            {"name": "focus", "valueReference": {"reference": focus_url}}]}
        entry: dict[str, Any] = {"fullUrl": focus_url, "request": {"method": "GET", "url": focus_url},
                                 "response": {"status": "200"}}
        if content == FULL_RESOURCE:
            entry["resource"] = focus
        entries.append(entry)
    parameters = status_parameters(base, subscription_id, status, kind, events, event)
    first = {"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters,
             "request": {"method": "GET", "url": f"{base}/Subscription/{subscription_id}/$status"},
             "response": {"status": "200"}}
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [NOTIFICATION_PROFILE]},
            "type": "history", "timestamp": _instant(now), "entry": [first, *entries]}
