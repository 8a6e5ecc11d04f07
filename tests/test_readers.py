"""Reading sources: line numbers, wrappers, compression, encodings and broken files."""

from __future__ import annotations

import gzip
import io
import sys

from trajectories.importing import adapters, readers
from trajectories.importing.discovery import records_of


def _read(*paths):
    """What the pipeline takes: each readable document's records, as discovery finds them."""
    items = []
    for item in readers.read_sources(readers.expand_paths([str(p) for p in paths]), readers.ByteCounter()):
        if isinstance(item, readers.RawRecord):
            items.extend(records_of(item, recognise=lambda value: adapters.recognise(value) is not None)[1])
        else:
            items.append(item)
    return items


def _summary(items):
    return [
        (
            str(item.location),
            item.value if isinstance(item, readers.RawRecord) else f"{item.error.field}: {item.error.reason}",
        )
        for item in items
    ]


def test_jsonl_lines_keep_their_numbers_and_skip_blanks(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n": 1}\n\n   \n{"n": 2}\n')
    assert _summary(_read(path)) == [(f"{path}:1", {"n": 1}), (f"{path}:4", {"n": 2})]


def test_wrapper_line_yields_each_trajectory_with_its_index(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"trajectories": [{"n": 1}, {"n": 2}]}\n{"trajectories": "x"}\n')
    assert _summary(_read(path)) == [
        (f"{path}:1:trajectories[0]", {"n": 1}),
        (f"{path}:1:trajectories[1]", {"n": 2}),
        (f"{path}:2", {"trajectories": "x"}),  # nothing found in it: rejected whole, saying what it held
    ]


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"n": 1}\n')
    assert _summary(_read(path)) == [(f"{path}:1", {"n": 1})]


def test_non_utf8_bytes_are_reported_with_their_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": "\xff"}\n{"n": 3}\n')
    items = _summary(_read(path))
    assert items[0] == (f"{path}:1", {"n": 1})
    assert items[1][0] == f"{path}:2" and items[1][1].startswith("json: not valid UTF-8 (byte 7")
    assert items[2] == (f"{path}:3", {"n": 3})


def test_truncated_last_line_is_named_as_such(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2, "steps": [{"ro')
    items = _summary(_read(path))
    assert items[0] == (f"{path}:1", {"n": 1})
    assert items[1][0] == f"{path}:2"
    assert items[1][1].startswith("json: truncated last line (file ends mid-record)")


def test_last_line_without_newline_is_fine_when_complete(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}')
    assert len(_read(path)) == 2


def test_empty_and_blank_files_are_errors(tmp_path):
    for name, content in (("e.jsonl", b""), ("b.jsonl", b"\n \n"), ("e.json", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        assert _summary(_read(path)) == [(f"{path}:0", "file: empty file, no records")]


def test_gzip_is_recognised_by_content(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"n": 1}\n{"n": 2}\n'))
    assert [value for _, value in _summary(_read(path))] == [{"n": 1}, {"n": 2}]


def test_json_document_array_and_object(tmp_path):
    array = tmp_path / "a.json"
    array.write_bytes(b'[\n {"n": 1},\n {"n": 2}\n]')
    single = tmp_path / "b.traj"
    single.write_bytes(b'{\n "history": []\n}')
    assert _summary(_read(array, single)) == [
        (f"{array}:1[0]", {"n": 1}),
        (f"{array}:1[1]", {"n": 2}),
        (f"{single}:1", {"history": []}),
    ]


def test_json_file_holding_json_lines_is_read_line_by_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n')
    assert _summary(_read(path)) == [(f"{path}:1", {"n": 1}), (f"{path}:2", {"n": 2})]


def test_bare_message_list_is_one_record(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]')
    items = _read(path)
    assert len(items) == 1 and isinstance(items[0].value, list)


def test_stdin_jsonl_and_document(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"n": 1}\n{"n": 2}\n')))
    assert _summary(_read("-")) == [("<stdin>:1", {"n": 1}), ("<stdin>:2", {"n": 2})]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'[\n{"n": 1}\n]\n')))
    assert _summary(_read("-")) == [("<stdin>:1[0]", {"n": 1})]


def test_directories_are_walked_in_order_for_known_suffixes(tmp_path):
    for name in ("b.jsonl", "a.json", "c.traj", "d.jsonl.gz", "skip.txt", "sub/e.ndjson"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    names = [path.removeprefix(str(tmp_path) + "/") for path in readers.expand_paths([str(tmp_path)])]
    assert names == ["a.json", "b.jsonl", "c.traj", "d.jsonl.gz", "sub/e.ndjson"]


def test_byte_counter_reaches_the_file_sizes(tmp_path):
    first = tmp_path / "a.jsonl"
    first.write_bytes(b'{"n": 1}\n' * 100)
    second = tmp_path / "b.jsonl.gz"
    second.write_bytes(gzip.compress(b'{"n": 1}\n' * 100))
    counter = readers.ByteCounter()
    list(readers.read_sources([str(first), str(second)], counter))
    assert counter.read == first.stat().st_size + second.stat().st_size
    assert readers.total_bytes([str(first), str(second)]) == counter.read
