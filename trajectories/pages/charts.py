"""Server-rendered SVG charts: no script, no network, every mark a link.

A chart is drawn from plain numbers. Each x position (a key value, a histogram bin) is one link
covering the chart's full height, with a tooltip of its numbers: a click anywhere above a point or
bar opens the list filtered to exactly it. Labels and links are escaped here; the result is marked
safe for templates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
PALETTE = ("#2f6fb3", "#d9822b", "#3c9b5b", "#b8434b", "#7b5bb5", "#8a6d3b", "#3aa0a8", "#c36bb0")
_SPARK_W, _SPARK_H = 120, 28
_SPARK_POINTS = 120


@dataclass
class Series:
    label: str
    values: list[float | None]  # one per x position
    band: tuple[list[float | None], list[float | None]] | None = None  # low, high per x position
    colour: str = PALETTE[0]


@dataclass
class Chart:
    title: str
    xs: list  # key values (numbers: a linear axis; anything else: evenly spaced)
    links: list[str | None]  # one per x position
    tips: list[str]  # one per x position
    series: list[Series] = field(default_factory=list)
    y_range: tuple[float, float] | None = None  # fixed (rates: 0-1); else from the data
    kind: str = "line"  # "line", "bars", "stacked"
    stacks: list[Series] = field(default_factory=list)  # for "stacked": counts per x position each


def render(chart: Chart) -> SafeString:
    positions = _x_positions(chart.xs)
    low, high = chart.y_range or _y_range(chart)
    plot_h = HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low or 1))

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
        *_axes(low, high, y, chart.xs, positions),
    ]
    step = (positions[1] - positions[0]) if len(positions) > 1 else (WIDTH - LEFT - RIGHT) / 2
    if chart.kind == "stacked":
        parts += _stacked(chart, positions, step, y, low)
    elif chart.kind == "bars":
        parts += _bars(chart, positions, step, y, low)
    else:
        parts += _lines(chart, positions, y)
    parts += _link_columns(chart, positions, step)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text and URL above is escaped


def sparkline(values: Sequence[float | None], *, y_range: tuple[float, float] | None = None) -> SafeString:
    """A tiny line of `values` (a run's reward by iteration) for tables."""
    if len(values) > _SPARK_POINTS:  # a long run: every k-th point is enough for 120 pixels
        step = len(values) / _SPARK_POINTS
        values = [values[int(i * step)] for i in range(_SPARK_POINTS)] + [values[-1]]
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return mark_safe("")
    low, high = y_range or (min(present), max(present))
    span = high - low or 1
    points = [
        f"{_SPARK_W * i / (len(values) - 1):.1f},{_SPARK_H - 2 - (_SPARK_H - 4) * (v - low) / span:.1f}"
        for i, v in enumerate(values)
        if v is not None
    ]
    return mark_safe(
        f'<svg class="sparkline" viewBox="0 0 {_SPARK_W} {_SPARK_H}" width="{_SPARK_W}" height="{_SPARK_H}">'
        f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{" ".join(points)}"/></svg>'
    )


def _numeric(xs: list) -> bool:
    return bool(xs) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)


def _x_positions(xs: list) -> list[float]:
    width = WIDTH - LEFT - RIGHT
    if not xs:
        return []
    if _numeric(xs) and len(xs) > 1 and max(xs) > min(xs):
        low, high = min(xs), max(xs)
        pad = width / (2 * len(xs))
        return [LEFT + pad + (width - 2 * pad) * (x - low) / (high - low) for x in xs]
    step = width / len(xs)
    return [LEFT + step * (i + 0.5) for i in range(len(xs))]


def _y_range(chart: Chart) -> tuple[float, float]:
    values = [v for s in chart.series for v in s.values if v is not None]
    values += [v for s in chart.series if s.band for side in s.band for v in side if v is not None]
    if chart.kind == "stacked":
        totals = [sum(s.values[i] or 0 for s in chart.stacks) for i in range(len(chart.xs))]
        values += totals
    if chart.kind in ("bars", "stacked"):
        values.append(0.0)
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if low == high:
        return low - 0.5, high + 0.5
    return _nice(low, high)


