"""Similar trajectories and failure clusters, on the stored embeddings (trajectories.embedding).

The embeddings of a projection's rows are read once, when first asked for, into one float32 matrix
(256 bytes a row: 256 MB at a million; float16 would halve it but numpy multiplies it ten times
slower) kept with the projection, and searched exactly: a matrix
product over the rows the list filters leave. Exact search honours any filter at the cost of one
pass (tens of milliseconds at a million rows), where an approximate index would have to
over-fetch and post-filter. Clusters are k-means (k-means++ start, a fixed seed: the same rows give
the same clusters) over at most `CLUSTER_LIMIT` rows, labelled by the words and tool pairs that are
commoner inside a cluster than in the whole set.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from trajectories import content
from trajectories.fields import EMBEDDING, SEARCH_TEXT, VECTOR_DIM

CLUSTER_LIMIT = 20_000
_LABEL_SAMPLE = 150
_ROUNDS = 25
_WORD = re.compile(r"[^\W\d_]{4,}|[\u3400-\u9fff]{2,}")


def matrix(projection) -> np.ndarray:
    """Every row's embedding (zeros where a row has none), float32, rows by VECTOR_DIM."""
    return projection.derived(("similarity", "matrix"), lambda: _read(projection))


def _read(projection) -> np.ndarray:
    result = np.zeros((projection.rows, VECTOR_DIM), dtype=np.float32)
    if EMBEDDING not in projection.dataset.schema.names:
        return result
    start = 0
    for batch in projection.dataset.to_batches(columns=[EMBEDDING], batch_size=65_536):
        column = batch.column(0)
        present = column.is_valid().to_numpy(zero_copy_only=False)
        if column.null_count:
            column = column.fill_null(pa.scalar([0.0] * VECTOR_DIM, column.type))
        values = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, VECTOR_DIM)
        result[start : start + len(batch)][present] = values[present]
        start += len(batch)
    return result


def _embedded(projection) -> np.ndarray:
    return projection.derived(("similarity", "embedded"), lambda: matrix(projection).any(axis=1))


