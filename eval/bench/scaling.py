"""Size and search at scale: synthetic indexes of growing size, each written, then opened and searched,
in fresh processes (see `protocol`), and the report's rows on disk size, memory and dense search.

The search timings read `Retriever._lexical`, an internal of rag.retrieval (through
`eval.internals`): BM25 alone has no public entry point, and its latency is one of the figures.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from .process import memory_bytes, reset_peak_memory
from .protocol import StoreTask, run_in_child
from .report import MB, PER, Row
from .synthetic import SEARCH_QUERIES, nearby_queries, synthetic_contents
from .timing import progress, spread, timed

# Dense search must find at least this share of the exact top 10 (issue 7).
REQUIRED_RECALL = 0.95
GROWTH_START = 10_000  # the smallest synthetic collection; each next one is 10 times larger
EXACT_TIMED_QUERIES = 20  # exact search of 1M vectors takes ~0.4 s a question


def disk_row(index_dir: Path, passages: int, dimension: int, label: str) -> Row:
    """The index's bytes on disk per PER passages, against the raw float32 vectors."""
    return Row(
        what=f"index on disk per {PER:,} passages ({label}) vs raw float32 vectors",
        ours=folder_bytes(index_dir) * PER / passages / MB,
        baseline=raw_vector_bytes(PER, dimension) / MB,
        unit="MB",
    )


def growth_sizes(largest: int) -> list[int]:
    """The collection sizes of the scaling table: 10,000, 100,000, ... below `largest`, then it."""
    sizes = []
    size = GROWTH_START
    while size < largest:
        sizes.append(size)
        size *= 10
    return sizes + [largest]


def synthetic_growth(work: Path, texts: list[str], questions: tuple[str, ...], largest: int, dimension: int,
                     model: str) -> list[dict]:
    """For each size: write, then open and search, a synthetic index in two fresh subprocesses."""
    inputs = work / "synthetic-inputs.json"
    inputs.write_text(json.dumps({"texts": texts, "questions": questions}, ensure_ascii=False), encoding="utf-8")
    results = []
    for n in growth_sizes(largest):
        index_dir = work / f"synthetic-{n}"
        progress(f"synthetic index of {n:,} passages: write, then open and search, in fresh subprocesses")
        task = StoreTask(action="write", passages=n, dimension=dimension, index_dir=index_dir, inputs=inputs,
                         model=model)
        written = run_in_child(task)
        opened = run_in_child(replace(task, action="open"))
        results.append({"passages": n, "dimension": dimension, "write": written, "open": opened,
                        "bytes_on_disk": folder_bytes(index_dir)})
        shutil.rmtree(index_dir)  # a million passages take ~2 GB: free them before the next size
    return results


def synthetic_rows(synthetic: dict, dimension: int) -> list[Row]:
    """The report's rows for the largest synthetic index: memory, disk and dense search."""
    n = synthetic["passages"]
    raw = raw_vector_bytes(PER, dimension) / MB
    label = f"synthetic, {n:,} passages"
    per = PER / n
    opened = synthetic["open"]
    return [
        Row(what=f"peak memory writing the index, per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["write"]["peak_increase_bytes"] * per / MB, baseline=raw, unit="MB",
            note=f"write took {synthetic['write']['seconds']:.1f} s"),
        Row(what=f"peak memory opening the index, per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=opened["peak_increase_bytes"] * per / MB, baseline=raw, unit="MB",
            note=f"open took {opened['seconds']:.2f} s; "
            f"resident after: {opened['resident_increase_bytes'] * per / MB:.1f} MB per {PER:,}"),
        Row(what=f"index on disk per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["bytes_on_disk"] * per / MB, baseline=raw, unit="MB"),
        Row(what=f"dense search p50, {synthetic['write']['vector_index']['kind']} index ({label}) vs exact search",
            ours=opened["dense_ms"]["p50"], baseline=opened["exact_ms"]["p50"], unit="ms",
            note=f"recall@10 against exact: {opened['recall_at_10']:.3f}"),
    ]


def store_child(task: StoreTask) -> dict:
    """In a fresh process: write, or open and search, a synthetic index; memory above the state before."""
    import bm25s  # noqa: F401 - imported before the baseline so import costs are not counted
    import faiss  # noqa: F401

    from ..internals import store

    inputs = json.loads(task.inputs.read_text(encoding="utf-8"))
    if task.action == "open":
        before, reset = reset_peak_memory()
        data, seconds = timed(lambda: store.load(task.index_dir))
        current, peak = memory_bytes()
        assert len(data.passages) == task.passages
        return {"seconds": seconds, "peak_increase_bytes": peak - before, "resident_increase_bytes": current - before,
                "peak_reset": reset, **search_measurements(data, inputs["questions"])}
    contents, tokenizing = synthetic_contents(task.passages, task.dimension, inputs["texts"], task.model)
    task.index_dir.mkdir(parents=True, exist_ok=True)
    before, reset = reset_peak_memory()
    with store.lock(task.index_dir):
        data, seconds = timed(lambda: store.write(task.index_dir, **contents, previous=None))
    _, peak = memory_bytes()
    return {"seconds": seconds, "peak_increase_bytes": peak - before, "peak_reset": reset,
            "vector_index": data.manifest["vector_index"], "stages": data.manifest.get("build_seconds", {}),
            "tokenizing_passages_per_second": tokenizing}


def search_measurements(data, questions: list[str]) -> dict:
    """Latency of dense, BM25 and hybrid search on an open index, and dense recall@10 against exact.

    Dense queries are synthetic questions near stored passages (`nearby_queries`); BM25 and
    hybrid search take the corpus's real questions (the synthetic texts are its sentences).
    """
    import faiss

    from ..internals import CANDIDATES, Retriever, vectors

    index = data.faiss_index
    rng = np.random.default_rng(1)
    anchors = np.stack([vectors.vector(index, i) for i in rng.choice(index.ntotal, SEARCH_QUERIES)])
    queries = nearby_queries(anchors, rng)
    retriever = Retriever(data)
    texts = [questions[i % len(questions)] for i in range(SEARCH_QUERIES)]
    for query, text in zip(queries[:10], texts[:10]):  # warm up: page in what a search touches
        retriever.search(text, query, k=10)
    dense = [timed(lambda: vectors.search(index, q, CANDIDATES))[1] for q in queries]
    lexical = [timed(lambda: retriever._lexical(t, CANDIDATES))[1] for t in texts]
    hybrid = [timed(lambda: retriever.search(t, q, k=10))[1] for q, t in zip(queries, texts)]
    _, found = vectors.search(index, queries, 10)
    # The exact answer: every vector, scanned in full (read after the memory was measured).
    stored = vectors.all_vectors(index)
    _, exact = faiss.knn(queries, stored, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_seconds = [timed(lambda: faiss.knn(q[None], stored, CANDIDATES, metric=faiss.METRIC_INNER_PRODUCT))[1]
                     for q in queries[:EXACT_TIMED_QUERIES]]
    return {
        "queries": SEARCH_QUERIES,
        "dense_ms": spread(dense),
        "exact_ms": spread(exact_seconds),
        "bm25_ms": spread(lexical),
        "hybrid_ms": spread(hybrid),
        "recall_at_10": vectors.recall_at(found, exact, 10),
    }


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def raw_vector_bytes(passages: int, dimension: int) -> int:
    """The yardstick of every size: the vectors alone, as float32."""
    return passages * dimension * np.dtype(np.float32).itemsize
