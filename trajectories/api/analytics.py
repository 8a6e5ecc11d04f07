"""Training-step analytics over the API: `/api/stats/` (measures per grouping key) and `/api/groups/`
(GRPO groups), for exactly the rows the same list parameters select."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote_plus, urlencode

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from trajectories import analysis, fields, reads
from trajectories.query import QueryError

from .filters import TrajectoryQueryFilter
from .pagination import StorePagination


def _parsed(parse, request):
    try:
        return parse(request.query_params)
    except QueryError as error:
        raise ValidationError({error.parameter: [error.message]}) from error


class _ListLinks:
    """List URLs of exactly some rows: the list's address and the shared parameters made once, not per
    result (thousands of iterations would otherwise spend longer on links than on the numbers)."""

    def __init__(self, request, *, dropped: frozenset[str]) -> None:
        self.prefix = request.build_absolute_uri(reverse("api:trajectory-list")) + "?"
        self.pairs = [(key, value) for key, values in request.query_params.lists() if key not in dropped
                      for value in values]  # fmt: skip
        self.names = {name for name, _ in self.pairs}
        self.shared = urlencode(self.pairs)

    def __call__(self, params: list[tuple[str, str]] | None) -> str | None:
        if params is None:
            return None
        if self.names & {name for name, _ in params}:
            both = analysis.narrowed(self.pairs, params)
            return None if both is None else self.prefix + urlencode(both)
        extra = "&".join(f"{quote_plus(name)}={quote_plus(value)}" for name, value in params)  # urlencode, faster
        return self.prefix + (f"{self.shared}&{extra}" if self.shared else extra)


_BY = OpenApiParameter(
    analysis.BY_VAR, str, enum=list(fields.GROUP_KEYS), description=f"Grouping key (default {analysis.DEFAULT_BY})."
)
_BUCKETS = OpenApiParameter(
    analysis.BUCKETS_VAR, int, description="A numeric key in at most this many ranges (`key` to `key_max`)."
)


class StatsViewSet(viewsets.ViewSet):
    permission_classes = [permissions.IsAdminUser]
    filter_backends = [TrajectoryQueryFilter]

    @extend_schema(parameters=[_BY, _BUCKETS], responses={200: dict})
    def list(self, request, format=None):
        """Per value of `by` among the trajectories the list parameters select, in value order (no
        value last): `count`, `success_rate` (successes / judged, null when none judged),
        `<measure>_mean` of every numeric measure, `<reward>_p10/_p50/_p90` of every reward, and
        `zero_signal_share` (of the GRPO groups with two or more rewarded samples, the share whose
        rewards are all equal). `trajectories` links to the list of exactly those rows."""
        query, by = _parsed(analysis.parse_stats, request)
        buckets = _parsed(analysis.parse_buckets, request)
        results = reads.stats(query=query, by=by, buckets=buckets)
        links = _ListLinks(request, dropped=analysis.STATS_OWN)
        for row in results:
            if "key_max" in row and row["key"] is not None:
                row["trajectories"] = links(analysis.rows_of_range(by, row["key"], row["key_max"]))
            else:
                row["trajectories"] = links(analysis.rows_of(by, row["key"]))
        return Response({"by": by, "results": results})


@dataclass(frozen=True)
class _Page:
    rows: list
    count: int


class _Pages:
    """What the store-backed paginator pages: one read of the analytics."""

    def __init__(self, read) -> None:
        self.read = read

    def page(self, query) -> _Page:
        return _Page(*self.read(query=query))


class _ParsedFilter(TrajectoryQueryFilter):
    """Parses the request with the view's own parser into the query the paginator reads."""

    def filter_queryset(self, request, queryset, view):
        view.trajectory_query = _parsed(view.parse, request)
        return queryset


class _PagedViewSet(viewsets.GenericViewSet):
    """A paginated analytics answer: `parse` reads the parameters, `read` answers (rows, count)."""

    permission_classes = [permissions.IsAdminUser]
    pagination_class = StorePagination
    filter_backends = [_ParsedFilter]
    parse = staticmethod(lambda params: None)
    read = staticmethod(lambda *, query: ([], 0))

    def get_queryset(self):
        return _Pages(self.read)

    def _rows(self) -> list:
        return self.paginate_queryset(self.filter_queryset(self.get_queryset()))


_SORTS = ", ".join(analysis.GROUP_SORTS)


class GroupViewSet(_PagedViewSet):
    parse = staticmethod(analysis.parse_groups)
    read = staticmethod(reads.groups)

    @extend_schema(
        parameters=[
            *(OpenApiParameter(name, bool, description=f"Only groups with (true) or without (false) {name}.")
              for name in analysis.FLAGS),
            OpenApiParameter("ordering", str, description=f"Comma-separated, '-' descending: {_SORTS}."),
            OpenApiParameter(analysis.K_VAR, int, description=f"k of pass@k (1-{analysis.MAX_K}, default 1)."),
        ],
        responses={200: dict},
    )  # fmt: skip
    def list(self, request, format=None):
        """GRPO groups (trajectories sharing training run, iteration and data id) among the
        trajectories the list parameters select: size, reward mean/std (population)/min/max,
        successes, pass@k, and the flags zero_signal (two or more rewarded samples, all equal),
        all_failed, all_passed, high_spread (rewards span 0.5 or more)."""
        rows = self._rows()
        links = _ListLinks(request, dropped=analysis.GROUPS_OWN)
        for row in rows:
            row["trajectories"] = links(analysis.rows_of_group(row))
        return self.get_paginated_response(rows)


_CHANGE_SORTS = ", ".join(analysis.CHANGE_SORTS)


class QuestionChangeViewSet(_PagedViewSet):
    parse = staticmethod(analysis.parse_changes)
    read = staticmethod(reads.question_changes)

    @extend_schema(
        parameters=[
            OpenApiParameter("a.<list parameter>", str, description="Side a, e.g. a.iteration_id_max=100."),
            OpenApiParameter("b.<list parameter>", str, description="Side b, e.g. b.iteration_id_min=400."),
            OpenApiParameter("ordering", str, description=f"One of {_CHANGE_SORTS}; '-' descending."),
            OpenApiParameter(analysis.MIN_COUNT_VAR, int, description="Rows a question needs per side (default 1)."),
        ],
        responses={200: dict},
    )  # fmt: skip
    def list(self, request, format=None):
        """Which questions got worse (or better): per data id present on both sides, success rate and
        mean reward on side a and side b and their change (b - a). Default order: the largest drop
        in success rate first. Other list parameters apply to both sides."""
        return self.get_paginated_response(self._rows())
