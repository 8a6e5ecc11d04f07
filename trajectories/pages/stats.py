"""The Stats view of any list: charts by a grouping key (a run's page is this view of one run by
iteration), histograms, a table of the numbers and the same as CSV. Every mark links to the list
filtered to exactly it."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse

from trajectories import analysis, fields, reads
from trajectories import query as q

from . import charts
from .htmlcache import render_cached

SERIES_VAR = "series"
MAX_SERIES = 6
CHART_BUCKETS = 200  # a numeric key with more values is charted as this many ranges
MAX_CHART_KEYS = 400  # beyond this, charts show the first keys; the CSV has them all
MAX_TABLE_ROWS = 500
MIX_OF = "category"
MIX_SHOWN = 7
HISTOGRAMS = ("reward", "step_count", "exec_time")
_OTHER_MEANS = tuple(
    f"{f.name}_mean"
    for f in map(fields.get, fields.MEASURES)
    if f.kind in (fields.Kind.INT, fields.Kind.FLOAT) and f.name not in fields.REWARDS
)
CSV_COLUMNS = (
    "key", "count", *(f"{name}_{part}" for name in fields.REWARDS for part in ("mean", "p10", "p50", "p90")),
    "success_rate", "successes", "judged", "zero_signal_share", "groups", "zero_signal_groups", *_OTHER_MEANS,
)  # fmt: skip


@staff_member_required
def stats_page(request: HttpRequest) -> HttpResponse:
    params = request.GET.copy()
    series = params.pop(SERIES_VAR, [None])[-1] or None
    params.pop(analysis.BUCKETS_VAR, None)  # the page chooses its own ranges
    wants_csv = params.pop("format", [None])[-1] == "csv"
    try:
        query, by = analysis.parse_stats(params)
        if series is not None and series not in fields.GROUP_KEYS:
            raise q.QueryError(SERIES_VAR, f"{series!r} is not a grouping key")
    except q.QueryError as error:
        context = {"error": error, "by": params.get(analysis.BY_VAR), "keys": fields.GROUP_KEYS}
        return render(request, "trajectories/stats.html", context, status=400)
    if wants_csv:
        return _csv(reads.stats(query=query, by=by), by)
    return render_cached(
        request,
        "trajectories/stats.html",
        lambda: _context(params, query, by, series),
        page="stats",
        url=request.get_full_path(),
    )


def _context(params: QueryDict, query: q.TrajectoryQuery, by: str, series: str | None) -> dict:
    # A long run's thousands of iterations are charted (and tabled) as CHART_BUCKETS ranges; the CSV
    # and the API have every value.
    results = reads.stats(query=query, by=by, buckets=CHART_BUCKETS)
    bucketed = any("key_max" in row for row in results)
    rows_params = [(name, value) for name, values in params.lists() if name not in analysis.STATS_OWN
                   for value in values]  # fmt: skip
    shown = results[:MAX_CHART_KEYS]
    links = [_list_link(rows_params, _rows_of(by, row)) for row in shown]
    tips = [_tip(by, row) for row in shown]
    xs = [row["key"] for row in shown]
    context = {
        "by": by,
        "by_label": fields.get(by).label,
        "series": series,
        "query": query,
        "results": [{**row, "link": _list_link(rows_params, _rows_of(by, row)), "label": _label(row),
                     "shown": _shown(row)} for row in results[:MAX_TABLE_ROWS]],
        "bucketed": bucketed,
        "result_count": len(results),
        "table_cut": len(results) > MAX_TABLE_ROWS,
        "chart_cut": len(results) > MAX_CHART_KEYS,
        "chart_keys": MAX_CHART_KEYS,
        "links": links,
        "list_url": reverse("trajectories:list") + ("?" + urlencode(rows_params) if rows_params else ""),
        "groups_url": reverse("trajectories:groups") + ("?" + urlencode(rows_params) if rows_params else ""),
        "pivot_url": reverse("trajectories:pivot") + ("?" + urlencode(rows_params) if rows_params else ""),
        "csv_url": "?" + urlencode([*_pairs(params), ("format", "csv")]),
        "by_urls": [(key, fields.get(key).label, _with(params, by=key), key == by) for key in fields.GROUP_KEYS],
        "series_urls": [(key, fields.get(key).label, _with(params, series=key), key == series)
                        for key in fields.GROUP_KEYS if key != by],
        "no_series_url": _with(params),
        "filters": q.describe_filters(query),
    }  # fmt: skip
    rate = (0.0, 1.0)
    made = [
        charts.Chart("Trajectories", xs, links, tips, [_series("count", shown)], kind="bars"),
        *[_band_chart(name, xs, links, tips, shown) for name in fields.REWARDS],
        charts.Chart("Success rate", xs, links, tips, [_series("success_rate", shown)], y_range=rate),
        charts.Chart("Share of GRPO groups with no signal", xs, links, tips, [_series("zero_signal_share", shown)],
                     y_range=rate),
        charts.Chart("Mean steps and tool calls", xs, links, tips,
                     [_series("step_count_mean", shown, 0, "steps"),
                      _series("tool_call_count_mean", shown, 1, "tool calls")]),
        charts.Chart("Mean exec time (s)", xs, links, tips, [_series("exec_time_mean", shown)]),
    ]  # fmt: skip
    context["charts"] = [
        {"title": chart.title, "svg": charts.render(chart), "legend": _legend(chart)} for chart in made
    ]
    context["mix"] = _mix_chart(query, by, xs, links, tips)
    context["histograms"] = _histograms(query, rows_params)
    if series is not None:
        context["overlays"] = _overlays(query, by, series, rows_params)
    return context


# The table's numbers, formatted here: Django's floatformat took longer than the numbers themselves.
_SHOWN = {"reward_mean": "{:.4f}", "reward_p10": "{:.3f}", "reward_p50": "{:.3f}", "reward_p90": "{:.3f}",
          "step_count_mean": "{:.1f}", "tool_call_count_mean": "{:.1f}", "exec_time_mean": "{:,.1f}"}  # fmt: skip


def _shown(row: dict) -> dict[str, str]:
    shown = {name: "—" if row[name] is None else form.format(row[name]) for name, form in _SHOWN.items()}
    shown["success_rate"] = "—" if row["success_rate"] is None else f"{row['success_rate']:.0%}"
    return shown


def _rows_of(by: str, row: dict) -> list[tuple[str, str]] | None:
    if row.get("key_max") is not None and row["key"] is not None:
        return analysis.rows_of_range(by, row["key"], row["key_max"])
    return analysis.rows_of(by, row["key"])


def _label(row: dict) -> str:
    if row["key"] is None:
        return "(none)"
    if row.get("key_max") is not None and row["key_max"] != row["key"]:
        return f"{row['key']}–{row['key_max']}"
    return str(row["key"])


def _legend(chart: charts.Chart) -> list[tuple[str, str]]:
    return [(s.label, s.colour) for s in chart.series] if len(chart.series) > 1 else []


def _pairs(params: QueryDict) -> list[tuple[str, str]]:
    return [(name, value) for name, values in params.lists() for value in values]


def _with(params: QueryDict, **changes) -> str:
    pairs = [(name, value) for name, value in _pairs(params) if name not in changes and name != SERIES_VAR]
    pairs += [(name, value) for name, value in changes.items() if value is not None]
    return "?" + urlencode(pairs)


def _list_link(rows_params: list[tuple[str, str]], extra: list[tuple[str, str]] | None) -> str | None:
    both = analysis.narrowed(rows_params, extra)
    return None if both is None else _LIST + "?" + urlencode(both)


def _tip(by: str, row: dict) -> str:
    parts = [f"{fields.get(by).label} {_label(row)}", f"{row['count']:,} trajectories"]
    if row["reward_mean"] is not None:
        parts.append(f"reward {row['reward_mean']:.3f} (p10 {row['reward_p10']:.3f}, p90 {row['reward_p90']:.3f})")
    if row["success_rate"] is not None:
        parts.append(f"success {row['success_rate']:.1%}")
    return " · ".join(parts)


def _series(name: str, rows: list[dict], colour: int = 0, label: str | None = None) -> charts.Series:
    return charts.Series(label or name, [row[name] for row in rows], colour=charts.PALETTE[colour])


def _band_chart(name: str, xs, links, tips, rows) -> charts.Chart:
    series = charts.Series(
        f"{name} mean",
        [row[f"{name}_mean"] for row in rows],
        band=([row[f"{name}_p10"] for row in rows], [row[f"{name}_p90"] for row in rows]),
    )
    return charts.Chart(f"{fields.get(name).label}: mean with p10-p90", xs, links, tips, [series])


def _mix_chart(query: q.TrajectoryQuery, by: str, xs, links, tips) -> dict | None:
    outer, inner, counts = reads.mix(query=query, by=by, of=MIX_OF, buckets=CHART_BUCKETS)
    by_key = {_first(key): counts[index] for index, key in enumerate(outer)}
    totals = [sum(row[i] for row in counts) for i in range(len(inner))]
    ranked = sorted((i for i in range(len(inner)) if totals[i]), key=lambda i: -totals[i])
    top, rest = ranked[:MIX_SHOWN], ranked[MIX_SHOWN:]
    if not top:
        return None
    stacks = []
    for colour, i in enumerate(top):
        label = "(none)" if inner[i] is None else inner[i]
        stacks.append(
            charts.Series(label, [by_key.get(x, [0] * len(inner))[i] for x in xs], colour=charts.PALETTE[colour])
        )
    if rest:
        values = [sum(by_key.get(x, [0] * len(inner))[i] for i in rest) for x in xs]
        stacks.append(charts.Series("other", values, colour="#999999"))
    chart = charts.Chart(f"{fields.get(MIX_OF).label} mix", xs, links, tips, kind="stacked", stacks=stacks)
    return {"svg": charts.render(chart), "legend": [(s.label, s.colour) for s in stacks]}


def _histograms(query: q.TrajectoryQuery, rows_params: list[tuple[str, str]]) -> list[dict]:
    found = []
    for name, bins in reads.histograms(query=query, names=HISTOGRAMS).items():
        if not bins:
            continue
        xs, links, tips = [], [], []
        for item in bins:
            xs.append(_bin_label(item))
            shown = _number_text(name)
            extra = [(name, shown(item.low))] if item.exact else [(f"{name}_min", shown(item.low)),
                                                                    (f"{name}_max", shown(item.high))]  # fmt: skip
            links.append(_list_link(rows_params, extra))
            tips.append(f"{fields.get(name).label} {_bin_label(item)}: {item.count:,} trajectories")
        series = charts.Series("count", [float(item.count) for item in bins])
        chart = charts.Chart(f"{fields.get(name).label} histogram", xs, links, tips, [series], kind="bars")
        found.append({"title": f"{fields.get(name).label} histogram", "svg": charts.render(chart)})
    return found


def _number_text(name: str):
    """How a bin's bound is written in a list URL: whole numbers for integer fields (the list refuses
    "5.0" there), the exact float otherwise."""
    if fields.get(name).kind is fields.Kind.INT:
        return lambda value: str(int(value))
    return repr


def _bin_label(item) -> str:
    if item.exact:
        return f"{item.low:g}"
    return f"{item.low:.3g}–{item.high:.3g}"


def _overlays(query: q.TrajectoryQuery, by: str, series: str, rows_params) -> list[dict]:
    found = reads.curves(query=query, split=series, by=by, buckets=CHART_BUCKETS)
    curves = sorted(found, key=lambda curve: -curve["count"])[:MAX_SERIES]
    spans = {_first(p["key"]): p["key"] for curve in curves for p in curve["points"] if p["key"] is not None}
    xs = sorted(spans)[:MAX_CHART_KEYS]
    rows = [{"key": x, "key_max": spans[x][1] if isinstance(spans[x], list | tuple) else None} for x in xs]
    links = [_list_link(rows_params, _rows_of(by, row)) for row in rows]
    tips = [f"{fields.get(by).label} {_label(row)}" for row in rows]
    found = []
    for measure, title, y_range in (("reward_mean", "Reward mean", None), ("success_rate", "Success rate", (0.0, 1.0))):
        lines = []
        for colour, curve in enumerate(curves):
            values = {_first(p["key"]): p[measure] for p in curve["points"]}
            label = "(none)" if curve["key"] is None else str(curve["key"])
            lines.append(charts.Series(label, [values.get(x) for x in xs], colour=charts.PALETTE[colour]))
        chart = charts.Chart(f"{title} by {fields.get(series).label}", xs, links, tips, lines, y_range=y_range)
        found.append(
            {"title": chart.title, "svg": charts.render(chart), "legend": [(s.label, s.colour) for s in lines]}
        )
    return found


def _cell(value) -> str | float | int:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted (keys are untrusted)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _first(key):
    """A bucketed key's first value (ranges come as (first, last))."""
    return key[0] if isinstance(key, list | tuple) else key


