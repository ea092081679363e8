"""Dates in text, and a relative date's year: what the learned reader (rag.reader) can't do.

The reader reads "March of the same year" as the answer to "When was the treaty signed?", but
the year is in an earlier sentence, which it only sees when it is the previous one. A date
without a year that refers back ("the same year", "the following year") takes its year from the
closest earlier sentence that states one. The patterns name the months and years of English
dates; nothing here is tuned to one document.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


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
_NEXT_YEAR = re.compile(r"\b(following|next)\s+year\b", re.I)
_PREVIOUS_YEAR = re.compile(r"\bprevious\s+year\b", re.I)
_LEADING_PREPOSITION = re.compile(r"^(?:in|by|since|until|of|from|during|around|about)\s+", re.I)

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


def has_year(text: str) -> bool:
    """The text states a year ("1918", "the 1930s")."""
    return bool(_HAS_YEAR.search(text))
