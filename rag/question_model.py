"""Question embeddings without torch: the embedding model exported once to ONNX, run with onnxruntime.

Importing torch and sentence-transformers and loading the model took 8-13 s of every cold
`rag ask`; embedding one question takes milliseconds. So documents are still embedded with
sentence-transformers (batches, at index time, where torch is loaded anyway), while questions
are embedded by the same network exported to ONNX (fp32, so a question's vector matches what
the torch model would give: cosine >= 0.9999, tests/test_question_model.py) and run with
`onnxruntime`, tokenised by `tokenizers` with the model's own tokenizer.json. Nothing on this
path imports torch, transformers or sentence-transformers.

Where the export lives: `$XDG_CACHE_HOME/rag/onnx/<key>/` (else ~/.cache/rag/onnx), one folder
per model, keyed by the model folder's file names, sizes and modification times (what a changed
model changes; hashing its 90 MB of weights would cost a cold question 0.2 s). Not in the index
folder: every index built with a model shares one 90 MB export, the index format is unchanged,
and an index built before this module existed needs nothing: its first question exports.
The export is written beside its final name and renamed into place, so a killed export or two
processes exporting at once never leave a half-written model; a file that fails to load
(truncated, altered) is exported again.

    folder/
        model.onnx       the transformer: (input_ids, attention_mask[, token_type_ids]) -> token vectors
        tokenizer.json   the model's fast tokenizer (truncation and padding are set at load)
        meta.json        pooling, max_seq_length, inputs, dimension, the key's source, model.onnx's size
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_options import session_options

# Bumped when the export's content or layout changes, so older exports are not reused.
EXPORT_VERSION = 1
# The ONNX opset: 17 is the newest the TorchScript exporter of torch 2.13 writes natively for
# every op BERT-like models use (LayerNormalization is an op from 17 on) and onnxruntime >= 1.14 runs.
OPSET = 17
# Pooling modes of sentence-transformers' Pooling module that `_pool` reproduces.
POOLING_MODES = ("mean", "cls", "max")
# Questions per forward pass when several are embedded at once (a follow-up and its context: 2).
BATCH_SIZE = 32


class UnsupportedModel(Exception):
    """The sentence-transformers model has modules this export does not reproduce (then questions
    are embedded with torch, as before)."""


def cache_root() -> Path:
    """$XDG_CACHE_HOME/rag/onnx, else ~/.cache/rag/onnx (beside the answer writer's models/)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag" / "onnx"


def model_key(model_path: str | Path) -> str:
    """The cache key of a model folder: a hash of its files' names, sizes and modification times.

    Stat calls only: a cold question must not hash 90 MB of weights. Any change to a file of
    the model (replaced weights, another tokenizer) changes its size or time, hence the key.
    """
    root = Path(model_path).resolve()
    listing = [f"export {EXPORT_VERSION}", str(root)]
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            listing.append(f"{path.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(listing).encode("utf-8")).hexdigest()[:24]


def export_folder(model_path: str | Path) -> Path:
    return cache_root() / _key(str(model_path))


@functools.lru_cache(maxsize=8)
def _key(model_path: str) -> str:
    # Once per process: the background load and the question itself both ask (30 ms of stats).
    return model_key(model_path)


def is_exported(model_path: str | Path) -> bool:
    """Whether the cache holds a finished export of this model (its meta.json is written last)."""
    return (export_folder(model_path) / "meta.json").is_file()


@dataclass(frozen=True)
class ExportInfo:
    """What meta.json records: how to turn the exported network's output into a sentence vector."""

    pooling: str  # one of POOLING_MODES, read from the model's Pooling module
    max_seq_length: int  # tokens kept per text (sentence-transformers truncates there: 256 for MiniLM)
    lowercase: bool  # the Transformer module's do_lower_case (the tokenizer may lowercase as well)
    inputs: tuple[str, ...]  # the ONNX model's input names, in order
    dimension: int
    onnx_bytes: int  # model.onnx's size when written: a truncated file is caught before loading it
    source: str  # the model folder exported


class QuestionEncoder:
    """Embeds questions with the exported model: the sentence-transformers vectors, without torch.

    `load(rag.embedding.resolve_model_path("all-MiniLM-L6-v2")).encode(["When was it signed?"])`
    is a (1, 384) float32 array of unit rows.
    """

    def __init__(self, folder: Path):
        import onnxruntime
        from tokenizers import Tokenizer

        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.info = ExportInfo(**{**meta, "inputs": tuple(meta["inputs"])})
        onnx_file = folder / "model.onnx"
        if onnx_file.stat().st_size != self.info.onnx_bytes:
            raise ValueError(f"{onnx_file} has {onnx_file.stat().st_size} bytes, {self.info.onnx_bytes} were written")
        options = session_options()
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
        # Basic optimisations only (constant folding, redundant nodes): the fusions of the higher
        # levels made no measurable difference to a question's 20 ms here, and cost ~0.1 s per load.
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json may carry its own settings (MiniLM's: truncate and pad to 128); the model
        # was trained and is run by sentence-transformers at max_seq_length, padded per batch.
        self.tokenizer.enable_truncation(max_length=self.info.max_seq_length)
        self.tokenizer.no_padding()
        self.dimension = self.info.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, (len(texts), dimension) float32, as `SentenceTransformer.encode(texts,
        normalize_embeddings=True)` gives them."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            out[start : start + BATCH_SIZE] = self._batch(texts[start : start + BATCH_SIZE])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        # As sentence-transformers' Transformer module prepares a text: stripped, and lowercased
        # when the module says so.
        prepared = [t.strip().lower() if self.info.lowercase else t.strip() for t in texts]
        encodings = self.tokenizer.encode_batch(prepared)
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        types = np.zeros((len(texts), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = encoding.ids, encoding.attention_mask, encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (tokens,) = self.session.run(None, {name: feeds[name] for name in self.info.inputs})
        pooled = _pool(tokens.astype(np.float32), mask, self.info.pooling)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)  # torch.nn.functional.normalize's epsilon


def _pool(tokens: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' Pooling: the mean of the real tokens' vectors, the first ([CLS])
    token's, or the element-wise maximum over real tokens."""
    if mode == "cls":
        return tokens[:, 0]
    weights = mask[..., None].astype(np.float32)
    if mode == "max":
        return np.where(weights > 0, tokens, -1e9).max(axis=1)
    return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


_loaded: dict[str, QuestionEncoder] = {}
_loading = threading.Lock()  # two UI workers asking at once load (or export) the model once


def load(model_path: str | Path, sentence_transformer=None) -> QuestionEncoder:
    """The question encoder of a model, exporting it first if the cache has no usable export.

    Args:
        model_path: the sentence-transformers model folder.
        sentence_transformer: a callable returning the loaded `SentenceTransformer`, called only
            if an export is needed (it imports torch).

    Raises:
        UnsupportedModel: the model's modules are not ones this export reproduces.
        OSError: the cache folder cannot be written.
        ImportError: onnxruntime or tokenizers is not installed.
    """
    import onnxruntime  # noqa: F401 - missing, it must not pass for a damaged export below
    import tokenizers  # noqa: F401

    folder = export_folder(model_path)
    key = str(folder.resolve())  # a cache reached through a link is the same cache
    with _loading:
        if key in _loaded:
            return _loaded[key]
        try:
            encoder = QuestionEncoder(folder)
        except Exception:  # missing, truncated or altered: export it (again)
            if sentence_transformer is None:
                raise
            shutil.rmtree(folder, ignore_errors=True)
            export(sentence_transformer(), model_path, folder)
            encoder = QuestionEncoder(folder)
        _loaded[key] = encoder
        return encoder


def export(model, model_path: str | Path, folder: Path) -> ExportInfo:
    """Export a loaded `SentenceTransformer`'s transformer to `folder` (written aside, then renamed).

    Raises:
        UnsupportedModel: modules other than Transformer, Pooling (mean, cls or max) and Normalize.
    """
    import torch

    info = _describe(model, model_path)
    transformer = model[0].auto_model.eval()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f"{folder.name}.{secrets.token_hex(4)}.tmp")
    staging.mkdir()
    try:
        example = model[0].tokenizer(["an example question"], return_tensors="pt")
        inputs = tuple(name for name in ("input_ids", "attention_mask", "token_type_ids") if name in example)

        class TokenVectors(torch.nn.Module):
            """The transformer alone, returning its last hidden state: pooling is done in numpy."""

            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, *tensors):
                return self.inner(**dict(zip(inputs, tensors))).last_hidden_state

        axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
        with torch.no_grad():
            # The TorchScript exporter (dynamo=False): deprecated since torch 2.9 but present in
            # the pinned 2.13, it needs no extra package, exports MiniLM in seconds and gives a
            # graph with dynamic batch and length axes. The default dynamo exporter would add
            # `onnx` and `onnxscript` to the dependencies for the same network.
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    TokenVectors(transformer),
                    tuple(example[name] for name in inputs),
                    str(staging / "model.onnx"),
                    input_names=list(inputs),
                    output_names=["token_vectors"],
                    dynamic_axes={**axes, "token_vectors": {0: "batch", 1: "tokens"}},
                    opset_version=OPSET,
                    dynamo=False,
                )
        model[0].tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        info = ExportInfo(**{**info.__dict__, "inputs": inputs, "onnx_bytes": (staging / "model.onnx").stat().st_size})
        (staging / "meta.json").write_text(json.dumps({**info.__dict__, "inputs": list(inputs)}, indent=1), encoding="utf-8")
        try:
            os.rename(staging, folder)
        except OSError:  # another process put a complete export there first: keep that one
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _describe(model, model_path: str | Path) -> ExportInfo:
    """Read pooling and truncation off the loaded model's modules (modules.json's pipeline)."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModel(f"modules {names}; the question export handles Transformer, Pooling[, Normalize]")
    transformer, pooling = model[0], model[1]
    if not hasattr(transformer, "auto_model") or not getattr(transformer.tokenizer, "is_fast", False):
        raise UnsupportedModel("the transformer has no fast tokenizer to save as tokenizer.json")
    config = pooling.get_config_dict()
    # The Pooling config's flags (sentence-transformers 5 and 6), by the mode each stands for.
    flags = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}
    modes = [flags.get(key, key) for key, value in config.items() if key.startswith("pooling_mode_") and value is True]
    if isinstance(config.get("pooling_mode"), str):
        modes.append(config["pooling_mode"])
    modes = sorted(set(modes))
    if len(modes) != 1 or modes[0] not in POOLING_MODES or config.get("include_prompt") is False:
        raise UnsupportedModel(f"pooling {config}; the question export handles one of {', '.join(POOLING_MODES)}")
    return ExportInfo(
        pooling=modes[0],
        max_seq_length=int(transformer.max_seq_length),
        lowercase=bool(getattr(transformer, "do_lower_case", False)),
        inputs=(),
        dimension=int((getattr(pooling, "get_embedding_dimension", None) or pooling.get_sentence_embedding_dimension)()),
        onnx_bytes=0,
        source=str(Path(model_path).resolve()),
    )
