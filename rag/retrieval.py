"""Hybrid retrieval: dense (FAISS inner product) fused with lexical (BM25) by reciprocal rank fusion.

Why both: all-MiniLM-L6-v2 alone misses passages that share rare words with the question (the
sample's Brest treaty sentence is not in its top 3 for "When was the Brest peace treaty
signed?"), while BM25 alone misses paraphrases. RRF combines their ranks without calibrating
their incomparable scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import vectors
from .lexical import top as top_scores
from .store import IndexData
from .text import terms
from .types import Hit, Passage

if TYPE_CHECKING:  # rag.shards imports this module
    from .shards import ShardedIndexData

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")

# RRF constant from Cormack, Clarke & Büttcher (2009), "Reciprocal rank fusion outperforms
# Condorcet and individual rank learning methods": k=60 damps the influence of the very top
# ranks so that agreement between the two lists matters more than either list's first place.
RRF_K = 60
# How many candidates each retriever contributes before fusion.
CANDIDATES = 100
# Each retriever's first passages that stay among the k fused results whatever the other
# retriever thinks of them. RRF's flat weights otherwise sink a passage one retriever ranks first
# and the other far down: "He instructed his henchman Pavel Sudopradov…" is BM25's first for
# "What was the name of Beria's henchman?" and only the dense model's 40th (it never says Beria).
RETRIEVER_TOP = 2


@dataclass
class Retriever:
    """Searches one loaded index."""

    index: IndexData | ShardedIndexData  # a sharded one only through ShardedRetriever

    def search(self, query: str, query_vector: np.ndarray | None, *, k: int = 10, mode: Mode = "hybrid") -> list[Hit]:
        """Return the `k` best passages for `query`, best first.

        Args:
            query: the question text (for BM25).
            query_vector: its unit embedding (for dense search); unused in "bm25" mode.
            mode: "hybrid" (default), or one retriever alone for baselines.
        """
        stored = self.index.passages
        n = len(stored)
        if n == 0:
            return []
        # A stored passage is made from its columns when asked for (rag.columns): each candidate
        # once per search, not once per comparison of the sorts below.
        made: dict[int, Passage] = {}

        class _Made:
            def __getitem__(self, i: int) -> Passage:
                if i not in made:
                    made[i] = stored[i]
                return made[i]

        passages = _Made()
        depth = min(CANDIDATES, n)
        dense = self._dense(query_vector, depth) if mode in ("hybrid", "dense") and query_vector is not None else {}
        lexical = self._lexical(query, depth) if mode in ("hybrid", "bm25") else {}
        fused: dict[int, float] = {}

        def best_first(scores: dict[int, float]) -> list[int]:
            # Equal scores (BM25 gives many) are ordered by where the passage stands in its
            # source, not by its number in the index: a sharded index numbers passages otherwise,
            # and must rank, hence fuse, exactly as one index does.
            return sorted(scores, key=lambda i: (-scores[i], passages[i].source, passages[i].start))

        dense_ranked = best_first(dense)
        if mode in ("hybrid", "dense"):
            for rank, i in enumerate(dense_ranked):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        if mode in ("hybrid", "bm25"):
            positive = [i for i in best_first(lexical) if lexical[i] > 0]
            for rank, i in enumerate(positive):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank + 1)
        ranked = best_first(fused)
        kept = set()
        if mode == "hybrid":
            kept = set(dense_ranked[:RETRIEVER_TOP]) | set(positive[:RETRIEVER_TOP])
        free = k - len(kept)  # places left for the fused order alone
        best = []
        for i in ranked:
            if i in kept or free > 0:
                best.append(i)
                free -= i not in kept
            if len(best) == k:
                break
        return [
            Hit(
                passage=passages[i],
                score=fused[i],
                dense_score=dense[i] if i in dense else self._dense_score(query_vector, i),
                lexical_score=lexical.get(i, 0.0),
            )
            for i in best
        ]

    def _single(self) -> IndexData:
        # ShardedRetriever overrides every method that reads one index's FAISS or BM25 files.
        assert isinstance(self.index, IndexData)
        return self.index

    def _dense(self, query_vector: np.ndarray, depth: int) -> dict[int, float]:
        scores, ids = vectors.search(self._single().faiss_index, query_vector, depth)
        return {int(i): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}

    def _dense_score(self, query_vector: np.ndarray | None, i: int) -> float:
        if query_vector is None:
            return 0.0
        return float(vectors.vector(self._single().faiss_index, i) @ query_vector)

    def _lexical(self, query: str, depth: int) -> dict[int, float]:
        bm25 = self._single().bm25
        vocabulary = self.index.vocabulary
        query_terms = list(dict.fromkeys(v for t in terms(query) for v in vocabulary.variants(t)))
        if not query_terms:
            return {}
        scores = bm25.get_scores(query_terms)
        return {int(i): float(scores[i]) for i in top_scores(scores, depth)}
