"""From retrieved sentences to an answer: the learned reader (rag.reader) reads each candidate
with its neighbours; its verdict is fused with retrieval's evidence and with how much of the
question the sentence covers (which sentence answers); a per-question model over the best
candidates and the question's words the documents never use says whether any does, and the
assistant abstains under the threshold fitted on held-out articles; the span chosen among the
reader's best in the answering sentence is the direct answer, followed by the cited
sentence(s). All three are fitted by eval/train_reader.py and kept in rag/models/reader/reader.json.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import reader as reading
from .columns import rows_by_source
from .copies import Copies, sentence_key
from .extraction import find_dates, question_terms, resolve_date
from .lexical import idf
from .splitting import SENTENCE_CLOSERS
from .store import IndexData

if TYPE_CHECKING:  # a sharded index answers like one index: it has passages, bm25 and a vocabulary
    from .shards import ShardedIndexData
from .text import Vocabulary, terms
from .types import Answer, Citation, Hit, Passage

# Retrieved sentences the reader reads. The reader was trained on, and its fusion fitted over,
# the first 8 of the hybrid search's results (eval/train_reader.py mines exactly these).
CANDIDATES = 8
MAX_CITATIONS = 3
# Further sentences are cited beside the answer's only when their fused probability is at least
# this share of the best one's: a sentence the reader thinks very unlikely is noise to a reader.
# Chosen on the fit articles, never on those reported on (eval.train_reader.citation_ratios, which
# a training run records as "citation_ratios" in the reader.json it writes): on the shipped
# reader's readings, citing the first 3 always finds the answer for 82.7% of their answerable
# questions with 3 citations; 0.05 finds 82.6% (one question of 718 fewer) with 2.1; 0.25 found
# 81.2% with 1.5.
EXTRA_CITATION_RATIO = 0.05
# Which copy of a sentence several files hold is cited when the reader finds them equally likely
# to answer: a file whose text is the file itself first (the offsets point into it: any editor
# checks them), then a PDF (its printed page is where a person turns to), then HTML and Word
# (a heading and a paragraph count). An unknown format comes last.
CHECKABLE_FIRST = ("text", "markdown", "pdf", "html", "docx")
# How many earlier sentences a relative date ("in March of the same year") may look back through
# for its year: a paragraph or two of narrative.
YEAR_LOOKBACK = 12
# Characters a span may start or end with that are not part of the answer.
_SPAN_TRIM = " \t\n,.;:"
# A sentence that asks: a question mark, then perhaps the closers the splitter keeps with a sentence, ends it.
_ASKS = re.compile(r"\?" + SENTENCE_CLOSERS + r"\s*$")

ABSTAIN_TEXT = "The documents don't say. No passage in them answers this question."


@dataclass(frozen=True)
class QuestionEvidence:
    """The question's content words weighed against the documents (for the fusion and the abstention).

    A question about something the documents never mention ("Who won the 2018 World Cup?"
    against a history article) uses words they don't have: the reader alone, which sees one
    sentence at a time, can't know that.
    """

    variants: dict[str, frozenset[str]]  # each word: itself and the indexed terms that stand for it
    weights: dict[str, float]  # IDF in the documents; a word they never use weighs like a median one
    unknown_words: float  # weighted share of the question's words the documents never use

    def coverage(self, sentence: str, neighbours: str) -> float:
        """Weighted share of the question's words in the sentence; a word only in a neighbour counts half."""
        sentence_terms, neighbour_terms = set(terms(sentence)), set(terms(neighbours))
        total = sum(self.weights.values()) or 1.0
        found = 0.0
        for word, weight in self.weights.items():
            if self.variants[word] & sentence_terms:
                found += weight
            elif self.variants[word] & neighbour_terms:
                found += 0.5 * weight
        return found / total


@dataclass(frozen=True)
class Candidate:
    """The sentence read for a retrieved hit, the reader's verdict on it and the fused probability
    that it answers (retrieval's scores went into that probability; nothing else reads the hit)."""

    sentence: Passage  # what the reader read, and what an answer from it cites (`Answerer.sentence_to_read`)
    reading: reading.Reading
    probability: float


def copies_together(candidates: list[Candidate], checkability: Callable[[str], int]) -> list[list[Candidate]]:
    """The candidates grouped by sentence (rag.copies.sentence_key: a sentence several files hold
    is one), in the order each sentence first comes; in each group the copy an answer cites first.

    That copy is the one with the highest fused probability: the reader's reading of it in its
    own file is what the answer's span and confidence come from. Equal probabilities (the same
    sentence with the same neighbours) go to the most checkable format (`checkability`: source →
    rank, lower first; see CHECKABLE_FIRST), then to retrieval's order.
    """
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(sentence_key(candidate.sentence.text), []).append(candidate)
    return [sorted(g, key=lambda c: (-c.probability, checkability(c.sentence.source))) for g in groups.values()]


