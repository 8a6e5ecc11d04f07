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
import math
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


def hashed(tools: Sequence[str], text: str) -> list[float]:
    """The default embedding: hashed words and tool n-grams. Plain Python: for ~150 features a dozen
    small numpy calls cost more than the loop."""
    clipped = text if len(text) <= _HEAD + _TAIL else text[:_HEAD] + "\n" + text[-_TAIL:]
    vector = [0.0] * DIM
    # One crc32 per feature (deterministic across processes); dimension and sign from its bits.
    for word in set(clipped.lower().translate(_SPACES).split()):
        if len(word) > 2:
            code = zlib.crc32(word.encode())
            vector[code % DIM] += 1.0 if code & 0x80000000 else -1.0
    for index, tool in enumerate(tools):
        features = [f"tool:{tool}"] + ([f"tools:{tools[index - 1]}>{tool}"] if index else [])
        for feature in features:
            code = zlib.crc32(feature.encode())
            vector[code % DIM] += _TOOL_WEIGHT if code & 0x80000000 else -_TOOL_WEIGHT
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


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
    chosen = _chosen()
    if chosen is hashed:
        return hashed(tools, text)
    vector = np.asarray(chosen(tools, text), dtype=np.float32).ravel()
    if len(vector) != DIM:
        vector = vector @ _projection(len(vector))
    return _unit(vector).tolist()
