"""What the learned reader does not do: what a question's wording asks for (a person, a date:
the conversation uses it to know who "he" is), the names a question mentions, the words a
supporting sentence should share with it, and a relative date ("in March of the same year") read
with the year of the closest earlier sentence that states one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .text import STOPWORDS, terms

AnswerType = Literal["date", "number", "person", "place", "other"]

MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)
_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)"
)
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})(?:s)?"

# What a question's wording says it asks for (used by `question_shape`), one alternative a line.
_ASKS_WHEN = (
    r"^(?:and\s+|but\s+|so\s+)?(?:since\s+|until\s+)?when\b"
    r"|\bwhen\s*\?$"
    r"|\b(?:what|which)\s+(?:year|date|day|month|time|century|decade)\b"
)
# The roles of "which/what … <role>" questions that ask for a person: each occurs so in the
# 10,951 questions of SQuAD v1.1 and v2.0 dev part A (general 25, person 13, leader 12, king 10,
# author 7, president 6, scientist 5, officer 3, writer 3, minister 2, queen 2, man 1). Roles
# that only the sample's questions used (ambassador, diplomat, editor, spy, agent) are not here:
# a "who" question about them still says "who".
_ASKS_WHO = (
    r"^(?:and\s+)?(?:who|whom|whose)\b"
    r"|\b(?:which|what)\s+(?:\w+\s+){0,2}(?:person|man|leader|general|officer|king|queen"
    r"|president|minister|author|writer|scientist)\b"
    r"|\bwhat\s+(?:was|is)\s+(?:his|her|the)\s+(?:\w+\s+)?name\b"
    r"|\bname\s+of\s+the\s+(?:\w+\s+){0,2}(?:person|man|leader|king)\b"
)
_ASKS_WHERE = (
    r"^(?:and\s+)?where\b"
    r"|\b(?:what|which)\s+(?:\w+\s+)?(?:country|countries|city|cities|town|place|region|regions|territory|territories|state"
    r"|continent|location)\b"
)
_DAY = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?"
# Date expressions, most specific first.
_DATE = re.compile(
    rf"""\b(?:
        {_MONTH}\s+{_DAY},?\s+{_YEAR}          # June 22, 1941
      | {_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}  # 22 June 1941
      | {_MONTH},?\s+{_YEAR}                   # February 1918
      | [12][0-9]{{3}}-[01][0-9]-[0-3][0-9]     # 2024-02-12
      | {_MONTH}\s+{_DAY}\b                    # June 23
      | {_DAY}\s+(?:of\s+)?{_MONTH}            # 23 June
      | {_MONTH}\s+of\s+(?:the\s+)?(?:same|that|following|next|previous)\s+year  # March of the same year
      | (?<![\d,.])(?:in|by|since|until|of|from|during|around|about|early|late|mid-?)\s+{_YEAR}\b  # in 1918
      | {_YEAR}\b(?![\d,.])
      | (?:(?<=\bin\s)|(?<=\bIn\s)|(?<=\bby\s)|(?<=\bof\s)|(?<=\bsince\s)|(?<=\buntil\s)){_MONTH}\b  # in November
    )""",
    re.VERBOSE,
)
_HAS_YEAR = re.compile(rf"\b{_YEAR}\b")
_NEXT_YEAR = re.compile(r"\b(following|next)\s+year\b", re.I)
_PREVIOUS_YEAR = re.compile(r"\bprevious\s+year\b", re.I)
_LEADING_PREPOSITION = re.compile(r"^(?:in|by|since|until|of|from|during|around|about)\s+", re.I)

# Capitalised word sequences (allowing lower-case particles inside), the candidates for names.
_NAME = re.compile(
    r"\b[A-ZÀ-ÞА-ЯЁ][\w'’\-]*(?:\s+(?:(?:of|de|da|von|van|der|al|bin|the)\s+)?[A-ZÀ-ÞА-ЯЁ][\w'’\-]*)*"
)
# Capitalised words that are not names when they begin a sentence or stand alone.
_NOT_NAMES = frozenset(
    {m.capitalize() for m in MONTHS}
    | {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "I", "Mr", "Mrs", "Dr"}
)


@dataclass(frozen=True)
class QuestionShape:
    """What a question asks for."""

    answer_type: AnswerType
    focus: str  # for "how many X": X (stemmed), else ""


def question_shape(question: str) -> QuestionShape:
    """Classify the question by the answer it expects.

    >>> question_shape("How many tanks did the Germans have?")
    QuestionShape(answer_type='number', focus='tank')
    """
    q = question.strip().lower()
    match = re.search(r"\bhow\s+(?:many|much)\s+(\w+)", q)
    if match:
        focus = terms(match.group(1))
        return QuestionShape("number", focus[0] if focus else "")
    if re.search(r"\bhow\s+(?:many|much|large|big|long|old)\b|\bwhat\s+(?:number|percentage|amount|size)\b", q):
        return QuestionShape("number", "")
    # "when" counts only where it asks ("When did…", "…and when?"), not in a clause ("…fear when Beria came").
    if re.search(_ASKS_WHEN, q):
        return QuestionShape("date", "")
    if re.search(_ASKS_WHO, q):
        return QuestionShape("person", "")
    if re.search(_ASKS_WHERE, q):
        return QuestionShape("place", "")
    return QuestionShape("other", "")


@dataclass(frozen=True)
class Span:
    """An answer found inside a sentence: `text` is sentence[start:end] (or a resolution of it)."""

    text: str  # what the answer says, e.g. "March 1918"
    start: int  # offsets inside the sentence of the words it was read from
    end: int
    context: int | None = None  # index of the earlier sentence the year was taken from


def find_dates(sentence: str) -> list[Span]:
    spans = []
    for match in _DATE.finditer(sentence):
        text = _LEADING_PREPOSITION.sub("", match.group(0))
        offset = match.end() - len(text)
        spans.append(Span(text=text, start=offset, end=match.end()))
    return spans


def resolve_date(span: Span, earlier_sentences: list[str]) -> Span:
    """Give a date without a year the year of the closest earlier sentence that has one.

    >>> resolve_date(find_dates("in March of the same year they signed")[0], ["In February 1918, ..."]).text
    'March 1918'
    """
    if _HAS_YEAR.search(span.text):
        return span
    year = context = None
    for context in range(len(earlier_sentences) - 1, -1, -1):
        years = [d for d in find_dates(earlier_sentences[context]) if _HAS_YEAR.search(d.text)]
        if years:
            year = int(_HAS_YEAR.findall(years[-1].text)[-1].rstrip("s"))
            break
    if year is None:
        return span
    month_words = re.match(rf"{_MONTH}(?:\s+{_DAY})?", span.text)
    if _NEXT_YEAR.search(span.text):
        year += 1
    elif _PREVIOUS_YEAR.search(span.text):
        year -= 1
    head = month_words.group(0) if month_words else span.text
    if re.fullmatch(rf"{_MONTH}\s+{_DAY}", head):
        text = f"{head}, {year}"
    else:
        text = f"{head} {year}"
    return Span(text=text, start=span.start, end=span.end, context=context)


def names_in(question: str) -> list[str]:
    """Capitalised names in a question, its first word left out when it is capitalised only
    because it opens the question.

    >>> names_in("When did Lenin meet Trotsky in Brest?")
    ['Lenin', 'Trotsky', 'Brest']
    """
    found = []
    for match in _NAME.finditer(question):
        words = match.group(0).split()
        if match.start() == 0 and words[0].lower() in STOPWORDS | _QUESTION_WORDS:
            words = words[1:]
        text = re.sub(r"['’]s$", "", " ".join(words))
        if text and text not in _NOT_NAMES:
            found.append(text)
    return found


_QUESTION_WORDS = frozenset({"who", "whom", "whose", "what", "which", "when", "where", "why", "how"})


# Words that frame the answer rather than state what is asked: "In what *year*…", "the *name* of".
_FRAME_WORDS = frozenset(terms("year years date day month name number many much time kind type happened happen"))


def question_terms(question: str) -> list[str]:
    """The question's stemmed content words that a supporting sentence should contain.

    Words that frame the answer are left out: "year" in "What year did Lenin die?" must not
    match "the same year" in a sentence about something else.
    """
    return [t for t in dict.fromkeys(terms(question)) if t not in _FRAME_WORDS]
