"""What the prefetch left out, read from the EHR's FHIR server with the hook call's token.

The call is read (service/crd/requests.py) against every resource at hand; the references that
reading asked for and did not find are read from the EHR all at once, and the call is read again,
until nothing new is missing. So what is fetched is exactly what a rule would read, and an order
gets the same answer whether its data came by prefetch or by query. The patient's Coverages and
Conditions are searched when the prefetch holds no answer for them.

Queries go only to the ``fhirServer`` of the call, and only when the operator lists it
(``COVREQ_FHIR_SERVERS``). Failed queries are kept as ``HookCall.failures`` (CRD resp-43); data
that could not be had at all is a 412 from the reading.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool

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
    deadline: float = 4.0  # seconds for all the queries of one call (CRD found-2: answer in 5 s)

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
            found, failed = await _query(client, keys, searches, ends - time.monotonic())
            coverage_known = coverage_known or ("Coverage" in searches and _COVERAGE_SEARCH not in failed)
            failures.update(failed)
            index.add(found)
            searches = {}
    if isinstance(result, FhirError):
        raise result
    return replace(result, failures=tuple(failures.values()))


async def _query(client: EhrClient, keys: list[str], searches: dict[str, dict[str, str]],
                 seconds: float) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every read and search at once: the valid R4 resources found, and why each failed query failed."""
    tasks = [client.read(key) for key in keys] + [client.search(kind, params) for kind, params in searches.items()]
    asked = [f"GET {key}" for key in [*keys, *searches]]
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), max(seconds, 0.001))
    except asyncio.TimeoutError:
        return [], {query: f"{query}: unanswered within the call's deadline" for query in asked}
    return await run_in_threadpool(_sorted, asked, results)  # R4 checks stay off the event loop


def _sorted(asked: list[str], results: list[Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The answers of ``asked``: the valid R4 resources found, and why each failed query failed."""
    found: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for query, result in zip(asked, results):
        if isinstance(result, EhrError):
            failed[query] = str(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            for resource in result if isinstance(result, list) else [result] if result else []:
                problems = r4.problems(resource, f"{resource['resourceType']}/{resource.get('id')}")
                if problems:
                    failed[query] = f"{query}: the EHR answered with a resource {r4.describe(problems)}"
                else:
                    found.append(resource)
    return found, failed
