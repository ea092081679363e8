"""Retrieval: hybrid, dense and BM25 modes over the real index, and the embedder they rely on."""
from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from rag.embedding import Embedder
from rag.retrieval import RRF_K

FLAGSHIP = "When was the Brest peace treaty signed?"
BREST_EVIDENCE = "in March of the same year they signed the Brest Peace Treaty"


def test_hybrid_ranks_the_treaty_sentence_in_the_top_three(sample):
    hits = sample.search(FLAGSHIP)
    assert any(BREST_EVIDENCE in hit.passage.text for hit in hits[:3])


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_every_mode_returns_ranked_hits_from_the_index(sample, mode):
    hits = sample.search("Brest peace treaty with Germany", k=5, mode=mode)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    indexed = {p.id for p in sample.passages}
    assert all(h.passage.id in indexed for h in hits)
    assert len({h.passage.id for h in hits}) == 5
    assert any("Brest" in h.passage.text for h in hits)


@pytest.mark.parametrize(
    "question",
    ["What was the name of Beria's henchman?", FLAGSHIP, "How many tanks did the Germans attack with?",
     "Who was the German ambassador to the Soviet Union?"],
)
def test_each_retrievers_first_passages_stay_among_the_hybrid_results(sample, question):
    # "He instructed his henchman Pavel Sudopradov…" is BM25's first for the henchman question,
    # but far down the dense ranking: fusion alone would drop it.
    hybrid = {h.passage.id for h in sample.search(question, k=8)}
    for mode in ("bm25", "dense"):
        assert {h.passage.id for h in sample.search(question, k=2, mode=mode)} <= hybrid, mode


def test_a_sentence_only_one_retriever_finds_answers_the_question(sample, verbatim):
    answer = sample.ask("What was the name of Beria's henchman?")
    verbatim(answer)
    assert answer.text.startswith("Pavel Sudopradov")


def test_bm25_mode_finds_nothing_for_words_the_documents_never_use(sample):
    assert sample.search("zyxwvut qqqq", mode="bm25") == []


def test_hybrid_scores_are_reciprocal_rank_fusion(sample):
    # A passage ranked r-th (from 0) by both retrievers scores 2 / (RRF_K + r + 1) at most.
    hits = sample.search(FLAGSHIP, k=10)
    assert 0 < hits[0].score <= 2 / (RRF_K + 1)
    assert all(h.score >= 1 / (RRF_K + len(sample.passages)) for h in hits)


def test_dense_mode_matches_a_brute_force_search(sample):
    question = "The German army attacked the Soviet Union with tanks and aircraft"
    manifest = json.loads((sample.index_dir / "manifest.json").read_text(encoding="utf-8"))
    stored = faiss.read_index(str(sample.index_dir / manifest["files"]["vectors"]))
    vectors = stored.reconstruct_n(0, stored.ntotal)  # the stored unit vectors, in passage order
    query = Embedder().encode_query(question)
    expected = np.argsort(-(vectors @ query), kind="stable")[:10]

    hits = sample.search(question, k=10, mode="dense")

    assert [h.passage.id for h in hits] == [sample.passages[i].id for i in expected]
    for hit, i in zip(hits, expected):
        assert hit.dense_score == pytest.approx(float(vectors[i] @ query), abs=1e-5)


@pytest.mark.parametrize("mode", ["semantic", "", "HYBRID", None])
def test_invalid_mode_is_refused_with_the_valid_ones(sample, mode):
    with pytest.raises(ValueError, match=r"mode must be one of hybrid, dense, bm25, not"):
        sample.search(FLAGSHIP, mode=mode)
    with pytest.raises(ValueError, match=r"mode must be one of hybrid, dense, bm25"):
        sample.ask(FLAGSHIP, mode=mode)


def test_embedder_gives_unit_vectors_and_batches_like_single_texts():
    embedder = Embedder()
    texts = ["Short.", "A somewhat longer sentence about the Brest peace treaty of 1918.", "Tanks " * 40]

    batch = embedder.encode(texts)
    singles = np.stack([embedder.encode_query(t) for t in texts])

    assert batch.shape == (3, 384) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    assert np.allclose(batch, singles, atol=1e-4)  # padding inside a batch changes nothing
    assert embedder.encode([]).shape == (0, 384)


def test_repeated_texts_are_embedded_once_and_keep_their_rows():
    embedder = Embedder()
    texts = ["Page 1 of 2", "The treaty was signed in March.", "Page 1 of 2"]
    calls = []

    vectors = embedder.encode(texts, progress=lambda done, total, seconds: calls.append(total))

    assert vectors.shape == (3, 384)
    assert np.array_equal(vectors[0], vectors[2])
    assert np.allclose(vectors[1], embedder.encode_query(texts[1]), atol=1e-4)
    assert calls == [2]  # two distinct texts embedded
