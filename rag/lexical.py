"""The BM25 index as arrays on disk: term frequencies by term, memory-mapped, scored when asked.

Why not bm25s's saved index (which this project used until index format 4): bm25s stores each
posting's final score, idf and average passage length baked in, so adding or removing one
document changes every stored number and the whole index had to be rebuilt (about a minute of
the 2.6 minutes a 1,000,000-passage rebuild took, tokenizing included). Storing the raw term
frequencies and passage lengths instead makes an update a merge of postings, and the score is
computed per question from the postings of its few terms, with the formula bm25s uses (Lucene's
BM25, k1 = 1.5, b = 0.75, its defaults), so the scores are the ones bm25s gave.

Layout of the folder (every array a plain `.npy`, opened with `np.load(mmap_mode="r")`):

    vocabulary.json   the terms, sorted; term i owns postings indptr[i]:indptr[i + 1]
    indptr.npy        int64, terms + 1
    passages.npy      int32, the passage number of each posting (increasing within a term)
    tf.npy            uint16, how often the term occurs in that passage
    lengths.npy       int32, each passage's number of terms (stopwords already removed)
    params.json       k1, b and the counts, for a person reading the folder
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

# bm25s's defaults, which the scores before format 4 were computed with (Lucene's choice:
# Robertson's k1 in [1.2, 2.0] and b = 0.75).
K1 = 1.5
B = 0.75
VOCABULARY = "vocabulary.json"
ARRAYS = ("indptr", "passages", "tf", "lengths")
PARAMS = "params.json"
# A term occurring more than this often in one passage is counted this often (uint16 storage;
# no sentence repeats a word 65,535 times).
MAX_TF = np.iinfo(np.uint16).max


def idf(df: np.ndarray | int, n: int) -> np.ndarray | float:
    """Lucene's idf (bm25s's default): log(1 + (n - df + 0.5) / (df + 0.5))."""
    if isinstance(df, (int, np.integer)):
        return math.log(1 + (n - df + 0.5) / (df + 0.5))
    return np.log1p((n - df + 0.5) / (df + 0.5))


@dataclass
class Bm25Index:
    """Postings of every term; `get_scores` gives each passage's BM25 score for a query.

    `vocab_dict` (term -> column) and `scores["indptr"]` (column starts, so a term's document
    frequency is indptr[c + 1] - indptr[c]) are named as bm25s named them: the answerer reads
    document frequencies through them, for one index and a sharded one alike.
    """

    terms: list[str]
    indptr: np.ndarray
    passages: np.ndarray
    tf: np.ndarray
    lengths: np.ndarray
    k1: float = K1
    b: float = B

    def __post_init__(self) -> None:
        self.vocab_dict = {term: column for column, term in enumerate(self.terms)}
        self.scores = {"indptr": self.indptr}
        self.n = len(self.lengths)
        self.average_length = float(np.mean(self.lengths)) if self.n else 0.0

    def idf_by_term(self) -> dict[str, float]:
        """Every term's idf, computed at once (a loop over a million terms costs seconds)."""
        values = idf(np.diff(np.asarray(self.indptr)), self.n)
        return dict(zip(self.terms, np.asarray(values, dtype=np.float64).tolist()))

    def df(self, term: str) -> int:
        column = self.vocab_dict.get(term)
        return 0 if column is None else int(self.indptr[column + 1] - self.indptr[column])

    def get_scores(self, query_terms: Sequence[str], *, idf_of: dict[str, float] | None = None,
                   average_length: float | None = None) -> np.ndarray:
        """Every passage's BM25 score for `query_terms` (0 where none occurs), float32.

        Args:
            idf_of, average_length: score with these statistics instead of this index's own
                (a shard scoring as the whole collection does; see rag.shards).
        """
        scores = np.zeros(self.n, dtype=np.float32)
        if not self.n:
            return scores
        average = average_length if average_length is not None else self.average_length
        for term in dict.fromkeys(query_terms):
            column = self.vocab_dict.get(term)
            if column is None:
                continue
            start, end = int(self.indptr[column]), int(self.indptr[column + 1])
            rows = np.asarray(self.passages[start:end])
            tf = np.asarray(self.tf[start:end], dtype=np.float32)
            weight = idf_of[term] if idf_of is not None else idf(end - start, self.n)
            norm = self.k1 * ((1 - self.b) + self.b * self.lengths[rows] / average)
            # A passage occurs once in a term's postings, so plain fancy-index addition is exact.
            scores[rows] += np.float32(weight) * tf / (tf + norm.astype(np.float32))
        return scores


def top(scores: np.ndarray, depth: int) -> np.ndarray:
    """The rows of the `depth` highest positive scores, in no particular order.

    Only passages sharing a term with the query score above 0, usually a small share of a large
    collection: selecting among them is what costs, not among every passage.
    """
    rows = np.flatnonzero(scores > 0)
    if len(rows) > depth:
        rows = rows[np.argpartition(-scores[rows], depth - 1)[:depth]]
    return rows


