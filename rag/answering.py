"""From retrieved sentences to an answer: pick the supporting sentence, read the direct answer
out of it, cite it verbatim, or abstain when the documents do not hold the answer.

The decision to answer is a logistic model over seven signals of the best sentence, fitted on
labelled questions by `eval/calibrate.py` and stored in `rag/calibration.json`:

- dense: cosine similarity between question and sentence;
- coverage: share of the question's content words (IDF-weighted) that the sentence or its
  immediate neighbours contain;
- unknown: names in the question that occur nowhere in the documents ("When was the Treaty of
  Versailles signed?" against a text that never says "Versailles");
- unknown_words: share of the question's content words that occur nowhere in the documents
  ("When did Stalin die?" against a text that never says "die");
- predicate: share of the question's lower-case words (what is asked about the topic) found;
- typed: whether the sentence holds an answer of the kind asked for (a date for "when");
- margin: how much closer to the question the sentence is than the other candidates.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .columns import rows_by_source
from .errors import ConfigError
from .extraction import (
    QuestionShape,
    Span,
    asked_role,
    attached_to_role,
    continues,
    distance_to_question,
    find_dates,
    find_names,
    find_numbers,
    names_role,
    nearest_to_question,
    predicate_words,
    question_shape,
    question_terms,
    refers_to_earlier_time,
    resolve_date,
    starts_with_pronoun,
    unknown_names,
)
from .lexical import idf
from .store import IndexData

if TYPE_CHECKING:  # a sharded index answers like one index: it has passages, bm25 and a vocabulary
    from .shards import ShardedIndexData
from .text import terms
from .types import Answer, Citation, Hit, Passage

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
# How many earlier sentences a relative date may look back through for its year.
YEAR_LOOKBACK = 12
# How many earlier sentences "on that day" may look back through for the day it means.
ANAPHORA_LOOKBACK = 3
# A name or number farther than this many words from every word the sentence shares with the
# question is not taken as the answer: a name a clause or two away is about something else.
MAX_ANSWER_DISTANCE = 8
# Retrieved sentences considered as the answer.
CANDIDATES = 8
# Further sentences cited beside the answer's must score at least this share of the best one.
# On SQuAD v1.1 (408 questions) 0.8 puts the gold sentence among the citations for 86% of
# questions with 1.9 citations each; citing the top 3 always gains 1% for 3.0 citations each.
EXTRA_CITATION_RATIO = 0.8
MAX_CITATIONS = 3

ABSTAIN_TEXT = "The documents don't say. No passage in them answers this question."


@dataclass(frozen=True)
class Calibration:
    """The abstention model: P(answerable) = sigmoid(bias + Σ weight·feature); answer when ≥ threshold."""

    weights: dict[str, float]
    bias: float
    threshold: float
    source: str  # how it was fitted

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> "Calibration":
        """Raises:
        ConfigError: the file is missing or malformed (it ships with the package).
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(weights=data["weights"], bias=data["bias"], threshold=data["threshold"], source=data["source"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path} is missing or malformed ({error}); refit it with `python -m eval.calibrate`") from None

    def probability(self, features: dict[str, float]) -> float:
        missing = set(self.weights) - set(features)
        if missing:
            raise ConfigError(
                f"{CALIBRATION_FILE.name} weighs features the answerer no longer computes ({', '.join(sorted(missing))}); "
                "refit it with `python -m eval.calibrate`"
            )
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


@dataclass(frozen=True)
class _Asked:
    """The question's content words with their IDF weights and indexed variants."""

    variants: dict[str, frozenset[str]]  # each word: itself and the indexed terms that stand for it
    weights: dict[str, float]
    predicate: list[str]  # the words that say what is asked about the topic
    unknown: float  # 1.0 when the question names something the documents never mention
    unknown_words: float  # weighted share of words the documents never use

    def covered(self, words, sentence_terms: set[str], neighbour_terms: set[str]) -> float:
        """Weighted share of `words` in the sentence; a word only in a neighbour counts half."""
        total = sum(self.weights[t] for t in words) or 1.0
        found = 0.0
        for t in words:
            if self.variants[t] & sentence_terms:
                found += self.weights[t]
            elif self.variants[t] & neighbour_terms:
                found += 0.5 * self.weights[t]
        return found / total


class Answerer:
    """Turns a question and its retrieved hits into an `Answer`."""

    def __init__(self, index: IndexData | ShardedIndexData, calibration: Calibration | None = None):
        self.index = index
        self.calibration = calibration or Calibration.load()
        self._idf = _inverse_document_frequencies(index)

    def answer(self, question: str, hits: list[Hit], *, min_confidence: float | None = None) -> Answer:
        """Answer from the hits, or abstain when confidence is under the threshold.

        Args:
            question: the standalone question (it decides the kind of answer sought).
            hits: retrieved passages, best first.
            min_confidence: overrides the calibrated threshold (0 never abstains).
        """
        threshold = self.calibration.threshold if min_confidence is None else min_confidence
        candidates = self._candidates(question, hits)
        if not candidates:
            return Answer(text=ABSTAIN_TEXT, grounded=False, query=question)
        best = max(candidates, key=lambda c: c.rank_score)
        confidence = self.calibration.probability(_decision_features(best, candidates))
        if confidence < threshold:
            return Answer(text=ABSTAIN_TEXT, grounded=False, query=question, confidence=confidence)
        passage = best.hit.passage
        # The direct answer, verbatim: the words the span was read from ("March of the same
        # year", which the text resolves to "March 1918"), or the sentence when no span is sought.
        start, end = (best.span.start, best.span.end) if best.span is not None else (0, len(passage.text))
        return Answer(
            text=_compose(best),
            grounded=True,
            citations=tuple(self._citations(best, candidates)),
            query=question,
            confidence=confidence,
            direct=passage.text[start:end],
            direct_start=passage.start + start,
            direct_end=passage.start + end,
        )

    def features(self, question: str, hits: list[Hit]) -> dict[str, float] | None:
        """The best candidate's features: what calibration is fitted on."""
        candidates = self._candidates(question, hits)
        if not candidates:
            return None
        return _decision_features(max(candidates, key=lambda c: c.rank_score), candidates)

    # -- scoring -----------------------------------------------------------------------------

    def _candidates(self, question: str, hits: list[Hit]) -> list[Candidate]:
        shape = question_shape(question)
        asked = self._asked(question)
        return [self._candidate(question, shape, asked, hit, rank) for rank, hit in enumerate(hits[:CANDIDATES])]

    def _asked(self, question: str) -> "_Asked":
        """What the question asks, weighed once for all its candidates."""
        vocabulary = self.index.vocabulary
        terms_ = question_terms(question)
        variants = {t: frozenset(vocabulary.variants(t)) | {t} for t in terms_}
        # A word the documents never use weighs like a typical word: "invade" against a text that
        # says "invasion" should not sink the answer. Unknown *names* are counted apart.
        weights = {t: max((self._idf.get(v, 0.0) for v in variants[t]), default=0.0) or self._idf_median for t in terms_}
        total = sum(weights.values()) or 1.0
        # The predicate: lower-case words that are not the answer's frame ("year", "name"). Names
        # are the topic and easy to match; whether the sentence says what is asked hangs on these.
        predicate = predicate_words(question)
        return _Asked(
            variants=variants,
            weights=weights,
            predicate=[t for t in terms_ if t in predicate],
            unknown=1.0 if unknown_names(question, self._idf) else 0.0,
            unknown_words=sum(w for t, w in weights.items() if not vocabulary.variants(t)) / total,
        )

    def _candidate(self, question: str, shape: QuestionShape, asked: "_Asked", hit: Hit, rank: int) -> Candidate:
        passage = hit.passage
        sentence_terms = set(terms(passage.text))
        neighbours = self._neighbours(passage, before=1, after=1)
        neighbour_terms = set()
        for neighbour in neighbours:
            neighbour_terms.update(terms(neighbour.text))
        previous = [n for n in neighbours if n.position < passage.position]
        if previous and starts_with_pronoun(passage.text):
            # "He instructed his henchman…": he is whoever the sentence before named.
            for name in find_names(previous[0].text, ""):
                sentence_terms.update(terms(name.text))
        span, context = self._extract(question, shape, passage)
        typed = 1.0 if (shape.answer_type == "other" or span is not None) else 0.0
        features = {
            "dense": hit.dense_score,
            "coverage": asked.covered(asked.weights, sentence_terms, neighbour_terms),
            "unknown": asked.unknown,
            "unknown_words": asked.unknown_words,
            "predicate": asked.covered(asked.predicate, sentence_terms, neighbour_terms) if asked.predicate else 1.0,
            "typed": typed,
        }
        # Order: similarity, how much of the question the sentence covers (its predicate a little
        # more), whether it holds an answer of the right kind, and the retrievers' rank. Weights
        # compared on SQuAD v1.1 (articles 5-8, 408 questions): the gold sentence comes first for
        # 78% of questions, against 70% in plain retrieval order.
        rank_score = (
            features["dense"] + features["coverage"] + 0.25 * features["predicate"] + 0.5 * typed + 1.0 / (rank + 3)
        )
        return Candidate(hit=hit, features=features, span=span, context=context, rank_score=rank_score)

    def _extract(self, question: str, shape: QuestionShape, passage: Passage) -> tuple[Span | None, tuple[Passage, ...]]:
        sentence = passage.text
        if shape.answer_type == "date":
            earlier = self._neighbours(passage, before=YEAR_LOOKBACK, after=0)
            dates = find_dates(sentence)
            if dates:
                # The date nearest the words of the question: "began in 1887 … opened on
                # September 14, 1893" answers "When was it opened?" with the second.
                span = resolve_date(nearest_to_question(sentence, dates, question), [p.text for p in earlier])
                return span, (() if span.context is None else (earlier[span.context],))
            if refers_to_earlier_time(sentence):
                # "On that day, Hitler tore up the pact": the day is named just before.
                for back, previous in enumerate(reversed(earlier[-ANAPHORA_LOOKBACK:])):
                    previous_dates = find_dates(previous.text)
                    if previous_dates:
                        before_previous = [p.text for p in earlier[: len(earlier) - back - 1]]
                        span = resolve_date(previous_dates[-1], before_previous)
                        return span, (previous,)
            return None, ()
        if shape.answer_type == "number":
            numbers = find_numbers(sentence, shape.focus)
            close = [n for n in numbers if distance_to_question(sentence, n, question) <= MAX_ANSWER_DISTANCE]
            return (close[0] if close else None), ()
        if shape.answer_type in ("person", "place"):
            names = find_names(sentence, question, places=shape.answer_type == "place", max_distance=MAX_ANSWER_DISTANCE)
            role = asked_role(question) if shape.answer_type == "person" else None
            if role and names_role(sentence, role):
                # The sentence speaks of the role: only a name it gives as the role's holder answers.
                names = [n for n in names if attached_to_role(sentence, n, role)]
            return (names[0] if names else None), ()
        # What, why, how: the sentence is the answer; a following sentence that continues it
        # ("He was convinced that…") is part of the answer too.
        following = self._neighbours(passage, before=0, after=1)
        if following and following[0].paragraph == passage.paragraph and continues(following[0].text):
            return None, (following[0],)
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
            # Rows by source come from the stored columns, without making a Passage per row.
            self._offsets = {source: int(rows[0]) for source, rows in rows_by_source(self.index.passages).items()}
        return self._offsets

    @property
    def _idf_median(self) -> float:
        if not hasattr(self, "_median"):
            self._median = float(np.median(list(self._idf.values()))) if self._idf else 1.0
        return self._median

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
            Citation(text=p.text, source=p.source, start=p.start, end=p.end, score=round(float(score), 4), location=p.location)
            for p, score in chosen
        ]