def _csv(results: list[dict], by: str) -> HttpResponse:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([by if column == "key" else column for column in CSV_COLUMNS])
    for row in results:
        writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="stats-by-{by}.csv"'
    return response


_LIST = "/trajectories/"  # reverse("trajectories:list"), checked by the tests; reverse() per mark was slow


PIVOT_ROWS = ("agent_name", "category", "tools", "data_id", "training_id", "tags")
PIVOT_CELLS = (("reward_mean", "mean reward"), ("success_rate", "success rate"), ("count", "trajectories"))
PIVOT_ROWS_SHOWN = 60


@staff_member_required
def pivot_page(request: HttpRequest) -> HttpResponse:
    """Rows: a grouping key; columns: iteration ranges; cells: mean reward, success rate or count."""
    params = request.GET.copy()
    rows_by = params.pop("rows", ["agent_name"])[-1]
    cell = params.pop("cell", ["reward_mean"])[-1]
    buckets_text = params.pop("buckets", ["12"])[-1]
    try:
        if rows_by not in PIVOT_ROWS:
            raise q.QueryError("rows", f"{rows_by!r} is not one of {', '.join(PIVOT_ROWS)}")
        if cell not in dict(PIVOT_CELLS):
            raise q.QueryError("cell", f"{cell!r} is not one of {', '.join(dict(PIVOT_CELLS))}")
        buckets = analysis.whole_number(buckets_text, "buckets", default=12, high=50)
        query = q.parse_query(params)
    except q.QueryError as error:
        return render(request, "trajectories/pivot.html", {"error": error}, status=400)
    return render_cached(
        request,
        "trajectories/pivot.html",
        lambda: _pivot_context(params, query, rows_by, cell, buckets),
        page="pivot",
        url=request.get_full_path(),
    )


