"""Import progress: a redrawn bar on a terminal, occasional plain lines otherwise."""

from __future__ import annotations

from io import StringIO

from trajectories.importing.pipeline import ImportProgress
from trajectories.importing.progress import ProgressDisplay, describe, human_bytes


def _progress(**values) -> ImportProgress:
    return ImportProgress(
        **{
            "records": 5000,
            "imported": 4990,
            "duplicates": 7,
            "rejected": 3,
            "bytes_read": 50 * 1024**2,
            "bytes_total": 200 * 1024**2,
            "seconds": 0.5,
            **values,
        }
    )


def test_describe_names_counts_bytes_and_rate():
    assert describe(_progress()) == (
        "5,000 records, 4,990 imported, 7 duplicates, 3 rejected; 50.0 MB of 200.0 MB; 10,000 records/s"
    )
    assert human_bytes(512) == "512 B" and human_bytes(3 * 1024**3) == "3.0 GB"


def test_terminal_gets_a_bar_redrawn_in_place():
    stream = StringIO()
    display = ProgressDisplay(stream, interactive=True)
    display(_progress())
    display(_progress(bytes_read=200 * 1024**2))
    display.close()
    text = stream.getvalue()
    assert text.count("\r[") == 2 and " 25% " in text and "100%" in text and text.endswith("\n")


def test_pipes_and_logs_get_plain_lines_not_a_bar():
    stream = StringIO()
    display = ProgressDisplay(stream, interactive=False)
    display(_progress())
    display(_progress())  # within the interval: no second line
    assert stream.getvalue() == f"importing: {describe(_progress())}\n"
