"""Bulk actions from the list: on the checked rows or on everything matching the filters."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from trajectories import query as q
from trajectories import selection, services
from trajectories.exporting import jsonl_lines
from trajectories.store import AnnotationChange, get_store


@dataclass(frozen=True)
class Action:
    label: str
    needs_value: bool = False

    def change(self, name: str, value: str) -> AnnotationChange | None:
        return {
            "bookmark": AnnotationChange(is_bookmarked=True),
            "unbookmark": AnnotationChange(is_bookmarked=False),
            "success": AnnotationChange(is_success=True),
            "failure": AnnotationChange(is_success=False),
            "unjudge": AnnotationChange(is_success=None),
            "category": AnnotationChange(category=value),
            "root_cause": AnnotationChange(root_cause=value),
            "add_tag": AnnotationChange(add_tags=(value,)),
        }.get(name)


ACTIONS = {
    "bookmark": Action("bookmark"),
    "unbookmark": Action("remove the bookmark of"),
    "success": Action("mark as successful"),
    "failure": Action("mark as failed"),
    "unjudge": Action("clear the success of"),
    "category": Action("set the category of", needs_value=True),
    "root_cause": Action("set the root cause of", needs_value=True),
    "add_tag": Action("add a tag to", needs_value=True),
    "export": Action("export"),
    "delete": Action("delete"),
}


@staff_member_required
@require_POST
def bulk_action(request: HttpRequest) -> HttpResponse:
    form = request.POST
    list_params = form.get("query", "")
    back = reverse("trajectories:list") + (f"?{list_params}" if list_params else "")
    name, value = form.get("action", ""), form.get("value", "").strip()[:1000]
    action = ACTIONS.get(name)
    if action is None:
        messages.error(request, "Choose an action.")
        return redirect(back)
    if action.needs_value and not value:
        messages.error(request, f"'{action.label}' needs a value: type it next to the action.")
        return redirect(back)
    if name == "delete" and not request.user.has_perm("trajectories.delete_trajectory"):
        raise PermissionDenied("deleting trajectories needs the 'Can delete trajectories' permission")
    chosen = _selection(form, list_params)
    if chosen is None or not chosen.count:
        messages.warning(request, "No trajectories selected: check some rows, or 'all matching'.")
        return redirect(back)
    if name == "export":
        return _export(list(chosen.ids))
    # Every change from the page is confirmed on the rows it counted: if they changed before the
    # click (an import, a delete), the page asks again instead of acting on a wider set.
    confirmed_as = f"{name}:{value}"
    problem = selection.confirmation_problem(form.get("confirm"), chosen, action=confirmed_as, user=request.user)
    if problem is not None:
        context = {
            "action": action,
            "name": name,
            "value": value,
            "selection": chosen,
            "count": chosen.count,
            "form": form,
            "ids": list(chosen.ids) if not form.get("select_all") else [],
            "list_params": list_params,
            "sample": chosen.ids[:10],
            "back": back,
            "changed": problem if form.get("confirm") else None,
            "token": selection.confirmation_token(chosen, action=confirmed_as, user=request.user),
        }
        return render(request, "trajectories/confirm_action.html", context)
    if name == "delete":
        done = services.delete(trajectory_ids=list(chosen.ids))
    else:
        done = services.annotate(trajectory_ids=list(chosen.ids), change=action.change(name, value), user=request.user)
    messages.success(request, f"Done: {action.label} {done} trajectories.")
    return redirect(back)


def _selection(form: QueryDict, list_params: str) -> selection.Selection | None:
    if form.get("select_all"):
        try:
            query = q.parse_query(QueryDict(list_params))
        except q.QueryError:
            return None
        # The list showed this count for these filters; unfiltered, the confirmation says "every".
        return selection.by_query(query, everything=True)
    ids = form.getlist("ids")
    return selection.by_ids(ids) if ids else None


def _export(ids: list[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        jsonl_lines(get_store().records(trajectory_ids=ids)), content_type="application/x-ndjson"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="trajectories-{stamp}.jsonl"'
    return response
