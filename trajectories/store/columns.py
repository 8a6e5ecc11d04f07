"""In-memory column types of the projection, one per kind of field in the catalogue.

Every column answers the same questions for the projection: which rows a match selects (`mask`),
lexsort keys for an order with nulls last (`sort_key`), values for a page (`values_at`), and for the
annotation columns a copy with some rows rewritten (`patched`). Coded and list columns also count
values for facets (`counts`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trajectories.fields import Kind
from trajectories.query import BoolMatch, ContainsMatch, EmptyMatch, Match, NumberMatch, TextMatch, wildcard_regex

INT_NULL = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Past this many raw hits a substring search hands over to Arrow's kernel (a Python loop would be slower).
_MAX_FAST_HITS = 20_000
# Facets of a list column count per combination of values up to this many combinations.
_MAX_COMBINATIONS = 20_000
# Rows changed at once up to which a list column is patched by splicing (see ListColumn._spliced).
_SPLICED_ROWS = 16
# Uniques decoded through a cached Python list up to this many (data_id may have millions).
_PYTHON_UNIQUES = 200_000


@dataclass
class Coded:
    """A string column as int32 codes into sorted uniques (-1 = null), so code order is string order."""

    codes: np.ndarray
    uniques: pa.Array

    @classmethod
    def load(cls, array: pa.ChunkedArray | pa.Array, *, rows: int, index: np.ndarray | None = None) -> Coded:
        """The column of `rows` rows; with `index`, `array[i]` belongs at row `index[i]` (others null)."""
        coded = cls.from_array(array)
        if index is None:
            return coded
        codes = np.full(rows, -1, dtype=np.int32)
        codes[index] = coded.codes
        return cls(codes=codes, uniques=coded.uniques)

    @classmethod
    def from_array(cls, array: pa.ChunkedArray | pa.Array) -> Coded:
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        encoded = pc.dictionary_encode(array)
        order = pc.sort_indices(encoded.dictionary).to_numpy()
        remap = np.empty(len(order) + 1, dtype=np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        remap[-1] = -1  # null indices are filled with -1 below, which picks this slot
        raw = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(codes=remap[raw], uniques=encoded.dictionary.take(pa.array(order, pa.int64())))

    def matching(self, predicate: Callable[[pa.Array], pa.Array]) -> np.ndarray:
        """Codes whose string satisfies `predicate(uniques) -> boolean Array`."""
        if len(self.uniques) == 0:
            return np.empty(0, dtype=np.int32)
        hits = predicate(self.uniques).fill_null(False).to_numpy(zero_copy_only=False)
        return np.flatnonzero(hits).astype(np.int32)

    def rows_with(self, codes: np.ndarray) -> np.ndarray:
        return _with_codes(self.codes, codes)

    def mask(self, match: Match, rows: int) -> np.ndarray:
        return self._matched(self.codes, match)

    def mask_at(self, match: Match, positions: np.ndarray) -> np.ndarray:
        """Of the rows at `positions`, those that match (what `mask` says of them, reading only them)."""
        return self._matched(self.codes[positions], match)

    def share(self, match: Match) -> float:
        """About which share of rows `match` selects: one value of many distinct ones, few."""
        if isinstance(match, TextMatch) and not match.patterns:
            return len(match.exact) / max(1, len(self.uniques))
        return 0.5

    def _matched(self, codes: np.ndarray, match: Match) -> np.ndarray:
        if isinstance(match, EmptyMatch):
            empty = (codes < 0) | _with_codes(codes, self.matching(lambda uniques: pc.equal(uniques, "")))
            return empty if match.empty else ~empty
        if isinstance(match, ContainsMatch):
            text = match.text
            wanted = self.matching(lambda uniques: pc.match_substring(uniques, text, ignore_case=True))
        else:
            wanted = self.matching(lambda uniques: _text_predicate(uniques, match))
        return _with_codes(codes, wanted)

    def sort_key(self, positions: np.ndarray, descending: bool) -> list[np.ndarray]:
        codes = self.codes[positions]
        return [-codes if descending else codes, codes < 0]

    def counts(self, mask: np.ndarray | None, positions: np.ndarray | None = None) -> list[tuple[str | None, int]]:
        """(value, rows) most frequent first, and (None, rows without a value) last; `positions` are the
        mask's true positions when the caller has them (a gather is several times faster than a mask)."""
        if mask is not None and positions is None:
            positions = np.flatnonzero(mask)
        shifted = self._shifted()
        per_code = np.bincount(
            shifted if positions is None else shifted.take(positions), minlength=len(self.uniques) + 1
        )
        counted, none = _ranked(per_code[1:], self._python_uniques())
        none += int(per_code[0])
        return [*counted, (None, none)] if none else counted

    def keys(self) -> tuple[np.ndarray, list]:
        """Per row a group number (-1: no value) and each number's value, in value order."""
        return self.codes, self._python_uniques()

    def _shifted(self) -> np.ndarray:
        """Codes + 1 (null = 0) as bincount takes them, made once per column."""
        shifted = self.__dict__.get("_shifted_cache")
        if shifted is None:
            shifted = self.__dict__["_shifted_cache"] = _narrow(self.codes + 1, len(self.uniques) + 1)
        return shifted

    def patched(self, positions: np.ndarray, values: list[str | None]) -> Coded | None:
        """A copy with `values` at `positions`; None when the uniques would be too many."""
        coded = self.holding(values)
        if coded is None:
            return None
        codes = coded.codes.copy() if coded.codes is self.codes else coded.codes
        codes[positions] = coded.codes_of(values)
        return Coded(codes=codes, uniques=coded.uniques)

    def holding(self, values) -> Coded | None:
        """This column able to hold every one of `values` (new ones merged into the uniques in one
        pass, however many: an import batch's free-text notes), codes still in string order; None when
        the uniques would be too many."""
        known = self._python_uniques()
        new = [value for value in dict.fromkeys(values) if value is not None and not _holds(known, value)]
        if not new:
            return self
        if len(known) + len(new) > _PYTHON_UNIQUES:
            return None
        union = pa.array(sorted([*known, *new]), pa.string())
        return Coded(codes=_code_map(self.uniques, union)[self.codes], uniques=union)

    def codes_of(self, values: list[str | None]) -> list[int]:
        """The code of each value (-1 for None); each must be held."""
        known = self._python_uniques()
        return [-1 if value is None else bisect.bisect_left(known, value) for value in values]

    def values_at(self, positions: np.ndarray) -> list[str | None]:
        return self.decode(self.codes[positions])

    def decode(self, codes: np.ndarray) -> list[str | None]:
        if len(self.uniques) <= _PYTHON_UNIQUES:
            values = self._python_uniques()
            return [values[code] if code >= 0 else None for code in codes.tolist()]
        taken = self.uniques.take(pa.array(np.maximum(codes, 0), pa.int64())).to_pylist()
        return [value if code >= 0 else None for value, code in zip(taken, codes.tolist(), strict=True)]

    def appended(self, other: Coded) -> Coded:
        """This column followed by `other`'s rows, in one code space (still in string order)."""
        if len(other.uniques) and not pc.all(pc.is_in(other.uniques, value_set=self.uniques)).as_py():
            union = pc.unique(pa.concat_arrays([self.uniques, other.uniques]))
            union = union.take(pc.sort_indices(union))
            mine = _code_map(self.uniques, union)
            codes = mine[self.codes]
        else:
            union, codes = self.uniques, self.codes
        theirs = _code_map(other.uniques, union)
        return Coded(codes=np.concatenate([codes, theirs[other.codes]]).astype(np.int32), uniques=union)

    def _python_uniques(self) -> list[str]:
        # Decoding a page from a Python list beats an Arrow round trip per column.
        cached = self.__dict__.get("_values")
        if cached is None:
            cached = self.__dict__["_values"] = self.uniques.to_pylist()
        return cached


