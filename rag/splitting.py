"""Splitting text into passages: paragraphs, then sentences, each with exact character offsets.

The passage is one sentence because the answer cites sentences: a citation must be the
sentence that supports the answer, not a whole chunk around it. Context that a sentence
needs ("in March of the same year") comes from its neighbours (position ± 1), which the
retriever and the answerer both consult.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterator

from .locations import Locator
from .settings import ChunkSettings
from .types import Document, Passage

# Paragraphs are separated by a blank line (possibly holding spaces).
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")

# Closing quotes or brackets that may follow a sentence's stop, and still belong to the sentence.
SENTENCE_CLOSERS = r"""["'”’»)\]]*"""
# A sentence ends at . ! ? … (possibly repeated, possibly followed by closers) when whitespace
# and then something that can start a sentence follows.
_SENTENCE_END = re.compile(
    r"[.!?…]+" + SENTENCE_CLOSERS + r"""(?=\s+["'“‘«(\[]?[A-Z0-9А-ЯЁ])"""
)
# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "col", "lt", "capt", "sgt",
    "vs", "etc", "e.g", "i.e", "cf", "no", "vol", "pp", "fig", "approx", "inc", "ltd", "co",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s",
    "u.k", "a.m", "p.m",
}
# A line that stands on its own even without final punctuation: a Markdown heading or list item.
_LINE_ITEM = re.compile(r"^\s*(#{1,6}\s|[-*+]\s|\d+[.)]\s|>\s?)")
# Where a too-long sentence may be cut, best first.
_CLAUSE_BREAKS = (re.compile(r"[;:]\s+"), re.compile(r",\s+"), re.compile(r"\s+"))


def paragraphs(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each non-blank paragraph, whitespace trimmed."""
    position = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        yield from _trimmed(text, position, match.start())
        position = match.end()
    yield from _trimmed(text, position, len(text))


def sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence inside text[start:end]."""
    for line_start, line_end in _logical_lines(text, start, end):
        position = line_start
        for match in _SENTENCE_END.finditer(text, line_start, line_end):
            if _is_abbreviation(text, line_start, match.start()):
                continue
            yield from _trimmed(text, position, match.end())
            position = match.end()
        yield from _trimmed(text, position, line_end)


def split_document(document: Document, settings: ChunkSettings = ChunkSettings()) -> list[Passage]:
    """Cut a document into sentence passages with offsets into `document.text`."""
    text = document.text
    passages: list[Passage] = []
    found = list(paragraphs(text))
    locate = Locator(document, found)
    for paragraph_number, (p_start, p_end) in enumerate(found):
        for s_start, s_end in sentences(text, p_start, p_end):
            for start, end in _limit_length(text, s_start, s_end, settings):
                piece = text[start:end]
                passages.append(
                    Passage(
                        id=passage_id(document.source, start, end, piece),
                        source=document.source,
                        start=start,
                        end=end,
                        text=piece,
                        position=len(passages),
                        paragraph=paragraph_number,
                        location=locate(start, end),
                    )
                )
    return passages


def passage_id(source: str, start: int, end: int, text: str) -> str:
    digest = hashlib.sha256(f"{source}\0{start}\0{end}\0{text}".encode()).hexdigest()
    return digest[:16]


def _blank(ch: str) -> bool:
    return ch.isspace() or ch == "\ufeff"  # a byte-order mark is not text


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and _blank(text[start]):
        start += 1
    while end > start and _blank(text[end - 1]):
        end -= 1
    if end > start:
        yield start, end


def _logical_lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Join hard-wrapped lines; keep a line apart when it is a heading or list item or ends a sentence."""
    line_start = start
    position = start
    while True:
        newline = text.find("\n", position, end)
        if newline == -1:
            yield line_start, end
            return
        this_line = text[position:newline].rstrip()
        next_line = text[newline + 1 : text.find("\n", newline + 1, end) if text.find("\n", newline + 1, end) != -1 else end]
        line_is_item = bool(_LINE_ITEM.match(text[position:newline]))
        breaks = (
            line_is_item
            or bool(_LINE_ITEM.match(next_line))
            or this_line.endswith((".", "!", "?", ":", "…", '"', "”"))
            or not this_line
        )
        if breaks:
            yield line_start, newline
            line_start = newline + 1
        position = newline + 1


def _is_abbreviation(text: str, line_start: int, dot: int) -> bool:
    if text[dot] != ".":
        return False
    word_start = dot
    while word_start > line_start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip("(\"'“‘").lower()
    # A single capital letter before the dot is an initial ("J. Smith").
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _limit_length(text: str, start: int, end: int, settings: ChunkSettings) -> Iterator[tuple[int, int]]:
    """Cut a sentence longer than `max_chars` at the best break before the limit."""
    while end - start > settings.max_chars:
        limit = start + settings.max_chars
        cut = None
        for pattern in _CLAUSE_BREAKS:
            candidates = [m.end() for m in pattern.finditer(text, start + settings.min_chars, limit)]
            if candidates:
                cut = candidates[-1]
                break
        if cut is None:  # one unbroken token longer than the limit
            cut = limit
        yield from _trimmed(text, start, cut)
        start = cut
    yield from _trimmed(text, start, end)