def cited(probabilities: np.ndarray, ratio: float = EXTRA_CITATION_RATIO) -> list[int]:
    """The candidates an answer cites, by fused probability: the best (the answer's sentence),
    then the next ones while they reach `ratio` of its probability, MAX_CITATIONS at most."""
    order = [int(i) for i in np.argsort(-probabilities, kind="stable")]
    best = probabilities[order[0]]
    return [order[0], *(i for i in order[1:MAX_CITATIONS] if probabilities[i] >= ratio * best)]


class Answerer:
    """Turns a question and its retrieved hits into an `Answer`."""

    def __init__(self, index: IndexData | ShardedIndexData, reader: reading.Reader | None = None):
        self.index = index
        self._reader = reader  # the shipped reader, loaded on first use
        self._idf = _inverse_document_frequencies(index)
        self._idf_median = float(np.median(list(self._idf.values()))) if self._idf else 1.0
        self._copies = Copies(index)

    @property
    def reader(self) -> reading.Reader:
        if self._reader is None:
            self._reader = reading.shipped()
        return self._reader

    def answer(self, question: str, hits: list[Hit], *, min_confidence: float | None = None) -> Answer:
        """Answer from the hits, or abstain when confidence is under the threshold.

        Args:
            question: the standalone question (the reader reads it with each candidate).
            hits: retrieved passages, best first.
            min_confidence: overrides the fitted threshold (0 never abstains).
        """
        candidates, confidence = self.candidates(question, hits)
        if not candidates:
            return Answer(text=ABSTAIN_TEXT, grounded=False, query=question)
        threshold = self.reader.abstention.threshold if min_confidence is None else min_confidence
        if confidence < threshold:
            return Answer(text=ABSTAIN_TEXT, grounded=False, query=question, confidence=confidence)
        # Each sentence once, however many files hold it: copies free citation places for the next sentences.
        sentences = copies_together(candidates, self._checkability)
        chosen = [sentences[i] for i in cited(np.array([copies[0].probability for copies in sentences]))]
        best = chosen[0][0]
        passage = best.sentence
        start, end = _trimmed(passage.text, *self.reader.span_choice.choose(question, passage.text, best.reading))
        direct = passage.text[start:end]
        said, context = self._resolved(direct, passage)
        return Answer(
            text=_compose(said, passage, context),
            grounded=True,
            citations=tuple(self._citations(chosen, context)),
            query=question,
            confidence=confidence,
            direct=direct,
            direct_start=passage.start + start,
            direct_end=passage.start + end,
        )

    def candidates(self, question: str, hits: list[Hit]) -> tuple[list[Candidate], float]:
        """The first CANDIDATES hits, each read and given its fused probability, in retrieval
        order; and the probability that the documents answer the question at all."""
        hits = hits[:CANDIDATES]
        if not hits:
            return [], 0.0
        evidence = self.evidence(question)
        sentences, windows, coverage = [], [], []
        for hit in hits:
            previous, following = self._beside(hit.passage)
            # Retrieval's evidence (its scores, the question's words it holds) stays the hit's;
            # what the reader reads may be the sentence after it.
            coverage.append(evidence.coverage(hit.passage.text, f"{_text(previous)} {_text(following)}"))
            sentence, previous, following = self.sentence_to_read(hit.passage, previous, following)
            sentences.append(sentence)
            windows.append(reading.window(_text(previous), sentence.text, _text(following)))
        readings = self.reader.read(question, windows)
        features = reading.fusion_features(
            question, [s.text for s in sentences], readings, [h.dense_score for h in hits], [h.lexical_score for h in hits],
            coverage, evidence.unknown_words,
        )
        probabilities = self.reader.fusion.probabilities(features)
        confidence = self.reader.abstention.confidence(features, self.reader.fusion)
        return [Candidate(s, r, float(p)) for s, r, p in zip(sentences, readings, probabilities)], confidence

    def sentence_to_read(
        self, passage: Passage, previous: Passage | None, following: Passage | None,
    ) -> tuple[Passage, Passage | None, Passage | None]:
        """The sentence the reader reads for a retrieved one, with its neighbours (`_beside`):
        the retrieved sentence itself, or the next sentence of its source when it asks a question.

        A FAQ's question line, or a question in a text, repeats the words of the user's question,
        so retrieval ranks it high, but what answers it is what follows. The reader points only
        inside the sentence it reads; given the question line itself, it answered from it ("Who."
        for "Who organises the lantern festival?"). On the Debian manuals
        (eval/questions/debian-manuals.jsonl), 3 of the 14 answerable questions answered wrongly or
        without their evidence had a question line ranked as the answer's sentence. Questions are
        rare in the training articles (59 of the 65,340 candidates mined for
        eval/train_reader.py), so the fusion, fitted without this, hardly ever met one. Measured
        apart from the manuals it was made for, on MTRAG's conversations (`python -m
        eval.mtrag --pool both`), follow-ups gained 0.7 to 1.5 points of cited hits and of
        answers with a hit (see the README).

        Headings mislead the same way (4 of the 14), but reading the sentence after a paragraph
        that no stop ends lost as many of those questions as it won there: a bibliography entry
        ("@Misc{…author = {Kurt Hornik…}") ends without a stop too, and holds its answer.
        """
        if following is None or not _ASKS.search(passage.text):
            return passage, previous, following
        # The question line is the sentence before the one read; only the one after it is new.
        return following, passage, self._beside(following)[1]

    def _beside(self, passage: Passage) -> tuple[Passage | None, Passage | None]:
        """The previous and the next sentence of the same source (None at its start or end)."""
        around = self._neighbours(passage, before=1, after=1)
        previous = next((p for p in around if p.position < passage.position), None)
        following = next((p for p in around if p.position > passage.position), None)
        return previous, following

    def evidence(self, question: str) -> QuestionEvidence:
        """The question's words, weighed by how rare they are in the documents."""
        return question_evidence(question, self.index.vocabulary, self._idf, self._idf_median)

    def _resolved(self, direct: str, passage: Passage) -> tuple[str, tuple[Passage, ...]]:
        """A date without its year ("March of the same year") with the year an earlier sentence
        gives ("In February 1918, …" → "March 1918"), and that sentence, cited beside the answer."""
        dates = find_dates(direct)
        if not dates:
            return direct, ()
        earlier = self._neighbours(passage, before=YEAR_LOOKBACK, after=0)
        span = resolve_date(dates[0], [p.text for p in earlier])
        if span.context is None:
            return direct, ()
        return direct[: dates[0].start] + span.text + direct[dates[0].end :], (earlier[span.context],)

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

    def _citations(self, cited_sentences: list[list[Candidate]], context: tuple[Passage, ...]) -> list[Citation]:
        """The answer's sentence, the sentence its date was read with, then the other cited
        sentences (each a group of copies, the one to cite first; `copies_together`); each cited
        once, naming the other sources that hold it (among the candidates and in the whole index)."""
        best = cited_sentences[0][0]
        chosen: dict[str, tuple[Passage, float, set[str]]] = {}  # sentence key → (passage, score, sources)

        def cite(passage: Passage, score: float, sources: set[str]) -> None:
            key = sentence_key(passage.text)
            if key in chosen:  # the same sentence again: only its sources are new
                chosen[key][2].update(sources)
            elif len(chosen) < MAX_CITATIONS:
                chosen[key] = (passage, score, set(sources))

        cite(best.sentence, best.probability, {c.sentence.source for c in cited_sentences[0]})
        for passage in context:
            cite(passage, best.probability, set())
        for copies in cited_sentences[1:]:
            cite(copies[0].sentence, copies[0].probability, {c.sentence.source for c in copies})
        citations = []
        for passage, score, sources in chosen.values():
            others = (sources | self._copies.sources(passage)) - {passage.source}
            citations.append(Citation(
                text=passage.text, source=passage.source, start=passage.start, end=passage.end,
                score=round(float(score), 4), location=passage.location,
                also_in=tuple(sorted(others, key=lambda source: (self._checkability(source), source))),
            ))
        return citations

    def _checkability(self, source: str) -> int:
        """Where `source`'s format stands in CHECKABLE_FIRST (lower: cited first among copies)."""
        kind = self.index.manifest.get("sources", {}).get(source, {}).get("format", "text")
        return CHECKABLE_FIRST.index(kind) if kind in CHECKABLE_FIRST else len(CHECKABLE_FIRST)


