"""One vector per trajectory, computed at import with no model download: what "similar" and failure
clusters compare.

The default is feature hashing: each distinct word of three or more letters of the searchable text
(its first 1,500 and last 3,000 characters, where prompts and failures are), each tool and each pair
of consecutive tools sets one of `DIM` dimensions to ±1 (the sign from the hash too), then the
vector is scaled to length 1, so a dot product is a cosine. Deterministic across processes (crc32,
not Python's salted hash).

`TRAJSITE_EMBEDDING` (environment; import workers read it, Django is not loaded there) names
another function as `module:function` taking (tools, text) and returning any vector; it is brought
to `DIM` by a fixed random projection. `trajectories.embedding:sentence_transformer` uses a local
sentence-transformers model named by `TRAJSITE_EMBEDDING_MODEL` (a path: nothing is downloaded).
"""

from __future__ import annotations

import functools
import importlib
import os
import string
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from trajectories.fields import VECTOR_DIM

DIM = VECTOR_DIM
_HEAD, _TAIL = 1_500, 3_000
# Punctuation and digits become spaces, then a plain split: several times faster than a regex (this
# runs for every imported trajectory). A CJK run (its characters joined by zero-width spaces) is one word.
_SPACES = str.maketrans(dict.fromkeys(string.punctuation + string.digits, " "))
_TOOL_WEIGHT = 2.0


def hashed(tools: Sequence[str], text: str) -> np.ndarray:
    """The default embedding: hashed words and tool n-grams."""
    clipped = text if len(text) <= _HEAD + _TAIL else text[:_HEAD] + "\n" + text[-_TAIL:]
    features = [word.encode() for word in set(clipped.lower().translate(_SPACES).split()) if len(word) > 2]
    weights = [1.0] * len(features)
    for index, tool in enumerate(tools):
        features.append(f"tool:{tool}".encode())
        if index:
            features.append(f"tools:{tools[index - 1]}>{tool}".encode())
    weights += [_TOOL_WEIGHT] * (len(features) - len(weights))
    # One crc32 per feature (deterministic across processes); dimension and sign from its bits.
    codes = np.fromiter(map(zlib.crc32, features), dtype=np.uint32, count=len(features))
    signs = np.where(codes & 0x80000000, 1.0, -1.0) * np.asarray(weights)
    return _unit(np.bincount(codes % DIM, weights=signs, minlength=DIM).astype(np.float32))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def sentence_transformer(tools: Sequence[str], text: str) -> np.ndarray:
    """A local sentence-transformers model (`TRAJSITE_EMBEDDING_MODEL`, a directory)."""
    return np.asarray(_model().encode(" ".join(tools) + "\n" + text[: _HEAD + _TAIL]), dtype=np.float32)


@functools.cache
def _model():
    from sentence_transformers import SentenceTransformer  # optional: only when chosen

    return SentenceTransformer(os.environ["TRAJSITE_EMBEDDING_MODEL"], local_files_only=True)


@functools.cache
def _chosen() -> Callable[[Sequence[str], str], np.ndarray]:
    name = os.environ.get("TRAJSITE_EMBEDDING", "")
    if not name:
        return hashed
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


@functools.cache
def _projection(width: int) -> np.ndarray:
    return np.random.default_rng(width).standard_normal((width, DIM)).astype(np.float32) / np.sqrt(DIM)


def embed(tools: Sequence[str], text: str) -> list[float]:
    """The stored vector of a trajectory (the chosen function's, brought to `DIM`, length 1)."""
    vector = np.asarray(_chosen()(tools, text), dtype=np.float32).ravel()
    if len(vector) != DIM:
        vector = vector @ _projection(len(vector))
    return _unit(vector).tolist()
