"""The same sentence in several files: when two sentences count as one, and where else an index
holds a sentence (a manual saved as PDF, Word and HTML holds each of its sentences three times).

An answer cites each distinct sentence once and names the other files that hold it
(`Citation.also_in`); rag.answering decides which copy is cited.
"""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

from .lexical import Bm25Index
from .store import IndexData
from .text import terms
from .types import Passage

if TYPE_CHECKING:  # for its type only: copies are found in a sharded index without importing rag.shards
    from .shards import ShardedIndexData

# What saving a text in another format changes without the author writing anything different: a
# PDF core font has no curly quotes or long dashes, word processors "smarten" quotes, PDFs carry
# ligatures and soft hyphens. Case is kept: copies of one document keep it, and sentences that
# differ only by it may not say the same ("US" and "us").
_QUOTES = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-",
})
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")  # soft hyphen, zero-width characters
# The passages read to confirm a sentence's copies: after intersecting the postings of its rarest
# terms, only passages holding all of them are left, one per copy of the file in practice. A
# sentence still matching more (one of few, common words: "Click OK.") is looked for among the
# retrieved sentences only, so an answer never reads thousands of passages.
MAX_PASSAGES_READ = 64
# A sentence whose rarest term is in more passages than this is made of common words only: its
# copies too are looked for among the retrieved sentences only, so that no answer sorts through
# postings the size of a large index (a million passages; BM25's own work is bounded by the same).
MAX_RAREST_POSTINGS = 10_000


def sentence_key(text: str) -> str:
    """What two sentences are compared by: the text with whitespace folded, compatibility
    characters (ligatures, non-breaking spaces) unified, and typographic quotes and dashes made plain.

    >>> sentence_key("They signed the\\n“Brest” treaty — in March.") == sentence_key('They signed the "Brest" treaty - in March.')
    True
    >>> sentence_key("They signed.") == sentence_key("they signed.")
    False
    """
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(_QUOTES)
    return " ".join(text.split())


class Copies:
    """Finds where an index holds a sentence again, from the postings of its BM25 index."""

    def __init__(self, index: IndexData | ShardedIndexData):
        self.index = index
        # Each BM25 index with the global number of its first passage: one index, or a sharded
        # one's shards (whose passages are numbered shard after shard).
        self._parts: list[tuple[int, Bm25Index]]
        if isinstance(index, IndexData):
            self._parts = [(0, index.bm25)]
        else:
            self._parts = list(zip(index.offsets, (shard.bm25 for shard in index.shards)))

    def sources(self, passage: Passage) -> set[str]:
        """The sources holding `passage`'s sentence (its own included when the index holds it).

        Empty when the sentence has no indexed term, or only common ones (MAX_RAREST_POSTINGS,
        MAX_PASSAGES_READ).
        """
        words = sorted(set(terms(passage.text)), key=self._frequency)
        if not words or self._frequency(words[0]) > MAX_RAREST_POSTINGS:
            return set()
        rows = self._postings(words[0])
        for word in words[1:]:  # rarest first: the passages holding all of them shrink fastest
            if len(rows) <= MAX_PASSAGES_READ:
                break
            found = self._postings(word)
            at = np.minimum(np.searchsorted(found, rows), max(len(found) - 1, 0))
            rows = rows[found[at] == rows] if len(found) else rows[:0]
        if len(rows) > MAX_PASSAGES_READ:
            return set()
        key = sentence_key(passage.text)
        stored = self.index.passages
        return {p.source for p in (stored[int(i)] for i in rows) if sentence_key(p.text) == key}

    def _frequency(self, word: str) -> int:
        return sum(bm25.df(word) for _, bm25 in self._parts)

    def _postings(self, word: str) -> np.ndarray:
        """The global numbers of the passages holding `word`, increasing (a term's postings are
        in passage order, and shards are numbered one after the other)."""
        found = []
        for first, bm25 in self._parts:
            column = bm25.vocab_dict.get(word)
            if column is not None:
                start, end = int(bm25.indptr[column]), int(bm25.indptr[column + 1])
                found.append(np.asarray(bm25.passages[start:end], dtype=np.int64) + first)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
