"""Content search (`q`, `regex`): every answer equals a brute-force scan of the steps' text."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from trajectories import content
from trajectories.importing.batches import BatchBuilder
from trajectories.importing.validation import Defaults, validate
from trajectories.query import QueryError, parse_query
from trajectories.textquery import SCAN_LIMIT

WORDS = ["permission", "denied", "timeout", "retry", "file", "error", "value", "compute", "answer", "Traceback"]
CJK = ["权限不足", "模型回答错误", "超时", "错误"]


def _text(rng: random.Random) -> str:
    pieces = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
    if rng.random() < 0.3:
        pieces.insert(rng.randint(0, len(pieces)), rng.choice(CJK))  # inside an English line, no spaces around
    if rng.random() < 0.2:
        pieces.append("Permission denied:")
    joiner = rng.choice([" ", "\n", ", ", "_"])
    return joiner.join(pieces)


def _records(record, count: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    made = []
    for index in range(count):
        steps = [
            {"role": "user", "content": _text(rng)},
            {
                "role": "assistant",
                "content": _text(rng),
                "tool_calls": [{"id": "c1", "name": rng.choice(["bash", "python"]), "arguments": {"cmd": _text(rng)}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": _text(rng)},
            {"role": "assistant", "content": rng.choice(["done", "答案是 42", _text(rng)])},
        ]
        made.append(
            record(
                trajectory_id=f"{prefix}-{index:03d}",
                agent_name=rng.choice(["alpha", "beta"]),
                reward=rng.choice([0.0, 0.5, 1.0]),
                steps=steps,
            )
        )
    return made


def _visible(row: dict) -> str:
    return "\n".join(content.step_text(step) for step in row["steps"])


def _word(text: str, word: str) -> bool:
    """The brute force: a case-insensitive scan for the word (CJK: the characters anywhere)."""
    if not word.isascii():
        return word in text
    return re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, re.IGNORECASE) is not None


def _phrase(text: str, words: list[str]) -> bool:
    pattern = r"[\W_]+".join(re.escape(word) for word in words)
    return re.search(rf"(?<![^\W_]){pattern}(?![^\W_])", text, re.IGNORECASE) is not None


def _prefix(text: str, start: str) -> bool:
    return re.search(rf"(?<![^\W_]){re.escape(start)}", text, re.IGNORECASE) is not None


@pytest.fixture
def searched(db, store, record, write_jsonl, run_import):
    """Two imports: the first indexed, the second's rows left unindexed (LanceDB scans them)."""
    first = _records(record, 120, seed=1, prefix="a")
    second = _records(record, 40, seed=2, prefix="b")
    assert run_import(write_jsonl(first, "first.jsonl"))[2] is None
    _append(store, second, imported_at_us=1)
    state = store.text_index_state()
    assert state["exists"] and state["unindexed"] == 40
    return store, {item["trajectory_id"]: item for item in first + second}


def _append(store, items: list[dict], *, imported_at_us: int) -> None:
    """The rows appended in a fragment of their own, not folded into the full-text index."""
    batch = BatchBuilder(on_duplicate="skip")
    for item in items:
        defaults = Defaults(imported_at_us=imported_at_us)
        batch.add(validate(item, source="test", source_format="canonical", defaults=defaults), location=None)
    store.upsert(trajectories=batch.build().trajectories)


def _ids(store, **params) -> list[str]:
    page = store.page(query=parse_query({**params, "page_size": "1000"}))
    assert page.count == len(page.rows)
    return [row["trajectory_id"] for row in page.rows]


CASES = [
    ({"q": "timeout"}, lambda t: _word(t, "timeout")),
    ({"q": "Traceback retry"}, lambda t: _word(t, "traceback") and _word(t, "retry")),
    ({"q": '"permission denied"'}, lambda t: _phrase(t, ["permission", "denied"])),
    ({"q": "permission -denied"}, lambda t: _word(t, "permission") and not _word(t, "denied")),
    ({"q": "错误"}, lambda t: "错误" in t),
    ({"q": "权限不足 file"}, lambda t: "权限不足" in t and _word(t, "file")),
    ({"q": "超时 -timeout"}, lambda t: "超时" in t and not _word(t, "timeout")),
    ({"q": "comp*"}, lambda t: _prefix(t, "comp")),
    ({"q": "答案"}, lambda t: "答案" in t),
    ({"regex": "denied:\\s*$"}, lambda t: re.search(r"denied:\s*$", t, re.M) is not None),
    ({"regex": "模型回答"}, lambda t: "模型回答" in t),
    ({"q": "value", "regex": "(?i)retry.file"}, lambda t: _word(t, "value") and re.search("(?i)retry.file", t)),
]