def _decision_features(best: Candidate, candidates: list[Candidate]) -> dict[str, float]:
    """The best sentence's signals, and how far it stands out from the other candidates: a
    sentence that really answers is usually much closer to the question than its runners-up."""
    others = [c.hit.dense_score for c in candidates if c is not best]
    margin = best.hit.dense_score - (sum(others) / len(others) if others else 0.0)
    return {**best.features, "margin": margin}


def _compose(best: Candidate) -> str:
    """The direct answer first, then the supporting statement, quoted.

    The answer is read, so line breaks inside a sentence (a PDF's text keeps its printed lines)
    become spaces here; the citations keep the source's exact characters.
    """
    sentence = _one_line(best.hit.passage.text)
    if best.span is None:
        quoted = " ".join([sentence] + [_one_line(p.text) for p in best.context])
        return f"“{quoted}”"
    statement = f"{_one_line(best.span.text)}. “{sentence}”"
    if best.context:
        statement += f" (the date is read with the earlier sentence “{_one_line(best.context[0].text)}”)"
    return statement


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _inverse_document_frequencies(index: IndexData | ShardedIndexData) -> dict[str, float]:
    """BM25's idf of every term, from the document frequencies one index and a sharded one both
    expose (`vocab_dict`, and `scores["indptr"]` whose differences are the dfs), computed as one
    array: a loop over a million passages' vocabulary costs seconds at open."""
    bm25 = index.bm25
    n = max(1, len(index.passages))
    values = np.asarray(idf(np.diff(np.asarray(bm25.scores["indptr"])), n)).tolist()
    return {t: values[column] for t, column in bm25.vocab_dict.items() if t != ""}