@dataclass
class ListColumn:
    """A list<string> column (tools used, tags): entries sorted by row, with per-row offsets."""

    rows: np.ndarray
    coded: Coded
    offsets: np.ndarray

    @classmethod
    def load(cls, lists: pa.ChunkedArray | pa.Array, *, rows: int, index: np.ndarray | None = None) -> ListColumn:
        return cls.from_lists(lists, rows=rows, positions=index)

    @classmethod
    def from_lists(
        cls, lists: pa.ChunkedArray | pa.Array, *, rows: int, positions: np.ndarray | None = None
    ) -> ListColumn:
        lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
        lists = lists.fill_null(pa.scalar([], lists.type))
        parents = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
        entry_rows = parents if positions is None else positions[parents]
        coded = Coded.from_array(pc.list_flatten(lists))
        order = np.argsort(entry_rows, kind="stable")
        entry_rows = entry_rows[order]
        coded = Coded(codes=coded.codes[order], uniques=coded.uniques)
        offsets = np.searchsorted(entry_rows, np.arange(rows + 1)).astype(np.int64)
        return cls(rows=entry_rows.astype(np.int32), coded=coded, offsets=offsets)

    def appended(self, other: ListColumn) -> ListColumn:
        """This column followed by `other`'s rows."""
        before = len(self.offsets) - 1
        return ListColumn(
            rows=np.concatenate([self.rows, other.rows + before]).astype(np.int32),
            coded=self.coded.appended(other.coded),
            offsets=np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]),
        )

    def with_lists(self, positions: np.ndarray, lists: list[list[str]], *, rows: int) -> ListColumn | None:
        """A copy where the rows at `positions` hold `lists` instead; None when that cannot be patched.
        The entries of those rows are cut out and the new ones spliced in where their rows are: no sort
        of the million entries (an edit arrives every few seconds while people work)."""
        coded = self.coded.holding([value for values in lists for value in values])
        if coded is None:
            return None
        latest = dict(zip(np.asarray(positions, dtype=np.int64).tolist(), lists, strict=True))  # last write wins
        changed = np.array(sorted(latest), dtype=np.int64)
        new_lists = [latest[position] for position in changed.tolist()]
        lengths = np.array([len(values) for values in new_lists], dtype=np.int64)
        new_codes = np.array(coded.codes_of([value for values in new_lists for value in values]), dtype=np.int32)
        splice = self._spliced if len(changed) <= _SPLICED_ROWS else self._rebuilt
        patched = splice(changed, lengths, new_codes, coded, rows=rows)
        combinations = self.__dict__.get("_combinations_cache")
        if combinations is not None:
            # Carried, not packed again: that sorts every row (~100 ms at 1M), per edit and per process.
            remap = None if coded is self.coded else _code_map(self.coded.uniques, coded.uniques)
            rows_codes = np.split(new_codes, np.cumsum(lengths)[:-1]) if len(new_lists) else []
            carried = _recombined(combinations, changed=changed, rows_codes=rows_codes, remap=remap)
            if carried is not None:
                patched.__dict__["_combinations_cache"] = carried
        return patched

    def _spliced(self, changed: np.ndarray, lengths: np.ndarray, codes: np.ndarray, coded: Coded, *, rows: int):
        """`with_lists` for a few rows (an edit): the entries copied once around each changed row, and
        the offsets after each shifted in place. The general way below allocates ~60 MB at 1M rows,
        per edit and per process, which glibc then keeps (see trajsite/memory.py)."""
        starts, stops = self.offsets[changed].tolist(), self.offsets[changed + 1].tolist()
        row_pieces, code_pieces, cursor, at = [], [], 0, 0
        offsets = np.array(self.offsets, dtype=np.int64)  # a plain copy, also of a mapped column
        for position, start, stop, length in zip(changed.tolist(), starts, stops, lengths.tolist(), strict=True):
            row_pieces += [self.rows[cursor:start], np.full(length, position, dtype=np.int32)]
            code_pieces += [coded.codes[cursor:start], codes[at : at + length]]
            cursor, at = stop, at + length
            if length != stop - start:
                offsets[position + 1 :] += length - (stop - start)
        row_pieces.append(self.rows[cursor:])
        code_pieces.append(coded.codes[cursor:])
        entry_rows = np.concatenate(row_pieces).astype(np.int32, copy=False)
        entry_codes = np.concatenate(code_pieces).astype(coded.codes.dtype, copy=False)
        return ListColumn(rows=entry_rows, coded=Coded(entry_codes, coded.uniques), offsets=offsets)

    def _rebuilt(self, changed: np.ndarray, lengths: np.ndarray, codes: np.ndarray, coded: Coded, *, rows: int):
        """`with_lists` for many rows (a bulk action): the entries of those rows cut out and the new
        ones inserted where their rows are, in a few passes (no sort of the million entries)."""
        sizes = np.diff(self.offsets)
        keep = np.ones(len(self.rows), dtype=bool)
        keep[_ranges(self.offsets[changed], sizes[changed])] = False
        kept_rows, kept_codes = self.rows[keep].astype(np.int64), coded.codes[keep]
        at = np.repeat(np.searchsorted(kept_rows, changed), lengths)
        entry_rows = np.insert(kept_rows, at, np.repeat(changed, lengths))
        entry_codes = np.insert(kept_codes, at, codes)
        sizes[changed] = lengths
        offsets = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return ListColumn(rows=entry_rows.astype(np.int32), coded=Coded(entry_codes, coded.uniques), offsets=offsets)

    def mask(self, match: Match, rows: int) -> np.ndarray:
        if isinstance(match, EmptyMatch):
            empty = self._sizes() == 0
            return empty if match.empty else ~empty
        wanted = self.coded.matching(lambda uniques: _text_predicate(uniques, match))
        combinations = self.__dict__.get("_combinations_cache")
        if combinations is not None:
            # A lookup per row in a table of combinations: 15 ms at 10M rows, where marking the rows
            # of matching entries takes 50 ms. Only when packed already (the facets' warming does).
            per_row, members = combinations
            return self._combinations_holding(members, wanted)[per_row]
        mask = np.zeros(rows, dtype=bool)
        if len(wanted):
            mask[self.rows[self.coded.rows_with(wanted)]] = True
        return mask

    def mask_at(self, match: Match, positions: np.ndarray) -> np.ndarray:
        """Of the rows at `positions`, those that match, reading only their entries."""
        sizes = self._sizes()[positions]
        if isinstance(match, EmptyMatch):
            return (sizes == 0) if match.empty else (sizes != 0)
        wanted = self.coded.matching(lambda uniques: _text_predicate(uniques, match))
        combinations = self.__dict__.get("_combinations_cache")
        if combinations is not None:
            per_row, members = combinations
            return self._combinations_holding(members, wanted)[per_row[positions]]
        entries = _ranges(self.offsets[positions], sizes)
        owners = np.repeat(np.arange(len(positions)), sizes)
        found = np.zeros(len(positions), dtype=bool)
        found[owners[_with_codes(self.coded.codes[entries], wanted)]] = True
        return found

    def share(self, match: Match) -> float:
        return 0.5

    def _combinations_holding(self, members: list[np.ndarray], wanted: np.ndarray) -> np.ndarray:
        """Per combination, whether it holds any of `wanted`; the combinations' codes are flattened
        once per packing (12 tools make ~13,000 ordered combinations: 8 ms to flatten)."""
        flat = self.__dict__.get("_flat_combinations_cache")
        if flat is None or flat[0] is not members:
            sizes = np.fromiter((len(codes) for codes in members), dtype=np.int64, count=len(members))
            codes = np.concatenate(members) if members else np.empty(0, dtype=np.int64)
            flat = self.__dict__["_flat_combinations_cache"] = (
                members,
                codes,
                np.repeat(np.arange(len(members)), sizes),
            )
        _, codes, owners = flat
        holds = np.zeros(len(members), dtype=bool)
        holds[owners[_with_codes(codes, wanted)]] = True
        return holds

    def counts(self, mask: np.ndarray | None, positions: np.ndarray | None = None) -> list[tuple[str | None, int]]:
        """Rows holding each value, most frequent first; (None, rows with no items) last. Counted per
        combination of values (rows share a few: ["search", "python"]), then spread over its values."""
        if mask is not None and positions is None:
            positions = np.flatnonzero(mask)
        combinations = self._combinations()
        if combinations is None:
            return self._counts_by_entry(mask)
        per_row, members = combinations
        per_combination = np.bincount(per_row if positions is None else per_row.take(positions), minlength=len(members))
        per_code = np.zeros(len(self.coded.uniques), dtype=np.int64)
        for combination in np.flatnonzero(per_combination).tolist():
            per_code[members[combination]] += per_combination[combination]
        # A row with no items is the "none" of a list; "" items are not counted as values.
        counted, _ = _ranked(per_code, self.coded._python_uniques())
        none = int(per_combination[0]) if len(members) and not len(members[0]) else 0
        return [*counted, (None, none)] if none else counted

    def _counts_by_entry(self, mask: np.ndarray | None) -> list[tuple[str | None, int]]:
        codes = self.coded.codes if mask is None else self.coded.codes[mask[self.rows]]
        per_code = np.bincount(codes, minlength=len(self.coded.uniques)) if len(codes) else np.zeros(0, np.int64)
        counted, _ = _ranked(per_code, self.coded._python_uniques())
        empty = self._sizes() == 0
        none = int(np.count_nonzero(empty if mask is None else empty & mask))
        return [*counted, (None, none)] if none else counted

    def _combinations(self) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """Per row, the number of its combination of values (0: no items), and each combination's value
        codes; None when rows hold too many values to pack or there are too many combinations."""
        if "_combinations_cache" not in self.__dict__:
            self.__dict__["_combinations_cache"] = self._packed_combinations()
        return self.__dict__["_combinations_cache"]

    def _packed_combinations(self) -> tuple[np.ndarray, list[np.ndarray]] | None:
        rows = len(self.offsets) - 1
        sizes = self._sizes()
        bits = (len(self.coded.uniques) + 1).bit_length()
        if rows == 0 or int(sizes.max(initial=0)) * bits > 62:
            return None
        # Each row's codes (+1) packed into one integer: equal integers, equal combinations.
        place = np.arange(len(self.rows), dtype=np.int64) - self.offsets[self.rows]
        packed = (self.coded.codes.astype(np.int64) + 1) << (bits * place)
        keys = np.zeros(rows, dtype=np.int64)
        filled = np.flatnonzero(sizes)
        if len(filled):
            keys[filled] = np.add.reduceat(packed, self.offsets[filled])
        # Sorted: the empty combination (0), when some row has no items, is the first.
        uniques, per_row = np.unique(keys, return_inverse=True)
        if len(uniques) > _MAX_COMBINATIONS:
            return None
        mask = (1 << bits) - 1
        members = []
        for key in uniques.tolist():
            codes = []
            while key:
                codes.append((key & mask) - 1)
                key >>= bits
            members.append(np.array(codes, dtype=np.int64))
        return _narrow(per_row, len(members)), members

    def patched(self, positions: np.ndarray, values: list[list[str]]) -> ListColumn | None:
        return self.with_lists(positions, [list(value or []) for value in values], rows=len(self.offsets) - 1)

    def _sizes(self) -> np.ndarray:
        sizes = self.__dict__.get("_sizes_cache")
        if sizes is None:
            sizes = self.__dict__["_sizes_cache"] = np.diff(self.offsets)
        return sizes

    def values_at(self, positions: np.ndarray) -> list[list[str]]:
        starts = self.offsets[positions].tolist()
        stops = self.offsets[positions + 1].tolist()
        codes = self.coded.codes
        pieces = [codes[start:stop] for start, stop in zip(starts, stops, strict=True)]
        flat = self.coded.decode(np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int32))
        result, cursor = [], 0
        for start, stop in zip(starts, stops, strict=True):
            result.append(flat[cursor : cursor + stop - start])
            cursor += stop - start
        return result