def similar(projection, position: int, *, mask: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows most like the row at `position` (itself left out) among `mask`: positions, cosines."""
    vectors = matrix(projection)
    query = vectors[position]
    if not query.any():
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    candidates = np.arange(projection.rows) if mask is None else np.flatnonzero(mask)
    # Rows with no embedding (stored before embeddings were kept) are like nothing.
    candidates = candidates[(candidates != position) & _embedded(projection)[candidates]]
    # Many candidates: one product over every row beats copying their rows out first.
    scores = (vectors @ query)[candidates] if len(candidates) > projection.rows // 4 else vectors[candidates] @ query
    if len(candidates) > k:
        top = np.argpartition(-scores, k - 1)[:k]
        candidates, scores = candidates[top], scores[top]
    order = np.lexsort((projection.ids.rank[candidates], -scores))
    return candidates[order], scores[order]


@dataclass(frozen=True)
class Cluster:
    members: np.ndarray  # positions, in id order
    terms: tuple[str, ...]
    tools: tuple[str, ...]
    by_iteration: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Clustering:
    clusters: tuple[Cluster, ...]
    considered: int  # the rows clustered
    matching: int  # the rows the filters left (more than considered: a sample was taken)
    without_embedding: int


def clusters(projection, *, mask: np.ndarray | None, k: int, seed: int = 0) -> Clustering:
    positions = np.arange(projection.rows) if mask is None else np.flatnonzero(mask)
    matching = len(positions)
    if matching > CLUSTER_LIMIT:
        positions = np.sort(np.random.default_rng(seed).choice(positions, CLUSTER_LIMIT, replace=False))
    vectors = matrix(projection)[positions]
    present = vectors.any(axis=1)
    positions, vectors = positions[present], vectors[present]
    without = int((~present).sum())
    if len(positions) == 0:
        return Clustering(clusters=(), considered=0, matching=matching, without_embedding=without)
    labels = _kmeans(vectors, min(k, len(positions)), seed)
    groups = [positions[labels == label] for label in range(labels.max() + 1)]
    groups = sorted((group for group in groups if len(group)), key=lambda group: (-len(group), group[0]))
    words, tools = _labels(projection, groups, seed)
    iterations = projection.column("iteration_id")
    made = tuple(
        Cluster(members=group, terms=words[index], tools=tools[index], by_iteration=_by_iteration(iterations, group))
        for index, group in enumerate(groups)
    )
    return Clustering(clusters=made, considered=len(positions), matching=matching, without_embedding=without)


def _kmeans(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cosine k-means (unit vectors): k-means++ start, then a fixed number of Lloyd rounds."""
    rng = np.random.default_rng(seed)
    centres = [vectors[rng.integers(len(vectors))]]
    distance = 1 - vectors @ centres[0]
    for _ in range(1, k):
        weights = np.clip(distance, 0, None) ** 2
        total = weights.sum()
        chosen = rng.choice(len(vectors), p=weights / total) if total > 0 else rng.integers(len(vectors))
        centres.append(vectors[chosen])
        distance = np.minimum(distance, 1 - vectors @ vectors[chosen])
    centres = np.array(centres)
    labels = np.zeros(len(vectors), dtype=np.int64)
    for _ in range(_ROUNDS):
        new = np.argmax(vectors @ centres.T, axis=1)
        if np.array_equal(new, labels) and _:
            break
        labels = new
        for label in range(k):
            inside = vectors[labels == label]
            if len(inside):
                centre = inside.sum(axis=0)
                centres[label] = centre / (np.linalg.norm(centre) or 1)
    return labels


def _labels(projection, groups: list[np.ndarray], seed: int) -> tuple[list[tuple], list[tuple]]:
    """Per cluster, the words and tool pairs most over-represented in it (document frequency within
    a sample of the cluster against the sample of all clusters)."""
    rng = np.random.default_rng(seed)
    samples = [np.sort(rng.choice(group, min(len(group), _LABEL_SAMPLE), replace=False)) for group in groups]
    texts = _texts(projection, np.concatenate(samples)) if samples else []
    tool_lists = projection.column("tools").values_at(np.concatenate(samples)) if samples else []
    word_sets, tool_sets = [], []
    at = 0
    for sample in samples:
        word_sets.append([set(_WORD.findall(text.lower())) for text in texts[at : at + len(sample)]])
        tool_sets.append([_tool_pairs(tools or []) for tools in tool_lists[at : at + len(sample)]])
        at += len(sample)
    return _distinct(word_sets), _distinct(tool_sets)


def _tool_pairs(tools: list[str]) -> set[str]:
    return {f"{a} → {b}" for a, b in itertools.pairwise(tools)} | set(tools)


def _distinct(per_cluster: list[list[set[str]]], shown: int = 6) -> list[tuple[str, ...]]:
    everywhere = Counter(item for sets in per_cluster for found in sets for item in found)
    total = sum(len(sets) for sets in per_cluster) or 1
    labels = []
    for sets in per_cluster:
        inside = Counter(item for found in sets for item in found)
        size = len(sets) or 1
        lift = {item: count / size - everywhere[item] / total for item, count in inside.items() if count / size >= 0.2}
        labels.append(tuple(item for item, _ in sorted(lift.items(), key=lambda pair: (-pair[1], pair[0]))[:shown]))
    return labels


def _texts(projection, positions: np.ndarray) -> list[str]:
    if SEARCH_TEXT not in projection.dataset.schema.names or not len(positions):
        return [""] * len(positions)
    taken = projection.dataset.take(pa.array(positions, pa.int64()), columns=[SEARCH_TEXT]).column(SEARCH_TEXT)
    return [content.shown(text)[-8_000:] if text else "" for text in taken.to_pylist()]


def _by_iteration(iterations, group: np.ndarray) -> tuple[tuple[int, int], ...]:
    values = iterations.floats()[group]
    values = values[~np.isnan(values)].astype(np.int64)
    if not len(values):
        return ()
    found, counts = np.unique(values, return_counts=True)
    return tuple(zip(found.tolist(), counts.tolist(), strict=True))
