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
_ASKS_WHO = (
    r"^(?:and\s+)?(?:who|whom|whose)\b"
    r"|\b(?:which|what)\s+(?:\w+\s+){0,2}(?:person|man|woman|leader|general|commander|officer|diplomat|ambassador|king|queen"
    r"|president|minister|author|writer|scientist|editor|spy|agent)\b"
    r"|\bwhat\s+(?:was|is)\s+(?:his|her|the)\s+(?:\w+\s+)?name\b"
    r"|\bname\s+of\s+the\s+(?:\w+\s+){0,2}(?:person|man|woman|leader|general|diplomat|ambassador|editor|agent)\b"
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


def find_names(sentence: str, question: str, *, places: bool = False, max_distance: int | None = None) -> list[Span]:
    """Capitalised names in the sentence that the question does not already contain, best first.

    With `max_distance`, names farther than that (in words, adjusted by how much they look like
    what is asked) from every word the sentence shares with the question are left out.

    Names close to the words the sentence shares with the question come first ("the German
    ambassador to the Soviet Union, Schulenburg": Schulenburg, for "Who was the German
    ambassador?"). Names right after a preposition of place ("in Brest") are preferred for
    places; names after "the" ("the Soviet Union") are dropped for people, who are rarely "the X".
    """
    asked = set(question_terms(question))
    anchors = [m.start() for m in _WORD_SPAN.finditer(sentence) if set(terms(m.group(0))) & asked]
    spans = []
    for match in _NAME.finditer(sentence):
        words = match.group(0).split()
        start = match.start()
        before_name = sentence[:start].rstrip().lower()
        # Drop a sentence-initial word that is capitalised only because it starts the sentence.
        at_start = not sentence[:start].strip(" \"'“‘(*")
        if at_start and (words[0].lower() in STOPWORDS or _is_common_opener(words[0])):
            start += len(words[0]) + len(match.group(0)[len(words[0]):]) - len(match.group(0)[len(words[0]):].lstrip())
            words = words[1:]
            if not words:
                continue
        # "Ambassador Schulenburg" answers "Who was the ambassador?" with "Schulenburg".
        while len(words) > 1 and set(terms(words[0])) <= asked:
            start = sentence.index(words[1], start + len(words[0]))
            words = words[1:]
        text = " ".join(words).rstrip("'’")
        text = re.sub(r"['’]s$", "", text)
        before = sentence[:start].rstrip().lower()
        preferred = places and bool(re.search(r"\b(?:in|at|through|near|into)$", before))
        # A place may be named in the question too: the Brest treaty was signed "in Brest".
        if text in _NOT_NAMES or (not set(terms(text)) - asked and not preferred):
            continue
        if not places and any(b.endswith((" the", " a", " an")) or b in ("the", "a", "an") for b in (before, before_name)):
            continue
        distance = min((_words_between(sentence, start, match.end(), a) for a in anchors), default=99)
        if places:
            distance -= 3 if preferred else 0
        else:
            distance += _person_evidence(sentence, before, match.end())
            # "led by Lenin" answers "Who led…?": the agent of the question's own verb.
            agent = re.search(r"\b(\w+)\s+by$", before)
            if agent and set(terms(agent.group(1))) & asked:
                distance -= 3
        if max_distance is not None and distance > max_distance:
            continue
        spans.append((distance, start, Span(text=text, start=start, end=match.end())))
    return [span for _, _, span in sorted(spans, key=lambda item: (item[0], item[1]))]


# "Who was the German ambassador to…?", "What was the name of Beria's henchman?": who holds a role.
_ROLE_QUESTION = re.compile(
    r"^(?:and\s+)?(?:who\s+(?:was|is|were|are)|what\s+(?:was|is)\s+the\s+name\s+of)\s+"
    r"(?:the|a|an|his|her|their|its|[\w-]+['’]s)\s+((?:[\w-]+\s+){0,3}?[\w-]+)"
    # The role ends before a preposition, a clause or a participle ("the leader ennobled by…").
    r"(?=\s+(?:of|to|in|at|for|during|from|on|under|against|with|by|behind|who|that|when)\b|\s+\w+(?:ed|ing)\b|\s*\?|\s*$)",
    re.IGNORECASE,
)
# What may stand between a role and the name attached to it, after the role: "his henchman Pavel
# Sudopradov", "the ambassador to the Soviet Union, Schulenburg", "a diplomat named Geegel".
_ROLE_THEN_NAME = re.compile(
    r"^(?:\s+(?:of|to|in|at|for|from|on|under)\s+(?:[\w'’.-]+\s+){0,4}?[\w'’.-]+)?"
    r"(?:\s*,\s*|\s+(?:named|called|was|is|were|became)\s+|\s+)[\"“'‘]?$"
)
_ROLE_WORD = re.compile(r"[\w-]+")  # "editor-in-chief" is one role
# A name after "<role>, " stands alone or heads a list ("the chief executive, Sam Chisholm and
# Rupert Murdoch"), where a name that begins a clause goes on with a verb.
_APPOSITION_END = re.compile(r"\s*(?:[,.;:)\"”]|who\b|and\s+[A-Z]|$)")
# …and before it: "Pavlenko, who was the editor-in-chief", "Bohemond, Robert's son", "ITV were
# the rights holders", "his son Duncan as a hostage".
_NAME_THEN_ROLE = re.compile(
    r"^(?:\s*,\s*(?:who\s+(?:was|is|were|are|had\s+been|became)\s+)?"
    r"|\s+(?:was|is|were|are|became|had\s+been|served\s+as|as)\s+)"
    r"(?:the|a|an|his|her|its|their|[\w-]+['’]s)\s+(?:[\w'’-]+\s+){0,3}$"
)


def asked_role(question: str) -> str | None:
    """The role a "who was the X" question asks the holder of, if it asks that.

    >>> asked_role("Who was the German ambassador to the Soviet Union?")
    'ambassador'
    >>> asked_role("What was the name of Beria's henchman?"), asked_role("Who led the Bolsheviks?")
    ('henchman', None)
    """
    match = _ROLE_QUESTION.search(question.strip())
    head = match.group(1).split()[-1] if match else ""
    return head if head.islower() else None  # a role is a common noun, not a name


def _is_role_word(word: str, role: str) -> bool:
    """`word` is `role`, in the singular or the plural. Not a stem match: "designed" and
    "broadcast" are what a designer and a broadcaster do, and say nothing of who they are."""
    def singular(w: str) -> str:
        w = w.lower()
        if w.endswith("ies"):
            return w[:-3] + "y"
        if w.endswith(("ches", "shes", "sses", "xes")):
            return w[:-2]
        return w[:-1] if w.endswith("s") and not w.endswith("ss") else w
    return singular(word) == singular(role)


def names_role(sentence: str, role: str) -> bool:
    """The sentence mentions the role at all.

    >>> names_role("Two abbots ran it.", "abbot"), names_role("It was designed by Tiffany.", "designer")
    (True, False)
    """
    return any(_is_role_word(w.group(0), role) for w in _ROLE_WORD.finditer(sentence))


def attached_to_role(sentence: str, span: Span, role: str) -> bool:
    """The name in `span` is the one the sentence says holds `role`, not a name beside it.

    >>> s = "Stalin sent Molotov to meet with the Bulgarian ambassador in an attempt to broker a truce."
    >>> attached_to_role(s, find_names(s, "")[1], "ambassador")
    False
    >>> s = "Stalin told the German ambassador to the Soviet Union, Schulenburg."
    >>> attached_to_role(s, find_names(s, "")[-1], "ambassador")
    True
    """
    for word in _ROLE_WORD.finditer(sentence):
        if not _is_role_word(word.group(0), role):
            continue
        between = sentence[word.end():span.start]
        if word.end() <= span.start and _ROLE_THEN_NAME.match(between):
            # After a comma the name must stand alone ("…, Schulenburg."), not begin a clause
            # ("after the German invasion, Stalin instructed…").
            if "," not in between or _APPOSITION_END.match(sentence[span.end:]):
                return True
        if span.end <= word.start() and _NAME_THEN_ROLE.match(sentence[span.end:word.start()]):
            return True
    return False


def _person_evidence(sentence: str, before: str, end: int) -> int:
    """Words of distance to add (or, negative, remove) for how much a name looks like a person's.

    "Pavlenko, who was the editor-in-chief of Military History": Pavlenko is followed by ", who"
    and Military History comes after "of", as places and organisations do.
    """
    if re.match(r"\s*,\s*(?:who|whose|whom)\b", sentence[end:]):
        return -6
    if re.search(r"\b(?:in|at|from|of|into|through|across|near|over)$", before):
        return 3
    return 0


def distance_to_question(sentence: str, span: Span, question: str) -> int:
    """Words between the span and the nearest word the sentence shares with the question."""
    asked = set(question_terms(question))
    anchors = [m.start() for m in _WORD_SPAN.finditer(sentence) if set(terms(m.group(0))) & asked]
    return min((_words_between(sentence, span.start, span.end, a) for a in anchors), default=99)


_WORD_SPAN = re.compile(r"\w+")
# Where a sentence joins two statements: "Construction began in 1887, and the bridge was opened…".
_CLAUSE_BREAK = re.compile(r",\s+(?:and|but|while|whereas|although|though)\s+|;\s+|\s+[-–—]\s+")


def nearest_to_question(sentence: str, spans: list[Span], question: str) -> Span:
    """The span whose clause shares most words with the question, then the closest to them.

    >>> s = "Construction began in 1887, and the bridge was opened to traffic on September 14, 1893."
    >>> nearest_to_question(s, find_dates(s), "When was the bridge opened?").text
    'September 14, 1893'
    """
    asked = set(question_terms(question))
    bounds = [0] + [m.end() for m in _CLAUSE_BREAK.finditer(sentence)] + [len(sentence)]

    def clause_overlap(span: Span) -> int:
        for start, end in zip(bounds, bounds[1:]):
            if start <= span.start < end:
                return len(set(terms(sentence[start:end])) & asked)
        return 0

    return min(spans, key=lambda span: (-clause_overlap(span), distance_to_question(sentence, span, question)))


def _words_between(sentence: str, start: int, end: int, anchor: int) -> int:
    if start <= anchor < end:
        return 0
    gap = sentence[end:anchor] if anchor >= end else sentence[anchor:start]
    return len(_WORD_SPAN.findall(gap))


def _is_common_opener(first: str) -> bool:
    """A capitalised first word of a sentence that is an ordinary word, not a name."""
    first = first.rstrip(",")
    return first.lower().endswith(("ed", "ing", "ly")) or first.lower() in {
        "however", "despite", "even", "although", "though", "because", "after", "before", "while",
        "during", "later", "according", "in", "on", "at",
        "this", "that", "these", "those", "there", "it", "they", "he", "she", "we", "you", "his", "her",
        "their", "our", "my", "a", "an", "the", "when", "what", "where", "why", "how", "if", "as",
        "then", "thus", "so", "but", "and", "or", "yes", "no", "write", "let", "then",
    }


_EARLIER_TIME = re.compile(
    r"\b(?:that|the same|this)\s+(?:very\s+)?(?:day|date|year|month|morning|evening|night|time|moment)\b", re.IGNORECASE
)
_CONTINUATION = re.compile(r"^[\"“'‘]?(?:He|She|It|They|This|That|These|Those|His|Her|Its|Their|Because|So|Therefore|Thus)\b")


def refers_to_earlier_time(sentence: str) -> bool:
    """The sentence dates itself by reference: "On that day", "the same year"."""
    return bool(_EARLIER_TIME.search(sentence))


def continues(sentence: str) -> bool:
    """The sentence continues the one before it: it opens with a pronoun or a "so"/"because"."""
    return bool(_CONTINUATION.match(sentence))


def unknown_names(question: str, vocabulary) -> list[str]:
    """Names in the question (capitalised past its first word, or all capitals) the documents never use.

    "When was the Treaty of Versailles signed?" against a text that never says Versailles: the
    documents cannot be about that.
    """
    missing = []
    for position, match in enumerate(re.finditer(r"\b[A-Z][\w'’\-]*", question)):
        word = match.group(0)
        if position == 0 and match.start() == 0 and not word.isupper():
            continue
        if word in _NOT_NAMES or word.lower() in STOPWORDS:
            continue
        stems = terms(word)
        if stems and not any(stem in vocabulary for stem in stems):
            missing.append(word)
    return missing


# Words that frame the answer rather than state what is asked: "In what *year*…", "the *name* of".
_FRAME_WORDS = frozenset(terms("year years date day month name number many much time kind type happened happen"))


def question_terms(question: str) -> list[str]:
    """The question's stemmed content words that a supporting sentence should contain.

    Words that frame the answer are left out: "year" in "What year did Lenin die?" must not
    match "the same year" in a sentence about something else.
    """
    return [t for t in dict.fromkeys(terms(question)) if t not in _FRAME_WORDS]


def predicate_words(question: str) -> set[str]:
    """Stemmed lower-case content words of the question, less the words that frame the answer.

    >>> sorted(predicate_words("Who replaced Schulenburg as German ambassador?"))
    ['ambassador', 'replac']
    """
    words = [m.group(0) for m in re.finditer(r"[\w'’\-]+", question)]
    lower = [w for i, w in enumerate(words) if w[0].islower() or (i == 0 and w.lower() in STOPWORDS)]
    return {t for w in lower for t in terms(w)} - _FRAME_WORDS


_SUBJECT_PRONOUN = re.compile(r"^[\"“'‘]?(?:He|She|They|His|Her|Their)\b")


def starts_with_pronoun(sentence: str) -> bool:
    """The sentence's subject is a personal pronoun, named in an earlier sentence."""
    return bool(_SUBJECT_PRONOUN.match(sentence))