@dataclass
class IdColumn:
    """Unique strings (trajectory ids): Arrow for exact matches, raw bytes for fast substring scans,
    and each row's rank in id order (the tie-break of every sort)."""

    array: pa.Array
    rank: np.ndarray = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._offsets = _relative_offsets(self.array)
        self._haystacks: dict[bool, bytes] = {}
        # (key, build) -> what build() makes, shared with other processes: set by a shared projection.
        self.shared: Callable[[tuple, Callable[[], Any]], Any] | None = None
        if self.rank is None:
            rows = len(self.array)
            self.rank = np.empty(rows, dtype=np.int32)
            self.rank[pc.sort_indices(self.array).to_numpy()] = np.arange(rows, dtype=np.int32)

    @classmethod
    def load(cls, array: pa.ChunkedArray | pa.Array, *, rows: int, index: np.ndarray | None = None) -> IdColumn:
        return cls(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)

    def appended(self, other: IdColumn) -> IdColumn:
        return IdColumn(pa.concat_arrays([self.array, other.array]))

    def mask(self, match: Match, rows: int) -> np.ndarray:
        if isinstance(match, ContainsMatch):
            return self.contains(match.text, ignore_case=True)
        mask = self.equal_any(match.exact)
        for pattern in match.patterns:
            mask |= self.matches_glob(pattern)
        return mask

    def mask_at(self, match: Match, positions: np.ndarray) -> np.ndarray:
        if isinstance(match, TextMatch) and not match.patterns:
            return _equal_any(self.array.take(pa.array(positions, pa.int64())), match.exact)
        return self.mask(match, len(self.array))[positions]  # a scan of every id is memchr-fast

    def share(self, match: Match) -> float:
        if isinstance(match, TextMatch) and not match.patterns:
            return len(match.exact) / max(1, len(self.array))
        return 0.5

    def sort_key(self, positions: np.ndarray, descending: bool) -> list[np.ndarray]:
        rank = self.rank[positions]
        return [-rank if descending else rank]

    def values_at(self, positions: np.ndarray) -> list[str]:
        return self.array.take(pa.array(positions, pa.int64())).to_pylist()

    def equal_any(self, values: tuple[str, ...]) -> np.ndarray:
        return _equal_any(self.array, values)

    def contains(self, needle: str, *, ignore_case: bool) -> np.ndarray:
        """Rows whose id contains `needle`: a memchr-speed scan of the concatenated bytes."""
        if ignore_case and not needle.isascii():
            return pc.match_substring(self.array, needle, ignore_case=True).to_numpy(zero_copy_only=False)
        haystack = self._haystack(lowered=ignore_case)
        rows = self._candidate_rows(haystack, (needle.lower() if ignore_case else needle).encode())
        if rows is None:
            return pc.match_substring(self.array, needle, ignore_case=ignore_case).to_numpy(zero_copy_only=False)
        return self._verified(rows, lambda value: needle.lower() in value.lower() if ignore_case else needle in value)

    def matches_glob(self, pattern: str) -> np.ndarray:
        """`*` wildcards: candidates by the longest literal part, then a full-match check of those only."""
        parts = pattern.split("*")
        rows = None
        for literal in sorted((part for part in parts if part), key=len, reverse=True):
            rows = self._candidate_rows(self._haystack(lowered=False), literal.encode())
            if rows is not None:
                break
        if rows is None:
            # RE2 (Arrow) matches in linear time, whatever the pattern.
            return pc.match_substring_regex(self.array, wildcard_regex(pattern)).to_numpy(zero_copy_only=False)
        return self._verified(rows, lambda value: glob_matches(parts, value))

    def _candidate_rows(self, haystack: bytes, needle: bytes) -> np.ndarray | None:
        hits = []
        start = haystack.find(needle)
        while start != -1:
            hits.append(start)
            if len(hits) > _MAX_FAST_HITS:
                return None
            start = haystack.find(needle, start + 1)
        return np.unique(np.searchsorted(self._offsets, np.array(hits, dtype=np.int64), side="right") - 1)

    def _verified(self, rows: np.ndarray, check: Callable[[str], bool]) -> np.ndarray:
        mask = np.zeros(len(self.array), dtype=bool)
        if len(rows):
            values = self.array.take(pa.array(rows, pa.int64())).to_pylist()
            mask[rows[[check(value) for value in values]]] = True
        return mask

    def _haystack(self, *, lowered: bool) -> bytes:
        """All ids' bytes back to back (kept after first use: ~40 MB per million ids; shared between
        processes, as a mapped file, when `shared` is set)."""
        haystack = self._haystacks.get(lowered)
        if haystack is None:
            build = lambda: self._joined(lowered=lowered)  # noqa: E731
            haystack = self.shared(("haystack", lowered), build) if self.shared is not None else build()
            self._haystacks[lowered] = haystack
        return haystack

    def _joined(self, *, lowered: bool) -> bytes:
        array = pc.ascii_lower(self.array) if lowered else self.array
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
        return array.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


