"""Server-rendered pages for staff. They read through `trajectories.store`, never LanceDB directly."""

from __future__ import annotations

import math

import orjson
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .models import ImportJob
from .query import PAGE_VAR, QueryError, describe_filters, parse_query
from .store import get_store


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("trajectories:list")


@staff_member_required
def trajectory_list(request: HttpRequest) -> HttpResponse:
    try:
        query = parse_query(request.GET)
    except QueryError as error:
        return render(request, "trajectories/list.html", {"error": error, "total": 0}, status=400)
    result = get_store().page(query=query)
    pages = max(1, math.ceil(result.count / query.page_size))
    if query.page > pages:
        raise Http404(f"page {query.page} is past the end ({pages} pages)")
    context = {
        "rows": result.rows,
        "total": result.count,
        "query": query,
        "filters": describe_filters(query),
        "page_number": query.page,
        "pages": pages,
        "previous_url": _page_url(request, query.page - 1) if query.page > 1 else None,
        "next_url": _page_url(request, query.page + 1) if query.page < pages else None,
        "latest_imports": ImportJob.objects.all()[:5],
    }
    return render(request, "trajectories/list.html", context)


def _page_url(request: HttpRequest, page: int) -> str:
    params = request.GET.copy()
    params[PAGE_VAR] = str(page)
    return "?" + params.urlencode()


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
