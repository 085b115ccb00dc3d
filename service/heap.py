"""The cyclic garbage collector in a serving worker: what lives as long as the worker is left out
of its scans.

A full collection walks every container object alive. With a 10,000-rule tree loaded that is
about 200,000 objects and 30-70 ms, paid by whichever request happens to allocate past the
threshold. The rule set, the FHIR models and the framework are loaded once, so once loaded they
are moved to the collector's permanent generation (``gc.freeze``), and later collections walk
only what requests create.
"""
from __future__ import annotations

import gc


def settle() -> None:
    """Collect, then freeze every object alive. What an earlier call froze is thawed first, so the
    garbage of a rule set replaced since then (cycles included) is collected, not kept for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
