"""GRPO groups: the list of groups of any filtered list, and one group's samples side by side."""

from __future__ import annotations

import math
from urllib.parse import urlencode

import orjson
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse

from trajectories import alignment, analysis, reads
from trajectories import query as q

from .htmlcache import render_cached
from .steps import display_steps
from .urlstate import UrlState

FLAG_LABELS = {
    "zero_signal": "no signal (all rewards equal)",
    "all_failed": "all failed",
    "all_passed": "all passed",
    "high_spread": "high spread",
}
COLUMNS = (
    ("training_id", "Run"), ("iteration_id", "Iteration"), ("data_id", "Data id"), ("size", "Samples"),
    ("reward_mean", "Reward mean"), ("reward_std", "Std"), ("reward_min", "Min"), ("reward_max", "Max"),
    ("successes", "Successes"), ("pass_at_k", "pass@k"),
)  # fmt: skip
MAX_DETAILED = 64  # samples whose steps the group page reads (answers, errors, timelines)
TIMELINE_STEPS = 60


@staff_member_required
def group_list(request: HttpRequest) -> HttpResponse:
    try:
        query = analysis.parse_groups(request.GET)
    except q.QueryError as error:
        return render(request, "trajectories/groups.html", {"error": error}, status=400)
    return render_cached(
        request, "trajectories/groups.html", lambda: _list_context(request.GET, query), page="groups",
        url=request.get_full_path(),
    )  # fmt: skip


def _list_context(params: QueryDict, query: analysis.GroupQuery) -> dict:
    rows, count = reads.groups(query=query)
    pages = max(1, math.ceil(count / query.page_size))
    if query.page > pages:
        raise Http404(f"page {query.page} is past the end: {count} groups make {pages} pages")
    pairs = [(name, value) for name, values in params.lists() for value in values]
    state = UrlState(params)
    own = {*analysis.FLAGS, analysis.K_VAR, q.ORDERING_VAR, q.PAGE_VAR, q.PAGE_SIZE_VAR}
    rows_params = [(name, value) for name, value in pairs if name not in own]
    flags = dict(query.flags)
    primary = query.ordering[0] if query.ordering else None
    return {
        "query": query,
        "rows": [{**row, "url": _group_url(row, k=query.k)} for row in rows],
        "count": count,
        "page": query.page,
        "pages": pages,
        "previous_url": state.url(page=query.page - 1) if query.page > 1 else None,
        "next_url": state.url(page=query.page + 1) if query.page < pages else None,
        "headers": [
            {"label": label, "url": state.url(ordering=_flip(name, primary)),
             "sorted": None if not primary or primary[0] != name else ("desc" if primary[1] else "asc")}
            for name, label in COLUMNS
        ],
        "flags": [
            {"name": name, "label": label, "state": flags.get(name),
             "on_url": state.url(**{name: "true"}), "off_url": state.url(**{name: "false"}),
             "any_url": state.url(**{name: None})}
            for name, label in FLAG_LABELS.items()
        ],
        "k": query.k,
        "k_urls": [(k, state.url(k=k), k == query.k) for k in (1, 2, 4, 8, 16)],
        "filters": q.describe_filters(query.rows),
        "list_url": reverse("trajectories:list") + ("?" + urlencode(rows_params) if rows_params else ""),
        "stats_url": reverse("trajectories:stats") + "?" + urlencode([*rows_params, ("by", "iteration_id")]),
    }  # fmt: skip


def _flip(name: str, primary: tuple[str, bool] | None) -> str:
    """A first click on a numeric header sorts descending; a second flips it."""
    if primary and primary[0] == name:
        return name if primary[1] else f"-{name}"
    return name if name in analysis.GROUP_KEY else f"-{name}"


def _group_url(row: dict, *, k: int = 1) -> str:
    params = [("data_id", row["data_id"])]
    if row["training_id"] is not None:
        params.append(("training_id", row["training_id"]))
    if row["iteration_id"] is not None:
        params.append(("iteration_id", str(row["iteration_id"])))
    if k != 1:
        params.append(("k", str(k)))
    return reverse("trajectories:group") + "?" + urlencode(params)


