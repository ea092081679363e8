"""Checking a generated answer sentence by sentence against the excerpts each sentence cites.

A language model writes fluently but not faithfully: every small model we tried at least once
put the Brest treaty in the wrong year or in the wrong person's hands (see
../shared/notes/local-models.md (beside the repository)). So a generated sentence is kept only when

1. it carries at least one marker ``[n]`` and every marker points at an excerpt it was given;
2. every number, and every capitalised name or month it states, occurs in the excerpts it cites;
3. it does not negate ("not", "never") what excerpts without a negation say;
4. most of its content words occur in those excerpts (LEXICAL_MIN); and
5. its meaning is close to one of them: the cosine similarity of the sentence and a cited
   excerpt, both embedded by the index's own model, is at least SIMILARITY_MIN.

Sentences that fail are removed and recorded with the reason; the markers of the kept ones are
renumbered to the citations of the final answer, in order of first use. The checks are pure
functions of the sentence, the excerpts and the embedder, so they can be tested on real text.

    >>> split_sentences("It was signed in March 1918 [1]. Lenin led them [2].")
    ['It was signed in March 1918 [1].', 'Lenin led them [2].']
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..text import STOPWORDS, Vocabulary, terms, words
from ..types import Citation, SentenceSupport

if TYPE_CHECKING:
    from ..embedding import PassageEncoder

# Measured on the 34 sentences the 0.5B model wrote for the first 30 questions of
# eval/questions/sample.jsonl (`rag eval --generate --limit 30`), each compared with each of the 4
# excerpts it was shown (136 pairs), support labelled by hand:
#
# Share of a sentence's content words (stemmed) that must occur in the excerpts it cites.
# Supported pairs had 0.67-1.00; unsupported ones at most 0.57, except those whose names or
# numbers differ (caught by those checks) and one wrong combination of true words at 0.75
# ("The German diplomats were due to leave on June 23 [..]"), which no check here catches.
LEXICAL_MIN = 0.6
# Cosine similarity (all-MiniLM-L6-v2, unit vectors) between the sentence, markers removed, and
# its best cited excerpt. Not a separator on its own: the sample is about one topic, so
# unsupported pairs reached 0.74 while supported ones went down to 0.44 (bare fragments such as
# "181 divisions."). It is a floor against fragments and text that shares words, not meaning;
# supported full sentences scored 0.61-1.00.
SIMILARITY_MIN = 0.45

# A marker: [1], [2, 3] or [2; 3]. Several may follow each other: [1][2].
MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
# Where a sentence ends: a full stop, question or exclamation mark (closing quotes and the
# markers after it belong to the sentence), then space and the start of another sentence; or
# a line break. A stop followed by a lower-case word ("e.g. the") is not an end.
_END = re.compile(
    r"""[.!?]["”’')]*(?:\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\])*(?=\s+["“‘(]?[A-Z0-9])|\n+"""
)
# A list item's bullet or number at the start of a line: not part of the sentence.
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALISED = re.compile(r"\b[A-Z][\w'’\-]*")
_NEGATION = frozenset({"not", "never", "no", "none", "neither", "nor", "nothing", "without", "n't"})
# Words a fluent answer uses to talk about its sources or to link sentences: they carry no
# claim, so they are neither required in the excerpts nor counted as content words.
_DISCOURSE = frozenset(
    terms(
        "according excerpt excerpts document documents text passage passages mention mentions mentioned "
        "state states stated say says said yes however therefore also finally later first second answer "
        "question indeed specifically namely"
    )
    + ["yes", "however", "therefore", "finally", "later", "first", "indeed", "specifically", "namely", "also"]
)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, each with the markers that follow its full stop.

    Args:
        text: what the model wrote.
    Returns:
        The non-empty sentences, stripped, bullets removed, in order.
    """
    sentences, start = [], 0
    for match in _END.finditer(text):
        sentences.append(text[start : match.end()])
        start = match.end()
    sentences.append(text[start:])
    cleaned = [_BULLET.sub("", s).strip() for s in sentences]
    return [s for s in cleaned if s and not _only_markers(s)]


def complete_sentences(text: str) -> tuple[list[str], str]:
    """Split text that is still arriving: the sentences known to be complete, and the rest.

    A sentence is complete once the next one has begun: its markers may still be on the way.
    """
    last = None
    for last in _END.finditer(text):
        pass
    if last is None:
        return [], text
    return split_sentences(text[: last.end()]), text[last.end() :]


