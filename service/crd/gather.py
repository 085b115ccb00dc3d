"""What the prefetch left out, read from the EHR's FHIR server with the hook call's token.

The call is read (service/crd/requests.py) against every resource at hand; the references that
reading asked for and did not find are read from the EHR all at once, and the call is read again,
until nothing new is missing. So what is fetched is exactly what a rule would read, and an order
gets the same answer whether its data came by prefetch or by query. The patient's Coverages and
Conditions are searched when the prefetch holds no answer for them.

Queries go only to the ``fhirServer`` of the call, and only when the operator lists it
(``COVREQ_FHIR_SERVERS``). The whole EHR phase of a call, queries and their R4 checks, has one
deadline (``EhrPolicy.deadline``) and one byte budget (``EhrLimits.call_bytes``): what is not
fetched and checked within them is a failed query. Failed queries are kept as
``HookCall.failures`` (CRD resp-43); data that could not be had at all is a 412 from the reading.
"""
from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

import anyio
import anyio.to_thread

from service.crd.envelope import Envelope
from service.crd.requests import HookCall
from service.ehr_client import EhrClient, EhrError, EhrLimits
from service.fhir import r4
from service.fhir.index import ResourceIndex
from service.fhir.outcome import FhirError

#: reading rounds: order -> its requester PractitionerRole -> that role's Practitioner, and one more
MAX_ROUNDS = 4
_COVERAGE_SEARCH = "GET Coverage"

#: read(coverage_known, why_not_queried) -> the call as read from the index so far
Reader = Callable[[bool, str], HookCall]


@dataclass(frozen=True)
class EhrPolicy:
    """Which FHIR servers covreq may query, and the bounds of the queries of one call."""

    servers: tuple[str, ...] = ()
    limits: EhrLimits = EhrLimits()
    deadline: float = 4.0  # seconds for the queries of one call and their R4 checks (CRD found-2: 5 s)

    def allows(self, server: str) -> bool:
        """Whether ``server`` is one the operator lets calls have covreq query."""
        server = server.rstrip("/")
        return any(server == s.rstrip("/") or (s == "*" and server.startswith("https://")) for s in self.servers)


async def complete(envelope: Envelope, index: ResourceIndex, read: Reader, policy: EhrPolicy) -> HookCall:
    """The call read with what the EHR holds of what it misses; raises what ``read`` raises."""
    coverage_known = "coverage" in envelope.prefetch
    access = envelope.ehr
    if access is None:
        return read(coverage_known, "the call grants no FHIR access (fhirServer and fhirAuthorization)")
    if not policy.allows(access.fhir_server):
        return read(coverage_known, f"covreq is not configured to query {access.fhir_server} "
                                    "(COVREQ_FHIR_SERVERS)")
    patient = envelope.context["patientId"]
    searches: dict[str, dict[str, str]] = {}  # resource type -> search parameters
    if not coverage_known and not index.of_type("Coverage"):
        searches["Coverage"] = {"patient": patient, "status": "active"}
    if "conditions" not in envelope.prefetch:
        searches["Condition"] = {"patient": patient, "clinical-status": "active"}
    failures: dict[str, str] = {}  # query -> why it failed
    attempted: set[str] = set()
    ends = time.monotonic() + policy.deadline
    async with EhrClient(access.fhir_server, access.access_token, policy.limits) as client:
        for round_number in range(MAX_ROUNDS + 1):
            index.misses.clear()
            result: HookCall | FhirError
            try:
                result = read(coverage_known, failures.get(_COVERAGE_SEARCH, ""))
            except FhirError as err:  # read again once the EHR has answered
                result = err
            keys = [key for key in dict.fromkeys(filter(None, map(client.key_of, index.misses.values())))
                    if key not in attempted][:max(policy.limits.max_queries - len(attempted), 0)]
            if (not keys and not searches) or round_number == MAX_ROUNDS:
                break
            attempted.update(keys)
            found, failed = await _query(client, keys, searches, ends)
            coverage_known = coverage_known or ("Coverage" in searches and _COVERAGE_SEARCH not in failed)
            failures.update(failed)
            index.add(found)
            searches = {}
    if isinstance(result, FhirError):
        raise result
    return replace(result, failures=tuple(failures.values()))


async def _query(client: EhrClient, keys: list[str], searches: dict[str, dict[str, str]],
                 ends: float) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every read and search at once, each checked as soon as it is answered, all by ``ends``
    (``time.monotonic()``): the valid R4 resources found, and why each failed query failed. A query
    not answered and checked by the deadline fails alone; the others keep what they found."""
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        **{f"GET {kind}": functools.partial(client.search, kind, params) for kind, params in searches.items()},
        **{f"GET {key}": functools.partial(client.read, key) for key in keys}}
    late = {query: f"{query}: unanswered within the call's deadline" for query in queries}
    if ends <= time.monotonic():
        return [], late
    one = anyio.CapacityLimiter(1)  # one check at a time: threads cannot be stopped, queued checks can
    tasks = {query: asyncio.ensure_future(_checked(query, fetch, ends, one)) for query, fetch in queries.items()}
    try:
        await asyncio.wait(tasks.values(), timeout=max(ends - time.monotonic(), 0.001))
    finally:  # the late ones (all, when the call itself is cancelled) stop and close their connections
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    found: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for query, task in tasks.items():
        valid, why = ([], late[query]) if task.cancelled() else task.result()
        found += valid
        if why:
            failed[query] = why
    return found, failed


async def _checked(query: str, fetch: Callable[[], Awaitable[Any]], ends: float,
                   limiter: anyio.CapacityLimiter) -> tuple[list[dict[str, Any]], str | None]:
    """The valid R4 resources one query found, and why it failed (None when it did not); checked
    in a thread of ``limiter``, off the event loop."""
    try:
        result = await fetch()
    except EhrError as err:
        return [], str(err)
    resources = result if isinstance(result, list) else [result] if result else []
    return await anyio.to_thread.run_sync(_check, query, resources, ends, limiter=limiter)


def _check(query: str, resources: list[dict[str, Any]], ends: float) -> tuple[list[dict[str, Any]], str | None]:
    """The resources of ``query`` that are valid R4, and why the query failed, if it did. Past
    ``ends`` nothing more is checked and the query fails (a thread cannot be stopped from outside,
    so it stops itself: with one check at a time, a call overruns its deadline by one resource's
    check at most)."""
    valid: list[dict[str, Any]] = []
    why = None
    for resource in resources:
        if time.monotonic() >= ends:
            return valid, f"{query}: not checked within the call's deadline"
        problems = r4.problems(resource, f"{resource['resourceType']}/{resource.get('id')}")
        if problems:
            why = f"{query}: the EHR answered with a resource {r4.describe(problems)}"
        else:
            valid.append(resource)
    return valid, why
