"""The dense vector index: exact search for small collections, an IVF index beyond a measured size.

Below `ann_threshold()` passages the index is a FAISS `IndexFlatIP`: exact, and no training.
Exact search costs one scan of every vector per question, linear in the collection (on this
project's 2-core machine 13 ms at 100,000 passages and about 250 ms at 1,000,000: see
`rag bench --ann-sweep` and the growth table of `rag bench --passages 1000000`). From the
threshold on, the index is an `IndexIVFScalarQuantizer` holding half-precision (fp16) vectors:

- the vectors are clustered into `nlist` lists (k-means on a sample) and a question scans only
  the `nprobe` lists nearest to it. Each vector is stored as 16-bit floats, not as residuals
  from its list's centroid, so every vector can be read back (`all_vectors`) for an incremental
  rebuild, and re-encoding a read-back vector gives the same codes: updates never drift;
- scanning is bound by memory bandwidth, so half the bytes halve it (and faiss's fp16 scanner
  is SIMD): at 1,000,000 synthetic passages (nlist 2000, `rag bench --passages 1000000`'s
  vectors, 200 questions), both indexes memory-mapped and searched in turn at load average
  ~3.4, one question at nprobe 768 took p50 30.5 ms (p95 44.1) against 54.5 ms (80.4) for the
  float32 `IndexIVFFlat` this replaced, with the same recall@10 against exact float32 search
  (0.992; 0.984 and 0.974 at nprobe 512 and 384 for both). A score differs from the exact inner
  product by the rounding of the stored vector: below 1e-3 for unit vectors;
- `nprobe` is calibrated at build time on the collection itself: the smallest value whose
  recall@10 against exact search reaches `CALIBRATION_RECALL` on sampled passages;
- both kinds are memory-mapped when opened, so opening costs the same at any size.

Alternatives measured at 100,000 synthetic passages on 2 busy cores: HNSW (M=32,
efConstruction=40) reached recall@10 0.968 at 0.9 ms but took 74 s to build against 16 s for
IVF with 4*sqrt(n) lists, grows faster than linearly, and FAISS cannot memory-map it (opening a
million would read ~1.7 GB, against the 1 s budget). IVF-PQ was not adopted: its compressed codes
approximate the scores, so recall@10 against exact needs a re-ranking with the full vectors,
which would then have to be stored besides. At 1,000,000 passages (as above): 8-bit scalar
codes (IVF-SQ8) scan about as fast as fp16 (nprobe 768: p50 16 ms) but lose recall (0.969 vs
0.992) and read back only as 8-bit approximations; re-ranking their candidates with the float32 vectors
(`IndexRefineFlat`) restores it at 24-26 ms and stores 1.25x the bytes of float32 alone; a
finer nprobe on the float32 lists (512: p95 50 ms) was still at the budget before BM25.

The choice (kind and parameters) is recorded in the manifest as `VectorIndexSpec.to_dict()`.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:  # faiss is imported where it is used: `import rag` stays light
    import faiss

ENV_ANN_THRESHOLD = "RAG_ANN_THRESHOLD"
# Collections of at least this many passages get an IVF index. Rule (`rag bench --ann-sweep`):
# switch once exact search of a question costs more than embedding it, since IVF keeps recall@10
# >= 0.95 at any size by calibration. Measured on an idle 2-core machine (synthetic vectors,
# 200 questions each): embedding a question 12 ms; exact search p50 1.4 ms at 10,000 passages,
# 6.8 ms at 50,000, 13.1 ms at 100,000, 26 ms at 200,000; IVF 0.1/1.7/4.5/9.4 ms with
# recall@10 0.95-0.99. Below 100,000 exact search is cheaper than the embedding it follows,
# so exact results cost nothing noticeable and need no k-means training.
ANN_THRESHOLD = 100_000
# Lists per collection, times sqrt(n). FAISS suggests 4 to 16; at 200,000 synthetic passages 1
# and 2 reached the same recall for the same share of vectors scanned (0.946 and 0.956 at 20%),
# while k-means training and assignment grow with n * nlist: 2 keeps a 1,000,000-passage build
# within minutes on 2 cores.
LISTS_PER_SQRT_N = 2
# k-means trains on this many sampled vectors per list (FAISS warns below 39) ...
TRAINING_PER_LIST = 40
# ... for this many iterations (FAISS's default is 25). Calibrating nprobe afterwards makes up
# for rougher centroids, and training time is linear in the iterations.
KMEANS_ITERATIONS = 10
# nprobe values tried, smallest first; the first to reach the target recall is kept. Steps of
# about sqrt(2): search time is proportional to nprobe, so a step never costs more than 41%.
NPROBE_CHOICES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536)
# Sampled passages used as calibration queries (their own vector is excluded from the results).
CALIBRATION_QUERIES = 256
# Target recall@10 on those queries. Above the required 0.95 because passages-as-queries are a
# little easier than real questions: on 5,103 SQuAD sentences with 1,000 SQuAD questions
# (MiniLM), passage queries reached 0.970 where the real questions reached 0.963.
CALIBRATION_RECALL = 0.97
KINDS = ("flat", "ivf")
# The codes an IVF index stores its vectors as (see the module docstring for the measurement).
IVF_CODES = "QT_fp16"
# An IVF index is updated in place (its trained lists kept, new vectors assigned to the nearest
# list, removed ones dropped) until this share of the collection has changed since k-means ran;
# then it is rebuilt and recalibrated. The lists were trained on a sample of ~40 vectors per list
# anyway (TRAINING_PER_LIST), so a collection that differs by a tenth from the one they were
# trained on is partitioned about as well as that sample partitioned it; the recall check of
# `rag bench --passages 1000000` measures an updated index against exact search.
RETRAIN_SHARE = 0.1


@dataclass(frozen=True)
class VectorIndexSpec:
    """Which FAISS index holds the vectors, with the parameters it was built and is searched with."""

    kind: str  # "flat" (exact) or "ivf" (IndexIVFScalarQuantizer, fp16 vectors)
    nlist: int = 0  # ivf: number of k-means lists
    nprobe: int = 0  # ivf: lists scanned per question
    calibration_recall: float | None = None  # ivf: recall@10 of `nprobe` on the calibration queries
    # ivf: vectors added or removed since k-means trained the lists (`update`); 0 after a build
    changed_since_training: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """For people: "flat (exact)" or "ivf (nlist=…, nprobe=…, calibration recall@10=…)"."""
        if self.kind == "flat":
            return "flat (exact)"
        return f"{self.kind} (nlist={self.nlist}, nprobe={self.nprobe}, calibration recall@10={self.calibration_recall})"

    @classmethod
    def from_manifest(cls, manifest: dict) -> "VectorIndexSpec":
        """The spec a manifest records; manifests written before it existed were all flat."""
        recorded = manifest.get("vector_index") or {"kind": manifest.get("index_type", "flat")}
        return cls(**recorded)


def ann_threshold() -> int:
    """Passages from which an approximate index is built: $RAG_ANN_THRESHOLD or `ANN_THRESHOLD`.

    Raises:
        ConfigError: the variable is set but not a positive whole number.
    """
    raw = os.environ.get(ENV_ANN_THRESHOLD)
    if raw is None or raw == "":
        return ANN_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{ENV_ANN_THRESHOLD} must be a positive whole number of passages, not {raw!r}")
    return value


def build(vectors: np.ndarray, *, threshold: int | None = None) -> tuple[faiss.Index, VectorIndexSpec]:
    """A FAISS index over unit `vectors` (row i gets id i), exact or IVF by size.

    Args:
        vectors: (n, dimension) float32 unit vectors.
        threshold: passages from which to build IVF (default: `ann_threshold()`).

    Returns:
        (the index, its spec)
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dimension = vectors.shape
    threshold = ann_threshold() if threshold is None else threshold
    if n < max(threshold, 1):
        flat = faiss.IndexFlatIP(dimension)
        if n:
            flat.add(vectors)
        return flat, VectorIndexSpec(kind="flat")
    nlist = max(1, min(n // TRAINING_PER_LIST, round(LISTS_PER_SQRT_N * math.sqrt(n))))
    index = _empty_ivf(faiss.IndexFlatIP(dimension), nlist)
    index.cp.niter = KMEANS_ITERATIONS
    rng = np.random.default_rng(0)  # a fixed sample: the same vectors give the same index
    sample = rng.choice(n, size=min(n, nlist * TRAINING_PER_LIST), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    nprobe, recall = _calibrate(index, vectors, rng)
    index.nprobe = nprobe
    return index, VectorIndexSpec(kind="ivf", nlist=nlist, nprobe=nprobe, calibration_recall=round(recall, 4))


def update(previous, spec: VectorIndexSpec, rows: np.ndarray, new: np.ndarray,
           *, threshold: int | None = None) -> tuple[faiss.Index, VectorIndexSpec] | None:
    """The IVF index after an update, keeping `previous`'s trained lists; None when it must be rebuilt.

    Args:
        previous: the index before (IVF, memory-mapped or not).
        rows: for each row of the new index, its row in `previous`, or -1 for a new vector ...
        new: ... the new vectors, in order.

    Returns None (build afresh with `build`) when `previous` is exact, when the new collection is
    below the IVF threshold, or when more than RETRAIN_SHARE of it will have changed since training.
    """
    import faiss

    n = len(rows)
    threshold = ann_threshold() if threshold is None else threshold
    if spec.kind != "ivf" or n < max(threshold, 1):
        return None
    old_to_new = np.full(previous.ntotal, -1, dtype=np.int64)
    kept = np.nonzero(rows >= 0)[0]
    old_to_new[rows[kept]] = kept
    changed = spec.changed_since_training + len(new) + (previous.ntotal - len(kept))
    if changed > RETRAIN_SHARE * n:
        return None
    dimension = previous.d
    quantizer = faiss.IndexFlatIP(dimension)
    quantizer.add(previous.quantizer.reconstruct_n(0, previous.nlist))
    index = _empty_ivf(quantizer, previous.nlist)
    # The centroids are the trained ones (faiss's wrapper keeps `quantizer` alive); fp16 codes need no training.
    index.is_trained = True
    lists, out = previous.invlists, index.invlists
    assert out is not None  # an IVF index always has its lists
    total = 0
    for number in range(lists.nlist):
        size = lists.list_size(number)
        if not size:
            continue
        ids = old_to_new[faiss.rev_swig_ptr(lists.get_ids(number), size)]
        codes = np.frombuffer(faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size), dtype=np.uint8)
        alive = ids >= 0
        if not alive.any():
            continue
        ids = np.ascontiguousarray(ids[alive])
        codes = np.ascontiguousarray(codes.reshape(size, lists.code_size)[alive])
        out.add_entries(number, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        total += len(ids)
    index.ntotal = total
    if len(new):
        index.add_with_ids(np.ascontiguousarray(new, dtype=np.float32), np.nonzero(rows < 0)[0].astype(np.int64))
    index.nprobe = spec.nprobe
    return index, VectorIndexSpec(kind="ivf", nlist=spec.nlist, nprobe=spec.nprobe,
                                  calibration_recall=spec.calibration_recall, changed_since_training=changed)


def _empty_ivf(quantizer, nlist: int):
    """An IVF index over `quantizer`'s lists storing fp16 vectors themselves (not residuals)."""
    import faiss

    quantizer_type = getattr(faiss.ScalarQuantizer, IVF_CODES)
    return faiss.IndexIVFScalarQuantizer(quantizer, quantizer.d, nlist, quantizer_type, faiss.METRIC_INNER_PRODUCT,
                                         False)


def as_stored(vectors: np.ndarray) -> np.ndarray:
    """`vectors` as an IVF index stores and returns them (rounded to its codes); for comparing."""
    import faiss

    quantizer = faiss.ScalarQuantizer(vectors.shape[1], getattr(faiss.ScalarQuantizer, IVF_CODES))
    return quantizer.decode(quantizer.compute_codes(np.ascontiguousarray(vectors, dtype=np.float32)))


def _calibrate(index, vectors: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    """The smallest nprobe whose recall@10 against exact search reaches CALIBRATION_RECALL."""
    import faiss

    n = len(vectors)
    queries = rng.choice(n, size=min(n, CALIBRATION_QUERIES), replace=False)
    _, exact = faiss.knn(vectors[queries], vectors, 11, metric=faiss.METRIC_INNER_PRODUCT)
    recall = 0.0
    nprobe = 1
    for nprobe in [p for p in NPROBE_CHOICES if p < index.nlist] + [index.nlist]:
        index.nprobe = nprobe
        _, found = index.search(vectors[queries], 11)
        recall = recall_at(found, exact, 10, exclude=queries)
        if recall >= CALIBRATION_RECALL:
            break
    return nprobe, recall


def recall_at(found: np.ndarray, exact: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> float:
    """Mean share of each row's exact top-k that `found` also has in its top-k.

    `exclude[i]` is an id left out of row i on both sides (a query's own vector).
    """
    shares = []
    for row, (ours, truth) in enumerate(zip(found, exact)):
        if exclude is not None:
            ours, truth = ours[ours != exclude[row]], truth[truth != exclude[row]]
        truth = set(truth[:k].tolist()) - {-1}
        if truth:
            shares.append(len(truth & set(ours[:k].tolist())) / len(truth))
    return float(np.mean(shares)) if shares else 1.0


def write(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read(path: Path, spec: VectorIndexSpec) -> faiss.Index:
    """Open a written index memory-mapped: pages are read when a search touches them.

    The file must have been checked to have its full size first: a memory-mapped file that
    is shorter than its header says crashes the process (SIGBUS) instead of raising.
    """
    import faiss

    if spec.kind not in KINDS:
        raise ValueError(f"unknown vector index kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
    # IO_FLAG_MMAP_IFC maps a flat index's vectors in place; IO_FLAG_MMAP maps IVF lists.
    flags = faiss.IO_FLAG_MMAP_IFC if spec.kind == "flat" else faiss.IO_FLAG_MMAP
    index = faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY)
    if spec.kind == "ivf":
        # read_index returns the concrete class the file holds: an IVF spec was written from an IVF index.
        assert isinstance(index, faiss.IndexIVF)
        index.nprobe = spec.nprobe
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the `k` nearest unit vectors for each query row; ids are -1 past the end."""
    return index.search(np.ascontiguousarray(queries.reshape(-1, index.d), dtype=np.float32), k)


def vector(index, i: int) -> np.ndarray:
    """The stored vector of passage `i`."""
    if hasattr(index, "invlists") and index.direct_map.type == 0:  # ivf: map ids to lists once
        index.make_direct_map()
    return index.reconstruct(int(i))


def all_vectors(index) -> np.ndarray:
    """Every stored vector, in id order, as an (ntotal, d) float32 array."""
    import faiss

    n = index.ntotal
    if n == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    if not hasattr(index, "invlists"):
        return index.reconstruct_n(0, n)
    # Reading the lists whole is ~100x faster than reconstructing one vector at a time.
    out = np.empty((n, index.d), dtype=np.float32)
    lists = index.invlists
    for number in range(lists.nlist):
        size = lists.list_size(number)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
        codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size)
        out[ids] = index.sq.decode(np.frombuffer(codes, dtype=np.uint8).reshape(size, lists.code_size))
    return out
