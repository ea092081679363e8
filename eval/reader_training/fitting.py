"""The decisions fitted on held-out questions (the `fit` parts, never trained on, never reported on):

- the fusion, a per-candidate logistic regression over the reader's and retrieval's evidence
  (rag.reader.FUSION_FEATURES);
- the abstention, a per-question one (QUESTION_FEATURES), and its threshold (ANSWERED_SHARE);
- the span choice among the reader's best spans (SPAN_FEATURES).

They are fitted on the fit parts' questions and on the same questions asked "out of scope" (of
the source's index without their document, their words weighed against its vocabulary).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from eval.internals import reader as R

from .data import Corpus, Question
from .mining import Candidate


def token_f1(prediction: str, gold: str) -> float:
    from eval.squad import token_f1 as f1

    return f1(prediction, gold)


@dataclass(frozen=True)
class Item:
    """A question, its retrieved candidates and everything the fusion weighs about them."""

    question: Question
    candidates: list[Candidate]
    readings: list[R.Reading]
    coverage: list[float]
    unknown_words: float
    answerable: bool  # False for unanswerable questions and for out-of-scope ones

    def features(self) -> np.ndarray:
        return R.fusion_features(self.question.text, [c.text for c in self.candidates], self.readings,
                                 [c.dense for c in self.candidates], [c.lexical for c in self.candidates],
                                 self.coverage, self.unknown_words)


def read_all(read, items, evidence, *, outside: bool = False) -> list[Item]:
    """The reader's verdicts and the question evidence on every retrieved candidate.

    `evidence(question)` weighs the question's words against the documents with the code that
    answers (rag.answering.question_evidence), against the vocabulary the question is asked of."""
    out = []
    for n, (question, cands) in enumerate(items):
        retrieved = [c for c in cands if c.rank is not None]
        asked = evidence(question)
        coverage = [asked.coverage(c.text, f"{c.previous} {c.following}") for c in retrieved]
        readings = read(question, [c.window() for c in retrieved]) if retrieved else []
        out.append(Item(question, retrieved, readings, coverage,
                        asked.unknown_words, bool(question.answers) and not outside))
        if n % 300 == 0:
            print(f"read {n}/{len(items)} questions", file=sys.stderr)
    return out


def cached_reader(read, cache: Path):
    """`read` keyed by question id and cached in `cache` (one file per model: its sha256 is in
    the name), so refitting the fusion does not read every candidate again."""
    store = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}

    def read_question(question: Question, windows: list[R.Window]) -> list[R.Reading]:
        # Every window's text in the key: one question is read with different candidates (in
        # scope, out of scope, deeper searches), and two of them may start alike.
        digest = hashlib.sha1("\x00".join(f"{w.start}:{w.end}:{w.text}" for w in windows).encode()).hexdigest()[:16]
        key = f"{question.id}:{len(windows)}:{digest}"
        if key not in store:
            store[key] = [asdict(r) for r in read(question.text, windows)]
        return [R.Reading(**r) for r in store[key]]

    def save() -> None:
        cache.write_text(json.dumps(store), encoding="utf-8")

    read_question.save = save  # type: ignore[attr-defined]
    return read_question


def evidence_without_own_document(answerer, index_passages, corpus: Corpus, questions: list[Question]):
    """Question evidence as the source's index without the question's own document would give it.

    An out-of-scope question is simulated by searching the source's index with its document left
    out; its words must be weighed the same way, or the document's own vocabulary (names, rare
    terms) makes every word look known and `unknown_words` learns nothing."""
    from eval.internals import Vocabulary, question_evidence, terms

    by_source: dict[str, set[str]] = {}
    for passage in index_passages:
        by_source.setdefault(Path(passage.source).name, set()).update(terms(passage.text))
    vocabularies: dict[str, Vocabulary] = {}
    for own in {corpus.file_name(q.title) for q in questions}:
        vocabularies[own] = Vocabulary(set().union(*(t for name, t in by_source.items() if name != own)))
    idf, typical = answerer._idf, answerer._idf_median

    def evidence(question: Question):
        return question_evidence(question.text, vocabularies[corpus.file_name(question.title)], idf, typical)

    return evidence


def features_and_labels(items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """One row per candidate, labelled by whether it holds the answer."""
    rows, labels = [], []
    for item in items:
        if item.candidates:
            rows.append(item.features())
            labels += [c.positive and item.answerable for c in item.candidates]
    return np.vstack(rows), np.array(labels)


# The abstention threshold: the highest that still answers this share of the fit parts'
# answerable questions. A needless refusal costs the user the answer as much as a wrong one
# misleads; SQuAD v2.0's unanswerable questions (rewrites of a paragraph's own sentences) can't be
# told apart without withholding many right answers: on the fit articles no threshold that
# answers more than 99% reaches an abstention precision of 75%. The same 95% rule the hand-made
# calibration of the rule answerer this reader replaced used.
ANSWERED_SHARE = 0.95


L = TypeVar("L", bound=R.Logistic)


def standardised_logistic(kind: type[L], x: np.ndarray, y: np.ndarray, seed: int) -> L:
    """A logistic regression on standardised features, as `rag.reader.Logistic` applies it."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((x - mean) / scale, y)
    return kind(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]),
                tuple(float(m) for m in mean), tuple(float(s) for s in scale))


