"""Two to four trajectories side by side: fields as a diff, steps aligned by their tool calls."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from trajectories import comparing, fields

from .htmlcache import render_cached
from .steps import display_steps

MAX_STEPS_SHOWN = 400


@staff_member_required
def compare_page(request: HttpRequest) -> HttpResponse:
    try:
        found = comparing.compare(trajectory_ids=request.GET.getlist("ids"))
    except comparing.CompareError as error:
        return render(request, "trajectories/compare.html", {"error": str(error)}, status=400)
    return render_cached(
        request, "trajectories/compare.html", lambda: _context(found), page="compare", url=request.get_full_path()
    )


def _context(found: comparing.Comparison) -> dict:
    shown = [display_steps(steps, start=0, count=MAX_STEPS_SHOWN) for steps in found.steps]
    by_index = [{step.index: step for step in steps} for steps in shown]
    rows = [
        [
            {"step": by_index[column].get(index) if index is not None else None, "record": found.records[column],
             "split": found.diverging_steps[column], "side": column}
            for column, index in enumerate(row)
        ]
        for row in found.rows
        if any(index is None or index < MAX_STEPS_SHOWN for index in row)
    ]  # fmt: skip
    return {
        "records": found.records,
        "diff": [(fields.get(name).label, values, differs) for name, values, differs in found.diff],
        "rows": rows,
        "width": len(found.records),
        "diverges_at": found.diverges_at,
        "cut": any(len(steps) > MAX_STEPS_SHOWN for steps in found.steps),
    }
