"""Downloads of the list's rows as datasets: `/trajectories/export/?as=<format>&<list parameters>`."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse

from trajectories import exporting


@staff_member_required
def export_download(request: HttpRequest) -> HttpResponse:
    try:
        fmt, query, min_gap = exporting.parse_export(request.GET)
    except exporting.ExportError as error:
        return HttpResponse(
            f"Bad parameter {error.parameter}: {error.message}\n", status=400, content_type="text/plain"
        )
    return exporting.response(fmt, query, min_gap)
