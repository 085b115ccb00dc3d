"""Cards a clinician reads once: one per order that needs someone to act, instructions rather than
a restatement of the systemAction (CRD resp-12, resp-25), named by the order's own text."""
from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from crd_calls import CPT, TODAY, assert_ok, order_sign, post, service_request

from service.crd.responses import shorten


def eyelid_order(order_id: str = "s1", *codes: str, pos: str = "22", text: str | None = None) -> dict:
    """A ServiceRequest for eyelid surgery codes, in a facility unless ``pos`` says otherwise."""
    order = service_request(order_id, codes[0] if codes else "15823", pos=pos)
    order["code"]["coding"] += [{"system": CPT, "code": code} for code in codes[1:]]
    if text:
        order["code"]["text"] = text
    return order


def test_an_answer_that_needs_no_action_gets_no_card(client, crd) -> None:
    body = assert_ok(post(client, order_sign(eyelid_order(pos="11"))), crd)
    assert body["cards"] == [] and body["systemActions"]


def test_one_card_per_order_with_each_documentation_item_once(client, crd) -> None:
    order = eyelid_order("s1", "15822", "15823", "77065", text="Upper eyelid blepharoplasty, both sides")
    (card,) = assert_ok(post(client, order_sign(order)), crd)["cards"]
    assert card["summary"] == "Acme Health Plan: prior authorization needed for Upper eyelid blepharoplasty, both sides"
    detail = card["detail"]
    assert "**Request prior authorization** for CPT 15822, CPT 15823." in detail
    assert "**Not yet decided** for CPT 77065: it depends on diagnoses." in detail
    assert detail.count("Photographs showing the eyelid position") == 1
    assert detail.count("Patient statement of visual complaints") == 1


def test_the_card_says_which_date_of_service_it_assumed(client, crd) -> None:
    (assumed,) = assert_ok(post(client, order_sign(eyelid_order())), crd)["cards"]
    assert f"**Date of service assumed:** {TODAY} (the order gives none)" in assumed["detail"]
    dated = eyelid_order()
    dated["occurrenceDateTime"] = "2026-05-04T09:30:00Z"
    (given,) = assert_ok(post(client, order_sign(dated)), crd)["cards"]
    assert "**Date of service:** 2026-05-04 (from the order)" in given["detail"]


def test_an_order_without_text_is_named_by_its_kind_and_never_by_a_bare_reference(client, crd) -> None:
    cards = assert_ok(post(client, order_sign(eyelid_order("eyelid-7"))), crd)["cards"]
    assert cards[0]["summary"] == "Acme Health Plan: prior authorization needed for service request eyelid-7"
    assert "ServiceRequest/" not in cards[0]["summary"]


def test_a_long_summary_is_cut_at_a_word_boundary(client, crd) -> None:
    text = "Bilateral upper eyelid blepharoplasty with excision of excessive skin weighting down the lid, " \
           "including the removal of herniated fat pads"
    (card,) = assert_ok(post(client, order_sign(eyelid_order(text=text))), crd)["cards"]
    full = f"Acme Health Plan: prior authorization needed for {text}"
    assert len(card["summary"]) < 140 and card["summary"].endswith("…")
    kept = card["summary"].removesuffix("…")
    assert full.startswith(kept) and full[len(kept)] == " "


def test_shorten_keeps_whole_words() -> None:
    assert shorten("short enough", 20) == "short enough"
    assert shorten("one two three four", 12) == "one two…"
    assert shorten("unbreakableword", 8) == "unbreak…"


@settings(max_examples=200)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300), limit=st.integers(2, 200))
def test_a_shortened_summary_fits_and_is_the_start_of_the_text(text: str, limit: int) -> None:
    short = shorten(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
    else:
        assert short.endswith("…") and text.startswith(short[:-1])


def without_uuids(cards: list[dict]) -> list[dict]:
    return [{k: v for k, v in card.items() if k != "uuid"} for card in cards]


def test_a_re_sent_order_with_nothing_new_gets_its_card_again_and_no_action(client, crd) -> None:
    """Regression (issue 22, item 5): a re-sent order that already carried covreq's answer got
    ``{"cards": []}`` and no ``systemActions``: a CDS client replaces the cards it showed with the
    new response's, so the "prior authorization needed" card vanished."""
    first = assert_ok(post(client, order_sign(eyelid_order())), crd)
    assert len(first["cards"]) == 1
    again = assert_ok(post(client, order_sign(first["systemActions"][0]["resource"])), crd)
    assert again["systemActions"] == []  # present (a primary hook's answer has it), nothing to update
    assert without_uuids(again["cards"]) == without_uuids(first["cards"])


def test_documentation_owed_only_under_a_condition_says_when_in_plain_english(make_client, crd, tmp_path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).parent / "fixtures" / "rules", rules)
    policy = rules / "acme" / "eyelid-surgery.yaml"
    policy.write_text(policy.read_text()
                      .replace("documentation: [photographs, patient-attestation]",
                               "documentation: [photographs, {id: visual-fields, when: not (diagnoses overlaps ptosis)}]")
                      .replace("documentation:\n", "value_sets:\n  ptosis: {title: congenital ptosis, values: [Q10.0]}\n"
                                                   "documentation:\n  visual-fields: {text: Visual field studies}\n"))
    (card,) = assert_ok(post(make_client(rules=rules), order_sign(eyelid_order())), crd)["cards"]
    assert "- Visual field studies (clinical), needed unless a diagnosis is a congenital ptosis (Q10.0)" in card["detail"]
    assert "- Photographs showing the eyelid position (clinical)\n" in card["detail"]
    assert "overlaps" not in card["detail"] and "diagnoses" not in card["detail"]  # no rule syntax
