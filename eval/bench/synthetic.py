"""Synthetic data for search at scale: unit vectors clustered like MiniLM's, questions near them, and
passages made of corpus sentences with made-up words, ready for `rag.store.write`."""
from __future__ import annotations

import numpy as np

from .timing import timed

# Synthetic vectors. Uniform random unit vectors would make recall meaningless (every point is
# about equally far from every other), so the generator imitates MiniLM passage embeddings:
# documents of ~200 passages, sections of ~10, passages scattered around their section, noise
# concentrated in few directions (variance of direction i falls as 1/i, as in real embedding
# spectra) plus a small shared offset. Questions are drawn near one passage each. Checked on
# 5,103 SQuAD sentences and 1,000 SQuAD questions embedded with MiniLM (real vs synthetic at
# the same size): question-to-nearest cosine 0.66 vs 0.71, to 10th-nearest 0.48 vs 0.46,
# random pairs 0.03 vs 0.02, and IVF recall@10 at nlist=sqrt(n) for nprobe 1/4/8/16 of
# 0.63/0.92/0.96/0.99 vs 0.46/0.81/0.91/0.97: the synthetic set is the harder one.
PASSAGES_PER_DOCUMENT = 200
PASSAGES_PER_SECTION = 10
SECTION_SPREAD = 1.2  # noise around a document, relative to a unit vector's length
PASSAGE_SPREAD = 0.9  # around a section
QUESTION_SPREAD = 1.0  # around the passage a question is about
SPECTRUM_DECAY = 0.5  # standard deviation of direction i is proportional to i ** -SPECTRUM_DECAY
SHARED_OFFSET = 0.1
SEARCH_QUERIES = 200  # synthetic questions searched at each size
# Made-up words appended to each synthetic passage, drawn from a Zipf law over this many
# words: a realistic long tail for the BM25 vocabulary (repeating ~2,000 real sentences alone
# would keep it unrealistically small).
SYNTHETIC_VOCABULARY = 500_000
SYNTHETIC_WORDS_PER_PASSAGE = 2
TOKENIZING_SAMPLE = 20_000  # passages whose tokenizing is timed (it is per-passage work)


def _noise(rng: np.random.Generator, rows: int, dimension: int) -> np.ndarray:
    scale = (1.0 + np.arange(dimension, dtype=np.float32)) ** -SPECTRUM_DECAY
    scale *= np.sqrt(dimension / np.sum(scale**2)) / np.sqrt(dimension)
    out = np.empty((rows, dimension), dtype=np.float32)
    for start in range(0, rows, 100_000):  # in blocks: no float64 temporaries of the whole
        block = rng.standard_normal((min(100_000, rows - start), dimension), dtype=np.float32)
        out[start : start + len(block)] = block * scale
    return out


def _unit(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def clustered_vectors(n: int, dimension: int, *, seed: int = 0) -> np.ndarray:
    """`n` unit vectors clustered like passage embeddings (see the constants above)."""
    rng = np.random.default_rng(seed)
    offset = _unit(rng.standard_normal((1, dimension)).astype(np.float32))
    documents = _unit(_noise(rng, max(1, n // PASSAGES_PER_DOCUMENT), dimension))
    section_count = max(1, n // PASSAGES_PER_SECTION)
    sections = _unit(
        documents[rng.integers(0, len(documents), section_count)] + SECTION_SPREAD * _noise(rng, section_count, dimension)
    )
    out = _noise(rng, n, dimension)
    out *= PASSAGE_SPREAD
    out += sections[rng.integers(0, len(sections), n)]
    _unit(out)
    out += SHARED_OFFSET * offset
    return _unit(out)


def nearby_queries(anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic question near each anchor passage vector."""
    return _unit(anchors + QUESTION_SPREAD * _noise(rng, len(anchors), anchors.shape[1]))


def synthetic_contents(passages: int, dimension: int, texts: list[str], model: str) -> tuple[dict, float]:
    """Arguments for `store.write` (corpus sentences with made-up words, clustered unit vectors),
    and the measured tokenizing speed in passages/s.

    Tokenizing (`rag.text.terms`) is word by word, so a passage's terms are its sentence's terms
    followed by its made-up words' terms; they are computed once per sentence, and the per-passage
    cost is measured separately on `TOKENIZING_SAMPLE` passages.
    """
    from rag import ChunkSettings, Passage

    from ..internals import SourceRecord, passage_id, terms

    rng = np.random.default_rng(0)
    sentence = rng.integers(0, len(texts), passages)
    words = np.minimum(rng.zipf(1.2, (passages, SYNTHETIC_WORDS_PER_PASSAGE)), SYNTHETIC_VOCABULARY)
    sentence_terms = [terms(t) for t in texts]
    items: list[Passage] = []
    passage_terms: list[list[str]] = []
    sources: dict[str, SourceRecord] = {}
    for number in range(0, passages, PASSAGES_PER_DOCUMENT):
        source = f"/synthetic/document-{number // PASSAGES_PER_DOCUMENT:05d}.txt"
        offset = 0
        count = min(PASSAGES_PER_DOCUMENT, passages - number)
        for position in range(count):
            row = number + position
            made_up = [f"zq{w}" for w in words[row]]
            text = f"{texts[sentence[row]]} {' '.join(made_up)}"
            items.append(Passage(id=passage_id(source, offset, offset + len(text), text), source=source, start=offset,
                                 end=offset + len(text), text=text, position=position, paragraph=position // 5))
            passage_terms.append(sentence_terms[sentence[row]] + made_up)
            offset += len(text) + 1
        sources[source] = SourceRecord(sha256="0" * 64, size=offset, mtime_ns=0, encoding="utf-8", passages=count)
    sample = [p.text for p in items[:TOKENIZING_SAMPLE]]
    _, tokenizing_seconds = timed(lambda: [terms(t) for t in sample])
    assert [terms(t) for t in sample[:100]] == passage_terms[:100]  # the shortcut tokenizes alike
    contents = {
        "passages": items,
        "vectors": clustered_vectors(passages, dimension),
        "passage_terms": passage_terms,
        "sources": sources,
        "settings": {"model": model, "dimension": dimension, "normalized": True, "chunking": ChunkSettings().to_dict()},
    }
    return contents, len(sample) / tokenizing_seconds
