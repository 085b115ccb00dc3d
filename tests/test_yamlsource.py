"""Located YAML reading (engine/loading/yamlsource.py): values as PyYAML's safe loader reads them, each
path located where it is written, found on demand in the composed nodes."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from engine.loading.yamlsource import KEY, MAX_VALUES, Locations, Spot, YamlError, _Composer, load_yaml

_TEXT = st.text(alphabet="ab01-:.#&*!|>'\" _xyz\n", max_size=12)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), _TEXT,
                     st.sampled_from(["0123", "1_000", "0x1f", "1:20", ".5", "yes", "off", "~", "", "2020-02-30"]))
_KEYS = st.one_of(_TEXT.filter(bool), st.sampled_from(["id", "rules", "when", "1", "true"]))
_DATA = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=20)


def _paths(value: Any, path: tuple[object, ...] = ()) -> Iterator[tuple[tuple[object, ...], Any]]:
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*path, key))


def _written_at(text: str, spot: Spot) -> str:
    return text.splitlines()[spot.line - 1][spot.column - 1:]


def _folded_from(text: str, spot: Spot) -> str:
    """The text from ``spot`` on, each line break with the indentation around it folded to one
    space, as YAML reads a plain scalar written on several lines (a dumper wraps a long one)."""
    lines = text.splitlines()
    return re.sub(r" *\n *", " ", "\n".join([lines[spot.line - 1][spot.column - 1:], *lines[spot.line:]]))


@settings(max_examples=60, deadline=None)
@given(_DATA, st.sampled_from([False, True, None]))
def test_every_value_is_read_as_the_safe_loader_reads_it_and_located_where_written(data: Any, flow: bool | None) -> None:
    text = yaml.safe_dump({"top": data}, default_flow_style=flow, sort_keys=False)
    read, locations = load_yaml(text)
    assert read == yaml.safe_load(text)  # no dates or binaries are generated: both are plain values
    for path, value in _paths(read):
        spot = locations.get(path)
        assert spot is not None and locations.find(path) == spot
        at = _written_at(text, spot)
        if isinstance(value, (dict, list)):
            continue  # a block collection starts at its first entry, a flow one at its bracket
        if spot.style in ("'", '"'):
            assert at.startswith(spot.style)
        elif spot.style is None:
            assert _folded_from(text, spot).startswith(spot.raw or "")
        if path and isinstance(path[-1], str):
            key_spot = locations.get((*path, KEY))
            assert key_spot is not None and key_spot.raw is None
            assert _written_at(text, key_spot)[:1] in (path[-1][:1] or "'", "'", '"')


def test_a_plain_scalar_the_dumper_wrapped_onto_the_next_line_is_located_where_it_starts() -> None:
    """Regression (issue 30): the property test above failed 1 run in 6 when a flow scalar such as
    '0 0 ...' was wrapped at column 80; the location was right, the test read only its first line."""
    data = ["a" * 60, " ".join("0" * 48)]
    text = yaml.safe_dump({"top": data}, default_flow_style=True, sort_keys=False)
    assert text.count("\n") > 1  # the second value runs over three lines
    read, locations = load_yaml(text)
    spot = locations.get(("top", 1))
    assert read["top"] == data and spot is not None and spot.raw == data[1]
    assert not _written_at(text, spot).startswith(data[1]) and _folded_from(text, spot).startswith(data[1])


def test_a_path_past_a_value_or_through_a_missing_key_finds_the_nearest_written_parent() -> None:
    text = "id: x\nrules:\n  - when: 'a'\n    reason: r\n"
    _, locations = load_yaml(text)
    when = locations.get(("rules", 0, "when"))
    assert when == Spot(3, 11, "a", "'")
    assert locations.find(("rules", 0, "when", "deeper", 1)) == when
    assert locations.get(("rules", 0, "when", "deeper")) is None
    assert locations.find(("rules", 0, "absent")) == Spot(3, 5)
    assert locations.find(("rules", 7)) == Spot(3, 3) == locations.find(("rules", -1))
    assert locations.get(("rules", KEY)) == locations.find(("rules", KEY, 0)) == Spot(2, 1)
    assert locations.find(("nothing",)) == locations.get(()) == Spot(1, 1)
    assert Locations().find(("id",)) == Spot(1, 1) and Locations().get(("id",)) is None


def test_an_alias_is_read_at_every_use_and_located_where_its_anchor_is_written() -> None:
    data, locations = load_yaml("codes: &c ['0123', 77]\nagain: *c\n")
    assert data == {"codes": ["0123", 77], "again": ["0123", 77]} and data["codes"] is not data["again"]
    assert locations.get(("again", 1)) == locations.get(("codes", 1)) == Spot(1, 20, "77", None)


def test_keys_that_are_not_text_are_spelled_as_text_and_found_so() -> None:
    data, locations = load_yaml("1: a\ntrue: b\nnull: c\n2020-01-01: d\n")
    assert data == {"1": "a", "True": "b", "None": "c", "2020-01-01": "d"}
    assert locations.get(("True", KEY)) == Spot(2, 1) and locations.get((1,)) is None


@pytest.mark.parametrize("text, code, line, column", [
    ("a: 1\nb: [x, {c: 1, c: 2}]\n", "E-duplicate-key", 2, 15),
    ("a: 1\n? [k]\n: v\n", "E-yaml", 2, 3),
    ("a: " + "[" * 70 + "]" * 70 + "\n", "E-yaml-too-deep", 1, 68),
])
def test_a_document_problem_is_located_at_the_first_value_that_has_it(text: str, code: str, line: int, column: int) -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    assert (caught.value.code, caught.value.line, caught.value.column) == (code, line, column)


def test_a_document_too_large_is_reported_as_such_whatever_else_is_wrong() -> None:
    fan = ", ".join(["*a"] * 1000)
    text = f"dup: 1\ndup: 2\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [{fan}]\nc: [{', '.join(['*b'] * 30)}]\n"
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    assert caught.value.code == "E-yaml-too-large" and caught.value.message.endswith(f"{MAX_VALUES} values (aliases?)")
    plain = "x: [" + ", ".join(["1"] * MAX_VALUES) + "]\n"
    with pytest.raises(YamlError) as caught:
        load_yaml(plain)
    assert (caught.value.code, caught.value.line, caught.value.column) == ("E-yaml-too-large", 1, 4)  # the list is the first value past the limit


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789abefnlorstuxyYNTFOL.:_-+~<=!&* eE", min_size=1, max_size=10))
def test_plain_scalars_are_tagged_as_the_safe_loader_tags_them(scalar: str) -> None:
    text = f"k: {scalar}\n"
    try:
        expected = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            yaml.compose(text, Loader=_Composer)
        return
    got = yaml.compose(text, Loader=_Composer)
    assert [(k.tag, v.tag, v.value) for k, v in got.value] == [(k.tag, v.tag, v.value) for k, v in expected.value]
