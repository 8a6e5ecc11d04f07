"""Server-rendered pages for staff. They read through `trajectories.store`, never LanceDB directly."""

from __future__ import annotations

import orjson
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .models import ImportJob
from .store import get_store

PAGE_SIZE = 50


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("trajectories:list")


@staff_member_required
def trajectory_list(request: HttpRequest) -> HttpResponse:
    store = get_store()
    total = store.count()
    paginator = Paginator(range(total), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    rows = store.recent(limit=PAGE_SIZE, offset=page.start_index() - 1) if total else []
    context = {
        "rows": rows,
        "page": page,
        "total": total,
        "latest_imports": ImportJob.objects.all()[:5],
    }
    return render(request, "trajectories/list.html", context)


@staff_member_required
def trajectory_detail(request: HttpRequest, trajectory_id: str) -> HttpResponse:
    record = get_store().get(trajectory_id=trajectory_id)
    if record is None:
        raise Http404(f"No trajectory {trajectory_id!r}")
    steps = orjson.loads(record.pop("steps"))
    metadata = orjson.loads(record["metadata"]) if record.get("metadata") else {}
    context = {
        "record": record,
        "steps": [_display_step(step) for step in steps],
        "metadata": orjson.dumps(metadata, option=orjson.OPT_INDENT_2).decode(),
    }
    return render(request, "trajectories/detail.html", context)


def _display_step(step: dict) -> dict:
    content = step.get("content")
    if not isinstance(content, str):
        content = orjson.dumps(content, option=orjson.OPT_INDENT_2).decode() if content is not None else ""
    calls = [
        {
            "name": call.get("name"),
            "arguments": orjson.dumps(call.get("arguments"), option=orjson.OPT_INDENT_2).decode(),
        }
        for call in step.get("tool_calls") or []
    ]
    return {"role": step.get("role"), "content": content, "tool_calls": calls}