def _equal_any(array: pa.Array, values: tuple[str, ...]) -> np.ndarray:
    return pc.is_in(array, value_set=pa.array(values, pa.string())).to_numpy(zero_copy_only=False)


def glob_matches(parts: list[str], value: str) -> bool:
    """Whether `value` matches the literal `parts` of a `*` pattern, in linear time.

    A backtracking regex of `.*` runs is exponential in the number of stars ("a****...X" froze a
    worker); a `*`-only glob needs none: prefix, suffix, and the middle parts found left to right.
    """
    if len(parts) == 1:
        return value == parts[0]
    first, *middle, last = parts
    if len(value) < len(first) + len(last) or not value.startswith(first) or not value.endswith(last):
        return False
    position, end = len(first), len(value) - len(last)
    for part in middle:
        found = value.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def _relative_offsets(array: pa.Array) -> np.ndarray:
    """Where each string starts in the array's bytes: Arrow's own int32 offsets, not a copy, when they
    start at 0 (a copy as int64 took 80 MB per process at 10M ids, mapped or not)."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    return offsets if not len(offsets) or offsets[0] == 0 else offsets - offsets[0]


@dataclass
class NumberColumn:
    """Integers, floats and timestamps (microseconds) as one numpy array; nulls are NaN or INT_NULL."""

    values: np.ndarray
    kind: Kind

    @classmethod
    def load(cls, array: pa.ChunkedArray, *, rows: int, index: np.ndarray | None = None, kind: Kind) -> NumberColumn:
        if kind is Kind.FLOAT:
            loaded, null = array.fill_null(float("nan")).to_numpy(), np.nan
        else:
            loaded, null = pc.cast(array, pa.int64()).fill_null(INT_NULL).to_numpy(), INT_NULL
        if index is not None:
            scattered = np.full(rows, null, dtype=loaded.dtype)
            scattered[index] = loaded
            loaded = scattered
        return cls(values=loaded, kind=kind)

    def appended(self, other: NumberColumn) -> NumberColumn:
        return NumberColumn(values=np.concatenate([self.values, other.values]), kind=self.kind)

    def present(self) -> np.ndarray:
        return self._present(self.values)

    def _present(self, values: np.ndarray) -> np.ndarray:
        return ~np.isnan(values) if self.kind is Kind.FLOAT else values != INT_NULL

    def keys(self) -> tuple[np.ndarray, list]:
        """Per row a group number (-1: no value) and each number's value, in value order; made once."""
        cached = self.__dict__.get("_keys_cache")
        if cached is None:
            codes, uniques = self._made("_key_arrays", self._key_arrays)
            cached = self.__dict__["_keys_cache"] = (codes, np.asarray(uniques).tolist())
        return cached

    def _key_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        present = self.present()
        uniques, inverse = np.unique(self.values[present], return_inverse=True)
        codes = np.full(len(self.values), -1, dtype=np.int32)
        codes[present] = inverse
        return codes, uniques

    def _made(self, name: str, build: Callable[[], Any]) -> Any:
        """What `build()` derives from the values, made once per column; shared with the machine's
        other processes when the column is mapped from a shared projection (`shared`, set by mapped.py):
        the analytics' per-row float64 weights and group numbers took ~400 MB per process at 10M rows."""
        cached = self.__dict__.get(name)
        if cached is None:
            shared = self.__dict__.get("shared")
            cached = self.__dict__[name] = shared((name,), build) if shared is not None else build()
        return cached

    def has_nulls(self) -> bool:
        cached = self.__dict__.get("_has_nulls_cache")
        if cached is None:
            cached = self.__dict__["_has_nulls_cache"] = not bool(self.present().all())
        return cached

    def presence(self) -> np.ndarray:
        """1.0 where a value is present, else 0.0 (weights that count values per group); made once."""
        return self._made("_presence_cache", lambda: self.present().astype(np.float64))

    def filled(self) -> np.ndarray:
        """The values as float64 with 0 for no value (weights that sum per group); made once."""
        return self._made("_filled_cache", lambda: np.nan_to_num(self.floats(), nan=0.0))

    def floats(self) -> np.ndarray:
        """The values as float64, NaN for no value (what means and percentiles take)."""
        if self.kind is Kind.FLOAT:
            return self.values
        return self._made("_floats_cache", self._as_floats)

    def _as_floats(self) -> np.ndarray:
        floats = self.values.astype(np.float64)
        floats[self.values == INT_NULL] = np.nan
        return floats

    def mask(self, match: NumberMatch, rows: int) -> np.ndarray:
        return self._matched(self.values, match)

    def mask_at(self, match: NumberMatch, positions: np.ndarray) -> np.ndarray:
        return self._matched(self.values[positions], match)

    def share(self, match: NumberMatch) -> float:
        return 0.5

    def _matched(self, values: np.ndarray, match: NumberMatch) -> np.ndarray:
        conditions = []
        if match.minimum is not None:
            conditions.append(values >= match.minimum)
        if match.maximum is not None:
            conditions.append(values <= match.maximum)
        if match.values:
            conditions.append(np.isin(values, np.array(match.values, dtype=values.dtype)))
        # NaN fails every comparison, and INT_NULL (the smallest int64) every minimum above it.
        nulls_pass = self.kind is not Kind.FLOAT and (match.minimum is None or match.minimum <= INT_NULL)
        if nulls_pass or not conditions:
            conditions.append(self._present(values))
        mask = conditions[0]
        for condition in conditions[1:]:
            mask &= condition
        return mask

    def sort_key(self, positions: np.ndarray, descending: bool) -> list[np.ndarray]:
        values = self.values[positions]
        missing = np.isnan(values) if self.kind is Kind.FLOAT else values == INT_NULL
        return [-values if descending else values, missing]

    def values_at(self, positions: np.ndarray) -> list[Any]:
        values = self.values[positions].tolist()
        if self.kind is Kind.FLOAT:
            return [None if value != value else value for value in values]
        if self.kind is Kind.TIME:
            return [microseconds_to_datetime(value) for value in values]
        return [None if value == INT_NULL else value for value in values]

    def patched(self, positions: np.ndarray, values: list[Any]) -> NumberColumn:
        copy = self.values.copy()
        if self.kind is Kind.TIME:
            values = [datetime_to_microseconds(value) for value in values]
        elif self.kind is Kind.FLOAT:
            values = [np.nan if value is None else value for value in values]
        else:
            values = [INT_NULL if value is None else value for value in values]
        copy[positions] = values
        return NumberColumn(values=copy, kind=self.kind)


