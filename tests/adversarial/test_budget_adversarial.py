"""Failures an adversarial tester found by hand against a site past its memory budget (store/runs.py,
store/across.py), each kept as a test: both failed on the code as first written."""

from __future__ import annotations

import pytest

from tests.test_runs import _run
from trajectories.query import NumberMatch, TrajectoryQuery
from trajectories.store.repository import TrajectoryStore

pytestmark = [pytest.mark.django_db, pytest.mark.adversarial]


# 1. Facets across runs of an annotation filter that matches nothing: `pc.field(KEY).isin([])` was an
#    Arrow list of type null, which substrait cannot serialize against a string column ->
#    ArrowTypeError -> 500 on the list page (/trajectories/?is_bookmarked=true with nothing bookmarked,
#    ?tag=<unused tag>) and on /api/trajectories/facets/.
@pytest.mark.parametrize(
    "query",
    [
        TrajectoryQuery.where(is_bookmarked=True),
        TrajectoryQuery.where(tags="no-such-tag"),
        TrajectoryQuery.where(category="no-such-category"),
    ],
    ids=["bookmarked-none", "unused-tag", "unused-category"],
)
def test_facets_across_runs_of_an_annotation_filter_matching_nothing(stores, query):
    budgeted, whole = stores
    assert budgeted.facets(query=query) == whole.facets(query=query)


@pytest.mark.parametrize("url", ["/trajectories/?is_bookmarked=true", "/trajectories/?tag=no-such-tag",
                                 "/api/trajectories/facets/?is_bookmarked=true"])  # fmt: skip
def test_pages_filtered_by_an_annotation_matching_nothing_across_runs(budgeted_site, staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 200, response.content[:300]


# 2. A run larger than the budget could not be browsed at all, however narrowed: every question naming
#    it was refused by its size ("narrow it further"), even a plain filtered list (training_id=X&
#    iteration_id=3) that LanceDB answers for a filter across runs. The overview links to it.
def test_a_run_past_the_budget_narrowed_by_an_exact_filter_is_answered(stores):
    budgeted, whole = stores
    small = TrajectoryStore(uri=budgeted.uri, budget_rows=35)  # run-a (40 rows) alone is past it
    query = _run("run-a").replace(filters=(*_run("run-a").filters, ("iteration_id", NumberMatch(values=(3,)))))
    assert small.page(query=query).count == whole.page(query=query).count
