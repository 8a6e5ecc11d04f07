"""Printing benchmark results as Markdown tables, and the percentile they report."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def machine_reference() -> str:
    """How fast this machine is right now, for comparing runs across days: a pure-Python loop of 10M
    additions and a numpy sort of 1M floats (a quiet modern core: about 0.5 s and 70 ms)."""
    import time

    import numpy as np

    started = time.perf_counter()
    total = 0
    for number in range(10_000_000):
        total += number
    loop = time.perf_counter() - started
    values = np.random.default_rng(0).random(1_000_000)
    started = time.perf_counter()
    np.sort(values)
    sort = time.perf_counter() - started
    return f"machine reference: Python loop {loop:.2f} s, numpy sort {sort * 1000:.0f} ms"
