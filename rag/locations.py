"""Where a person finds a passage in its document: the printed page of a PDF, the heading and the
paragraph under it in HTML, Markdown and Word files, the lines of a plain-text file.

    p. 21 (PDF page 24)     a PDF page whose printed label differs from its place in the file
    § Install, ¶ 3          the third paragraph under the heading "Install"
    ¶ 2                     the second paragraph of a document before any heading
    lines 12–14             a plain-text passage (line numbers as an editor counts them)
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right

from .formats import _FRONT_MATTER
from .types import Document

# Formats whose marks are headings ("§ …"); a PDF's marks are its pages.
_HEADED = frozenset({"html", "markdown", "docx"})
_NEWLINE = re.compile(r"\r\n|\r|\n")
_SETEXT_UNDERLINE = re.compile(r"[ \t]{0,3}(=+|-+)[ \t]*$")


class Locator:
    """Labels passages of one document with their location (see the module docstring).

    Args:
        document: the document the passages were cut from.
        paragraphs: (start, end) of each of its paragraphs, as rag.splitting finds them.
    """

    def __init__(self, document: Document, paragraphs: list[tuple[int, int]]):
        self._document = document
        self._marks = list(document.marks)
        self._mark_offsets = [offset for offset, _ in self._marks]
        text = document.text
        if document.format == "text":
            self._breaks = [m.start() for m in _NEWLINE.finditer(text)]
        elif document.format in _HEADED:
            # Where each heading's own text ends, and where the paragraphs under it begin: a
            # Markdown heading may be followed by text on the very next line ("# Title\nText").
            self._heading_ends = [_heading_end(text, offset) for offset in self._mark_offsets]
            starts = {start for start, _ in paragraphs} | {
                _skip_space(text, end) for end in self._heading_ends if _skip_space(text, end) < len(text)
            }
            # Markdown's metadata block ("---\ntitle: …\n---") is not shown, so it is no paragraph.
            front_matter = _FRONT_MATTER.match(text) if document.format == "markdown" else None
            front = front_matter.end() if front_matter else 0
            self._starts = sorted(s for s in starts - set(self._mark_offsets) if s >= front)

    def __call__(self, start: int, end: int) -> str | None:
        """The location of document.text[start:end], or None when the format has none."""
        if self._document.format == "text":
            first = bisect_left(self._breaks, start) + 1  # line breaks before `start`, plus one
            last = bisect_left(self._breaks, max(start, end - 1)) + 1
            return f"line {first}" if first == last else f"lines {first}–{last}"
        index = bisect_right(self._mark_offsets, start) - 1
        if self._document.format not in _HEADED:
            return self._marks[index][1] if index >= 0 else None
        heading = self._marks[index][1] if index >= 0 else None
        if index >= 0 and start < self._heading_ends[index]:
            return heading  # the heading itself
        after = self._mark_offsets[index] if index >= 0 else -1
        number = bisect_right(self._starts, start) - bisect_right(self._starts, after)
        paragraph = f"¶ {max(number, 1)}"
        return f"{heading}, {paragraph}" if heading else paragraph


def _heading_end(text: str, offset: int) -> int:
    """Where the heading starting at `offset` ends: its line, and a Markdown underline ("====")."""
    end = text.find("\n", offset)
    if end == -1:
        return len(text)
    following = text.find("\n", end + 1)
    next_line = text[end + 1 : following if following != -1 else len(text)].rstrip("\r")
    if _SETEXT_UNDERLINE.match(next_line):
        return following if following != -1 else len(text)
    return end


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
