"""The PAS Subscription as read (service/pas/subscriptions.py): any JSON is either a conforming
Subscription or a 400 naming the element, and what covreq keeps and sends is valid FHIR R4."""
from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st

from service.fhir import r4
from service.fhir.outcome import FhirError
from service.pas.subscriptions import (FULL_RESOURCE, ID_ONLY, notification, read_orgs, read_subscription,
                                       stored_resource)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pas-subscriptions"
GOOD = json.loads((FIXTURES / "kit-PAS_Subscription_example_v221_good.json").read_text())
RESPONSE = json.loads((FIXTURES / "kit-valid_pa_response_bundle.json").read_text())
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=4), max_leaves=12)
paths = st.sampled_from([("criteria",), ("status",), ("reason",), ("end",), ("channel",), ("channel", "type"),
                         ("channel", "endpoint"), ("channel", "payload"), ("channel", "header"),
                         ("channel", "_payload"), ("channel", "extension"), ("_criteria",),
                         ("_criteria", "extension")])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(paths, json_values), min_size=1, max_size=3))
def test_any_change_to_a_good_subscription_is_read_or_refused_with_a_400_naming_an_element(
        changes: list[tuple[tuple[str, ...], Any]]) -> None:
    resource = copy.deepcopy(GOOD)
    for path, value in changes:
        node = resource
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = value
    try:
        read = read_subscription(resource, NOW)
    except FhirError as err:
        assert err.status == 400 and err.expression.startswith("Subscription") and err.message
        return
    assert read.orgs and read.channel.content in (FULL_RESOURCE, ID_ONLY)


@given(json_values)
def test_anything_that_is_not_a_subscription_is_refused(value: Any) -> None:
    try:
        read_subscription(value, NOW)
    except FhirError as err:
        assert err.status == 400
    else:
        raise AssertionError("read")


def test_the_filter_takes_the_kits_and_the_topics_spelling_and_several_identifiers() -> None:
    for text, orgs in (("org-identifier=8189991234", ("8189991234",)), ("orgIdentifier=1234567893", ("1234567893",)),
                       ("org-identifier=N123456,4543315", ("N123456", "4543315"))):
        resource = copy.deepcopy(GOOD)
        resource["_criteria"]["extension"][0]["valueString"] = text
        assert read_orgs(resource) == orgs


def test_what_covreq_keeps_and_sends_is_valid_r4() -> None:
    kept = stored_resource(read_subscription(GOOD, NOW).resource, "0a1b", "requested")
    assert r4.problems(kept, "Subscription") == []
    for focus, content in ((None, FULL_RESOURCE), (RESPONSE, FULL_RESOURCE), (RESPONSE, ID_ONLY)):
        bundle = notification("https://payer.example/fhir", "0a1b", "active", "event-notification", 3, NOW,
                              focus, content)
        assert r4.problems(bundle, "Bundle") == [], (focus is None, content)