def _only_markers(sentence: str) -> bool:
    return not MARKER.sub("", sentence).strip(" .,;")


def markers(sentence: str) -> list[int]:
    """The excerpt numbers a sentence cites, in order, without repeats.

    >>> markers("Signed in March 1918 [1][3], by Lenin [1, 2].")
    [1, 3, 2]
    """
    found = []
    for match in MARKER.finditer(sentence):
        for number in re.split(r"\s*[,;]\s*", match.group(1)):
            if int(number) not in found:
                found.append(int(number))
    return found


def strip_markers(sentence: str) -> str:
    """The sentence without its markers: what is compared with the excerpts."""
    return re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub("", sentence)).strip()


@dataclass(frozen=True)
class _Evidence:
    """What the cited excerpts say, in the forms the checks compare."""

    terms: Vocabulary
    numbers: frozenset[str]
    negated: bool


def _evidence(texts: Sequence[str]) -> _Evidence:
    joined = "\n".join(texts)
    return _Evidence(
        terms=Vocabulary(terms(joined)),
        numbers=frozenset(_normal_number(n) for n in _NUMBER.findall(joined)),
        negated=bool(_NEGATION & set(_negation_words(joined))),
    )


def _normal_number(number: str) -> str:
    """18,000 and 18000 are the same number; 3.5 stays 3.5."""
    return re.sub(r",(?=\d{3}\b)", "", number)


def _negation_words(text: str) -> list[str]:
    return [("n't" if w.endswith(("n't", "n’t")) else w) for w in words(text)]


def _found(term: str, evidence: _Evidence) -> bool:
    return term in evidence.terms or bool(evidence.terms.variants(term))


def check_sentence(
    sentence: str, excerpts: Sequence[Citation], similarity: float
) -> tuple[bool, str, tuple[int, ...]]:
    """The lexical checks of one sentence; `similarity` is its best cosine with a cited excerpt.

    Returns:
        (supported, reason it is not, the excerpt numbers it cites).
    """
    cited = tuple(markers(sentence))
    if not cited:
        return False, "no citation marker", cited
    invalid = [n for n in cited if not 1 <= n <= len(excerpts)]
    if invalid:
        return False, f"marker [{invalid[0]}] points at no excerpt (there are {len(excerpts)})", cited
    where = "".join(f"[{n}]" for n in cited)
    evidence = _evidence([excerpts[n - 1].text for n in cited])
    claim = strip_markers(sentence)
    for number in _NUMBER.findall(claim):
        if _normal_number(number) not in evidence.numbers:
            return False, f"states {number}, not in {where}", cited
    for match in _CAPITALISED.finditer(claim):
        word = match.group(0)
        if word.lower() in STOPWORDS:
            continue
        stems = [t for t in terms(word) if t not in _DISCOURSE]
        missing = [t for t in stems if not _found(t, evidence)]
        if missing:
            return False, f"names {word}, not in {where}", cited
    if _NEGATION & set(_negation_words(claim)) and not evidence.negated:
        return False, f"negates what {where} says", cited
    content = [t for t in dict.fromkeys(terms(claim)) if t not in _DISCOURSE]
    if content:
        share = sum(_found(t, evidence) for t in content) / len(content)
        if share < LEXICAL_MIN:
            absent = [t for t in content if not _found(t, evidence)]
            return False, f"{share:.0%} of its words in {where} (missing: {', '.join(absent[:4])})", cited
    if similarity < SIMILARITY_MIN:
        return False, f"similarity {similarity:.2f} with {where} is below {SIMILARITY_MIN}", cited
    return True, "", cited


def states(text: str, lead: str) -> bool:
    """Whether `text` states `lead`: all its numbers, and the stems of all its content words.

    >>> states("The treaty was signed in March 1918 [1][2].", "March 1918")
    True
    >>> states("The treaty was signed in February 1918 [1][2].", "March 1918")
    False
    """
    numbers = {_normal_number(n) for n in _NUMBER.findall(strip_markers(text))}
    if any(_normal_number(n) not in numbers for n in _NUMBER.findall(lead)):
        return False
    said = set(terms(strip_markers(text)))
    return all(t in said for t in terms(lead) if not t.isdigit())