def fit_fusion(items: list[Item], outside: list[Item], seed: int) -> tuple[R.Fusion, dict]:
    """Logistic regression per candidate (does it hold the answer?) over the fit questions and
    the out-of-scope ones."""
    x, y = features_and_labels(items + outside)
    fusion = standardised_logistic(R.Fusion, x, y, seed)
    return fusion, {"fit_pairs": int(len(y)), "fit_positive": int(y.sum())}


def fit_abstention(items: list[Item], outside: list[Item], fusion: R.Fusion, seed: int) -> R.Abstention:
    """Logistic regression per question (does any candidate answer?) over the same questions
    (unanswerable and out-of-scope ones the negatives), then the threshold that answers
    ANSWERED_SHARE of the fit questions' answerable ones."""
    asked = [item for item in items + outside if item.candidates]
    x = np.vstack([R.question_features(item.features(), fusion) for item in asked])
    y = np.array([item.answerable for item in asked])
    abstention = standardised_logistic(R.Abstention, x, y, seed)
    return replace(abstention, threshold=answering_threshold(items, fusion, abstention, ANSWERED_SHARE))


def answering_threshold(items: list[Item], fusion: R.Fusion, abstention: R.Abstention, share: float) -> float:
    """The confidence threshold under which `share` of the items' answerable questions are answered."""
    answerable = sorted(answer_probability(item, fusion, abstention) for item in items if item.answerable)
    return answerable[int((1 - share) * len(answerable))]


def answer_probability(item: Item, fusion: R.Fusion, abstention: R.Abstention) -> float:
    """P(the documents answer the item's question), as rag.answering computes it."""
    return abstention.confidence(item.features(), fusion) if item.candidates else 0.0


def answer_sentences(items: list[Item]):
    """Each answerable question's answer sentence that has alternatives to choose from:
    (question, sentence, reading, each alternative's token F1 against the gold answers)."""
    for item in items:
        if not item.answerable:
            continue
        for cand, reading in zip(item.candidates, item.readings):
            if cand.positive and len(reading.alternatives) >= 2:
                f1s = [max(token_f1(cand.text[a:b], g.text) for g in item.question.answers) for _, a, b in reading.alternatives]
                yield item.question.text, cand.text, reading, np.array(f1s)


# The weights the span choice searches, the margin's fixed at 1: a grid, since the objective
# (the chosen span's token F1) is not smooth. A pointwise logistic regression (is this
# alternative the best?) chose worse spans than the model alone, even on its own fitting data.
SPAN_WEIGHT_GRID = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def fit_span_choice(items: list[Item]) -> tuple[R.SpanChoice, dict]:
    """The weights whose choice has the best mean token F1 on the fit questions' answer sentences
    (ties: the first found, which the grid's order makes the one nearest the model's own best)."""
    rows = [(R.span_features(question, sentence, reading.alternatives), f1s)
            for question, sentence, reading, f1s in answer_sentences(items)]
    width = max(len(f1s) for _, f1s in rows)
    features = np.zeros((len(rows), width, len(R.SPAN_FEATURES)))
    f1 = np.full((len(rows), width), -1.0)
    for i, (x, f1s) in enumerate(rows):
        features[i, : len(f1s)], f1[i, : len(f1s)] = x, f1s
        features[i, len(f1s):, 0] = -1e9  # no such alternative: never chosen
    best_weights, best_f1 = (1.0,) + (0.0,) * (len(R.SPAN_FEATURES) - 1), -1.0
    for rest in itertools.product(SPAN_WEIGHT_GRID, repeat=len(R.SPAN_FEATURES) - 1):
        weights = np.array((1.0, *rest))
        chosen = f1[np.arange(len(rows)), np.argmax(features @ weights, axis=1)].mean()
        if chosen > best_f1 + 1e-9:
            best_weights, best_f1 = (1.0, *rest), float(chosen)
    choice = R.SpanChoice(tuple(float(w) for w in best_weights))
    return choice, {"sentences": len(rows), **span_f1(items, choice)}


def span_f1(items: list[Item], choice: R.SpanChoice) -> dict:
    """Mean token F1 inside the answer sentences: the model's best span against the one
    `choice` picks as answering does."""
    best, chosen = [], []
    for question, sentence, reading, f1s in answer_sentences(items):
        best.append(f1s[0])
        picked = choice.choose(question, sentence, reading)
        chosen.append(f1s[[(a, b) for _, a, b in reading.alternatives].index(picked)])
    return {"model_best_span_f1": round(float(np.mean(best)), 4), "chosen_span_f1": round(float(np.mean(chosen)), 4)}
