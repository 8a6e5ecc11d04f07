"""The list page (changelist): filters, facets, sorting, paging, columns and bulk actions."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse

from trajectories import exporting, fields, reads
from trajectories import query as q
from trajectories.auth import can_delete
from trajectories.store import ScopeTooLarge
from trajectories.textquery import REGEX_VAR, RELEVANCE, SCAN_LIMIT, TEXT_VAR

from .actions import ACTIONS
from .cells import table_rows
from .htmlcache import render_cached
from .urlstate import COLUMNS, COLUMNS_VAR, PAGE_SIZES, UrlState

_FACET_LIMIT = 30
NO_VALUE = "(none)"


@staff_member_required
def trajectory_list(request: HttpRequest) -> HttpResponse:
    if any(value == "" for _, values in request.GET.lists() for value in values):
        # Forms submit their empty inputs too; keep shared URLs to the parameters that mean something.
        cleaned = UrlState(_without_empty(request.GET)).url(page=request.GET.get(q.PAGE_VAR) or None)
        return redirect(reverse("trajectories:list") + cleaned)
    state = UrlState(request.GET)
    try:
        query = q.parse_query(request.GET)
    except q.QueryError as error:
        context = {"error": error, "state": state, "clear_url": state.without(error.parameter)}
        return render(request, "trajectories/list.html", context, status=400)
    return render_cached(
        request,
        "trajectories/list.html",
        lambda: _context(request, state, query),
        page="list",
        url=request.get_full_path(),
    )


def _context(request: HttpRequest, state: UrlState, query: q.TrajectoryQuery) -> dict:
    result = reads.page(query=query)
    pages = max(1, math.ceil(result.count / query.page_size))
    if query.page > pages:
        raise Http404(f"page {query.page} is past the end: {result.count} results make {pages} pages")
    columns = state.columns()
    return {
        "rows": result.rows,
        "table_rows": table_rows(result.rows, columns, state.list_params()),
        "count": result.count,
        "note": result.note,
        "total": reads.total() if query.is_filtered else result.count,
        "query": query,
        "state": state,
        "list_params": state.list_params(),
        "filter_params": urlencode([(n, v) for n, vs in state.params.lists() if n not in q.DISPLAY_ONLY for v in vs]),
        "headers": _headers(state, query, columns),
        "columns": columns,
        "column_choices": [(key, label, key in columns) for key, label, _ in COLUMNS],
        "facets": _facets(state, query),
        "booleans": _boolean_filters(state),
        "ranges": _ranges(state),
        "range_hidden": _hidden(
            state, {field.param + suffix for field in fields.RANGE_INPUTS for suffix in (q.MIN_SUFFIX, q.MAX_SUFFIX)}
        ),
        # A new search drops a relevance order (it may have no words to rank by), keeps any other.
        "search_hidden": _hidden(
            state, {q.SEARCH_VAR, TEXT_VAR, REGEX_VAR} | ({q.ORDERING_VAR} if query.by_relevance else set())
        ),
        "relevance_url": state.url(ordering=RELEVANCE),
        "export_formats": exporting.FORMATS.values(),
        "scan_limit": f"{SCAN_LIMIT:,}",
        "columns_hidden": _hidden(state, {COLUMNS_VAR}),
        "active_filters": [
            (name, value, state.without(name, str(value) if q.multi_valued(name) else None), chip_words(name, value))
            for name, value in q.describe_filters(query)
        ],
        "emptied_by": _emptied_by(request.GET) if result.count == 0 and query.is_filtered else [],
        "page_links": _page_links(state, query.page, pages),
        "pages": pages,
        "page_sizes": [(size, state.url(page_size=size), size == query.page_size) for size in PAGE_SIZES],
        "can_delete": can_delete(request.user),
        "actions": ACTIONS.values(),
    }


_BOOLEAN_WORDS = {"true": "yes", "false": "no", "null": "not judged"}


def chip_words(parameter: str, value) -> str:
    """A filter in words for its chip: "Success: no", "Reward ≥ 0.5", "no Training run"."""
    if parameter == q.SEARCH_VAR:
        return f"ids & names: {value}"
    if parameter == TEXT_VAR:
        return f"steps contain: {value}"
    if parameter == REGEX_VAR:
        return f"steps match /{value}/"
    for suffix, words in ((q.MIN_SUFFIX, "≥"), (q.MAX_SUFFIX, "≤")):
        field = fields.BY_PARAM.get(parameter.removesuffix(suffix))
        if parameter.endswith(suffix) and field is not None:
            return f"{field.label} {words} {value:g}" if isinstance(value, float) else f"{field.label} {words} {value}"
    field = fields.BY_PARAM.get(parameter.removesuffix(fields.EMPTY_SUFFIX))
    if parameter.endswith(fields.EMPTY_SUFFIX) and field is not None:
        return f"no {field.label}" if value == "true" else f"has {field.label}"
    field = fields.BY_PARAM.get(parameter)
    if field is None:
        return f"{parameter}: {value}"
    if field.filter is fields.Filter.BOOLEAN:
        return f"{field.label}: {_BOOLEAN_WORDS.get(str(value), value)}"
    if field.filter is fields.Filter.CONTAINS:
        return f"{field.label} contains “{value}”"
    if isinstance(value, float):
        return f"{field.label}: {value:g}"
    return f"{field.label}: {value}"


def _without_empty(params: QueryDict) -> QueryDict:
    cleaned = QueryDict(mutable=True)
    for name, values in params.lists():
        kept = [value for value in values if value != ""]
        if kept:
            cleaned.setlist(name, kept)
    return cleaned


def _headers(state: UrlState, query: q.TrajectoryQuery, columns: tuple[str, ...]) -> list[dict]:
    primary, descending = query.ordering[0]
    headers = []
    for key, label, sort_field in COLUMNS:
        if key not in columns:
            continue
        header = {"key": key, "label": label, "sorted": None, "url": None}
        if sort_field:
            header["sorted"] = ("desc" if descending else "asc") if sort_field == primary else None
            if sort_field == primary:
                first_descending = not descending
            else:  # a first click on a number (or a date, a flag) shows the largest first
                first_descending = fields.get(sort_field).kind not in (fields.Kind.ID, fields.Kind.TEXT)
            header["url"] = state.url(ordering=("-" if first_descending else "") + sort_field)
        headers.append(header)
    return headers


def _facets(state: UrlState, query: q.TrajectoryQuery) -> list[dict]:
    everything = reads.facets()
    matching = reads.facets(query=query) if query.is_filtered else everything
    blocks = []
    for field in fields.FACETS:
        counts = dict(matching[field.name])
        known = [value for value, _ in everything[field.name] if value is not None]
        values = known[:_FACET_LIMIT]
        values += [value for value in state.params.getlist(field.param) if value not in values]
        items = [
            {
                "label": value,
                "count": counts.get(value, 0),
                "url": state.toggled(field.param, value),
                "active": state.is_active(field.param, value),
            }
            for value in values
        ]
        if None in counts or state.params.get(field.empty_param):
            # Rows with no value are a choice like any other (found with `<param>_empty=true`).
            active = state.params.get(field.empty_param) == "true"
            items.append(
                {
                    "label": NO_VALUE,
                    "count": counts.get(None, 0),
                    "url": state.url(**{field.empty_param: None if active else "true"}),
                    "active": active,
                }
            )
        if items:
            blocks.append(
                {
                    "title": field.label,
                    "parameter": field.param,
                    "items": items,
                    "all_url": state.url(**{field.param: None, field.empty_param: None}),
                    "any_active": bool(state.params.getlist(field.param) or state.params.get(field.empty_param)),
                    "more": max(0, len(known) - _FACET_LIMIT),
                }
            )
    return blocks


def _boolean_filters(state: UrlState) -> list[dict]:
    blocks = []
    for field in fields.FILTERED:
        if field.filter is not fields.Filter.BOOLEAN:
            continue
        current = state.params.get(field.param)
        items = [
            {"label": label, "url": state.url(**{field.param: value}), "active": current == value}
            for value, label in field.choices
        ]
        blocks.append(
            {
                "title": field.label,
                "items": items,
                "all_url": state.without(field.param),
                "any_active": current is not None,
            }
        )
    # Success first: it is the question asked most.
    return sorted(blocks, key=lambda block: block["title"] != fields.get("is_success").label)


def _ranges(state: UrlState) -> list[dict]:
    return [
        {
            "name": field.param,
            "label": field.label,
            "step": field.step,
            "min": state.params.get(field.param + q.MIN_SUFFIX, ""),
            "max": state.params.get(field.param + q.MAX_SUFFIX, ""),
        }
        for field in fields.RANGE_INPUTS
    ]


def _hidden(state: UrlState, excluded: set[str]) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, values in state.params.lists()
        if name not in excluded and name != q.PAGE_VAR
        for value in values
    ]


def _emptied_by(params: QueryDict) -> list[dict]:
    """For an empty result: how many rows each active filter alone was hiding."""
    found = []
    for name, values in params.lists():
        if name in {q.PAGE_VAR, q.PAGE_SIZE_VAR, q.ORDERING_VAR, COLUMNS_VAR}:
            continue
        for value in values:
            relaxed = params.copy()
            relaxed.setlist(name, [item for item in values if item != value])
            try:
                count = reads.count(query=q.parse_query(relaxed))
            except ScopeTooLarge:  # without it the question spans runs this server does not hold
                continue
            if count:
                found.append(
                    {
                        "name": name,
                        "value": value,
                        "count": count,
                        "url": UrlState(params).without(name, value if q.multi_valued(name) else None),
                    }
                )
    return sorted(found, key=lambda item: -item["count"])


def _page_links(state: UrlState, page: int, pages: int) -> list[dict]:
    wanted = sorted({1, 2, pages - 1, pages, *range(page - 2, page + 3)} & set(range(1, pages + 1)))
    links, previous = [], 0
    for number in wanted:
        if number - previous > 1:
            links.append({"gap": True})
        links.append({"number": number, "url": state.url(page=number), "current": number == page})
        previous = number
    return links
