"""Columnar passages, BM25 postings and updates that carry unchanged rows over (index format 4).

Checked against references: bm25s's scores for BM25, a fresh build for a merged update, the
passage objects themselves for the columns, exact search for an updated IVF index.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.bench import clustered_vectors
from rag import columns, lexical, store, vectors
from rag.settings import SAMPLE_DOCUMENT, ChunkSettings
from rag.splitting import passage_id
from rag.store import Carried, SourceRecord
from rag.text import terms
from rag.types import Passage

SENTENCES = [s.strip() + "." for s in SAMPLE_DOCUMENT.read_text(encoding="utf-8").split(".") if s.strip()]


def passages_of(source: str, texts: list[str], *, location: str | None = None) -> list[Passage]:
    out, offset = [], 0
    for position, text in enumerate(texts):
        out.append(Passage(id=passage_id(source, offset, offset + len(text), text), source=source, start=offset,
                           end=offset + len(text), text=text, position=position, paragraph=position // 3,
                           location=location and f"{location} {position}"))
        offset += len(text) + 1
    return out


def test_bm25_scores_are_the_ones_bm25s_gives():
    bm25s = pytest.importorskip("bm25s")
    corpus = [terms(s) for s in SENTENCES]
    reference = bm25s.BM25()
    reference.index(corpus, show_progress=False)
    ours = lexical.build(corpus)
    for question in ("When was the Brest peace treaty signed?", "Who was the German ambassador?", "tanks aircraft"):
        query = [t for t in terms(question) if t in ours.vocab_dict]
        np.testing.assert_allclose(ours.get_scores(query), reference.get_scores(query), rtol=1e-5, atol=1e-6)
    assert ours.df("treati") == int(np.diff(reference.scores["indptr"])[reference.vocab_dict["treati"]])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefg"), max_size=6), min_size=1, max_size=12), st.data())
def test_a_merged_update_equals_a_fresh_build(old, data):
    previous = lexical.build(old)
    keep_mask = data.draw(st.lists(st.booleans(), min_size=len(old), max_size=len(old)))
    added = data.draw(st.lists(st.lists(st.sampled_from("cdefghij"), max_size=5), max_size=5))
    # The new collection: the kept passages in their order with the new ones inserted at drawn places.
    order: list[tuple[str, int]] = [("old", i) for i in range(len(old)) if keep_mask[i]]
    for j in range(len(added)):
        order.insert(data.draw(st.integers(0, len(order))), ("new", j))
    keep = np.full(len(old), -1, dtype=np.int64)
    new_rows = np.zeros(len(added), dtype=np.int64)
    for row, (kind, i) in enumerate(order):
        if kind == "old":
            keep[i] = row
        else:
            new_rows[i] = row
    merged = lexical.merge(previous, keep, added, new_rows, len(order))
    fresh = lexical.build([old[i] if kind == "old" else added[i] for kind, i in order])
    assert merged.terms == fresh.terms
    for name in lexical.ARRAYS:
        np.testing.assert_array_equal(getattr(merged, name), getattr(fresh, name))


def test_passages_read_back_equal_and_carried_rows_equal_the_objects(tmp_path):
    a = passages_of("/docs/a.txt", SENTENCES[:5], location="lines")
    b = passages_of("/docs/ß b.txt", SENTENCES[5:9])
    c = passages_of("/docs/c.txt", SENTENCES[9:12], location="§ Über")
    columns.write(a + b + c, tmp_path / "passages-1")
    table = columns.read(tmp_path / "passages-1")
    assert list(table) == a + b + c and table[-1] == c[-1] and len(table) == 12
    assert {s: r.tolist() for s, r in columns.rows_by_source(table).items()} == {
        "/docs/a.txt": [0, 1, 2, 3, 4], "/docs/ß b.txt": [5, 6, 7, 8], "/docs/c.txt": [9, 10, 11]}

    # b changed (now two passages), a new source d between b and c, a kept as it was.
    b2 = passages_of("/docs/ß b.txt", ["It changed.", "Twice."])
    d = passages_of("/docs/bb.txt", SENTENCES[20:21])
    rows = np.array([0, 1, 2, 3, 4, -1, -1, -1, 9, 10, 11])
    columns.write_carried(table, rows, b2 + d, tmp_path / "passages-2")
    assert list(columns.read(tmp_path / "passages-2")) == a + b2 + d + c


def _write_synthetic(index_dir, documents: int, per_document: int):
    texts = SENTENCES * (documents * per_document // len(SENTENCES) + 1)
    passages, sources = [], {}
    for number in range(documents):
        source = f"/docs/{number:03d}.txt"
        own = passages_of(source, texts[number * per_document : (number + 1) * per_document])
        passages += own
        sources[source] = SourceRecord(sha256="0" * 64, size=1, mtime_ns=0, encoding="utf-8", passages=len(own))
    settings_ = {"model": "m", "dimension": 32, "normalized": True, "chunking": ChunkSettings().to_dict()}
    index_dir.mkdir()
    with store.lock(index_dir):
        store.write(index_dir, passages=passages, vectors=clustered_vectors(len(passages), 32), sources=sources,
                    settings=settings_, previous=None)
    return store.load(index_dir), settings_


def test_updating_one_document_of_an_ivf_index_keeps_its_lists_and_equals_a_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv(vectors.ENV_ANN_THRESHOLD, "1000")
    previous, settings_ = _write_synthetic(tmp_path / "index", documents=40, per_document=50)
    assert previous.manifest["vector_index"]["kind"] == "ivf"
    by_source = columns.rows_by_source(previous.passages)
    changed = "/docs/017.txt"
    fresh = passages_of(changed, ["The harbour of Lessing was built in 1777.", "It was empty."])
    fresh_vectors = clustered_vectors(2, 32, seed=9)
    rows = np.concatenate([np.full(2, -1) if s == changed else by_source[s] for s in sorted(by_source)])
    sources = previous.sources
    sources[changed] = SourceRecord(sha256="1" * 64, size=1, mtime_ns=0, encoding="utf-8", passages=2)
    with store.lock(tmp_path / "index"):
        store.write(tmp_path / "index", passages=fresh, vectors=fresh_vectors, sources=sources, settings=settings_,
                    previous=previous.manifest, carried=Carried(previous, rows))
    updated = store.load(tmp_path / "index")

    spec = updated.manifest["vector_index"]
    assert spec["kind"] == "ivf" and spec["nlist"] == previous.manifest["vector_index"]["nlist"]
    assert spec["changed_since_training"] == 50 + 2  # lists kept: 50 vectors gone, 2 added
    expected = [p for s in sorted(by_source) for p in (fresh if s == changed else
                                                       [previous.passages[int(r)] for r in by_source[s]])]
    assert list(updated.passages) == expected and updated.manifest["counts"]["passages"] == 1952
    old_vectors = previous.vectors()
    expected_vectors = np.concatenate([vectors.as_stored(fresh_vectors) if s == changed else old_vectors[by_source[s]]
                                       for s in sorted(by_source)])
    np.testing.assert_array_equal(updated.vectors(), expected_vectors)
    # BM25 as a fresh build of the same passages scores it.
    rebuilt = lexical.build([terms(p.text) for p in expected])
    query = terms("When was the harbour of Lessing built?")
    np.testing.assert_allclose(updated.bm25.get_scores(query), rebuilt.get_scores(query), rtol=1e-6)
    # A new passage is found by its own vector; the files are all the manifest names.
    _, ids = vectors.search(updated.faiss_index, fresh_vectors[1], 1)
    assert updated.passages[int(ids[0][0])] == fresh[1]
    assert store.verify(tmp_path / "index") == len(updated.manifest["checksums"])


def test_an_update_changing_over_a_tenth_retrains_the_lists(tmp_path, monkeypatch):
    monkeypatch.setenv(vectors.ENV_ANN_THRESHOLD, "1000")
    previous, settings_ = _write_synthetic(tmp_path / "index", documents=20, per_document=60)
    by_source = columns.rows_by_source(previous.passages)
    dropped = sorted(by_source)[:3]  # 180 of 1,200 passages: 15%
    rows = np.concatenate([by_source[s] for s in sorted(by_source) if s not in dropped])
    sources = {s: r for s, r in previous.sources.items() if s not in dropped}
    with store.lock(tmp_path / "index"):
        store.write(tmp_path / "index", passages=[], vectors=np.zeros((0, 32), np.float32), sources=sources,
                    settings=settings_, previous=previous.manifest, carried=Carried(previous, rows))
    spec = store.load(tmp_path / "index").manifest["vector_index"]
    assert spec["kind"] == "ivf" and spec["changed_since_training"] == 0
