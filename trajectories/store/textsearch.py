"""`q` and `regex` on a projection: the full-text index for words and phrases, RE2 scans for the rest.

Each indexed term is one LanceDB full-text query on the projection's pinned version, asked for every
match (no limit): the positions and BM25 scores it returns become a mask, so counts are exact and
pages come from the projection's own ordering, ties broken by trajectory id, never from the index's
offset paging (which skips and repeats rows of equal score). Rows written since the index was last
updated are searched by LanceDB itself (flat), so new rows are found at once. Prefixes, words too long
to be indexed and `regex` are checked with RE2 (linear time) on the stored text of the rows the other
conditions leave, at most `SCAN_LIMIT` rows per request.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lance.query import PhraseQuery
from lancedb.index import FTS

from trajectories import content
from trajectories.fields import SEARCH_TEXT
from trajectories.highlight import Snippet, highlighter, snippet
from trajectories.query import QueryError
from trajectories.textquery import REGEX_VAR, SCAN_LIMIT, TEXT_VAR, Term, TextQuery, wrapped

from .bounded import evict_oldest

INDEX_OPTIONS = {
    "with_position": True,  # phrases, and CJK words (a phrase of characters)
    "base_tokenizer": "simple",
    "lower_case": True,
    "stem": False,  # a search equals a scan for the word: no stemming, no stop words, no folding
    "remove_stop_words": False,
    "ascii_folding": False,
    "max_token_length": content.MAX_TOKEN,
}
log = logging.getLogger(__name__)

_CACHED_TERMS = 32
_WARMED_TERMS = 12  # words searched in an import's new rows before its version serves
TERMS = "text_terms"  # the projection's cache of each term's hits
CARRIED = "text_terms_before"  # those of the versions this projection's rows were appended to
_SCAN_BATCH = 2_000
SNIPPETS = "snippets"  # the projection's cache of each (question, row)'s snippet
_CACHED_SNIPPETS = 10_000  # ~1 KB each
_NONE = object()


def has_index(dataset) -> bool:
    return _index_name(dataset) is not None


def _index_name(dataset) -> str | None:
    for index in dataset.describe_indices():
        if SEARCH_TEXT in index.field_names:
            return index.name
    return None


INDEX_NAME = f"{SEARCH_TEXT}_idx"


def create_index(table) -> None:
    """Build the full-text index of `table` (a LanceDB table): minutes at a million rows."""
    table.create_index(SEARCH_TEXT, config=FTS(**INDEX_OPTIONS), replace=True, name=INDEX_NAME)


def index_state(dataset) -> dict[str, int | bool]:
    """Whether the index exists and how many rows it has not folded in yet (they are scanned)."""
    name = _index_name(dataset)
    if name is None:
        return {"exists": False, "indexed": 0, "unindexed": dataset.count_rows()}
    stats = dataset.stats.index_stats(name)
    return {"exists": True, "indexed": stats["num_indexed_rows"], "unindexed": stats["num_unindexed_rows"]}


def mask(projection, text: TextQuery, within: np.ndarray | None) -> np.ndarray:
    """Rows matching `text` among `within` (None: all rows)."""
    indexed = projection.dataset is not None and has_index(projection.dataset)
    result = np.ones(projection.rows, dtype=bool) if within is None else within.copy()
    scanned: list[tuple[Term, bool]] = []
    for term, wanted in [(term, True) for term in text.required] + [(term, False) for term in text.excluded]:
        if indexed and term.indexed:
            positions, _ = _term_hits(projection, term)
            hit = np.zeros(projection.rows, dtype=bool)
            hit[positions] = True
            result &= hit if wanted else ~hit
        else:
            scanned.append((term, wanted))
    patterns = [(term.pattern(), wanted, TEXT_VAR) for term, wanted in scanned]
    if text.regex:
        patterns.append((text.regex, True, REGEX_VAR))  # run on the text as written (no CJK separators)
    if patterns:
        result = _scanned(projection, result, patterns)
    return result


def scores(projection, text: TextQuery) -> np.ndarray:
    """Per row, the summed BM25 score of the required indexed terms (0 where none matched)."""
    total = np.zeros(projection.rows, dtype=np.float32)
    if projection.dataset is None or not has_index(projection.dataset):
        return total
    for term in text.required:
        if term.indexed:
            positions, term_scores = _term_hits(projection, term)
            total[positions] += term_scores
    return total


def _term_hits(projection, term: Term) -> tuple[np.ndarray, np.ndarray]:
    """Every row of the projection's version holding `term`: positions and scores, kept per term.
    When the version only appended rows to one whose hits were found, only its new fragments are
    searched (during an import a common word's query over every row costs seconds per version);
    the earlier rows keep the scores of the version they were first searched in."""
    terms = projection.cache.setdefault(TERMS, {})
    found = terms.get(term)
    if found is None:
        before = projection.cache.get(CARRIED, {}).pop(term, None)  # not kept twice
        fragments = None
        if before is not None:
            fragments = [f for f in projection.dataset.get_fragments() if f.fragment_id not in before[0]]
        found = _searched(projection, term, fragments)
        if before is not None:
            found = (np.concatenate([before[1], found[0]]), np.concatenate([before[2], found[1]]))
        if len(terms) >= _CACHED_TERMS:
            evict_oldest(terms)
        terms[term] = found
    return found


def warm(projection) -> None:
    """Find the new rows' hits of the words searched most recently before them (off the request
    path: reading rows the index has not folded in yet costs ~40 us a row for each word). A word
    that fails here is searched again by the request that asks for it."""
    if projection.dataset is None or not has_index(projection.dataset):
        return
    for term in list(projection.cache.get(CARRIED, {}))[-_WARMED_TERMS:]:
        try:
            _term_hits(projection, term)
        except Exception:  # a failed warm-up must not keep the new version from serving
            log.exception("search hits of %r not carried to version %s", term.text, projection.version)


def _searched(projection, term: Term, fragments: list | None) -> tuple[np.ndarray, np.ndarray]:
    """The positions and scores of `term`'s hits in `fragments` (None: all of them)."""
    if fragments is not None and not fragments:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    # The words as typed: the index splits and lowercases them as it did the stored text.
    query = PhraseQuery(term.text, SEARCH_TEXT)
    scanner = projection.dataset.scanner(
        columns=["_score"], full_text_query=query, with_row_address=True, fragments=fragments
    )
    table = scanner.to_table()
    # One run's projection (runs.py) holds some of the rows the index finds: the others are left out.
    positions, known = _positions(projection, table.column("_rowaddr").to_numpy())
    return positions, table.column("_score").to_numpy().astype(np.float32)[known]


