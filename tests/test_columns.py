"""The projection's column types against plain Python lists of the same values."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from trajectories.store import columns
from trajectories.store.columns import Coded, ListColumn

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
