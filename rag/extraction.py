"""Reading a question's expected answer type, and finding answers of that type in a sentence.

No model here: dates, numbers and names are found with patterns, and a relative date ("in March
of the same year") takes its year from the closest earlier sentence that states one.
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
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)"
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})(?:s)?"
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
_SAME_YEAR = re.compile(r"\b(same|that)\s+year\b", re.I)
_NEXT_YEAR = re.compile(r"\b(following|next)\s+year\b", re.I)
_PREVIOUS_YEAR = re.compile(r"\bprevious\s+year\b", re.I)
_LEADING_PREPOSITION = re.compile(r"^(?:in|by|since|until|of|from|during|around|about)\s+", re.I)

_NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "hundreds", "thousand", "thousands",
    "dozen", "dozens", "million", "millions", "several", "few",
)
_NUMBER = re.compile(
    rf"""(?:(?:some|about|around|over|nearly|almost|approximately|more\s+than|less\s+than|at\s+least)\s+)?
    (?:\d[\d,]*(?:\.\d+)?|(?:{'|'.join(_NUMBER_WORDS)})(?:\s+(?:or|to)\s+(?:{'|'.join(_NUMBER_WORDS)}))?)
    (?:\s*(?:%|percent|per\s+cent|million|billion|thousand|hundred))?""",
    re.VERBOSE | re.IGNORECASE,
)

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
    if re.search(r"^(?:when|since when|until when)\b|\b(?:what|which|in what|in which)\s+(?:year|date|day|month|time|century|decade)\b|\bwhen\b", q):
        return QuestionShape("date", "")
    if re.search(r"^(?:who|whom|whose)\b|\b(?:who|whom)\b|\b(?:which|what)\s+(?:person|man|woman|leader|general|officer|diplomat|ambassador|king|president|minister|author|scientist|name)\b|\bwhat\s+was\s+(?:his|her|the)\s+name\b", q):
        return QuestionShape("person", "")
    if re.search(r"^where\b|\bwhere\b|\b(?:what|which)\s+(?:country|countries|city|cities|town|place|region|territory|territories|state|continent|location)\b", q):
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


def find_numbers(sentence: str, focus: str) -> list[Span]:
    """Numbers in the sentence; those followed closely by the focus noun ("4,300 tanks") first."""
    found = []
    for match in _NUMBER.finditer(sentence):
        value = match.group(0).strip()
        if not re.search(r"\d", value) and value.lower() in ("few", "several"):
            continue
        if _is_year_or_day(sentence, match):
            continue
        following = terms(sentence[match.end() : match.end() + 40])[:3]
        focused = bool(focus) and focus in following
        found.append((not focused, match.start(), Span(text=value, start=match.start(), end=match.end())))
        if focused:
            # Report the counted thing too: "4,300 tanks".
            noun = re.match(r"\s+(?:\w+\s+){0,2}?\w+", sentence[match.end() :])
            if noun:
                end = match.end() + noun.end()
                found[-1] = (False, match.start(), Span(text=sentence[match.start() : end].strip(), start=match.start(), end=end))
    return [span for _, _, span in sorted(found, key=lambda item: (item[0], item[1]))]


def _is_year_or_day(sentence: str, match: re.Match) -> bool:
    return any(d.start <= match.start() < d.end for d in find_dates(sentence))


def find_names(sentence: str, question: str, *, places: bool = False) -> list[Span]:
    """Capitalised names in the sentence that the question does not already contain.

    Names right after a preposition of place ("in Brest") are preferred for places, names that
    follow "by", "named" or a comma for people. Names after "the" ("the Soviet Union") are kept
    for places only: a person is rarely "the X".
    """
    question_terms = set(terms(question))
    spans = []
    for match in _NAME.finditer(sentence):
        text = match.group(0)
        words = text.split()
        # Drop a sentence-initial word that is capitalised only because it starts the sentence.
        at_start = not sentence[: match.start()].strip(" \"'“‘(*")
        if at_start and (words[0].lower() in STOPWORDS or words[0].endswith((",", "ly")) or _is_common_opener(sentence, match)):
            words = words[1:]
            if not words:
                continue
            text = " ".join(words)
        text = text.rstrip("'’").removesuffix("'s").removesuffix("’s")
        if text in _NOT_NAMES or not set(terms(text)) - question_terms:
            continue
        before = sentence[: match.start()].rstrip().lower()
        after_the = before.endswith((" the", " a", " an")) or before in ("the", "a", "an")
        if after_the and not places:
            continue
        start = match.end() - len(match.group(0)) + len(match.group(0)) - len(match.group(0).lstrip())
        preference = 0
        if places and re.search(r"\b(?:in|at|to|through|from|near|into|of)$", before):
            preference = -1
        if not places and re.search(r"(?:\bby|\bnamed|\bcalled|,)$", before):
            preference = -1
        spans.append((preference, match.start(), Span(text=text, start=match.start(), end=match.end())))
        del start
    return [span for _, _, span in sorted(spans, key=lambda item: (item[0], item[1]))]


def _is_common_opener(sentence: str, match: re.Match) -> bool:
    """A capitalised first word followed by a lower-case word that makes it a verb or adverb."""
    first = match.group(0).split()[0]
    return first.lower().endswith(("ed", "ing", "ly")) or first.lower() in {
        "however", "despite", "even", "although", "though", "because", "after", "before", "while",
        "during", "faced", "eventually", "later", "shortly", "uneasy", "according", "in", "on", "at",
        "this", "that", "these", "those", "there", "it", "they", "he", "she", "we", "you", "his", "her",
        "their", "our", "my", "a", "an", "the", "when", "what", "where", "why", "how", "if", "as",
        "then", "thus", "so", "but", "and", "or", "yes", "no", "write", "let", "then",
    }
