"""The work of one DTR call, bounded (docs/operations.md, "Limits").

Orders and asked-for questionnaires are counted in the input Parameters before any work, the forms
as they are packaged (service/dtr/package.py stops at the first past the limit), and the bytes of
the answer once it is built. Past a limit the call is a 413
OperationOutcome (``too-costly``) naming the setting to raise. The operations run in worker threads
on a limiter of their own (:func:`off_loop`): a large call never holds up the event loop, and DTR
calls never take the threads that the other endpoints (``/healthz`` among them) run in.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import anyio.to_thread

from service.fhir.outcome import FhirError
from service.responses import render_json

#: DTR operations run at once per process; more wait their turn without holding a thread.
WORKER_THREADS = 2
_WORKERS = anyio.CapacityLimiter(WORKER_THREADS)
_T = TypeVar("_T")
_PARAMETERS = "Parameters.parameter"


@dataclass(frozen=True)
class DtrLimits:
    """The most one ``$questionnaire-package`` or ``$next-question`` call may ask (413 above)."""

    orders: int = 20
    forms: int = 20
    response_bytes: int = 1_048_576

    @classmethod
    def of(cls, settings: Any) -> "DtrLimits":
        """The limits a service's Settings configure."""
        return cls(settings.dtr_max_orders, settings.dtr_max_forms, settings.dtr_max_response_bytes)

    def check_inputs(self, body: Any) -> None:
        """413 when package input Parameters name more orders or questionnaires than allowed;
        anything else about them is for the operation to judge."""
        parameters = body.get("parameter") if isinstance(body, dict) else None
        if not isinstance(parameters, list):
            return
        names = [p.get("name") for p in parameters if isinstance(p, dict)]
        if names.count("order") > self.orders:
            raise FhirError(413, f"the call carries {names.count('order')} orders; this service packages at "
                                 f"most {self.orders} per call (COVREQ_DTR_MAX_ORDERS)", _PARAMETERS)
        if names.count("questionnaire") > self.forms:
            raise too_many_forms(self.forms)

    def check_answer(self, result: dict[str, Any]) -> bytes:
        """``result`` as JSON bytes; 413 when they are more than allowed."""
        rendered = render_json(result)
        if len(rendered) > self.response_bytes:
            raise FhirError(413, f"the answer would be larger than {self.response_bytes} bytes "
                                 "(COVREQ_DTR_MAX_RESPONSE_BYTES): ask for fewer orders or forms per call",
                            _PARAMETERS)
        return rendered


def too_many_forms(limit: int) -> FhirError:
    """The 413 of a call that needs more than ``limit`` forms."""
    return FhirError(413, f"the call needs more than {limit} forms; this service packages at most {limit} "
                          "per call (COVREQ_DTR_MAX_FORMS)", _PARAMETERS)


async def off_loop(work: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``work(*args, **kwargs)`` in a DTR worker thread (at most :data:`WORKER_THREADS` at once)."""
    return await anyio.to_thread.run_sync(functools.partial(work, *args, **kwargs), limiter=_WORKERS)
