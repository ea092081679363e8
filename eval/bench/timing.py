"""The clock of `rag bench`: a timer, percentiles, and the bare encodes every speed is compared with."""
from __future__ import annotations

import sys
import time
from typing import Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """`call()`'s result and the wall seconds it took."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q))


def spread(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of `seconds`, in milliseconds."""
    return {"p50": percentile(seconds, 50) * 1000, "p95": percentile(seconds, 95) * 1000}


def progress(message: str) -> None:
    """A line on stderr, so a run of several minutes shows where it is (stdout holds the report)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def warm_up(embedder) -> None:
    """Load the model and run a few batches so first-call costs stay out of every timing."""
    from ..internals import BATCH_SIZE

    sentences = [f"Warm-up sentence number {i} about treaties, armies and rivers." for i in range(BATCH_SIZE)]
    embedder.model.encode(sentences, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
    embedder.encode_query("A warm-up question?")


def bare_encode_seconds(embedder, texts: list[str]) -> float:
    """Seconds for `SentenceTransformer.encode` of `texts` with the pipeline's batch size."""
    from ..internals import BATCH_SIZE

    model = embedder.model
    _, seconds = timed(lambda: model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False))
    return seconds


def bare_question_seconds(embedder, question: str) -> float:
    """Seconds of `SentenceTransformer.encode([question])` with the pipeline's settings."""
    from ..internals import BATCH_SIZE

    model = embedder.model
    return timed(lambda: model.encode([question], batch_size=BATCH_SIZE, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False))[1]
