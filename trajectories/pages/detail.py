"""One trajectory: header, annotation, the steps timeline, previous/next in the list, raw JSON."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from trajectories import analysis, annotating, content, fields, reads, services
from trajectories import query as q
from trajectories.exporting import to_canonical
from trajectories.highlight import highlighter
from trajectories.store import AnnotationChange, ScopeTooLarge
from trajectories.textquery import TextQuery

from .htmlcache import render_cached
from .steps import STEPS_PER_PAGE, display_steps, raw_step_text

STEPS_FROM_VAR = "steps_from"
CATEGORY_SUGGESTIONS = 50


@staff_member_required
def trajectory_detail(request: HttpRequest, trajectory_id: str) -> HttpResponse:
    return render_cached(
        request,
        "trajectories/detail.html",
        lambda: _context(request, trajectory_id),
        page="detail",
        url=request.get_full_path(),
    )


def _context(request: HttpRequest, trajectory_id: str) -> dict:
    record = _record(trajectory_id)
    steps = orjson.loads(record.pop("steps"))
    start = _steps_from(request, len(steps))
    list_params = _list_params(request)
    list_query = _list_query(list_params)
    around = reads.neighbours(query=list_query, trajectory_id=trajectory_id)
    return {
        "search": _search_hits(steps, list_query.text, start=start, list_params=list_params.urlencode()),
        "record": record,
        "was": record,
        "metadata": orjson.dumps(orjson.loads(record["metadata"]), option=orjson.OPT_INDENT_2).decode()
        if record.get("metadata")
        else "",
        "steps": display_steps(steps, start=start),
        "step_total": len(steps),
        "steps_start": start,
        "steps_next": start + STEPS_PER_PAGE if start + STEPS_PER_PAGE < len(steps) else None,
        "list_params": list_params.urlencode(),
        "previous_id": around.previous_id,
        "next_id": around.next_id,
        "position": None if around.index is None else around.index + 1,
        "list_count": around.count,
        "categories": [value for value, _ in reads.facets()["category"] if value is not None][:CATEGORY_SUGGESTIONS],
        "rewards": [(name, record.get(name)) for name in fields.REWARDS],
        "group": _group(record),
        "group_page_url": _group_page_url(record),
        "similar_failures_url": _similar_failures_url(record),
        "data_id_url": analysis.link(reverse("trajectories:list"), analysis.rows_of("data_id", record["data_id"])),
    }


GROUP_SHOWN = 64


def _similar_failures_url(record: dict) -> str | None:
    """This trajectory's page, its similar list narrowed to the failures of its run (None when no list
    URL can name the run exactly, e.g. an id with `*`)."""
    if record.get("training_id") is None:
        return None
    page = reverse("trajectories:detail", args=[record["trajectory_id"]])
    found = analysis.link(page, analysis.rows_of("training_id", record["training_id"]), [("is_success", "false")])
    return None if found is None else f"{found}#similar"


def _search_hits(steps: list, text: TextQuery | None, *, start: int, list_params: str) -> dict | None:
    """The steps a content search (the list's `q` / `regex`) matched: each a link, in step order."""
    if text is None:
        return None
    hits = []
    for index, step in enumerate(steps):
        visible = content.shown(content.step_text(step))
        finder = highlighter(text, visible)
        if finder is not None and finder.search(visible):
            shown_from = start if start <= index < start + STEPS_PER_PAGE else index - index % STEPS_PER_PAGE
            query = f"?{STEPS_FROM_VAR}={shown_from}" + (f"&{list_params}" if list_params else "")
            hits.append({"index": index, "url": f"{query}#step-{index}", "here": shown_from == start})
    return {"hits": hits, "words": text.words(), "regex": text.regex, "label": text.source or f"/{text.regex}/"}


def _group_page_url(record: dict) -> str:
    identity = [("data_id", record["data_id"])]
    for name in ("training_id", "iteration_id"):
        if record.get(name) is not None:
            identity.append((name, str(record[name])))
    return reverse("trajectories:group") + "?" + urlencode(identity)


def _compare_url(*ids: str) -> str:
    return reverse("trajectories:compare") + "?" + urlencode([("ids", trajectory_id) for trajectory_id in ids])


def _group(record: dict) -> dict | None:
    """The record's GRPO group at a glance: its spread, its samples, links to compare with them."""
    try:
        members, summary = reads.group(
            training_id=record.get("training_id"), iteration_id=record.get("iteration_id"), data_id=record["data_id"]
        )
    except ScopeTooLarge:  # a record of no training run, in a store past the memory budget
        return None
    if len(members) < 2:
        return None
    me = record["trajectory_id"]
    # The question's rows in this run, as list filters (None when no list URL can say them exactly).
    question = analysis.link("", analysis.rows_of("data_id", record["data_id"]),
                             analysis.rows_of("training_id", record.get("training_id")))  # fmt: skip
    return {
        **summary,
        "samples": [
            {**row, "me": row["trajectory_id"] == me,
             "compare_url": _compare_url(me, row["trajectory_id"])}
            for row in members[:GROUP_SHOWN]
        ],
        "url": _group_page_url(record),
        "question_url": None if question is None else f"{reverse('trajectories:stats')}{question}&by=iteration_id",
        "other_groups_url": None if question is None else f"{reverse('trajectories:groups')}{question}",
    }  # fmt: skip


@staff_member_required
def trajectory_steps(request: HttpRequest, trajectory_id: str) -> HttpResponse:
    """A run of steps as an HTML fragment: "load more" on long trajectories."""
    record = _record(trajectory_id)
    steps = orjson.loads(record["steps"])
    start = _steps_from(request, len(steps))
    context = {
        "steps": display_steps(steps, start=start),
        "record": record,
        "step_total": len(steps),
        "steps_next": start + STEPS_PER_PAGE if start + STEPS_PER_PAGE < len(steps) else None,
        "list_params": _list_params(request).urlencode(),
    }
    return render(request, "trajectories/_steps.html", context)


@staff_member_required
def trajectory_step_raw(request: HttpRequest, trajectory_id: str, index: int) -> HttpResponse:
    steps = orjson.loads(_record(trajectory_id)["steps"])
    if not 0 <= index < len(steps):
        raise Http404(f"step {index} does not exist ({len(steps)} steps)")
    response = HttpResponse(raw_step_text(steps[index]), content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response


@staff_member_required
def trajectory_raw(request: HttpRequest, trajectory_id: str) -> HttpResponse:
    canonical = to_canonical(_record(trajectory_id))
    response = JsonResponse(canonical, json_dumps_params={"indent": 2, "ensure_ascii": False})
    if request.GET.get("download"):
        response["Content-Disposition"] = 'attachment; filename="trajectory.json"'
    return response


@staff_member_required
@require_POST
def trajectory_annotate(request: HttpRequest, trajectory_id: str) -> HttpResponse:
    """The annotation form without JavaScript (with it, the page PATCHes the API instead)."""
    _record(trajectory_id)
    try:
        change = _change_from_form(request.POST)
    except annotating.ChangeError as error:
        return _form_with_errors(request, trajectory_id, error)
    if change.is_empty():
        messages.info(request, "Nothing changed.")
    else:
        services.annotate(trajectory_ids=[trajectory_id], change=change, user=request.user)
        messages.success(request, "Saved.")
    url = reverse("trajectories:detail", args=[trajectory_id])
    params = request.POST.get("list_params", "")
    return redirect(f"{url}?{params}" if params else url)


def _change_from_form(form: QueryDict) -> AnnotationChange:
    """Only what the user changed from what the form showed (`was_*`): a save never writes back
    stale values over an edit made elsewhere since the page was rendered. Tags are one per line."""
    if "toggle_bookmark" in form:
        return AnnotationChange(is_bookmarked=form.get("toggle_bookmark") == "on")
    changed: dict = {}
    success = form.get("is_success", "")
    if success in _SUCCESS and success != form.get("was_is_success", ""):
        changed["is_success"] = _SUCCESS[success]
    for name in annotating.TEXT_LIMITS:
        value = form.get(name, "").strip()
        if value != form.get(f"was_{name}", "").strip():
            changed[name] = value
    tags = annotating.tag_lines(form.get("tags", ""))
    was = list(dict.fromkeys(form.getlist("was_tags")))
    changed["add_tags"] = [tag for tag in tags if tag not in was]
    changed["remove_tags"] = [tag for tag in was if tag not in tags]
    return annotating.change_from(changed)


def _form_with_errors(request: HttpRequest, trajectory_id: str, error: annotating.ChangeError) -> HttpResponse:
    """The page again, the errors next to their fields, and everything the user typed still in the form."""
    request.GET = QueryDict(request.POST.get("list_params", ""))
    context = _context(request, trajectory_id)
    form = request.POST
    context["was"] = {
        "is_success": _SUCCESS.get(form.get("was_is_success", "")),
        **{name: form.get(f"was_{name}", "") for name in annotating.TEXT_LIMITS},
        "tags": form.getlist("was_tags"),
    }
    context["record"] = {
        **context["record"],
        "is_success": _SUCCESS.get(form.get("is_success", "")),
        **{name: form.get(name, "") for name in annotating.TEXT_LIMITS},
        "tags": form.get("tags", "").splitlines(),
    }
    errors = dict(error.errors)
    for name in ("add_tags", "remove_tags"):
        errors.setdefault("tags", []).extend(errors.pop(name, []))
    context["errors"] = {name: messages for name, messages in errors.items() if messages}
    return render(request, "trajectories/detail.html", context, status=400)


_SUCCESS = {"true": True, "false": False, "": None}


def _record(trajectory_id: str) -> dict:
    record = reads.trajectory(trajectory_id=trajectory_id)
    if record is None:
        raise Http404(f"No trajectory {trajectory_id!r}")
    return record


def _steps_from(request: HttpRequest, total: int) -> int:
    try:
        start = int(request.GET.get(STEPS_FROM_VAR, 0))
    except ValueError:
        start = 0
    return min(max(start, 0), max(total - 1, 0))


def _list_params(request: HttpRequest) -> QueryDict:
    params = request.GET.copy()
    params.pop(STEPS_FROM_VAR, None)
    return params


def _list_query(params: QueryDict) -> q.TrajectoryQuery:
    try:
        return q.parse_query(params)
    except q.QueryError:
        return q.TrajectoryQuery()