def build(passage_terms: Iterable[Sequence[str]]) -> Bm25Index:
    """The index of the passages whose terms are given, in passage order."""
    vocabulary: dict[str, int] = {}
    term_ids: list[int] = []
    lengths: list[int] = []
    for terms in passage_terms:
        lengths.append(len(terms))
        term_ids.extend(vocabulary.setdefault(t, len(vocabulary)) for t in terms)
    ids = np.asarray(term_ids, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return _from_pairs(list(vocabulary), ids, rows, np.ones(len(ids), dtype=np.int64), np.asarray(lengths, np.int32))


def merge(previous: Bm25Index, keep: np.ndarray, new_terms: Sequence[Sequence[str]], new_rows: np.ndarray,
          n: int) -> Bm25Index:
    """The index after an update, without re-reading the passages that did not change.

    Args:
        previous: the index before.
        keep: for each of its passages, its number in the new index, or -1 if it is gone.
        new_terms: the terms of each new passage ...
        new_rows: ... and its number in the new index.
        n: passages in the new index.
    """
    old_columns = np.repeat(np.arange(len(previous.terms), dtype=np.int64), np.diff(previous.indptr))
    old_rows = keep[np.asarray(previous.passages)]
    alive = old_rows >= 0
    vocabulary = {t: i for i, t in enumerate(previous.terms)}
    term_ids: list[int] = []
    lengths = np.zeros(n, dtype=np.int32)
    lengths[keep[keep >= 0]] = np.asarray(previous.lengths)[keep >= 0]
    for row, terms in zip(new_rows, new_terms):
        lengths[row] = len(terms)
        term_ids.extend(vocabulary.setdefault(t, len(vocabulary)) for t in terms)
    added_ids = np.asarray(term_ids, dtype=np.int64)
    added_rows = np.repeat(np.asarray(new_rows, dtype=np.int64), [len(t) for t in new_terms])
    ids = np.concatenate([old_columns[alive], added_ids])
    rows = np.concatenate([old_rows[alive].astype(np.int64), added_rows])
    counts = np.concatenate([np.asarray(previous.tf, dtype=np.int64)[alive], np.ones(len(added_ids), np.int64)])
    return _from_pairs(list(vocabulary), ids, rows, counts, lengths)


def _from_pairs(vocabulary: list[str], ids: np.ndarray, rows: np.ndarray, counts: np.ndarray,
                lengths: np.ndarray) -> Bm25Index:
    """Postings from (term id, passage, count) triples; terms no passage uses any more are dropped,
    and the terms are sorted, so equal collections give equal files whatever their history."""
    order = np.argsort(np.asarray(vocabulary, dtype=object), kind="stable") if vocabulary else np.zeros(0, np.int64)
    rank = np.empty(len(vocabulary), dtype=np.int64)
    rank[order] = np.arange(len(vocabulary))
    columns = rank[ids] if len(ids) else ids
    n = len(lengths)
    # One key per (term, passage): summing the counts of equal keys gives the term frequency.
    keys = columns * max(n, 1) + rows
    unique, inverse = np.unique(keys, return_inverse=True)
    tf = np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64) if len(keys) else np.zeros(0, np.int64)
    columns, rows = unique // max(n, 1), unique % max(n, 1)
    per_column = np.bincount(columns, minlength=len(vocabulary))
    used = per_column > 0
    sorted_terms = [vocabulary[i] for i in order]
    terms = [t for t, u in zip(sorted_terms, used) if u]
    indptr = np.concatenate([[0], np.cumsum(per_column[used])]).astype(np.int64)
    return Bm25Index(terms=terms, indptr=indptr, passages=rows.astype(np.int32),
                     tf=np.minimum(tf, MAX_TF).astype(np.uint16), lengths=np.asarray(lengths, dtype=np.int32))


def save(index: Bm25Index, folder: Path) -> list[Path]:
    """Write the folder; returns the files written (each flushed to disk by the caller's checksum pass)."""
    folder.mkdir()
    written = []
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        np.save(path, np.ascontiguousarray(getattr(index, name)), allow_pickle=False)
        written.append(path)
    (folder / VOCABULARY).write_text(json.dumps(index.terms, ensure_ascii=False), encoding="utf-8")
    params = {"method": "lucene", "k1": index.k1, "b": index.b, "passages": index.n, "terms": len(index.terms),
              "postings": int(index.indptr[-1]) if len(index.indptr) else 0}
    (folder / PARAMS).write_text(json.dumps(params, indent=1), encoding="utf-8")
    return written + [folder / VOCABULARY, folder / PARAMS]


def load(folder: Path) -> Bm25Index:
    """Open a saved index; the arrays are memory-mapped (an empty array is read, as it cannot be mapped)."""
    params = json.loads((folder / PARAMS).read_text(encoding="utf-8"))
    terms = json.loads((folder / VOCABULARY).read_text(encoding="utf-8"))
    arrays = {name: _load_array(folder / f"{name}.npy") for name in ARRAYS}
    return Bm25Index(terms=terms, k1=float(params["k1"]), b=float(params["b"]), **arrays)


def _load_array(path: Path) -> np.ndarray:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    # A plain array over the map: numpy.memmap's own slicing costs more than the slice it reads.
    return np.load(path, allow_pickle=False) if array.size == 0 else array.view(np.ndarray)
