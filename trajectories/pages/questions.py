"""Which questions got worse: data ids whose success rate or mean reward moved most between two
sides (iteration ranges, runs, agents), both directions, sortable; each a link to its history."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse

from trajectories import analysis, reads
from trajectories import query as q

from .htmlcache import render_cached
from .urlstate import UrlState

COLUMNS = (("data_id", "Data id"), ("a_count", "Rows a"), ("b_count", "Rows b"), ("success_delta", "Success change"),
           ("reward_delta", "Reward change"))  # fmt: skip


@staff_member_required
def question_changes(request: HttpRequest) -> HttpResponse:
    pairs = [(name, value) for name, values in request.GET.lists() for value in values if value != ""]
    if not any(name.startswith(("a.", "b.")) for name, _ in pairs):
        return render(request, "trajectories/questions.html", {"form_only": True, "pairs": pairs})
    try:
        query = analysis.parse_changes(dict(_grouped(pairs)))
    except q.QueryError as error:
        return render(request, "trajectories/questions.html", {"error": error, "pairs": pairs}, status=400)
    return render_cached(
        request, "trajectories/questions.html", lambda: _context(pairs, query), page="questions",
        url=request.get_full_path(),
    )  # fmt: skip


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in pairs:
        found.setdefault(name, []).append(value)
    return found


def _context(pairs: list[tuple[str, str]], query: analysis.ChangeQuery) -> dict:
    rows, count = reads.question_changes(query=query)
    pages = max(1, math.ceil(count / query.page_size))
    if query.page > pages:
        raise Http404(f"page {query.page} is past the end: {count} questions make {pages} pages")
    shared = [(n, v) for n, v in pairs if not n.startswith(("a.", "b.")) and n not in analysis.CHANGE_OWN]
    side = {s: [(n[2:], v) for n, v in pairs if n.startswith(f"{s}.")] for s in ("a", "b")}
    primary, descending = query.ordering
    state = UrlState(QueryDict(urlencode(pairs)))
    for row in rows:
        question = analysis.rows_of("data_id", row["data_id"])
        row["history_url"] = analysis.link(
            reverse("trajectories:stats"), shared, question, [("by", "iteration_id"), ("series", "training_id")]
        )
        for s in ("a", "b"):
            row[f"{s}_url"] = analysis.link(reverse("trajectories:list"), shared, side[s], question)
    return {
        "rows": rows,
        "count": count,
        "page": query.page,
        "pages": pages,
        "pairs": pairs,
        "side_a": " & ".join(f"{n}={v}" for n, v in side["a"]),
        "side_b": " & ".join(f"{n}={v}" for n, v in side["b"]),
        "shared": " & ".join(f"{n}={v}" for n, v in shared),
        "headers": [{"label": label, "url": state.url(ordering=_flip(name, primary, descending)),
                     "sorted": ("desc" if descending else "asc") if name == primary else None}
                    for name, label in COLUMNS],
        "previous_url": state.url(page=query.page - 1) if query.page > 1 else None,
        "next_url": state.url(page=query.page + 1) if query.page < pages else None,
    }  # fmt: skip


def _flip(name: str, primary: str, descending: bool) -> str:
    if name == primary:
        return name if descending else f"-{name}"
    return name if name in ("data_id", "success_delta", "reward_delta") else f"-{name}"
