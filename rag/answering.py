"""From retrieved sentences to an answer: pick the supporting sentence, read the direct answer
out of it, cite it verbatim, or abstain when the documents do not hold the answer.

The decision to answer is a logistic model over four signals of the best sentence, fitted on
labelled questions by `eval/calibrate.py` and stored in `rag/calibration.json`:

- dense: cosine similarity between question and sentence;
- coverage: share of the question's content words (IDF-weighted) that the sentence or its
  immediate neighbours contain;
- unknown: share of the question's content words (IDF-weighted) that occur nowhere in the
  documents: "When was the Treaty of Versailles signed?" against a text that never says
  "Versailles";
- typed: whether the sentence holds an answer of the kind asked for (a date for "when").
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .extraction import QuestionShape, Span, find_dates, find_names, find_numbers, question_shape, resolve_date
from .store import IndexData
from .text import terms
from .types import Answer, Citation, Hit, Passage

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
# How many earlier sentences a relative date may look back through for its year.
YEAR_LOOKBACK = 8
# Retrieved sentences considered as the answer.
CANDIDATES = 8
# Further sentences cited beside the answer's must score at least this share of the best one.
EXTRA_CITATION_RATIO = 0.85
MAX_CITATIONS = 3

ABSTAIN_TEXT = "The documents don't say. No passage in them answers this question."


@dataclass(frozen=True)
class Calibration:
    """The abstention model: P(answerable) = sigmoid(bias + Σ weight·feature); answer when ≥ threshold."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"dense": 4.0, "coverage": 4.0, "unknown": -6.0, "typed": 1.0}
    )
    bias: float = -4.0
    threshold: float = 0.5
    source: str = "untrained defaults"

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> "Calibration":
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(weights=data["weights"], bias=data["bias"], threshold=data["threshold"], source=data.get("source", str(path)))

    def probability(self, features: dict[str, float]) -> float:
        z = self.bias + sum(self.weights[name] * features[name] for name in self.weights)
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class Candidate:
    """A retrieved sentence considered as the answer's support."""

    hit: Hit
    features: dict[str, float]
    span: Span | None  # the direct answer inside the sentence, if the question type has one
    context: tuple[Passage, ...]  # earlier sentences the answer needed (a relative date's year)
    rank_score: float  # what orders candidates


