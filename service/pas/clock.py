"""When a prior-authorization decision is due: 72 hours after receipt for an expedited request,
7 calendar days for a standard one (CMS-0057-F).

A request is expedited when its Claim's ``priority`` is ``stat`` (R4 processpriority) or its
``levelOfServiceCode`` extension (X12 278 UM06, code list 1338) is ``U`` (urgent) or ``03``
(emergency), the 278's way of asking for an expedited review; otherwise it is standard.
"""
from __future__ import annotations

import datetime as dt

EXPEDITED, STANDARD = "expedited", "standard"
LEVEL_OF_SERVICE = "https://codesystem.x12.org/005010/1338"
EXPEDITED_LEVELS = frozenset({"U", "03"})
DEADLINES = {EXPEDITED: dt.timedelta(hours=72), STANDARD: dt.timedelta(days=7)}


def due(received: dt.datetime, priority: str) -> dt.datetime:
    """The moment a decision on a request received at ``received`` is due."""
    return received + DEADLINES[priority]


def overdue(due_at: dt.datetime, now: dt.datetime) -> bool:
    """Whether a request still undecided at ``now`` is past its deadline."""
    return now > due_at
