"""Word-level text processing shared by lexical retrieval and answer extraction."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

# Bumped whenever `terms` changes: an index whose BM25 vocabulary was built by another version
# of it is rebuilt, never mixed.
TOKENIZER_VERSION = 2

_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)

# Function words carry no evidence of relevance. A short list on purpose: question words that
# change meaning ("not", numbers) are kept.
STOPWORDS = frozenset(
    """a an the and or but if then else of at by for with about against between into through during
    before after above below to from up down in out on off over under again further once here there
    all any both each few more most other some such only own same so than too very s t can will just
    don should now is are was were be been being have has had having do does did doing i me my myself
    we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
    its itself they them their theirs themselves what which who whom whose this that these those am
    would could shall may might must also as how when where why whom""".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: the Snowball English stemmer, in C

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased word tokens, apostrophes inside words kept ("stalin's")."""
    return [w.lower() for w in _WORD.findall(text)]


# Irregular past forms the stemmer cannot join to their verb: "tore up" must match "tear up".
_IRREGULAR = {
    past: base
    for base, forms in {
        "arise": "arose arisen", "be": "was were been", "bear": "bore born borne", "beat": "beaten",
        "become": "became", "begin": "began begun", "bite": "bit bitten", "blow": "blew blown",
        "break": "broke broken", "bring": "brought", "build": "built", "buy": "bought", "catch": "caught",
        "choose": "chose chosen", "come": "came", "deal": "dealt", "dig": "dug", "do": "did done",
        "draw": "drew drawn", "drink": "drank drunk", "drive": "drove driven", "eat": "ate eaten",
        "fall": "fell fallen", "feel": "felt", "fight": "fought", "find": "found", "flee": "fled",
        "fly": "flew flown", "forbid": "forbade forbidden", "forget": "forgot forgotten", "freeze": "froze frozen",
        "get": "got gotten", "give": "gave given", "go": "went gone", "grow": "grew grown", "hang": "hung",
        "have": "had", "hear": "heard", "hide": "hid hidden", "hold": "held", "keep": "kept", "know": "knew known",
        "lay": "laid", "lead": "led", "leave": "left", "lend": "lent", "lie": "lay lain", "lose": "lost",
        "make": "made", "mean": "meant", "meet": "met", "pay": "paid", "ride": "rode ridden", "ring": "rang rung",
        "rise": "rose risen", "run": "ran", "say": "said", "see": "saw seen", "seek": "sought", "sell": "sold",
        "send": "sent", "shake": "shook shaken", "shoot": "shot", "sing": "sang sung", "sink": "sank sunk",
        "sit": "sat", "sleep": "slept", "speak": "spoke spoken", "spend": "spent", "stand": "stood",
        "steal": "stole stolen", "strike": "struck stricken", "swear": "swore sworn", "swim": "swam swum",
        "take": "took taken", "teach": "taught", "tear": "tore torn", "tell": "told", "think": "thought",
        "throw": "threw thrown", "understand": "understood", "wake": "woke woken", "wear": "wore worn",
        "win": "won", "write": "wrote written", "withdraw": "withdrew withdrawn", "overthrow": "overthrew overthrown",
        "die": "dead death", "invade": "invasion", "sign": "signature",
    }.items()
    for past in forms.split()
}


def terms(text: str) -> list[str]:
    """Stemmed content words: the vocabulary of BM25 and of lexical overlap.

    The possessive is dropped and stopwords removed before stemming, so "Stalin's" and
    "Stalin" match and "signed"/"signing" share the stem "sign".
    """
    content = []
    for word in words(text):
        word = re.sub(r"['’]s$", "", word)
        word = _IRREGULAR.get(word, word)
        if word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
            content.append(word)
    return _stemmer().stemWords(content) if content else []


class Vocabulary:
    """The stemmed terms of an index, with a fallback for inflections the stemmer leaves apart.

    Snowball stems "invade" to "invad" and "invasion" to "invas"; a question term that the
    documents never use is matched to the indexed terms that share all but its last letter
    (at least four letters), so "When did Germany invade…" still finds "the German invasion".
    """

    def __init__(self, terms: Iterable[str]):
        self.terms = frozenset(terms)
        self._by_prefix: dict[str, list[str]] = {}
        for term in self.terms:
            if len(term) >= 4:
                self._by_prefix.setdefault(term[:4], []).append(term)

    def __contains__(self, term: str) -> bool:
        return term in self.terms

    def variants(self, term: str) -> list[str]:
        """The indexed terms that stand for `term`: itself if indexed, else its near-inflections."""
        if term in self.terms:
            return [term]
        if len(term) < 4:
            return []
        return [t for t in self._by_prefix.get(term[:4], ()) if _inflections(term, t) or _inflections(t, term)]


def _inflections(shorter: str, other: str) -> bool:
    """Whether `other` may inflect `shorter`: it shares all of `shorter` but its last letter.

    Four shared letters are too few on their own ("react" is not "reach"): a five-letter stem
    only takes the Latin d/t → s alternation ("invad" → "invas", "permit" → "permis").

    >>> Vocabulary(["invas", "reach", "dismiss"]).variants("invad")
    ['invas']
    >>> Vocabulary(["invas", "reach", "dismiss"]).variants("react")
    []
    """
    stem = shorter[: max(4, len(shorter) - 1)]
    if not other.startswith(stem):
        return False
    if len(shorter) >= 6 or other == stem:
        return True
    return shorter[-1] in "dts" and other[len(stem)] in "dts"
