"""CRD hook-13: a call is answered for the one Coverage whose payer this service serves, found by
payer identifier; anything else is a 400 OperationOutcome saying which, never a `not-covered`."""
from __future__ import annotations

from pathlib import Path

from crd_calls import PAYER_IDS, acme_coverage, assert_ok, assert_outcome, order_sign, post, service_request, value


def coverages(*bundles: dict) -> dict:
    """One searchset Bundle holding the Coverages of ``bundles``."""
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [entry for bundle in bundles for entry in bundle["entry"]]}


def test_the_ig_order_sign_example_names_acme_by_display_only_and_gets_400(client, anchor) -> None:
    response = post(client, anchor("CRDServiceRequest.json"))
    issue = assert_outcome(response, 400, "prefetch.coverage")
    assert issue["diagnostics"].startswith("no Coverage of a payer this service serves: Coverage/COV1: "
                                           "the payor carries no identifier")
    assert "matching payers by name is off" in issue["diagnostics"]


def test_the_payor_organizations_identifier_identifies_the_payer(client, ig_order_sign, crd) -> None:
    body = assert_ok(post(client, ig_order_sign()), crd)
    assert {a["resource"]["id"] for a in body["systemActions"]} == {"1357", "2468"}


def test_a_payer_matched_by_name_when_the_operator_opts_in(make_client, anchor, tmp_path: Path, crd) -> None:
    payers = tmp_path / "payers.yaml"
    payers.write_text("match_by_name: true\npayers:\n  - {payer: acme, names: [Acme Health Plan]}\n")
    body = assert_ok(post(make_client(payers=payers), anchor("CRDServiceRequest.json")), crd)
    assert len(body["systemActions"]) == 2


def test_a_coverage_of_a_payer_not_served_is_a_400_naming_its_identifier(client) -> None:
    request = order_sign(service_request("s1", "15823"),
                         prefetch={"coverage": acme_coverage(payer="Elsewhere Mutual", payer_id="ELSE-7")})
    issue = assert_outcome(post(client, request), 400, "prefetch.coverage")
    assert f"payer 'Elsewhere Mutual' ({PAYER_IDS}|ELSE-7) is not served by this service" in issue["diagnostics"]


def test_several_coverages_of_served_payers_are_a_400_unless_the_order_names_one(client, crd) -> None:
    both = coverages(acme_coverage("A"), acme_coverage("B"))
    order = service_request("s1", "15823", pos="22")
    issue = assert_outcome(post(client, order_sign(order, prefetch={"coverage": both})), 400, "prefetch.coverage")
    assert "several Coverages belong to payers this service serves (Coverage/A, Coverage/B)" in issue["diagnostics"]
    order["insurance"] = [{"reference": "Coverage/B"}]
    body = assert_ok(post(client, order_sign(order, prefetch={"coverage": both})), crd)
    (extension,) = crd.coverage_information(body["systemActions"][0])
    assert value(crd.subs(extension), "coverage") == [{"reference": "Coverage/B"}]


def test_other_payers_coverages_beside_ours_are_ignored(client, crd) -> None:
    mixed = coverages(acme_coverage("theirs", payer="Elsewhere Mutual", payer_id="ELSE-7"), acme_coverage("ours"))
    body = assert_ok(post(client, order_sign(service_request("s1", "15823", pos="22"),
                                             prefetch={"coverage": mixed})), crd)
    (extension,) = crd.coverage_information(body["systemActions"][0])
    assert value(crd.subs(extension), "coverage") == [{"reference": "Coverage/ours"}]


def test_an_empty_coverage_search_is_a_400_and_no_search_at_all_a_412(client) -> None:
    empty = {"resourceType": "Bundle", "type": "searchset"}
    issue = assert_outcome(post(client, order_sign(service_request("s1", "15823"), prefetch={"coverage": empty})),
                           400, "prefetch.coverage")
    assert "no Coverage" in issue["diagnostics"]
    assert_outcome(post(client, order_sign(service_request("s1", "15823"), prefetch={})), 412, "Coverage")


def test_a_null_coverage_prefetch_is_the_ehrs_empty_answer_a_400_never_a_412(client) -> None:
    """Regression (issue 22, item 7): CDS Hooks 2.0 fills a prefetch key the EHR found nothing for
    with null ("looked, nothing there"); covreq read it as absent and answered 412 (CRD found-32)."""
    request = order_sign(service_request("s1", "15823"), prefetch={"coverage": None})
    issue = assert_outcome(post(client, request), 400, "prefetch.coverage")
    assert issue["diagnostics"].startswith("no Coverage accessible")
    assert "null" in issue["diagnostics"]


def test_the_payor_identifier_of_a_contained_organization_identifies_the_payer(client, crd) -> None:
    """Regression (issue 22, item 8): a payor Reference to a contained Organization (``#org1``) was
    not resolved, so its identifiers did not count."""
    bundle = acme_coverage()
    coverage = bundle["entry"][0]["resource"]
    coverage["contained"] = [{"resourceType": "Organization", "id": "org1", "name": "Acme Health Plan",
                              "identifier": [{"system": PAYER_IDS, "value": "ACME-01"}]}]
    coverage["payor"] = [{"reference": "#org1"}]
    body = assert_ok(post(client, order_sign(service_request("s1", "15823", pos="22"),
                                             prefetch={"coverage": bundle})), crd)
    (extension,) = crd.coverage_information(body["systemActions"][0])
    assert value(crd.subs(extension), "coverage") == [{"reference": "Coverage/COV1"}]


def test_matching_payers_by_name_is_shown_by_readyz_and_logged_at_start(make_client, tmp_path: Path,
                                                                       caplog) -> None:
    """Regression (issue 22, item 8): an operator who opts in to name matching sees it on /readyz and
    in the start-up log; a mapping without it shows nothing."""
    payers = tmp_path / "payers.yaml"
    payers.write_text("match_by_name: true\npayers:\n  - {payer: acme, names: [Acme Health Plan]}\n")
    with caplog.at_level("WARNING", logger="covreq"), make_client(payers=payers) as opted_in:
        ready = opted_in.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["payers"] == {"match_by_name": True}
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "payers-by-name"]
    assert record.levelname == "WARNING" and record.file == str(payers)
    assert "payers" not in make_client().get("/readyz").json()
