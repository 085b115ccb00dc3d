"""Sending PAS subscription notifications over rest-hook: handshakes, heartbeats, and the event of
a decided request (:func:`notify_decision`).

Notifications go only to endpoints the operator lists (``COVREQ_SUBSCRIPTION_ENDPOINTS``: exact
URLs, prefixes ending in ``/``, or ``*`` for any https URL whose host resolves only to public
addresses), are never redirected, never use proxy settings from the environment, and do not read
the subscriber's answer beyond its status. Each attempt is bounded in time; failed ones (no answer,
429, 5xx) are tried again a bounded number of times with a doubling pause. Logs name the
subscription, the kind of notification and the outcome, never the Bundle's content.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit

import httpx

from service.pas.subscription_store import ACTIVE, ERROR, Subscription, SubscriptionStore
from service.pas.subscriptions import notification
from service.settings import Settings

log = logging.getLogger("covreq.pas.subscriptions")
#: Seconds before the second attempt; each later one waits twice as long.
FIRST_PAUSE = 0.5
_RETRIED = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Delivery:
    """What became of one notification: the subscription, the event number (0 for a handshake or
    heartbeat), whether the endpoint took it (2xx), and the last HTTP status or failure kind."""

    subscription: str
    event: int
    delivered: bool
    outcome: str


def allowed(endpoint: str, allow: Sequence[str]) -> bool:
    """Whether the operator's list lets notifications go to ``endpoint`` (``*`` also needs the host's
    addresses to be public: see :meth:`Notifier.reachable`)."""
    for entry in allow:
        if entry == "*" and urlsplit(endpoint).scheme == "https":
            return True
        if endpoint == entry or (entry.endswith("/") and endpoint.startswith(entry)):
            return True
    return False


class Notifier:
    """Delivers notifications for the subscriptions in ``store``."""

    def __init__(self, store: SubscriptionStore, settings: Settings,
                 transport: httpx.AsyncBaseTransport | None = None, first_pause: float = FIRST_PAUSE) -> None:
        self.store, self.allow = store, settings.subscription_endpoints
        self.timeout, self.attempts = settings.subscription_timeout_seconds, max(1, settings.subscription_attempts)
        self.transport, self.first_pause = transport, first_pause

    async def reachable(self, endpoint: str) -> str | None:
        """Why ``endpoint`` may not be notified, or None: it must be listed, and when only ``*``
        lists it, every address of its host must be public (no loopback, private or link-local)."""
        if not allowed(endpoint, [a for a in self.allow if a != "*"]):
            if not allowed(endpoint, self.allow):
                return "the endpoint is not one covreq may notify (COVREQ_SUBSCRIPTION_ENDPOINTS)"
            host = urlsplit(endpoint).hostname or ""
            try:
                found = await asyncio.get_running_loop().getaddrinfo(host, 443)
            except OSError:
                return "the endpoint's host does not resolve"
            if not found or not all(ipaddress.ip_address(info[4][0].split("%")[0]).is_global for info in found):
                return "the endpoint's host has a non-public address"
        return None

    async def deliver(self, subscription: Subscription, bundle: dict[str, Any], kind: str, event: int = 0) -> Delivery:
        """POST ``bundle`` to the subscription's endpoint, with its channel headers and bounded retries."""
        channel = subscription.channel
        refused = await self.reachable(channel.endpoint)
        if refused is not None:
            return self._logged(Delivery(subscription.id, event, False, "refused"), kind, refused)
        body = json.dumps(bundle).encode()
        headers = {**dict(channel.headers), "Content-Type": channel.payload}
        outcome, pause = "no-answer", self.first_pause
        async with httpx.AsyncClient(transport=self.transport, follow_redirects=False, trust_env=False,
                                     timeout=httpx.Timeout(self.timeout)) as client:
            for attempt in range(self.attempts):
                if attempt:
                    await asyncio.sleep(pause)
                    pause *= 2
                try:
                    async with client.stream("POST", channel.endpoint, content=body, headers=headers) as answer:
                        status = answer.status_code  # the body is never read
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                    continue
                outcome = str(status)
                if 200 <= status < 300:
                    return self._logged(Delivery(subscription.id, event, True, outcome), kind, attempts=attempt + 1)
                if status not in _RETRIED:
                    break
        return self._logged(Delivery(subscription.id, event, False, outcome), kind, attempts=self.attempts)

    @staticmethod
    def _logged(delivery: Delivery, kind: str, why: str = "", attempts: int = 0) -> Delivery:
        log.log(logging.INFO if delivery.delivered else logging.WARNING,
                "subscription notification " + ("delivered" if delivery.delivered else "not delivered"),
                extra={"event": "pas-notification", "subscription": delivery.subscription, "kind": kind,
                       "outcome": delivery.outcome, "attempts": attempts, **({"why": why} if why else {})})
        return delivery

    async def handshake(self, subscription: Subscription) -> Delivery:
        """The handshake a new rest-hook subscription gets: taken, the subscription is active; not, in error."""
        now = dt.datetime.now(dt.timezone.utc)
        bundle = notification(subscription.base, subscription.id, subscription.status, "handshake", 0, now)
        sent = await self.deliver(subscription, bundle, "handshake")
        await asyncio.to_thread(self.store.set_status, subscription.id, ACTIVE if sent.delivered else ERROR,
                                None if sent.delivered else f"handshake: {sent.outcome}", now if sent.delivered else None)
        return sent

    async def heartbeats(self, now: dt.datetime) -> list[Delivery]:
        """A heartbeat to every active subscription whose period has passed (claimed by one worker only)."""
        due = await asyncio.to_thread(self.store.claim_heartbeats, now)
        return [await self.deliver(s, notification(s.base, s.id, s.status, "heartbeat", s.events, now), "heartbeat")
                for s in due]

    async def run_heartbeats(self, stop: asyncio.Event, tick: float = 5.0) -> None:
        """Every ``tick`` seconds until ``stop`` is set, send the heartbeats due (once the database is in use)."""
        while True:
            try:
                await asyncio.wait_for(stop.wait(), tick)
                return
            except asyncio.TimeoutError:
                pass
            try:
                if self.store.in_use():
                    await self.heartbeats(dt.datetime.now(dt.timezone.utc))
            except Exception:  # noqa: BLE001 - a database or network failure must not end the loop
                log.warning("heartbeats not sent", exc_info=True, extra={"event": "pas-heartbeat-failed"})

    async def decided(self, response: dict[str, Any], org_identifiers: Sequence[str],
                      now: dt.datetime | None = None) -> list[Delivery]:
        """See :func:`notify_decision`."""
        _check_response(response)
        now = now or dt.datetime.now(dt.timezone.utc)
        found = await asyncio.to_thread(self.store.matching, tuple(dict.fromkeys(org_identifiers)), now)
        return list(await asyncio.gather(*(self._event(s, response, now) for s in found)))

    async def _event(self, subscription: Subscription, response: dict[str, Any], now: dt.datetime) -> Delivery:
        """One event to one subscription (each endpoint's retries run alongside the others')."""
        number = await asyncio.to_thread(self.store.next_event, subscription.id, now)
        bundle = notification(subscription.base, subscription.id, subscription.status, "event-notification",
                              number, now, response, subscription.channel.content)
        sent = await self.deliver(subscription, bundle, "event-notification", number)
        if sent.delivered != (subscription.status == ACTIVE):
            await asyncio.to_thread(self.store.set_status, subscription.id, ACTIVE if sent.delivered else ERROR,
                                    None if sent.delivered else f"event {number}: {sent.outcome}")
        return sent


def _check_response(response: Any) -> None:
    if not (isinstance(response, dict) and response.get("resourceType") == "Bundle"
            and response.get("type") == "collection" and response.get("entry")
            and isinstance(response["entry"][0], dict)
            and (response["entry"][0].get("resource") or {}).get("resourceType") == "ClaimResponse"):
        raise ValueError("a PAS notification carries a PAS response Bundle (type collection, ClaimResponse first)")


async def notify_decision(notifier: Notifier, response: dict[str, Any], org_identifiers: Sequence[str],
                          now: dt.datetime | None = None) -> list[Delivery]:
    """Announce a decided (or updated) PAS request to the submitter's subscriptions.

    ``response`` is the PAS response Bundle ``$inquire`` now answers (type collection, its
    ClaimResponse first); ``org_identifiers`` the submitting organization's identifiers (the
    Claim's transmission identifiers, as the subscription filter names them). Every live
    subscription filtering on one of them gets one event, numbered from its events count in the
    store, as its content asks (full-resource: the Bundle; id-only: its URL). Returns one
    :class:`Delivery` per subscription; raises ValueError when ``response`` is not such a Bundle."""
    return await notifier.decided(response, org_identifiers, now)