def question_evidence(question: str, vocabulary: Vocabulary, idf: dict[str, float], typical_idf: float) -> QuestionEvidence:
    """The question's words against a vocabulary: which of them the documents use, and how rare
    each is (its idf; `typical_idf` for a word they never use).

    Training calls it with the vocabulary of an index that lacks the question's own article, the
    case of a user asking documents that never speak of the subject."""
    words = question_terms(question)
    found = {w: vocabulary.variants(w) for w in words}
    variants = {w: frozenset(found[w]) | {w} for w in words}
    # A word the documents never use weighs like a typical word: "invade" against a text that
    # says "invasion" should not sink the answer.
    weights = {w: max((idf.get(v, 0.0) for v in found[w]), default=0.0) or typical_idf for w in words}
    total = sum(weights.values()) or 1.0
    unknown = sum(weight for w, weight in weights.items() if not found[w]) / total
    return QuestionEvidence(variants=variants, weights=weights, unknown_words=unknown)


def _text(passage: Passage | None) -> str:
    return passage.text if passage is not None else ""


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without surrounding spaces and punctuation; the whole sentence when it is empty."""
    while start < end and text[start] in _SPAN_TRIM:
        start += 1
    while end > start and text[end - 1] in _SPAN_TRIM:
        end -= 1
    return (start, end) if end > start else (0, len(text))


def _compose(direct: str, passage: Passage, context: tuple[Passage, ...]) -> str:
    """The direct answer first, then the supporting statement, quoted.

    The answer is read, so line breaks inside a sentence (a PDF's text keeps its printed lines)
    become spaces here; the citations keep the source's exact characters.
    """
    sentence = _one_line(passage.text)
    said = _one_line(direct)
    if said == sentence:
        return f"“{sentence}”"
    statement = f"{said}. “{sentence}”"
    if context:
        statement += f" (the date is read with the earlier sentence “{_one_line(context[0].text)}”)"
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