@staff_member_required
def group_page(request: HttpRequest) -> HttpResponse:
    """One group, named by `data_id`, `training_id` and `iteration_id` (absent: no value)."""
    try:
        identity = _identity(request.GET)
    except q.QueryError as error:
        return render(request, "trajectories/group.html", {"error": error}, status=400)
    return render_cached(
        request, "trajectories/group.html", lambda: _group_context(identity), page="group",
        url=request.get_full_path(),
    )  # fmt: skip


def _identity(params: QueryDict) -> dict:
    data_id = params.get("data_id")
    if not data_id:
        raise q.QueryError("data_id", "a group is named by its data_id (and training_id, iteration_id)")
    iteration = params.get("iteration_id") or None
    if iteration is not None:
        try:
            iteration = int(iteration)
        except ValueError as error:
            raise q.QueryError("iteration_id", f"{iteration!r} is not a whole number") from error
    k = analysis.whole_number(params.get("k"), "k", default=1, high=analysis.MAX_K)
    return {"training_id": params.get("training_id") or None, "iteration_id": iteration, "data_id": data_id, "k": k}


def _group_context(identity: dict) -> dict:
    members, summary = reads.group(**identity)
    k = identity.pop("k")
    if not members:
        raise Http404("no trajectories in this group")
    records = {record["trajectory_id"]: record for record in
               reads.records(trajectory_ids=[row["trajectory_id"] for row in members[:MAX_DETAILED]])}  # fmt: skip
    samples = []
    for row in members:
        record = records.get(row["trajectory_id"])
        steps = orjson.loads(record["steps"]) if record else []
        error = alignment.first_tool_error(steps) if record else None
        samples.append(
            {
                **row,
                "tools_in_order": alignment.tool_names(steps) if record else None,
                "final_answer": (record or {}).get("final_answer"),
                "first_error": error,
                "steps": steps,
            }
        )
    rewarded = [s for s in samples if s["reward"] is not None]
    summary = {**summary, "k": k}
    context = {
        **identity,
        "samples": samples,
        "summary": summary,
        "detailed": min(len(samples), MAX_DETAILED),
        "list_url": _list_url(analysis.rows_of_group(identity)),
        "question_url": analysis.link(reverse("trajectories:stats"), analysis.rows_of("data_id", identity["data_id"]),
                                      [("by", "iteration_id"), ("series", "training_id")]),
        "runs_url": analysis.link(reverse("trajectories:groups"), analysis.rows_of("data_id", identity["data_id"])),
    }  # fmt: skip
    if len(rewarded) >= 2:
        best, worst = rewarded[-1], rewarded[0]  # members come by ascending reward
        if best["trajectory_id"] in records and worst["trajectory_id"] in records:
            context["pair"] = _pair(best, worst)
    return context


def _pair(best: dict, worst: dict) -> dict:
    """The best and the worst sample's timelines side by side, the first diverging step marked."""
    left, right = alignment.actions(best["steps"]), alignment.actions(worst["steps"])
    split = alignment.first_divergence(left, right)
    return {
        "best": best,
        "worst": worst,
        "best_steps": display_steps(best["steps"], start=0, count=TIMELINE_STEPS),
        "worst_steps": display_steps(worst["steps"], start=0, count=TIMELINE_STEPS),
        "best_split": left[split].step if split is not None and split < len(left) else None,
        "worst_split": right[split].step if split is not None and split < len(right) else None,
        "diverges_at": split,
        "compare_url": reverse("trajectories:compare") + "?" + urlencode(
            [("ids", best["trajectory_id"]), ("ids", worst["trajectory_id"])]
        ),
    }  # fmt: skip


def _list_url(params: list[tuple[str, str]] | None) -> str | None:
    return None if params is None else reverse("trajectories:list") + "?" + urlencode(params)
