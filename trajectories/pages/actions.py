"""Bulk actions from the list: on the checked rows or on everything matching the filters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from trajectories import annotating, comparing, reads, selection, services
from trajectories.auth import require_delete
from trajectories.exporting import jsonl_lines
from trajectories.store import AnnotationChange


@dataclass(frozen=True)
class Action:
    """One entry of the list's action menu: its label there, what the confirmation says it does, and
    the annotation change it makes (from the typed value when it takes one)."""

    name: str
    menu: str
    verb: str
    change: Callable[[str], AnnotationChange] | None = None
    needs_value: bool = False
    destructive: bool = False


def _typed(field: str, *, tags: bool = False) -> Callable[[str], AnnotationChange]:
    return lambda value: annotating.change_from({field: [value]} if tags else {field: value})


ACTIONS = {
    action.name: action
    for action in (
        Action("bookmark", "Bookmark", "bookmark", lambda _: AnnotationChange(is_bookmarked=True)),
        Action(
            "unbookmark", "Remove bookmark", "remove the bookmark of", lambda _: AnnotationChange(is_bookmarked=False)
        ),
        Action("success", "Mark successful", "mark as successful", lambda _: AnnotationChange(is_success=True)),
        Action("failure", "Mark failed", "mark as failed", lambda _: AnnotationChange(is_success=False)),
        Action("unjudge", "Clear success", "clear the success of", lambda _: AnnotationChange(is_success=None)),
        Action("category", "Set category…", "set the category of", _typed("category"), needs_value=True),
        Action("root_cause", "Set root cause…", "set the root cause of", _typed("root_cause"), needs_value=True),
        Action("add_tag", "Add tag…", "add a tag to", _typed("add_tags", tags=True), needs_value=True),
        Action("export", "Export JSONL", "export"),
        Action("compare", "Compare (2-4 checked)", "compare"),
        Action("delete", "Delete…", "delete", destructive=True),
    )
}


@staff_member_required
@require_POST
def bulk_action(request: HttpRequest) -> HttpResponse:
    form = request.POST
    list_params = form.get("query", "")
    back = reverse("trajectories:list") + (f"?{list_params}" if list_params else "")
    name, value = form.get("action", ""), form.get("value", "").strip()
    action = ACTIONS.get(name)
    if action is None:
        messages.error(request, "Choose an action.")
        return redirect(back)
    if action.needs_value and not value:
        messages.error(request, f"'{action.verb}' needs a value: type it next to the action.")
        return redirect(back)
    if action.destructive:
        require_delete(request.user)
    try:
        change = action.change(value) if action.change else None
        chosen = _selection(form, list_params)
    except annotating.ChangeError as error:
        messages.error(request, f"Nothing changed: {error}")
        return redirect(back)
    except selection.ScopeError as error:
        messages.error(request, f"Nothing changed: the list's filters are not valid ({error.message}).")
        return redirect(back)
    if chosen is None or not chosen.count:
        messages.warning(request, "No trajectories selected: check some rows, or 'all matching'.")
        return redirect(back)
    if name == "export":
        return _export(list(chosen.ids))
    if name == "compare":
        if form.get("select_all") or not comparing.MIN_COMPARED <= chosen.count <= comparing.MAX_COMPARED:
            messages.error(request, "Compare takes 2 to 4 checked trajectories.")
            return redirect(back)
        return redirect(reverse("trajectories:compare") + "?" + urlencode([("ids", i) for i in chosen.ids]))
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
    if action.destructive:
        done = services.delete(trajectory_ids=list(chosen.ids))
    else:
        done = services.annotate(trajectory_ids=list(chosen.ids), change=change, user=request.user)
    messages.success(request, f"Done: {action.verb} {done} trajectories.")
    return redirect(back)


def _selection(form, list_params: str) -> selection.Selection | None:
    if form.get("select_all"):
        # The list showed this count for these filters; unfiltered, the confirmation says "every".
        return selection.resolve(query=list_params, everything=True, list_url=True)
    ids = form.getlist("ids")
    return selection.resolve(ids=ids) if ids else None


def _export(ids: list[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        jsonl_lines(reads.records(trajectory_ids=ids)), content_type="application/x-ndjson"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="trajectories-{stamp}.jsonl"'
    return response