class Answerer:
    """Turns a question and its retrieved hits into an `Answer`."""

    def __init__(self, index: IndexData, calibration: Calibration | None = None):
        self.index = index
        self.calibration = calibration or Calibration.load()
        self._idf = _inverse_document_frequencies(index)

    def answer(self, question: str, hits: list[Hit], *, query: str | None = None) -> Answer:
        query = query or question
        shape = question_shape(query)
        question_terms = list(dict.fromkeys(terms(query)))
        candidates = [self._candidate(query, shape, question_terms, hit, rank) for rank, hit in enumerate(hits[:CANDIDATES])]
        if not candidates:
            return Answer(text=ABSTAIN_TEXT, grounded=False, query=query)
        best = max(candidates, key=lambda c: c.rank_score)
        confidence = self.calibration.probability(best.features)
        if confidence < self.calibration.threshold:
            return Answer(text=ABSTAIN_TEXT, grounded=False, query=query, confidence=confidence)
        return Answer(
            text=_compose(best),
            grounded=True,
            citations=self._citations(best, candidates),
            query=query,
            confidence=confidence,
        )

    def features(self, question: str, hits: list[Hit]) -> dict[str, float] | None:
        """The best candidate's features: what calibration is fitted on."""
        shape = question_shape(question)
        question_terms = list(dict.fromkeys(terms(question)))
        candidates = [self._candidate(question, shape, question_terms, hit, rank) for rank, hit in enumerate(hits[:CANDIDATES])]
        if not candidates:
            return None
        return max(candidates, key=lambda c: c.rank_score).features

    # -- scoring -----------------------------------------------------------------------------

    def _candidate(self, question: str, shape: QuestionShape, question_terms: list[str], hit: Hit, rank: int) -> Candidate:
        passage = hit.passage
        sentence_terms = set(terms(passage.text))
        neighbour_terms = set()
        for neighbour in self._neighbours(passage, before=1, after=1):
            neighbour_terms.update(terms(neighbour.text))
        weights = [self._idf.get(t, self._idf_unseen) for t in question_terms]
        total = sum(weights) or 1.0
        in_sentence = sum(w for t, w in zip(question_terms, weights) if t in sentence_terms)
        in_context = sum(w for t, w in zip(question_terms, weights) if t not in sentence_terms and t in neighbour_terms)
        unknown = sum(w for t, w in zip(question_terms, weights) if t not in self._idf)
        span, context = self._extract(question, shape, passage)
        typed = 1.0 if (shape.answer_type == "other" or span is not None) else 0.0
        features = {
            "dense": hit.dense_score,
            "coverage": (in_sentence + 0.5 * in_context) / total,
            "unknown": unknown / total,
            "typed": typed,
        }
        # Order: agreement of the retrievers (rank), how much of the question the sentence
        # covers, and whether it holds an answer of the right kind.
        rank_score = features["dense"] + features["coverage"] + 0.5 * typed + 1.0 / (rank + 3)
        return Candidate(hit=hit, features=features, span=span, context=context, rank_score=rank_score)

    def _extract(self, question: str, shape: QuestionShape, passage: Passage) -> tuple[Span | None, tuple[Passage, ...]]:
        sentence = passage.text
        if shape.answer_type == "date":
            dates = find_dates(sentence)
            if not dates:
                return None, ()
            earlier = self._neighbours(passage, before=YEAR_LOOKBACK, after=0)
            span = resolve_date(dates[0], [p.text for p in earlier])
            return span, (() if span.context is None else (earlier[span.context],))
        if shape.answer_type == "number":
            numbers = find_numbers(sentence, shape.focus)
            return (numbers[0] if numbers else None), ()
        if shape.answer_type in ("person", "place"):
            names = find_names(sentence, question, places=shape.answer_type == "place")
            return (names[0] if names else None), ()
        return None, ()

    def _neighbours(self, passage: Passage, *, before: int, after: int) -> list[Passage]:
        """Passages of the same source around `passage`, in document order (itself excluded)."""
        passages = self.index.passages
        i = self._position_index(passage)
        found = []
        for j in range(max(0, i - before), min(len(passages), i + after + 1)):
            if j != i and passages[j].source == passage.source:
                found.append(passages[j])
        return found

    def _position_index(self, passage: Passage) -> int:
        # Passages are stored source by source in document order, so a passage's place in the
        # list is found from the first passage of its source plus its position.
        return self._source_offsets[passage.source] + passage.position

    @property
    def _source_offsets(self) -> dict[str, int]:
        if not hasattr(self, "_offsets"):
            offsets: dict[str, int] = {}
            for i, passage in enumerate(self.index.passages):
                offsets.setdefault(passage.source, i)
            self._offsets = offsets
        return self._offsets

    @property
    def _idf_unseen(self) -> float:
        n = max(1, len(self.index.passages))
        return math.log(1 + (n + 0.5) / 0.5)

    # -- the answer --------------------------------------------------------------------------

    def _citations(self, best: Candidate, candidates: list[Candidate]) -> list[Citation]:
        chosen = [(best.hit.passage, best.rank_score)]
        chosen += [(p, best.rank_score) for p in best.context]
        for candidate in sorted(candidates, key=lambda c: c.rank_score, reverse=True):
            if len(chosen) >= MAX_CITATIONS:
                break
            if candidate is best or candidate.rank_score < EXTRA_CITATION_RATIO * best.rank_score:
                continue
            if any(candidate.hit.passage.id == p.id for p, _ in chosen):
                continue
            chosen.append((candidate.hit.passage, candidate.rank_score))
        return [
            Citation(text=p.text, source=p.source, start=p.start, end=p.end, score=round(float(score), 4))
            for p, score in chosen
        ]


def _compose(best: Candidate) -> str:
    sentence = best.hit.passage.text
    if best.span is None:
        return f"“{sentence}”"
    statement = f"{best.span.text}. “{sentence}”"
    if best.context:
        statement += f" (the year comes from the earlier sentence “{best.context[0].text}”)"
    return statement


def _inverse_document_frequencies(index: IndexData) -> dict[str, float]:
    """BM25's idf of every term, read from the bm25s index (a term's column count is its df)."""
    bm25 = index.bm25
    n = max(1, len(index.passages))
    indptr = np.asarray(bm25.scores["indptr"])
    df = np.diff(indptr)
    idf = {}
    for term, column in bm25.vocab_dict.items():
        if term == "":
            continue
        idf[term] = math.log(1 + (n - df[column] + 0.5) / (df[column] + 0.5))
    return idf
