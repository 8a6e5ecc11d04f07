"""The projection's column types against plain Python lists of the same values."""

from __future__ import annotations

import random
import re

import numpy as np
import pyarrow as pa
import pytest

from trajectories.fields import Kind
from trajectories.query import BoolMatch, ContainsMatch, EmptyMatch, NumberMatch, TextMatch
from trajectories.store import columns
from trajectories.store.columns import Coded, FlagColumn, IdColumn, ListColumn, NumberColumn

VOCABULARY = ["a", "b", "zz", "权限", ""]


@pytest.mark.parametrize("spliced_rows", [16, 0], ids=["spliced", "rebuilt"])
@pytest.mark.parametrize("seed", range(5))
def test_patched_lists_equal_lists_loaded_afresh(seed, spliced_rows, monkeypatch):
    monkeypatch.setattr(columns, "_SPLICED_ROWS", spliced_rows)  # an edit's few rows, or a bulk action's
    rng = random.Random(seed)
    for _ in range(60):
        rows = rng.randint(1, 40)
        lists = [rng.sample(VOCABULARY, rng.randint(0, 3)) for _ in range(rows)]
        column = ListColumn.from_lists(pa.array(lists, pa.list_(pa.string())), rows=rows)
        positions = np.array([rng.randrange(rows) for _ in range(rng.randint(1, 6))])  # repeats too
        new = [rng.sample([*VOCABULARY, "new", "aa", "新"], rng.randint(0, 3)) for _ in positions]
        patched = column.with_lists(positions, new, rows=rows)
        expected = list(lists)
        for position, values in zip(positions.tolist(), new, strict=True):
            expected[position] = values  # the last write of a row wins
        fresh = ListColumn.from_lists(pa.array(expected, pa.list_(pa.string())), rows=rows)
        assert patched.values_at(np.arange(rows)) == expected
        assert patched.offsets.tolist() == fresh.offsets.tolist()
        assert patched.rows.tolist() == fresh.rows.tolist()
        assert patched.counts(None) == fresh.counts(None)


@pytest.mark.parametrize("seed", range(5))
def test_counts_carried_across_edits_equal_counts_made_afresh(seed):
    """A column counted once carries its value combinations through every edit (no sort of every row
    per edit): each count, of all rows or of some, equals one made from scratch."""
    rng = random.Random(seed)
    rows = rng.randint(1, 60)
    lists = [rng.sample(VOCABULARY, rng.randint(1 if seed % 2 else 0, 3)) for _ in range(rows)]
    column = ListColumn.from_lists(pa.array(lists, pa.list_(pa.string())), rows=rows)
    column.counts(None)
    carried = 0
    for _ in range(40):
        positions = np.array([rng.randrange(rows) for _ in range(rng.randint(1, 4))])
        new = [rng.sample([*VOCABULARY, "new", "aa", "新"], rng.randint(0, 3)) for _ in positions]
        column = column.with_lists(positions, new, rows=rows)
        for position, values in zip(positions.tolist(), new, strict=True):
            lists[position] = values
        carried += "_combinations_cache" in column.__dict__
        fresh = ListColumn.from_lists(pa.array(lists, pa.list_(pa.string())), rows=rows)
        mask = np.array([rng.random() < 0.5 for _ in range(rows)])
        assert column.counts(None) == fresh.counts(None)
        assert column.counts(mask) == fresh.counts(mask)
    assert carried > 20, "most edits carry the combinations"


@pytest.mark.parametrize("seed", range(5))
def test_patched_text_equals_text_loaded_afresh_however_many_values_are_new(seed):
    """An import batch's free-text notes bring thousands of new values at once: merged in one pass,
    with codes still in string order (sorting by codes is sorting by text)."""
    rng = random.Random(seed)
    rows = 3_000
    values = [rng.choice([None, *VOCABULARY]) for _ in range(rows)]
    column = Coded.load(pa.array(values, pa.string()), rows=rows)
    positions = np.array([rng.randrange(rows) for _ in range(2_000)])  # repeats too
    new = [rng.choice([None, "a", f"note {rng.randrange(10**6)}", f"笔记 {rng.randrange(99)}"]) for _ in positions]
    patched = column.patched(positions, new)
    expected = list(values)
    for position, value in zip(positions.tolist(), new, strict=True):
        expected[position] = value
    assert patched.values_at(np.arange(rows)) == expected
    uniques = patched.uniques.to_pylist()  # values written over may stay among them, unused
    assert uniques == sorted(set(uniques)) and set(uniques) >= set(expected) - {None}
    assert column.values_at(np.arange(rows)) == values  # the original is left as it was


def _glob(pattern: str, value: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value, re.DOTALL) is not None