def carried(projection) -> dict[Term, tuple[frozenset[int], np.ndarray, np.ndarray]]:
    """`projection`'s term hits, for a version that appends rows to it: per term the fragments
    searched, the positions and the scores (the newest `_CACHED_TERMS` terms)."""
    searched = frozenset(entry[0] for entry in projection.layout)
    hits = {**projection.cache.get(CARRIED, {})}
    for term, (positions, term_scores) in list(projection.cache.get(TERMS, {}).items()):
        hits.pop(term, None)
        hits[term] = (searched, positions, term_scores)
    return dict(list(hits.items())[-_CACHED_TERMS:])


def _positions(projection, addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection positions of LanceDB row addresses (fragment id << 32 | offset), and which of the
    addresses the projection holds."""
    sorted_addresses, order = projection.derived(("text", "addresses"), lambda: _address_index(projection))
    at = np.searchsorted(sorted_addresses, addresses)
    at = np.minimum(at, len(sorted_addresses) - 1)
    known = sorted_addresses[at] == addresses if len(sorted_addresses) else np.zeros(len(addresses), bool)
    return order[at[known]], known


def _address_index(projection) -> tuple[np.ndarray, np.ndarray]:
    """Every row's address in position order, sorted, with the positions in that order. Fragments
    without deletions are ranges; only those with deletions are read. One run's rows (runs.py) know
    their addresses."""
    known = getattr(projection.dataset, "addresses", None)
    if known is not None:
        order = np.argsort(known, kind="stable")
        return known[order], order
    pieces = []
    for fragment in projection.dataset.get_fragments():
        physical = fragment.metadata.physical_rows
        base = np.uint64(fragment.fragment_id) << np.uint64(32)
        if fragment.metadata.num_deletions:
            read = fragment.to_table(columns=[], with_row_address=True).column("_rowaddr")
            pieces.append(read.to_numpy().astype(np.uint64))
        else:
            pieces.append(base + np.arange(physical, dtype=np.uint64))
    addresses = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.uint64)
    if len(addresses) != projection.rows:
        raise RuntimeError(f"{len(addresses)} row addresses for {projection.rows} rows")
    order = np.argsort(addresses, kind="stable")
    return addresses[order], order


def _scanned(projection, candidates: np.ndarray, patterns: list[tuple[str, bool, str]]) -> np.ndarray:
    """`candidates` narrowed to the rows whose text matches each (pattern, wanted) pair."""
    positions = np.flatnonzero(candidates)
    if len(positions) > SCAN_LIMIT:
        parameter = patterns[-1][2]
        raise QueryError(
            parameter,
            f"would read the text of {len(positions):,} trajectories; a prefix or pattern reads at most "
            f"{SCAN_LIMIT:,}. Add a whole word to q or narrow the filters.",
        )
    result = np.zeros(projection.rows, dtype=bool)
    for start in range(0, len(positions), _SCAN_BATCH):
        chunk = positions[start : start + _SCAN_BATCH]
        texts = _texts(projection, chunk)
        written = pc.replace_substring(texts, content.SEPARATOR, "") if text_regex(patterns) else None
        keep = np.ones(len(chunk), dtype=bool)
        for pattern, wanted, parameter in patterns:
            searched = written if parameter == REGEX_VAR else texts
            if parameter == REGEX_VAR:
                pattern = wrapped(pattern)
            found = pc.match_substring_regex(searched, pattern).to_numpy(zero_copy_only=False)
            keep &= found if wanted else ~found
        result[chunk[keep]] = True
    return result


def text_regex(patterns: list[tuple[str, bool, str]]) -> bool:
    return any(parameter == REGEX_VAR for _, _, parameter in patterns)


def _texts(projection, positions: np.ndarray) -> pa.Array:
    if projection.dataset is None:  # rows held in memory (see Projection.of_rows)
        return pc.fill_null(projection.cache["texts"].take(pa.array(positions, pa.int64())), "")
    if SEARCH_TEXT not in projection.dataset.schema.names:
        return pa.array([""] * len(positions), pa.large_string())
    column = projection.dataset.take(pa.array(positions, pa.int64()), columns=[SEARCH_TEXT]).column(SEARCH_TEXT)
    return pc.fill_null(column.combine_chunks(), "")


# --- snippets ---------------------------------------------------------------------------------


def snippets(projection, positions: np.ndarray, text: TextQuery) -> list[Snippet | None]:
    """For each row, the text around its first match (read for the page's rows only). Kept per
    (question, row) and carried to versions that append rows: reading a page's stored text is most of
    a search's time on real dumps (tens of KB a row, from disk while an import writes), and people
    page back and ask again while imports land."""
    if len(positions) == 0:
        return []
    kept = projection.cache.setdefault(SNIPPETS, {})
    keys = [(text, position) for position in np.asarray(positions).tolist()]
    found = [kept.get(key, _NONE) for key in keys]
    missing = [index for index, value in enumerate(found) if value is _NONE]
    if missing:
        read = _texts(projection, np.array([keys[index][1] for index in missing], dtype=np.int64)).to_pylist()
        for index, stored in zip(missing, read, strict=True):
            shown = content.shown(stored) if stored else ""
            found[index] = kept[keys[index]] = snippet(shown, highlighter(text, shown))
        while len(kept) > _CACHED_SNIPPETS:
            evict_oldest(kept)
    return found


def carried_snippets(projection) -> dict[tuple[TextQuery, int], Snippet | None]:
    """`projection`'s snippets, for a version that appends rows to it (the rows keep their positions)."""
    return dict(list(projection.cache.get(SNIPPETS, {}).items()))