@dataclass
class FlagColumn:
    """Booleans as int8: 1 true, 0 false, -1 null (a TRISTATE field not judged yet; a BOOL is never null)."""

    values: np.ndarray
    kind: Kind

    @classmethod
    def load(cls, array: pa.ChunkedArray, *, rows: int, index: np.ndarray | None = None, kind: Kind) -> FlagColumn:
        default = 0 if kind is Kind.BOOL else -1
        loaded = pc.if_else(array.is_null(), default, pc.cast(array, pa.int8())).to_numpy(zero_copy_only=False)
        values = np.full(rows, default, dtype=np.int8)
        values[np.arange(rows) if index is None else index] = loaded
        return cls(values=values, kind=kind)

    def appended(self, other: FlagColumn) -> FlagColumn:
        return FlagColumn(values=np.concatenate([self.values, other.values]), kind=self.kind)

    def mask(self, match: BoolMatch, rows: int) -> np.ndarray:
        return self.values == _flag(match)

    def mask_at(self, match: BoolMatch, positions: np.ndarray) -> np.ndarray:
        return self.values[positions] == _flag(match)

    def share(self, match: BoolMatch) -> float:
        return 0.5

    def sort_key(self, positions: np.ndarray, descending: bool) -> list[np.ndarray]:
        values = self.values[positions]
        key = -values if descending else values
        return [key] if self.kind is Kind.BOOL else [key, values < 0]

    def values_at(self, positions: np.ndarray) -> list[bool | None]:
        return [None if value < 0 else bool(value) for value in self.values[positions].tolist()]

    def patched(self, positions: np.ndarray, values: list[bool | None]) -> FlagColumn:
        copy = self.values.copy()
        default = 0 if self.kind is Kind.BOOL else -1
        copy[positions] = [default if value is None else int(value) for value in values]
        return FlagColumn(values=copy, kind=self.kind)


