"""The v1 request contract as msgspec types: one compiled step checks a request's shape.

Decoding a request body into these types checks, in C, every field name, type, list length and
string length the contract sets. What the types cannot say (blank strings, calendar dates, the code
systems) is checked by :mod:`engine.evaluation.request` on the decoded values. A body these types refuse is
not necessarily wrong (``"patient": []`` means no patient facts): :mod:`engine.evaluation.request` then reads it
field by field, which also words each problem and names the field.
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

#: Limits shared with engine/evaluation/request.py, which words the problems.
MAX_LINES, MAX_TEXT, MAX_ITEMS = 1000, 256, 1000

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
Texts = Annotated[tuple[Text, ...], msgspec.Meta(max_length=MAX_ITEMS)]  # lists arrive as tuples: hashable
Units = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


class Patient(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``patient``: birth date and sex; its id is carried, never read."""

    birth_date: Text | None = None
    sex: Text | None = None
    id: Any = None


class Provider(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``provider``: the facts conditions read about who renders the service."""

    npi: Text | None = None
    specialty: Text | None = None
    network: Text | None = None
    type: Text | None = None
    state: Any = None
    exemptions: Texts | None = None


class Service(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One service line."""

    code: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | int
    system: Text | None = None
    modifiers: Texts | None = None
    units: Units = 1.0
    stage: Text | None = None
    trial_place_of_service: Text | None = None
    revenue_code: Text | None = None
    trip_dates: Texts | None = None
    round_trips_in_10_days: Units | None = None
    round_trip_weeks: Units | None = None
    id: Any = None


class Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A v1 request body; authorizations (rare) are read field by field. ``request_id`` is the
    caller's own label: not a fact, but bounded like one."""

    payer: Text
    services: Annotated[list[Service], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    plan: Text | None = None
    date_of_service: Text | None = None
    place_of_service: Text | None = None
    type_of_bill: Text | None = None
    state: Text | None = None
    patient: Patient | None = None
    diagnoses: Texts | None = None
    provider: Provider | None = None
    authorizations: Any = None
    order_complete: bool | None = None
    explain: bool | None = None
    request_id: Text | None = None