@pytest.mark.parametrize(("params", "matches"), CASES, ids=[str(case[0]) for case in CASES])
def test_search_equals_a_brute_force_scan(searched, params, matches):
    store, records = searched
    expected = sorted(tid for tid, item in records.items() if matches(_visible(item)))
    assert expected, "the generated data must hold matches for every case"
    assert sorted(_ids(store, **params, ordering="trajectory_id")) == expected


@pytest.mark.parametrize(("params", "matches"), CASES[:6], ids=[str(case[0]) for case in CASES[:6]])
def test_search_combines_with_filters_and_field_order(searched, params, matches):
    store, records = searched
    expected = [
        tid
        for tid, item in sorted(records.items(), key=lambda pair: (-pair[1]["reward"], pair[0]))
        if item["agent_name"] == "beta" and matches(_visible(item))
    ]
    assert _ids(store, **params, agent_name="beta", ordering="-reward") == expected


def test_relevance_pages_have_no_repeats_or_gaps(searched):
    store, _ = searched
    whole = _ids(store, q="error value")
    paged = []
    for page in range(1, len(whole) // 7 + 2):
        query = parse_query({"q": "error value", "page": str(page), "page_size": "7"})
        paged += [row["trajectory_id"] for row in store.page(query=query).rows]
    assert paged == whole and len(set(whole)) == len(whole)
    scores = [row["score"] for row in store.page(query=parse_query({"q": "error value", "page_size": "1000"})).rows]
    assert scores == sorted(scores, reverse=True)
    # Equal scores go by trajectory id.
    rows = store.page(query=parse_query({"q": "error value", "page_size": "1000"})).rows
    for before, after in itertools.pairwise(rows):
        if before["score"] == after["score"]:
            assert before["trajectory_id"] < after["trajectory_id"]


def test_snippets_mark_the_match(searched):
    store, _ = searched
    rows = store.page(query=parse_query({"q": "权限不足"})).rows
    assert rows
    for row in rows:
        marked = [text for text, match in row["snippet"].parts if match]
        assert marked and all(text == "权限不足" for text in marked)
        assert content.SEPARATOR not in "".join(text for text, _ in row["snippet"].parts)


@pytest.mark.parametrize(
    "hostile",
    ["' OR 1=1 --", '"', '"unclosed phrase', "\\", "*", "-", "a:b AND c", "%_", "\u202e", "🙂" * 50, "x" * 999],
)
def test_hostile_words_are_harmless(searched, hostile):
    store, _ = searched
    try:
        _ids(store, q=hostile)
    except QueryError as error:
        assert error.parameter == "q"


def test_a_pathological_regex_cannot_hang_a_request(searched):
    store, _ = searched
    started = time.perf_counter()
    _ids(store, regex="(a+)+$", q="file")
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("bad", ["(unclosed", "(?<=x)y", "a{99999}"])
def test_a_bad_regex_is_a_clear_error(searched, bad):
    with pytest.raises(QueryError) as raised:
        parse_query({"regex": bad})
    assert raised.value.parameter == "regex"


def test_relevance_needs_words():
    with pytest.raises(QueryError):
        parse_query({"ordering": "relevance"})
    assert parse_query({"q": "x"}).by_relevance
    assert not parse_query({"q": "x", "ordering": "-reward"}).by_relevance


def test_scanning_is_bounded(searched, monkeypatch):
    store, _ = searched
    from trajectories.store import textsearch

    monkeypatch.setattr(textsearch, "SCAN_LIMIT", 10)
    with pytest.raises(QueryError, match="at most 10"):
        _ids(store, regex="file")
    assert SCAN_LIMIT >= 10_000


def test_new_rows_are_searchable_at_once_and_the_index_catches_up(searched):
    store, records = searched
    expected = sorted(tid for tid, item in records.items() if "超时" in _visible(item))
    assert sorted(_ids(store, q="超时", ordering="trajectory_id")) == expected
    store.refresh_indexes()
    assert store.text_index_state()["unindexed"] == 0
    assert sorted(_ids(store, q="超时", ordering="trajectory_id")) == expected


def test_rows_appended_later_are_the_only_ones_searched_again(searched, record, monkeypatch):
    """A word searched before an import lands is searched again in the new fragments alone: the
    earlier rows' hits are kept (at a million rows a common word's query costs seconds)."""
    from trajectories.store import textsearch

    store, records = searched
    words = ["timeout", "错误", '"permission denied"']
    for word in words:
        _ids(store, q=word)
    fragments = {fragment.fragment_id for fragment in store.engine.current().dataset.get_fragments()}
    third = _records(record, 30, seed=3, prefix="c")
    _append(store, third, imported_at_us=2)
    records = {**records, **{item["trajectory_id"]: item for item in third}}
    searched_in = []
    search = textsearch._searched
    monkeypatch.setattr(
        textsearch, "_searched", lambda p, term, parts: searched_in.append(parts) or search(p, term, parts)
    )
    expected = {
        "timeout": lambda t: _word(t, "timeout"),
        "错误": lambda t: "错误" in t,
        '"permission denied"': lambda t: _phrase(t, ["permission", "denied"]),
    }
    for word in words:
        found = _ids(store, q=word)
        assert sorted(found) == sorted(tid for tid, item in records.items() if expected[word](_visible(item))), word
        assert any(tid.startswith("c-") for tid in found) and len(found) == len(set(found))
    assert store.engine.appends >= 1
    assert len(searched_in) == 3  # one phrase query per word, each over the new fragment alone
    assert all(parts and not {fragment.fragment_id for fragment in parts} & fragments for parts in searched_in)
    # A word never searched before is searched everywhere.
    retried = sorted(tid for tid, item in records.items() if _word(_visible(item), "retry"))
    assert sorted(_ids(store, q="retry")) == retried
    assert searched_in[-1] is None
    # Rows the index folded in as a segment of their own (as an import does as it goes) are found in
    # their fragments alone too.
    fourth = _records(record, 20, seed=5, prefix="e")
    _append(store, fourth, imported_at_us=3)
    store.refresh_indexes()
    assert store.text_index_state()["unindexed"] == 0
    records = {**records, **{item["trajectory_id"]: item for item in fourth}}
    searched_in.clear()
    for word in words:
        found = _ids(store, q=word)
        assert sorted(found) == sorted(tid for tid, item in records.items() if expected[word](_visible(item))), word
    assert len(searched_in) == 3 and all(parts for parts in searched_in)


def test_words_in_use_are_searched_in_new_rows_before_those_are_served(searched, record, monkeypatch):
    from trajectories.store import textsearch

    store, _ = searched
    store.engine.background_rows = 0  # built in the background, as a large projection is
    assert _ids(store, q="timeout") and _ids(store, q="file")
    before = store.engine.current()
    rows, fragments = before.rows, {fragment.fragment_id for fragment in before.dataset.get_fragments()}
    searched_in = []
    search = textsearch._searched

    def failing_once(projection, term, parts):
        searched_in.append((term.text, parts))
        if [text for text, _ in searched_in] == ["timeout", "file"]:
            raise OSError("a read failed")  # the warm-up goes on; the request searches it again
        return search(projection, term, parts)

    monkeypatch.setattr(textsearch, "_searched", failing_once)
    _append(store, _records(record, 10, seed=4, prefix="d"), imported_at_us=3)
    deadline = time.monotonic() + 30
    while store.engine.current().rows == rows and time.monotonic() < deadline:
        time.sleep(0.02)
    served = store.engine.current()
    assert served.rows == rows + 10
    assert [term.text for term in served.cache[textsearch.TERMS]] == ["timeout"]
    assert [text for text, _ in searched_in] == ["timeout", "file"]
    assert all(parts and not {fragment.fragment_id for fragment in parts} & fragments for _, parts in searched_in)
    assert _ids(store, q="file") and searched_in[-1] == ("file", None)


def test_searchable_text_keeps_words_apart():
    assert content.tokens("line\\nPermission denied") == ["line", "npermission", "denied"]
    assert content.tokens("line\nPermission denied") == ["line", "permission", "denied"]
    assert content.tokens("模型回答错误ok") == ["模", "型", "回", "答", "错", "误", "ok"]
    text = content.searchable([{"role": "tool", "content": "权限不足: EACCES"}], "答案")
    assert content.shown(text) == "权限不足: EACCES\n答案"


def test_the_api_and_the_page_answer_q(searched, staff_client):
    _store, records = searched
    body = staff_client.get("/api/trajectories/", {"q": '"permission denied"', "page_size": 5}).json()
    assert body["count"] == len([1 for item in records.values() if _phrase(_visible(item), ["permission", "denied"])])
    first = body["results"][0]
    assert first["score"] > 0 and any(part["match"] for part in first["snippet"]["parts"])
    page = staff_client.get("/trajectories/", {"q": "权限不足"}).content.decode()
    assert "<mark>权限不足</mark>" in page and 'value="权限不足"' in page
    assert staff_client.get("/trajectories/", {"regex": "(unclosed"}).status_code == 400
    assert staff_client.get("/api/trajectories/", {"ordering": "relevance"}).status_code == 400


def test_the_trajectory_page_lists_the_matching_steps(searched, staff_client):
    _store, records = searched
    tid, item = next((tid, item) for tid, item in sorted(records.items()) if "超时" in _visible(item))
    page = staff_client.get(f"/trajectories/{tid}/", {"q": "超时"}).content.decode()
    expected = [index for index, step in enumerate(item["steps"]) if "超时" in content.step_text(step)]
    assert f'data-total="{len(expected)}"' in page
    for index in expected:
        assert f'data-step="{index}"' in page


def test_script_in_a_trajectory_stays_text(db, store, record, write_jsonl, run_import, staff_client):
    payload = "<script>alert(1)</script> needle"
    run_import(write_jsonl([record(steps=[{"role": "tool", "content": payload}])]))
    page = staff_client.get("/trajectories/", {"q": "needle"}).content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; <mark>needle</mark>" in page


@pytest.mark.parametrize("odd", ["(?P<trajsite_match>x)", "错\\C", "(?P<m>file)", "(file)|(value)"])
def test_odd_patterns_are_refused_or_answered_never_a_crash(searched, odd):
    store, _ = searched
    try:
        rows = store.page(query=parse_query({"regex": odd, "page_size": "5"})).rows
    except QueryError as error:
        assert error.parameter == "regex"
    else:
        assert all(row["snippet"] is None or row["snippet"].parts for row in rows)


def test_words_with_combining_marks_and_long_words(store, record, write_jsonl, run_import, db):
    long_word = "a" * 100
    made = [
        record(trajectory_id="hi", steps=[{"role": "user", "content": "नमस्ते दुनिया"}]),
        record(trajectory_id="tr", steps=[{"role": "user", "content": "İstanbul trip"}]),
        record(trajectory_id="ru", steps=[{"role": "user", "content": "я" * 60 + " end"}]),
        record(trajectory_id="lg", steps=[{"role": "user", "content": long_word + " end"}]),
        record(trajectory_id="no", steps=[{"role": "user", "content": "nothing here end"}]),
    ]
    assert run_import(write_jsonl(made))[2] is None
    assert _ids(store, q="नमस्ते") == ["hi"]
    assert _ids(store, q="İstanbul") == ["tr"]
    assert _ids(store, q="я" * 60) == ["ru"]
    assert _ids(store, q=long_word) == ["lg"]
    assert sorted(_ids(store, q=f"end -{long_word}")) == ["no", "ru"]


def test_a_scan_past_the_limit_is_a_400_everywhere(searched, staff_client, monkeypatch):
    from trajectories.store import textsearch

    monkeypatch.setattr(textsearch, "SCAN_LIMIT", 5)
    for url in ("/trajectories/", "/api/trajectories/", "/trajectories/export/", "/trajectories/clusters/"):
        response = staff_client.get(url, {"q": "fil*"})
        assert response.status_code == 400, url
        assert not getattr(response, "streaming", False)


def test_snippets_are_read_once_per_question_and_row_and_equal_a_fresh_reads(searched, record, monkeypatch):
    """Reading a page's stored text is most of a search on real dumps: a page asked again reads none,
    a version that appends rows reads only the new rows' text, and every snippet equals what a store
    that never kept one gives."""
    from trajectories.store import TrajectoryStore, textsearch

    store, _ = searched
    read: list[int] = []
    texts = textsearch._texts
    monkeypatch.setattr(textsearch, "_texts", lambda p, positions: read.append(len(positions)) or texts(p, positions))

    def snippets(server, q: str) -> dict[str, object]:
        rows = server.page(query=parse_query({"q": q, "page_size": "1000"})).rows
        return {row["trajectory_id"]: row["snippet"] for row in rows}

    first = snippets(store, "timeout")
    assert first and sum(read) == len(first)
    assert snippets(store, "timeout") == first and sum(read) == len(first)
    _append(store, _records(record, 30, seed=3, prefix="c"), imported_at_us=2)
    after = snippets(store, "timeout")
    new = [key for key in after if key.startswith("c-")]
    assert store.engine.appends >= 1 and new
    assert sum(read) == len(first) + len(new)  # the earlier rows' snippets were carried
    assert after == snippets(TrajectoryStore(uri=store.uri), "timeout")
    assert {key: after[key] for key in first} == first