def _pivot_context(params: QueryDict, query: q.TrajectoryQuery, rows_by: str, cell: str, buckets: int) -> dict:
    found = reads.pivot(query=query, rows_by=rows_by, columns_by="iteration_id", buckets=buckets)
    base = _pairs(params)
    totals = [sum(row) for row in found["count"]]
    order = sorted(range(len(totals)), key=lambda i: (-totals[i], i))[:PIVOT_ROWS_SHOWN]
    rows = []
    for index in order:
        if not totals[index]:
            continue
        key = found["rows"][index]
        key_params = analysis.rows_of(rows_by, key)
        cells = []
        for column, (low, high) in enumerate(found["buckets"]):
            value = found[cell][index][column]
            count = found["count"][index][column]
            link = None
            if key_params is not None and count:
                link = _list_link(base, [*key_params, ("iteration_id_min", str(low)), ("iteration_id_max", str(high))])
            cells.append({"value": value, "count": count, "link": link, "tone": _tone(cell, value)})
        rows.append({"key": key, "total": totals[index], "cells": cells})
    own = {"rows": rows_by, "cell": cell, "buckets": str(buckets)}
    return {
        "rows": rows,
        "buckets": found["buckets"],
        "rows_by": rows_by,
        "rows_label": fields.get(rows_by).label,
        "cell": cell,
        "cell_label": dict(PIVOT_CELLS)[cell],
        "row_choices": [(key, fields.get(key).label, _with_pivot(base, own, rows=key), key == rows_by)
                        for key in PIVOT_ROWS],
        "cell_choices": [(key, label, _with_pivot(base, own, cell=key), key == cell) for key, label in PIVOT_CELLS],
        "cut": sum(1 for total in totals if total) > PIVOT_ROWS_SHOWN,
        "filters": q.describe_filters(query),
        "stats_url": reverse("trajectories:stats") + "?" + urlencode([*base, ("by", "iteration_id")]),
    }  # fmt: skip


def _with_pivot(base: list[tuple[str, str]], own: dict[str, str], **changes: str) -> str:
    return "?" + urlencode([*base, *{**own, **changes}.items()])


def _tone(cell: str, value) -> str:
    if value is None or cell == "count" or value != value:
        return ""
    return f"tone-{min(4, int(min(max(value, 0.0), 1.0) * 5))}"