def _flag(match: BoolMatch) -> int:
    """The stored int8 of what `match` asks for (-1: not judged)."""
    return -1 if match.value is None else int(match.value)


def _with_codes(codes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where `codes` is one of `wanted`."""
    if len(wanted) == 1:
        return codes == wanted[0]
    return np.isin(codes, wanted)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices start..start+length-1 of every range, back to back."""
    total = int(lengths.sum())
    if not total:
        return np.empty(0, dtype=np.int64)
    firsts = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return firsts + np.arange(total, dtype=np.int64)


def _text_predicate(uniques: pa.Array, match: TextMatch) -> pa.Array:
    result = pc.is_in(uniques, value_set=pa.array(match.exact, pa.string()))
    for pattern in match.patterns:
        result = pc.or_(result, pc.match_substring_regex(uniques, wildcard_regex(pattern)))
    return result


def _holds(values: list[str], value: str) -> bool:
    """Whether the sorted `values` hold `value`."""
    index = bisect.bisect_left(values, value)
    return index < len(values) and values[index] == value


def _code_map(uniques: pa.Array, union: pa.Array) -> np.ndarray:
    """For each code of `uniques` its code in `union` (a sorted superset), and -1 (null) kept as -1."""
    mapped = pc.index_in(uniques, value_set=union).to_numpy(zero_copy_only=False).astype(np.int32)
    return np.append(mapped, np.int32(-1))  # index -1 (a null code) picks the appended -1


def _recombined(
    combinations: tuple[np.ndarray, list[np.ndarray]],
    *,
    changed: np.ndarray,
    rows_codes: list[np.ndarray],
    remap: np.ndarray | None,
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """`combinations` (per row its combination number, each combination's codes) after the rows
    `changed` came to hold `rows_codes` (codes of the new uniques; `remap` takes the old ones there).
    New combinations are numbered after the others; None when that would break what counting assumes
    (the empty combination, if any row holds one, is number 0) or there would be too many."""
    per_row, members = combinations
    if remap is not None:
        members = [remap[member] for member in members]
    numbers = {tuple(member.tolist()): number for number, member in enumerate(members)}
    members, found = list(members), []
    for codes in rows_codes:
        key = tuple(codes.tolist())
        number = numbers.get(key)
        if number is None:
            if not key:
                return None
            number = numbers[key] = len(members)
            members.append(np.asarray(codes, dtype=np.int64))
        found.append(number)
    if len(members) > _MAX_COMBINATIONS:
        return None
    per_row = _narrow(per_row, len(members))  # a copy, wide enough for the new numbers
    per_row[changed] = found
    return per_row, members


def _narrow(codes: np.ndarray, count: int) -> np.ndarray:
    """Non-negative codes below `count` in the smallest unsigned type: a facet count gathers them from
    a million rows, and a gather moves bytes."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if count <= np.iinfo(dtype).max:
            return codes.astype(dtype)
    return codes.astype(np.intp)


def _ranked(per_code: np.ndarray, values: list[str]) -> tuple[list[tuple[str, int]], int]:
    """(value, count) most frequent first, then by value, from counts per code; and the count of ""."""
    per_code = per_code.copy()
    none = 0
    if len(values) and values[0] == "":
        none, per_code[0] = int(per_code[0]), 0
    present = np.flatnonzero(per_code)
    ranked = present[np.lexsort((present, -per_code[present]))]
    return [(values[int(code)], int(per_code[code])) for code in ranked], none


def datetime_to_microseconds(moment: datetime | None) -> int:
    if moment is None:
        return INT_NULL
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def microseconds_to_datetime(microseconds: int) -> datetime | None:
    if microseconds == INT_NULL:
        return None
    return _EPOCH + timedelta(microseconds=microseconds)