def _nice(low: float, high: float) -> tuple[float, float]:
    """The range widened to round numbers (steps of 1, 2 or 5 times a power of ten, four of them);
    as it is when that is not a finite, positive step (huge or denormal values)."""
    raw = (high - low) / 4
    if not math.isfinite(raw) or raw <= 0 or raw < 1e-300:
        return low, high
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)
    nice = (math.floor(low / step) * step, math.ceil(high / step) * step)
    return nice if all(math.isfinite(value) for value in nice) else (low, high)


def _axes(low: float, high: float, y, xs: list, positions: list[float]) -> list[str]:
    parts = [f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>']
    for tick in (low, (low + high) / 2, high):
        parts.append(
            f'<text class="tick" x="{LEFT - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{escape(_short(tick))}</text>'
        )
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y(tick):.1f}" x2="{WIDTH - RIGHT}" y2="{y(tick):.1f}"/>')
    if positions:
        every = max(1, math.ceil(len(xs) / 8))
        for index in range(0, len(xs), every):
            label = escape((_short(xs[index]) if xs[index] is not None else "(none)")[:14])
            parts.append(
                f'<text class="tick" x="{positions[index]:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                f'text-anchor="middle">{label}</text>'
            )
    return parts


def _lines(chart: Chart, positions: list[float], y) -> list[str]:
    parts = []
    for series in chart.series:
        if series.band:
            lows, highs = series.band
            upper = [(x, h) for x, h in zip(positions, highs, strict=True) if h is not None]
            lower = [(x, v) for x, v in zip(positions, lows, strict=True) if v is not None]
            if upper and lower:
                outline = [f"{x:.1f},{y(v):.1f}" for x, v in [*upper, *reversed(lower)]]
                parts.append(f'<polygon class="band" fill="{series.colour}" points="{" ".join(outline)}"/>')
        points = [f"{x:.1f},{y(v):.1f}" for x, v in zip(positions, series.values, strict=True) if v is not None]
        if len(points) > 1:
            parts.append(f'<polyline class="line" stroke="{series.colour}" points="{" ".join(points)}"/>')
        if len(points) <= 120:
            for x, v in zip(positions, series.values, strict=True):
                if v is not None:
                    parts.append(f'<circle class="dot" fill="{series.colour}" cx="{x:.1f}" cy="{y(v):.1f}" r="2.5"/>')
    return parts


def _bars(chart: Chart, positions: list[float], step: float, y, low: float) -> list[str]:
    parts = []
    width = max(1.0, step * 0.8 / max(1, len(chart.series)))
    for number, series in enumerate(chart.series):
        for x, v in zip(positions, series.values, strict=True):
            if v is None:
                continue
            left = x - step * 0.4 + number * width
            top, bottom = y(max(v, low)), y(low)
            parts.append(
                f'<rect class="bar" fill="{series.colour}" x="{left:.1f}" y="{top:.1f}" '
                f'width="{width:.1f}" height="{max(0.5, bottom - top):.1f}"/>'
            )
    return parts


def _stacked(chart: Chart, positions: list[float], step: float, y, low: float) -> list[str]:
    parts = []
    width = max(1.0, step * 0.8)
    bases = [0.0] * len(positions)
    for series in chart.stacks:
        for index, (x, v) in enumerate(zip(positions, series.values, strict=True)):
            if not v:
                continue
            top, bottom = y(bases[index] + v), y(bases[index])
            parts.append(
                f'<rect class="bar" fill="{series.colour}" x="{x - width / 2:.1f}" y="{top:.1f}" '
                f'width="{width:.1f}" height="{max(0.5, bottom - top):.1f}"/>'
            )
            bases[index] += v
    return parts


def _link_columns(chart: Chart, positions: list[float], step: float) -> list[str]:
    """One transparent link per x position, full height: the click target and the tooltip."""
    parts = []
    width = max(2.0, step)
    for x, link, tip in zip(positions, chart.links, chart.tips, strict=True):
        rect = (
            f'<rect class="hit" x="{x - width / 2:.1f}" y="{TOP}" width="{width:.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}"><title>{escape(tip)}</title></rect>'
        )
        parts.append(f'<a href="{escape(link)}">{rect}</a>' if link else rect)
    return parts


def _short(value) -> str:
    if isinstance(value, float):
        if value != value:
            return ""
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)
