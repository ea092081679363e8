"""Conversations: follow-up questions rewritten into standalone ones using the previous turns.

No language model: a follow-up is recognised by its pronouns, its connective ("And how many
aircraft?", "What about Belarus?") or its brevity, and rewritten from the last turn's question
and answer:

- he/him/his/she/her → the person the last answer named (or the last question named);
- "And how many aircraft?" → the last question's frame with the new focus
  ("How many aircraft did the Germans attack with?");
- it/its/they/them/their/this/that → what the last turn was about: the subject of its
  standalone question ("When was the Brest peace treaty signed?" → "the Brest peace treaty",
  read by `rag.phrases`), else the thing its answer named ("What was the operation called?" →
  "Typhoon"); "that treaty" → such a phrase ending in "treaty", in the last question or the
  sentence the last answer cited. The follow-up is then searched with that cited sentence;
- references left in words (there, then, a pronoun with nothing to stand for) → the new
  question, searched together with the last standalone question (and the one that continued),
  so retrieval sees what "it" was about.

A question that names its own subject and has no such reference is searched as it is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from .extraction import names_in, question_shape
from .phrases import Phrase, Reference, articled_phrases, noun_phrases, references
from .questions import clean_question
from .text import terms
from .types import Answer

_PERSON_PRONOUNS = re.compile(r"\b(he|him|his|she|her|hers|himself|herself)\b", re.IGNORECASE)
_OTHER_REFERENCES = re.compile(
    r"\b(it|its|they|them|their|there|then|this|that|these|those|the same)\b(?!\s+(?:is|was)\s+(?:why|how|what|when))",
    re.IGNORECASE,
)
_CONNECTIVE = re.compile(r"^\s*(?:and|but|also|so|then|what about|how about|and what about|and how about)\b[\s,]*", re.IGNORECASE)
_WH = re.compile(r"^\s*(?:who|whom|whose|what|which|when|where|why|how|did|does|do|is|was|were|are|can|could|would)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Turn:
    question: str  # as the user asked it
    query: str  # the standalone question it was understood as
    answer: Answer
    context: tuple[str, ...] = ()  # earlier standalone questions searched beside it


@dataclass(frozen=True)
class Rewrite:
    """How a question is understood in its conversation."""

    question: str  # the standalone question: shown to the user and used to read the answer
    context: tuple[str, ...] = ()  # earlier questions whose words retrieval also gets

    @property
    def search(self) -> str:
        """What retrieval is given: the question, and the words of the turns it continues."""
        return " ".join((self.question, *self.context))


def rewrite(question: str, history: list[Turn]) -> Rewrite:
    """Turn a follow-up into a standalone question using the last turn.

    >>> from rag.types import Answer
    >>> answer = Answer("Schulenburg. “…”", True, direct="Schulenburg")
    >>> last = Turn("Who was the German ambassador?", "Who was the German ambassador?", answer)
    >>> rewrite("What happened to him later?", [last]).question
    'What happened to Schulenburg later?'
    """
    if not history:
        return Rewrite(question)
    last = history[-1]
    connective = _CONNECTIVE.match(question)
    person_reference = _PERSON_PRONOUNS.search(question)
    other_reference = _OTHER_REFERENCES.search(question)
    short = len(re.findall(r"\w+", question)) <= 3
    if not (connective or person_reference or other_reference or short):
        return Rewrite(question)

    standalone = question
    if connective:
        rest = question[connective.end():].strip()
        standalone = _reframe(rest, last.query) if rest else last.query
    if _PERSON_PRONOUNS.search(standalone):
        person = _last_person(last)
        if person:
            standalone = _replace_person(standalone, person)
    standalone = _replace_things(standalone, last)
    resolved = standalone != question and not _OTHER_REFERENCES.search(standalone) and not _PERSON_PRONOUNS.search(standalone)
    if resolved and references(question) and last.answer.grounded and last.answer.citations:
        # "Who signed it?" named as "Who signed the Brest peace treaty?" is still about what the
        # last answer cited: its sentence is searched beside the question, so the sentence that
        # answers it is found even where the documents call the thing differently.
        return Rewrite(standalone, context=(last.answer.citations[0].text,))
    if resolved:
        return Rewrite(standalone)
    # A reference left in words ("it", "they", "this treaty"): retrieval also gets the last
    # turn's question, and what that one continued, so it sees what the reference is about.
    return Rewrite(standalone, context=(last.query, *last.context[:1]))


def _reframe(rest: str, previous: str) -> str:
    """Give an elliptical follow-up the frame of the previous question.

    "how many aircraft?" after "How many tanks did the Germans attack with?" becomes
    "How many aircraft did the Germans attack with?"; "Belarus?" after "Which territories would
    Stalin give up?" becomes "Which territories would Stalin give up? Belarus".
    """
    rest = rest.rstrip(" ?")
    old = re.search(r"(?i)\bhow\s+(?:many|much)\s+(\w+)", previous)
    if old:
        # "And how many aircraft?" or "What about artillery pieces?": the new thing counted.
        match = re.match(r"(?i)(?:how\s+(?:many|much)\s+)?(\w+(?:\s+\w+)?)$", rest)
        if match and not _WH.match(match.group(1)):
            return previous[: old.start(1)] + match.group(1) + previous[old.end(1):]
    if _WH.match(rest):
        return rest[0].upper() + rest[1:]
    return f"{previous.rstrip()} {rest}"


def _last_person(turn: Turn) -> str | None:
    """The person the last turn was about: named in its answer if it asked who, else in its question."""
    if question_shape(turn.query).answer_type == "person" and turn.answer.grounded and turn.answer.direct:
        return turn.answer.direct
    names = names_in(turn.query)
    return names[0] if names else None


def _replace_person(question: str, person: str) -> str:
    def substitute(match: re.Match) -> str:
        word = match.group(0).lower()
        return f"{person}'s" if word in ("his", "hers") else person

    # "her" is ambiguous (object or possessive); reading it as the person works for both searches.
    return _PERSON_PRONOUNS.sub(substitute, question)


def _replace_things(question: str, last: Turn) -> str:
    """"it", "they", "that treaty"… replaced by the phrase of the last turn each stands for;
    a reference with no such phrase is left as it is."""
    found = references(question)
    if not found:
        return question
    candidates = [*noun_phrases(last.query), *_answered_thing(last)]
    # "that treaty" may name what the last answer's sentence spoke of ("…they signed the Brest
    # Peace Treaty…"): the noun it repeats makes that safe, which a bare "it" would not be.
    cited = [p for c in last.answer.citations[:1] for p in articled_phrases(c.text)] if last.answer.grounded else []
    chosen: list[tuple[Reference, Phrase]] = []
    for reference in found:
        phrase = next((p for p in [*candidates, *(cited if reference.noun else [])] if _agrees(reference, p)), None)
        # The first mention is named; a later one ("What did they dye their cloth with?") then
        # refers to it inside the question, as it did in the user's words.
        if phrase is not None and all(phrase != other for _, other in chosen):
            chosen.append((reference, phrase))
    for reference, phrase in reversed(chosen):  # from the end, so earlier offsets stay valid
        text = phrase.text
        if re.match(r"(?i)(?:the|a|an|this|that|these|those)\b", text):
            text = text[0].lower() + text[1:]  # it opened the last question: lower case inside
        if reference.possessive:
            text += "'" if text.endswith("s") else "'s"
        if reference.start == 0:
            text = text[0].upper() + text[1:]
        question = question[: reference.start] + text + question[reference.end:]
    return question


def _agrees(reference: Reference, phrase: Phrase) -> bool:
    """Whether `phrase` can be what `reference` stands for: same number, never a person for
    "it", and for "that treaty" a phrase whose last word is "treaty"."""
    if reference.noun:
        return terms(phrase.text.split()[-1]) == terms(reference.noun)
    return reference.plural == phrase.plural and (reference.plural or not phrase.may_be_person)


def _answered_thing(turn: Turn) -> list[Phrase]:
    """The thing the last answer named, when the last question asked what or which one
    ("What was the operation called?" → "Typhoon") and the answer is a short noun phrase."""
    answer = turn.answer
    if not (answer.grounded and answer.direct) or question_shape(turn.query).answer_type != "other":
        return []
    if not re.match(r"(?i)\s*(?:what|which)\b", turn.query) or len(answer.direct.split()) > 6:
        return []
    phrases = noun_phrases(f"Was {answer.direct} there?")  # its syntax read as a question's subject
    whole = [p for p in phrases if p.text == answer.direct.strip()]
    return [Phrase(p.text, p.plural, may_be_person=False) for p in whole]


class AskStandalone(Protocol):
    """What a conversation is handed to answer a question once it is understood on its own
    (`Assistant.ask_standalone`): the standalone question, and the words retrieval also gets."""

    def __call__(self, question: str, *, search: str | None = None, min_confidence: float | None = None) -> Answer: ...


@dataclass
class Conversation:
    """A sequence of questions where each may refer to the turns before it.

    It knows nothing of indexes: it rewrites each question and hands it to `ask_standalone`.

    >>> conversation = Assistant.default().chat()           # doctest: +SKIP
    >>> conversation.ask("Who was the German ambassador?")   # doctest: +SKIP
    >>> conversation.ask("What happened to him later?").query  # doctest: +SKIP
    'What happened to Schulenburg later?'
    """

    ask_standalone: AskStandalone
    history: list[Turn] = field(default_factory=list)

    def ask(self, question: str, *, min_confidence: float | None = None) -> Answer:
        question = clean_question(question)
        understood = rewrite(question, self.history)
        answer = self.ask_standalone(understood.question, search=understood.search, min_confidence=min_confidence)
        if min_confidence is None:
            self.history.append(Turn(question, understood.question, answer, understood.context))
        return answer

    def reset(self) -> None:
        """Forget the previous turns: the next question starts a new conversation."""
        self.history.clear()
