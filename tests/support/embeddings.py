"""A deterministic, offline embedding model for semantic-search tests.

Each character gets a fixed pseudo-random direction (seeded by its code point); a text is the
normalised, frequency-weighted sum of its characters' directions. Texts sharing characters score
close, an identical text scores 1.0, and nothing touches the network.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter

from langchain_core.embeddings import Embeddings


class LetterEmbeddings(Embeddings):
    def __init__(self, dims: int = 256) -> None:
        self.dims = dims

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (instances live as long as a test)
    def _direction(self, char: str) -> tuple[float, ...]:
        rng = random.Random(ord(char) * 7919 + self.dims)
        return tuple(rng.gauss(0.0, 1.0) for _ in range(self.dims))

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for char, count in Counter(text).items():
            for i, x in enumerate(self._direction(char)):
                vector[i] += count * x
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)