def _text_holds(match, value: str | None) -> bool:
    if isinstance(match, EmptyMatch):
        return (value in (None, "")) == match.empty
    if value is None:
        return False
    if isinstance(match, ContainsMatch):
        return match.text.lower() in value.lower()
    return value in match.exact or any(_glob(pattern, value) for pattern in match.patterns)


def _list_holds(match, row: list[str]) -> bool:
    if isinstance(match, EmptyMatch):
        return (not row) == match.empty
    return bool(set(row) & set(match.exact))


def _number_holds(match, value: float | None) -> bool:
    return (
        value is not None
        and (not match.values or value in match.values)
        and (match.minimum is None or value >= match.minimum)
        and (match.maximum is None or value <= match.maximum)
    )


def _text_matches(rng: random.Random, values: list) -> list:
    some = [value for value in values if value] or ["a"]
    return [
        TextMatch(exact=(rng.choice(some),)),
        TextMatch(exact=tuple(rng.sample(some, min(3, len(some))))),
        TextMatch(patterns=(rng.choice(some)[:1] + "*",)),
        ContainsMatch(rng.choice(some)[-1:].upper()),
        EmptyMatch(True),
        EmptyMatch(False),
    ]


@pytest.mark.parametrize("seed", range(4))
def test_filters_of_some_rows_agree_with_filters_of_every_row(seed):
    """`mask_at` (a filter reading only the rows earlier filters left) says of those rows exactly what
    `mask` (a pass over every row) says, and both what plain Python says: every column type and match."""
    rng = random.Random(seed)
    rows = rng.randint(1, 300)
    positions = np.array(sorted(rng.sample(range(rows), rng.randint(0, rows))), dtype=np.int64)
    texts = [rng.choice([*VOCABULARY, None, "Zz", "b权"]) for _ in range(rows)]
    lists = [rng.sample(VOCABULARY, rng.randint(0, 3)) for _ in range(rows)]
    ids = [f"run-{rng.randrange(3)}:q{index:04d}" for index in range(rows)]
    numbers = [rng.choice([None, *range(-3, 8)]) for _ in range(rows)]
    reals = [rng.choice([None, -1.0, 0.0, 0.5, 1.5]) for _ in range(rows)]
    flags = [rng.choice([None, True, False]) for _ in range(rows)]
    packed = ListColumn.from_lists(pa.array(lists, pa.list_(pa.string())), rows=rows)
    packed.counts(None)  # the facets' warming packs the combinations; a mask then looks them up
    entries = [value for row in lists for value in row] or ["a"]
    list_matches = [
        TextMatch(exact=(rng.choice(entries),)),
        TextMatch(exact=("a", "zz")),
        EmptyMatch(True),
        EmptyMatch(False),
    ]
    cases = [
        (Coded.from_array(pa.array(texts, pa.string())), texts, _text_matches(rng, texts), _text_holds),
        (ListColumn.from_lists(pa.array(lists, pa.list_(pa.string())), rows=rows), lists, list_matches, _list_holds),
        (packed, lists, list_matches, _list_holds),
        (IdColumn(pa.array(ids)), ids, _text_matches(rng, ids)[:4], _text_holds),
        (
            NumberColumn.load(pa.chunked_array([pa.array(numbers, pa.int64())]), rows=rows, kind=Kind.INT),
            numbers,
            [
                NumberMatch(values=(1, 5)),
                NumberMatch(minimum=0),
                NumberMatch(maximum=2),
                NumberMatch(minimum=-1, maximum=3),
                NumberMatch(minimum=-1e20),  # below the null marker: still no null matches
                NumberMatch(values=(2, 3), maximum=2),
            ],
            _number_holds,
        ),
        (
            NumberColumn.load(pa.chunked_array([pa.array(reals, pa.float64())]), rows=rows, kind=Kind.FLOAT),
            reals,
            [NumberMatch(minimum=0.5), NumberMatch(maximum=-0.5), NumberMatch(values=(1.5,), minimum=-1e20)],
            _number_holds,
        ),
        (
            FlagColumn.load(pa.chunked_array([pa.array(flags, pa.bool_())]), rows=rows, kind=Kind.TRISTATE),
            flags,
            [BoolMatch(True), BoolMatch(False), BoolMatch(None)],
            lambda match, value: value is match.value,
        ),
    ]
    for column, values, matches, holds in cases:
        for match in matches:
            expected = [holds(match, value) for value in values]
            assert column.mask(match, rows).tolist() == expected, (type(column).__name__, match)
            at = column.mask_at(match, positions)
            assert at.tolist() == [expected[position] for position in positions.tolist()], (
                type(column).__name__,
                match,
            )
