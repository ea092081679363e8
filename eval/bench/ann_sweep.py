"""`rag bench --ann-sweep`: exact against IVF dense search by collection size, to choose the ANN threshold."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import SAMPLE_QUESTIONS
from .process import Watch
from .report import print_table
from .scaling import REQUIRED_RECALL
from .synthetic import SEARCH_QUERIES, clustered_vectors, nearby_queries
from .timing import bare_question_seconds, progress, spread, timed, warm_up

ANN_SWEEP_SIZES = (10_000, 20_000, 50_000, 100_000, 200_000)


def run_ann_sweep(*, out: Path) -> int:
    """Exact against IVF dense search by collection size, with embedding a question as the yardstick.

    The threshold is the smallest size at which exact search of one question takes longer than
    embedding it (so search would dominate a question's retrieval) while IVF, with the nprobe
    its own calibration picks, keeps recall@10 against exact at or above REQUIRED_RECALL.
    Each exact search is followed at once by a bare encode of a question, so a burst of load
    from another process slows both alike. Vectors and questions are synthetic
    (`clustered_vectors`, `nearby_queries`).
    """
    from rag import Embedder, default_model

    from ..internals import CANDIDATES, vectors

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = Embedder(default_model())
    warm_up(embedder)
    results: list[dict[str, Any]] = []
    with Watch() as watch:
        for n in ANN_SWEEP_SIZES:
            progress(f"ann sweep: {n:,} synthetic vectors")
            stored = clustered_vectors(n, 384)
            rng = np.random.default_rng(1)
            queries = nearby_queries(stored[rng.choice(n, SEARCH_QUERIES)], rng)
            (flat, _), flat_seconds = timed(lambda: vectors.build(stored, threshold=n + 1))
            (ivf, spec), ivf_seconds = timed(lambda: vectors.build(stored, threshold=1))
            _, exact = vectors.search(flat, queries, 10)
            _, found = vectors.search(ivf, queries, 10)
            vectors.search(flat, queries[:10], CANDIDATES)  # warm up
            vectors.search(ivf, queries[:10], CANDIDATES)
            exact_seconds, encode_seconds = [], []
            for number, query in enumerate(queries):
                exact_seconds.append(timed(lambda: vectors.search(flat, query, CANDIDATES))[1])
                encode_seconds.append(bare_question_seconds(embedder, SAMPLE_QUESTIONS[number % len(SAMPLE_QUESTIONS)]))
            ivf_latency = [timed(lambda: vectors.search(ivf, q, CANDIDATES))[1] for q in queries]
            results.append({"passages": n, "exact_ms": spread(exact_seconds), "ivf_ms": spread(ivf_latency),
                            "encode_ms": spread(encode_seconds),
                            "recall_at_10": vectors.recall_at(found, exact, 10), "ivf": spec.to_dict(),
                            "build_seconds": {"exact": flat_seconds, "ivf": ivf_seconds}})
    chosen = next((r["passages"] for r in results
                   if r["exact_ms"]["p50"] > r["encode_ms"]["p50"] and r["recall_at_10"] >= REQUIRED_RECALL), None)
    print(f"ann sweep on SYNTHETIC vectors (see clustered_vectors), {SEARCH_QUERIES} questions per size; "
          f"other processes took {watch.share or 0:.0%} of the CPU\n")
    table = [("passages", "encode p50 ms", "exact p50/p95 ms", "ivf p50/p95 ms", "ivf nlist/nprobe", "recall@10",
              "build exact/ivf s")]
    for r in results:
        table.append((f"{r['passages']:,}", f"{r['encode_ms']['p50']:.2f}",
                      f"{r['exact_ms']['p50']:.2f}/{r['exact_ms']['p95']:.2f}",
                      f"{r['ivf_ms']['p50']:.2f}/{r['ivf_ms']['p95']:.2f}", f"{r['ivf']['nlist']}/{r['ivf']['nprobe']}",
                      f"{r['recall_at_10']:.3f}",
                      f"{r['build_seconds']['exact']:.2f}/{r['build_seconds']['ivf']:.1f}"))
    print_table(table)
    print(f"\nsmallest size where exact search takes longer than embedding the question and IVF keeps "
          f"recall@10 >= {REQUIRED_RECALL}: {chosen:,}" if chosen else "\nno size in the sweep qualifies")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"contention": watch.share, "sizes": results,
                               "threshold": chosen}, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0
