"""The overview page and the admin index entry."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_overview_counts_runs_agents_and_bookmarks(staff_client, store, record, write_jsonl, run_import):
    run_import(
        write_jsonl(
            [
                record(trajectory_id="a", is_bookmarked=True),
                record(trajectory_id="b", training_id="run-b", agent_name="agent-y"),
            ]
        )
    )
    body = staff_client.get(reverse("trajectories:home")).content.decode()
    assert "Trajectories: 2" in body
    assert "Training runs (2)" in body
    assert 'href="/trajectories/stats/?training_id=run-b&amp;by=iteration_id" title="run-b">run-b</a>' in body
    assert '<td><a href="/trajectories/?training_id=run-b">1</a></td>' in body
    assert "Bookmarked (1)" in body and 'href="/trajectories/a/?is_bookmarked=true"' in body


def test_trajectories_with_no_run_or_agent_are_counted_and_reachable(
    staff_client, store, record, write_jsonl, run_import
):
    records = [record(trajectory_id="named"), record(trajectory_id="anon-1", training_id=None, agent_name=None),
               record(trajectory_id="anon-2", training_id=None, agent_name=None)]  # fmt: skip
    run_import(write_jsonl(records))
    body = staff_client.get(reverse("trajectories:home")).content.decode()
    assert '<a href="/trajectories/?training_id_empty=true" class="no-value">(no run)</a></th>' in body
    assert '<td><a href="/trajectories/?training_id_empty=true">2</a></td>' in body
    assert '<a href="/trajectories/?agent_name_empty=true" class="no-value">(no agent)</a></th><td>2</td>' in body
    listed = staff_client.get("/trajectories/?agent_name_empty=true").content.decode()
    assert 'value="anon-1"' in listed and 'value="anon-2"' in listed and 'value="named"' not in listed
    assert "(none) (2)" in listed, "the facet offers the rows with no value"


def test_overview_of_an_empty_store(staff_client, store):
    assert "No trajectories yet." in staff_client.get(reverse("trajectories:home")).content.decode()


def test_admin_index_lists_trajectories_and_links_to_the_list(admin_client, store):
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert "Trajectories" in body and "Import jobs" in body
    response = admin_client.get(reverse("admin:trajectories_trajectoryaccess_changelist"))
    assert response.status_code == 302 and response["Location"] == reverse("trajectories:list")
