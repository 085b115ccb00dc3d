"""A started worker imports the FHIR models and freezes what it loaded out of the collector's
scans; a reload freezes the new rule set and lets the replaced one's garbage go."""
from __future__ import annotations

import gc
import weakref

from fastapi.testclient import TestClient

from service import heap
from service.fhir import r4


class _Cycle:
    """An object that only the cyclic collector can free (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


def _scanned(thing: object) -> bool:
    """Whether the cyclic collector still walks ``thing`` (frozen objects are in no generation)."""
    return any(o is thing for o in gc.get_objects())


def test_a_started_worker_has_imported_the_fhir_models_and_frozen_what_it_loaded(make_client) -> None:
    client = make_client()
    gc.unfreeze()
    r4.prepare.cache_clear()
    assert _scanned(client.app.state.holder.current)
    with client:  # the lifespan runs: the worker is started
        assert r4.prepare.cache_info().currsize == 1
        assert not _scanned(client.app.state.holder.current)
        assert client.get("/readyz").status_code == 200


def test_garbage_frozen_by_one_settle_is_collected_by_the_next() -> None:
    cycle = _Cycle()
    alive = weakref.ref(cycle)
    heap.settle()
    del cycle
    gc.collect()
    assert alive() is not None  # frozen: collections leave it alone
    heap.settle()
    assert alive() is None


def test_a_reload_freezes_the_new_rule_set(make_client) -> None:
    client: TestClient = make_client()
    heap.settle()  # the first rule set is frozen, as in a started worker
    assert client.app.state.holder.reload() is None
    assert not _scanned(client.app.state.holder.current)
