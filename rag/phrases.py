"""What a question is about, read from its syntax alone: the noun phrases that a later "it" or
"they" can stand for, and which of a question's "it", "they", "this" and "that" refer back.

No tagger and no lexicon of content words: English questions put their parts in a fixed order
(question word, auxiliary, subject, verb, object), and the words between the parts are function
words, a closed class listed here once. A subject is the run of words between an auxiliary and
the main verb; the verb is told by its form (a participle after "was"), by its place (the last
word before a function word after "did") or by a change of case ("did Stalin ask Beria").

    >>> [p.text for p in noun_phrases("When was the Brest peace treaty signed?")]
    ['the Brest peace treaty']
    >>> [p.text for p in noun_phrases("Who designed the Varnholt Bridge?")]
    ['the Varnholt Bridge']
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

# -- the closed classes of English (grammar, not vocabulary) -------------------------------------

_QUESTION_WORDS = frozenset("who whom whose what which when where why how".split())
_DO = frozenset("do does did".split())
_BE = frozenset("is are was were am be been being".split())
_HAVE = frozenset("has have had".split())
_MODALS = frozenset("will would can could should shall may might must".split())
AUXILIARIES = _DO | _BE | _HAVE | _MODALS
_DETERMINERS = frozenset("the a an this that these those".split())
_POSSESSIVES = frozenset("his her its their our my your".split())
_QUANTIFIERS = frozenset("some any each every no all both many much several few more most other another".split())
_PREPOSITIONS = frozenset(
    """of in on at to for with from by about against between into onto through during before after
    over under since until within without among across behind beyond near upon toward towards
    around via per like as than up down out off away back along""".split()
)
_CONJUNCTIONS = frozenset("and or but nor so yet because if whether while although though unless then".split())
_PRONOUNS = frozenset(
    """i you he she it we they me him her us them this that these those there here one someone
    something anyone anything everyone everything nobody nothing myself yourself himself herself
    itself ourselves themselves""".split()
)
# Adverbs that sit between an auxiliary, the subject and the verb ("did it actually do").
_ADVERBS = frozenset("not n't never ever also still even already just only really actually first now later".split())
_FUNCTION_WORDS = (
    _QUESTION_WORDS | AUXILIARIES | _DETERMINERS | _POSSESSIVES | _QUANTIFIERS | _PREPOSITIONS
    | _CONJUNCTIONS | _PRONOUNS | _ADVERBS
)
# "can't", "won't", "shan't": the auxiliary is not what is left without "n't".
_NEGATED = {"ca": "can", "wo": "will", "sha": "shall"}
# Participles not formed with -ed, which is told by its ending (irregular verbs: a closed class).
_IRREGULAR_PARTICIPLES = frozenset(
    """made built bought brought caught dealt dug found fought fled held hung kept laid led left
    lent lost meant met paid said sent shot sold sought spent stood struck taught told thought
    understood won done gone seen known shown run set put cut hit hurt let read split spread shut
    begun drunk rung sung sunk swum arisen beaten bitten born borne broken chosen driven eaten
    fallen forbidden forgotten frozen given grown hidden proven ridden risen shaken spoken stolen
    sworn taken thrown torn withdrawn woken worn written overthrown""".split()
)

_TOKEN = re.compile(r"(?i:it)(?=['’]s\b)|\w+(?:[-'’]\w+)*|['’]\w+|[^\w\s]")
# Where a question's first sentence ends: the rest ("…? I just check my score") is other talk.
_SENTENCE_END = frozenset("?.!;")


@dataclass(frozen=True)
class Phrase:
    """A noun phrase of a question, as its words stand there."""

    text: str  # e.g. "the Brest peace treaty"
    plural: bool  # what "they" can stand for ("the Germans"), not "it"
    # Whom "it" never means: what "Who was…" asks about, or a bare name ("Stalin", "Germany")
    # that the question does not say is a thing ("What is Kubernetes?" does).
    may_be_person: bool


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        """The word in lower case, a contraction read as the word it contracts: "can't" is
        "can", "they're" is "they", "that's" is "that" (a name's "'s" stays: "Stalin's")."""
        word = self.text.lower().replace("’", "'")
        base, apostrophe, suffix = word.partition("'")
        if not apostrophe:
            return word
        if suffix == "t" and base.endswith("n"):
            return _NEGATED.get(base[:-1], base[:-1])
        return base if base in _FUNCTION_WORDS else word

    @property
    def word(self) -> bool:
        return self.text[0].isalnum() or self.text[0] == "_"

    @property
    def capitalised(self) -> bool:
        return self.text[0].isupper()


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _content(token: _Token) -> bool:
    """A word that can belong to a noun phrase's body: not punctuation, not a function word."""
    return token.word and token.lower not in _FUNCTION_WORDS


def _participle(token: _Token) -> bool:
    word = token.lower
    return (len(word) > 4 and word.endswith("ed") and not word.endswith("eed")) or word in _IRREGULAR_PARTICIPLES


# -- noun phrases ----------------------------------------------------------------------------------


def noun_phrases(question: str) -> list[Phrase]:
    """The noun phrases a follow-up's pronoun may refer to, the most likely first: the subject
    after the auxiliary ("When was *the treaty* signed?"), else the object of the verb when the
    question word is the subject ("Who designed *the bridge*?"), then any other noun phrase led
    by a determiner ("…on *the credit score*").

    >>> [p.text for p in noun_phrases("How many tanks did the Germans attack with?")]
    ['the Germans']
    >>> noun_phrases("Which territories would he give up?")
    []
    """
    tokens = _first_sentence(_tokens(question))
    found: list[tuple[int, int]] = []
    main = _main_phrase(tokens)
    if main:
        found.append(main)
    words = [t.lower for t in tokens]
    # "Is Kubernetes free?", "Who was the German ambassador to…": a be-form and no participle.
    copula = (main is not None and main[0] > 0 and words[main[0] - 1] in _BE
              and (main[1] == len(tokens) or not _participle(tokens[main[1]])))
    asks_who = copula and words[0] in ("who", "whom")  # "Who was the German ambassador?"
    asks_what = copula and words[0] in _BE | {"what", "which"}  # "What is Kubernetes?", "Is Kubernetes free?"
    found += [span for span in _articled(tokens) if main is None or span[0] >= main[1] or span[1] <= main[0]]
    phrases = [_phrase(question, tokens, start, end) for start, end in found]
    if main and (asks_who or asks_what):
        phrases[0] = replace(phrases[0], may_be_person=asks_who)
    return phrases


def articled_phrases(text: str) -> list[Phrase]:
    """The phrases led by "the", "a" or "an" anywhere in `text` (a sentence, not only a question).

    >>> [p.text for p in articled_phrases("In March they signed the Brest Peace Treaty with Germany.")]
    ['the Brest Peace Treaty']
    """
    tokens = _tokens(text)
    return [_phrase(text, tokens, start, end) for start, end in _articled(tokens)]


def _articled(tokens: list[_Token]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i, token in enumerate(tokens):
        if token.lower in ("the", "a", "an") and not (spans and i < spans[-1][1]):
            span = _phrase_at(tokens, i, after=None)
            if span:
                spans.append(span)
    return spans


def _first_sentence(tokens: list[_Token]) -> list[_Token]:
    # Leading connectives ("And", "So") and interjections carry no syntax.
    while tokens and tokens[0].lower in _CONJUNCTIONS | {"also", "ok", "okay", "well", "now"}:
        tokens = tokens[1:]
    # A preposition before the question word ("Through which country were…") governs only it.
    if len(tokens) > 1 and tokens[0].lower in _PREPOSITIONS and tokens[1].lower in _QUESTION_WORDS:
        tokens = tokens[1:]
    while tokens and not tokens[0].word:
        tokens = tokens[1:]
    for i, token in enumerate(tokens):
        if token.text in _SENTENCE_END:
            return tokens[:i]
    return tokens


def _main_phrase(tokens: list[_Token]) -> tuple[int, int] | None:
    """The subject after an inverted auxiliary, or the object of a question word's verb."""
    if not tokens:
        return None
    first = tokens[0].lower
    if first in AUXILIARIES:  # "Did the treaty protect…?", "Is Kubernetes free?"
        return _phrase_at(tokens, 1, after=first)
    if first not in _QUESTION_WORDS:
        return None
    i = 1
    if first == "how" and i < len(tokens) and tokens[i].lower not in AUXILIARIES:
        i += 1  # "how many", "how long"
    if first in ("what", "which", "whose", "how"):
        # The question word's own noun: "Which territories would…", "How many tanks did…".
        j = i
        while j < len(tokens) and j - i < 3 and _content(tokens[j]):
            j += 1
        if j < len(tokens) and tokens[j].lower in AUXILIARIES:
            i = j
    if i < len(tokens) and tokens[i].lower in AUXILIARIES:
        return _phrase_at(tokens, i + 1, after=tokens[i].lower)
    if first in ("where", "when", "why", "how"):
        # No inversion, as typed in a hurry or asked indirectly: "where American football is popular".
        return _phrase_at(tokens, i, after=None)
    # The question word is the subject ("Who signed it?"): the object follows the verb, or a
    # preposition after it ("What led to that treaty…"). Only a phrase with a determiner or a
    # name is taken for an object: a lower-case word there may still be the verb.
    j = i + 1
    if j < len(tokens) and tokens[j].lower in _PREPOSITIONS:
        j += 1
    if j < len(tokens) and (tokens[j].lower in _DETERMINERS or tokens[j].capitalised):
        return _phrase_at(tokens, j, after=None)
    return None


def _phrase_at(tokens: list[_Token], i: int, *, after: str | None) -> tuple[int, int] | None:
    """The noun phrase starting at token i: its first token and the token after its last.

    `after` is the auxiliary before it, which says how its verb will look: a participle after
    "was" or "has", a bare verb after "did" or "would", none after a copula that ends the question.
    """
    if i >= len(tokens) or not tokens[i].word:
        return None
    start, head = i, tokens[i]
    if head.lower in _DETERMINERS:
        i += 1
    elif head.lower in _FUNCTION_WORDS:  # a pronoun, a possessive, a quantifier: no antecedent
        return None
    body_start = i
    end = i
    # Quantifiers may stand inside a phrase ("the mls all star game"), never open its body.
    while end < len(tokens) and (_content(tokens[end]) or (end > body_start and tokens[end].lower in _QUANTIFIERS)):
        end += 1
    if after is not None and tokens[start].capitalised and tokens[start].lower not in _DETERMINERS:
        # A subject name without a determiner ends where lower case begins: the verb or what is
        # said of it ("did Soviet Russia abrogate", "Is Kubernetes free").
        name_end = start
        while name_end < end and (tokens[name_end].capitalised or tokens[name_end].lower == "of"):
            name_end += 1
        return (start, name_end) if name_end > start else None
    # "the president of France", "the Peace of Brest": one phrase across "of".
    while (end + 1 < len(tokens) and tokens[end].lower == "of"
           and (tokens[end + 1].lower in ("the", "a", "an") or tokens[end + 1].capitalised)):
        end += 1 if tokens[end + 1].capitalised else 2
        while end < len(tokens) and _content(tokens[end]):
            end += 1
    end = _before_verb(tokens, body_start, end, after)
    if end <= body_start:
        return None
    return start, end


def _before_verb(tokens: list[_Token], start: int, end: int, after: str | None) -> int:
    """Where the subject ends and its verb begins, inside the run of content words [start, end)."""
    if after in _BE or after in _HAVE:
        # "was the Brest peace treaty signed", "were the diplomats going": the first participle
        # after the phrase's first word.
        for k in range(start + 1, end):
            if (_participle(tokens[k]) or tokens[k].lower.endswith("ing")) and not tokens[k].capitalised:
                return k
        return end
    if after in _DO or after in _MODALS:
        # "did Stalin ask Beria": a name after a lower-case word is the verb's object.
        for k in range(start + 1, end):
            if tokens[k].capitalised and not tokens[k - 1].capitalised:
                end = k
                break
        # "did the Germans use tanks": a bare verb never ends in a plural -s; the noun after it does.
        while end - start >= 3 and _plural(tokens[end - 1].lower):
            end -= 1
        # "did the treaty protect": the verb is the last word before a function word.
        return end - 1 if end - start >= 2 else start
    return end


def _plural(word: str) -> bool:
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ics", "'s", "’s"))


def _phrase(question: str, tokens: list[_Token], start: int, end: int) -> Phrase:
    text = question[tokens[start].start:tokens[end - 1].end]
    head = tokens[end - 1].lower
    named = tokens[start].lower not in _DETERMINERS and all(t.capitalised or t.lower == "of" for t in tokens[start:end])
    # "of" phrases take their number from the word before "of": "the president of the States".
    for k in range(start, end):
        if tokens[k].lower == "of" and k > start:
            head = tokens[k - 1].lower
            break
    # A bare name is one thing even when it ends in -s ("Kubernetes", "Paris").
    return Phrase(text=text, plural=_plural(head) and not named, may_be_person=named)


# -- references ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A word (or a demonstrative phrase) in a follow-up that stands for something said before."""

    start: int  # character offsets in the question
    end: int
    plural: bool  # they/them/their, these/those
    possessive: bool  # its, their
    noun: str = ""  # for "that treaty": the noun ("treaty") the antecedent must end with


def references(question: str) -> list[Reference]:
    """The pronouns of `question` that stand for something outside it, in order.

    Left out: "that" joining a clause ("Is it true that…", "the army that fought"), dummy "it"
    ("Is it possible to…", "it was raining") and a pronoun whose antecedent the question itself
    names before it ("How does the service work and why should I use it?").

    >>> [(r.start, r.end) for r in references("Who signed it?")]
    [(11, 13)]
    >>> references("Is it true that the treaty was signed?")
    []
    """
    tokens = _tokens(question)
    found: list[Reference] = []
    for i, token in enumerate(tokens):
        if not _in_a_question(tokens, i):  # "That was not my question.": talk, not a question
            continue
        word = token.lower
        plural = word in ("they", "them", "their", "these", "those")
        if word in ("it", "its", "they", "them", "their"):
            if (word == "it" and _dummy_it(tokens, i)) or _named_before(tokens, i, plural=plural):
                continue
            found.append(Reference(token.start, token.start + len(word), plural=plural, possessive=word in ("its", "their")))
        elif word in ("this", "that", "these", "those"):
            role = _demonstrative_role(tokens, i)
            if role == "determiner":  # "that treaty": resolved only to a phrase ending in "treaty"
                found.append(Reference(token.start, tokens[i + 1].end, plural=plural, possessive=False,
                                       noun=tokens[i + 1].lower))
            elif role == "pronoun" and not _named_before(tokens, i, plural=plural):
                found.append(Reference(token.start, token.start + len(word), plural=plural, possessive=False))
    return found


def _in_a_question(tokens: list[_Token], i: int) -> bool:
    """Whether token i is in a sentence that asks: one ending in "?", or in nothing at all."""
    for token in tokens[i:]:
        if token.text in _SENTENCE_END:
            return token.text == "?"
    return True


def _demonstrative_role(tokens: list[_Token], i: int) -> str:
    """"determiner" ("that treaty"), "pronoun" ("What does that mean?", "how is that calculated",
    "Is this free?") or "clause" ("true that the treaty…", "the army that fought")."""
    before = tokens[i - 1] if i else None
    following = tokens[i + 1] if i + 1 < len(tokens) else None
    if following is None or not following.word:
        return "pronoun"
    after_auxiliary = before is not None and before.lower in AUXILIARIES
    if _content(following) and not (after_auxiliary and _participle(following)):
        return "determiner"
    if before is None or not before.word or after_auxiliary or before.lower in _PREPOSITIONS:
        return "pronoun"
    return "clause"


def _dummy_it(tokens: list[_Token], i: int) -> bool:
    """"it" that stands for nothing: "Is it true that…", "it is possible to…", "how long does it
    take to…", "it was raining"."""
    window = " ".join(t.lower for t in tokens[max(0, i - 1): i + 6])
    # An infinitive ("to sign"), not a preposition ("to the Germans", "to Germany": upper case is
    # lowered here, so a determiner is what tells them apart).
    clause = r"(?:to\s+(?!the\b|a\b|an\b|this\b|that\b|his\b|her\b|their\b|its\b)[a-z]+|that|whether|if)\b"
    extraposed = (
        rf"\bit\s+(?:is|was|'s|’s|seems|seemed|appears|appeared|takes|took|take|costs?|would\s+be|will\s+be|be)"
        rf"(?:\s+\S+){{0,3}}?\s+{clause}"
    )
    inverted = rf"\b(?:is|was|would|will|does|did)\s+it\s+(?:be\s+)?\S+(?:\s+\S+)?\s+{clause}"
    weather = r"\bit\s+(?:(?:is|was|'s|’s)\s+)?(?:rain|snow|hail)"
    return any(re.search(pattern, window) for pattern in (extraposed, inverted, weather))


def _named_before(tokens: list[_Token], i: int, *, plural: bool) -> bool:
    """Whether the question names, before the pronoun, what the pronoun may stand for: a name
    ("Then what does Vulnerability Advisor scan? what does it do?") or a phrase of its number."""
    before = tokens[:i]
    for k, token in enumerate(before):
        if k and token.capitalised and _content(token) and token.text != "I":
            return True
        if token.lower in _DETERMINERS | _POSSESSIVES:  # "my credit card, but it keeps…"
            end = k + 1
            while end < len(before) and _content(before[end]):
                end += 1
            if end > k + 1 and _plural(before[end - 1].lower) == plural:
                return True
    return False