def similarities(sentences: Sequence[str], excerpts: Sequence[Citation], embedder: "PassageEncoder") -> list[float]:
    """For each sentence, its best cosine similarity with an excerpt it cites (0 if it cites none)."""
    if not sentences:
        return []
    vectors = embedder.encode([strip_markers(s) for s in sentences] + [e.text for e in excerpts])
    sentence_vectors, excerpt_vectors = vectors[: len(sentences)], vectors[len(sentences) :]
    best = []
    for i, sentence in enumerate(sentences):
        cited = [n for n in markers(sentence) if 1 <= n <= len(excerpts)]
        best.append(max((float(sentence_vectors[i] @ excerpt_vectors[n - 1]) for n in cited), default=0.0))
    return best


@dataclass(frozen=True)
class Verified:
    """A generated text after checking: the kept sentences renumbered, and the citations they use."""

    text: str  # the kept sentences, markers renumbered to `citations`
    citations: tuple[Citation, ...]  # the excerpts the kept sentences cite, in order of first use
    sentences: tuple[SentenceSupport, ...]  # every sentence, kept or removed, in order

    @property
    def supported(self) -> int:
        return sum(s.supported for s in self.sentences)


class Renumbering:
    """Maps excerpt numbers to the final answer's citation numbers, in order of first use.

    Used incrementally while an answer streams: each kept sentence is renumbered as it completes.
    """

    def __init__(self, excerpts: Sequence[Citation]):
        self.excerpts = list(excerpts)
        self.order: list[int] = []  # excerpt numbers, in the order the answer first cites them

    def apply(self, sentence: str) -> tuple[str, tuple[int, ...]]:
        for n in markers(sentence):
            if n not in self.order:
                self.order.append(n)
        final = {n: self.order.index(n) + 1 for n in self.order}

        def renumber(match: re.Match) -> str:
            numbers = [final[int(n)] for n in re.split(r"\s*[,;]\s*", match.group(1))]
            return "".join(f"[{n}]" for n in dict.fromkeys(numbers))

        return MARKER.sub(renumber, sentence), tuple(final[n] for n in markers(sentence))

    @property
    def citations(self) -> tuple[Citation, ...]:
        return tuple(self.excerpts[n - 1] for n in self.order)


def verify_sentences(
    sentences: Sequence[str], excerpts: Sequence[Citation], embedder: "PassageEncoder", renumbering: Renumbering | None = None
) -> list[SentenceSupport]:
    """Check sentences and renumber the kept ones (with `renumbering`, continuing its numbering)."""
    renumbering = renumbering or Renumbering(excerpts)
    checked = []
    for sentence, similarity in zip(sentences, similarities(sentences, excerpts, embedder)):
        supported, reason, _ = check_sentence(sentence, excerpts, similarity)
        if supported:
            text, cites = renumbering.apply(sentence)
            checked.append(SentenceSupport(text, True, cites, "", similarity))
        else:
            checked.append(SentenceSupport(sentence, False, (), reason, similarity))
    return checked


def verify(text: str, excerpts: Sequence[Citation], embedder: "PassageEncoder") -> Verified:
    """Check every sentence of a generated text against the excerpts it cites.

    Args:
        text: the model's answer, with markers [n] pointing at `excerpts` (1-based).
        excerpts: the verbatim excerpts the model was given, in the order it was shown them.
        embedder: the index's embedder (its similarity threshold was measured with MiniLM).
    Returns:
        The kept sentences renumbered to the citations they use, and every sentence's check.

    >>> from rag.types import Citation
    >>> from rag.embedding import Embedder
    >>> excerpt = Citation("In March 1918 they signed the Brest Peace Treaty.", "a.txt", 0, 49, 1.0)
    >>> checked = verify("The treaty was signed in March 1918 [1]. It was signed in 1920 [1].", [excerpt], Embedder())
    >>> checked.text, checked.sentences[1].reason
    ('The treaty was signed in March 1918 [1].', 'states 1920, not in [1]')
    """
    renumbering = Renumbering(excerpts)
    sentences = tuple(verify_sentences(split_sentences(text), excerpts, embedder, renumbering))
    kept = " ".join(s.text for s in sentences if s.supported)
    return Verified(text=kept, citations=renumbering.citations, sentences=sentences)
