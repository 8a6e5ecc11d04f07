"""Failure clusters of any list: k groups of similar trajectories, each labelled by what sets it
apart, its size by iteration (is this failure mode growing?), its members, and one form to annotate
all of them (category, root cause)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from trajectories import annotating, reads, services
from trajectories import query as q

from . import charts

K_VAR = "k"
CLUSTER_VAR = "cluster"
DEFAULT_K = 8
MEMBERS_SHOWN = 200
_OWN = (K_VAR, CLUSTER_VAR)


def _list_params(params: QueryDict) -> QueryDict:
    rows = params.copy()
    for name in (*_OWN, q.PAGE_VAR, q.PAGE_SIZE_VAR, "columns"):
        rows.pop(name, None)
    return rows


def _k(params: QueryDict) -> int:
    text = params.get(K_VAR, str(DEFAULT_K))
    if not text.isascii() or not text.isdigit() or not 2 <= int(text) <= 30:
        raise q.QueryError(K_VAR, "a whole number from 2 to 30")
    return int(text)


def fingerprint(ids: list[str]) -> str:
    """What a cluster was when shown: an annotation applies only to exactly those rows."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]


@staff_member_required
def cluster_page(request: HttpRequest) -> HttpResponse:
    rows = _list_params(request.GET)
    try:
        k = _k(request.GET)
        query = q.parse_query(rows)
    except q.QueryError as error:
        return render(request, "trajectories/clusters.html", {"error": error}, status=400)
    found = reads.clusters(query=query, k=k)
    list_url = reverse("trajectories:list") + ("?" + rows.urlencode() if rows else "")
    shown = []
    # Per iteration, every clustered row: a cluster's share there says whether its failure mode grows.
    per_iteration: dict[int, int] = {}
    for cluster in found["clusters"]:
        for iteration, count in cluster["by_iteration"]:
            per_iteration[iteration] = per_iteration.get(iteration, 0) + count
    for index, cluster in enumerate(found["clusters"]):
        iterations = cluster["by_iteration"]
        shares = dict(iterations)
        shown.append({
            "index": index,
            "size": cluster["size"],
            "share": cluster["size"] / (found["considered"] or 1),
            "terms": cluster["terms"],
            "tools": cluster["tools"],
            "trend": charts.sparkline(
                [shares.get(iteration, 0) / total for iteration, total in sorted(per_iteration.items())],
                y_range=(0.0, 1.0),
            ),
            "iterations": f"{iterations[0][0]}–{iterations[-1][0]}" if iterations else "",
            "latest": iterations[-1] if iterations else None,
            "members_url": "?" + urlencode([*_pairs(rows), (K_VAR, k), (CLUSTER_VAR, index)]),
            "fingerprint": fingerprint(cluster["ids"]),
        })  # fmt: skip
    chosen = _chosen(request, found["clusters"])
    return render(
        request,
        "trajectories/clusters.html",
        {
            "clusters": shown,
            "found": found,
            "k": k,
            "list_url": list_url,
            "list_params": rows.urlencode(),
            "chosen": chosen,
            "members": chosen["ids"][:MEMBERS_SHOWN] if chosen else [],
            "members_list_url": _members_list_url(chosen["ids"][:MEMBERS_SHOWN]) if chosen else None,
            "sampled": found["matching"] > found["considered"] + found["without_embedding"],
        },
    )


def _chosen(request: HttpRequest, clusters: list[dict]) -> dict | None:
    text = request.GET.get(CLUSTER_VAR)
    if text is None or not text.isdigit() or int(text) >= len(clusters):
        return None
    return {**clusters[int(text)], "index": int(text)}


def _pairs(params: QueryDict) -> list[tuple[str, str]]:
    return [(name, value) for name, values in params.lists() for value in values]


def _members_list_url(ids: list[str]) -> str:
    """The list of these trajectories (an id filter takes at most `MAX_VALUES` of them)."""
    return reverse("trajectories:list") + "?" + urlencode([(q.KEY_PARAM, tid) for tid in ids[: q.MAX_VALUES]])


@staff_member_required
@require_POST
def cluster_annotate(request: HttpRequest) -> HttpResponse:
    """Set the category and/or root cause of every member of one cluster, as it was shown: the
    clusters are computed again and the change applies only if that cluster still has exactly the
    members the page showed (its fingerprint); otherwise nothing changes and the page says why."""
    params = QueryDict(request.POST.get("list_params", ""))
    back = (
        reverse("trajectories:clusters")
        + "?"
        + urlencode([*_pairs(params), (K_VAR, request.POST.get(K_VAR, DEFAULT_K))])
    )
    try:
        k = _k(request.POST)
        query = q.parse_query(params)
        index = int(request.POST.get(CLUSTER_VAR, "-1"))
    except (q.QueryError, ValueError) as error:
        messages.error(request, f"Nothing changed: {error}")
        return redirect(back)
    clusters = reads.clusters(query=query, k=k)["clusters"]
    if not 0 <= index < len(clusters) or fingerprint(clusters[index]["ids"]) != request.POST.get("fingerprint"):
        messages.error(request, "Nothing changed: the trajectories changed since the clusters were shown; review them.")
        return redirect(back)
    values = {name: request.POST.get(name, "").strip() for name in ("category", "root_cause")}
    values = {name: value for name, value in values.items() if value}
    if not values:
        messages.error(request, "Nothing changed: give a category or a root cause.")
        return redirect(back)
    try:
        change = annotating.change_from(values)
    except annotating.ChangeError as error:
        messages.error(request, f"Nothing changed: {error}")
        return redirect(back)
    ids = clusters[index]["ids"]
    count = services.annotate(trajectory_ids=ids, change=change, user=request.user)
    said = ", ".join(f"{name.replace('_', ' ')} “{value}”" for name, value in values.items())
    messages.success(request, f"Set {said} on the {count:,} trajectories of cluster {index + 1}.")
    return redirect(back)
