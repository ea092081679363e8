"""A PDF's pages as a person reads them: what the page layout added is taken out of the text.

A PDF's text layer holds every line the layout printed: running headers and footers with the
page number ("Chapter 3: Utilities 6"), the table of contents and the index with their dot
leaders ("19 some_function . . . . 23"), words the typesetter hyphenated at a line end
("manip-" / "ulation") and headings that run straight into the next line. Left in, they reach
passages and citations ("Version This is version 0.21…"). `clean` removes them, page by page:

1. page furniture: at the top and bottom of each page, a line that is the page number, or a
   line repeated at the edges of several pages (digits aside, so "Chapter 3: Utilities 6" and
   "… 7" are one line) but not in their middle;
2. contents and index pages (most lines end in a page label of this document) and dot-leader lines;
3. a word hyphenated at a line end is joined ("manipulation"); its hyphen is kept only when the
   document writes that word with a hyphen elsewhere ("well-known") and never without; an
   identifier split after "_" ("MAX_" / "LENGTH") is joined too; both across a page break as well;
4. a heading line (short, no final punctuation, starting a block, followed by a capital) is put
   in a paragraph of its own, so the splitter never fuses it into the sentence that follows.

The cleaned text is what the index stores and what citations' offsets refer to, so citations
stay verbatim against it (see rag.formats.pdf).
"""
from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass

# Lines examined at each edge of a page for headers and footers. Three: a footer can be three
# lines ("User Guide" / "Chapter 1 Introduction" / "Page 6" in ReportLab's manual).
EDGE_LINES = 3
# A line (digits aside) at the edge of this many pages is a running header or footer. Two pages
# are too few (a heading can open two pages by chance); a chapter's running head is on all of
# its pages, and chapters of fewer than three pages are rare. A line that also carries the
# page's own number ("Chapter 2: R Basics 5") needs only two.
REPEATED_ON_PAGES = 3
# A page is a contents or index page when at least this share of its lines, and at least
# MIN_REFERENCE_LINES of them, end in one of the document's page labels. On the 14 manuals of
# `python -m eval.pdf_extractors` the contents and index pages have 0.55-1.0 of their lines so;
# body pages at most 0.25 in most, up to 0.67 on short pages of a few lines (hence the minimum).
REFERENCE_SHARE = 0.5
MIN_REFERENCE_LINES = 5
# ... or at least this many of them have dot leaders ("2 Install . . . . 4"): a short contents.
MIN_LEADER_LINES = 3
# A heading is shorter than this share of the document's full line (its 75th percentile length:
# most lines of running text are full). "2.5.2 How can R be installed (Windows)" is 0.45.
HEADING_SHARE = 0.7
HEADING_MAX_WORDS = 12

# A dot leader (". . . .", "....", "……", "····") then what ends the line: a page label
# ("19 some_function . . . . 23"), not a quotation's closing mark ("negotiations......").
_LEADER = re.compile(r"(?:(?:\.\s?){4,}|(?:…\s?){2,}|(?:·\s?){4,})\s*(\S{1,12})$")
# A line that is only a page number: "12", "- 12 -", "[xii]", "Page 12", "12 of 40", "12/40".
_PAGE_NUMBER = re.compile(
    r"^(?:page\s+)?[-–—(\[]?\s*(?:\d{1,5}|[ivxlcdm]{1,8})\s*[-–—)\]]?(?:\s*(?:of|/)\s*\d{1,5})?$", re.I
)
_DIGITS = re.compile(r"\d+")
# A numbered heading: "3.3 Invoking asn1Decoding", "2.5.2 How can R…", "A.1 GNU Free…", "Chapter 4 …".
_NUMBERED = re.compile(r"^(?:\d+(?:\.\d+)+\.?|\d+\.?|[A-Z](?:\.\d+)+|(?:Chapter|Appendix|Part|Section)\s+\w+)\s+[^\W\d_]")
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
# Ends a sentence or a clause: a line ending so is never a heading.
_FINAL = tuple(".,;:!?…-–—(\"'”’")
# Unicode ligatures some PDF fonts map their glyphs to ("ﬁ"): spelled out, so "identiﬁes" is found by "identifies".
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})


@dataclass(frozen=True)
class Page:
    """One page of a PDF as its text layer has it."""

    number: int  # 1-based position in the file
    label: str  # the printed page label ("21", "iv"); str(number) when the PDF defines none
    text: str  # lines separated by "\n"


def clean(pages: list[Page]) -> list[str]:
    """Each page's text with headers, footers, page numbers, contents and index pages removed,
    line-end hyphenation joined and headings set apart (see the module docstring).

    Returns:
        One text per page, in order ("" for a page left without text): lines separated by "\\n",
        a heading by a blank line before and after it.

    >>> clean([Page(1, "1", "The manip-\\nulation of MAX_\\nLENGTH.\\nInstall\\nRun it.\\n1")])
    ['The manipulation\\nof MAX_LENGTH.\\n\\nInstall\\n\\nRun it.']
    """
    lines = [[" ".join(line.translate(_LIGATURES).split()) for line in page.text.split("\n")] for page in pages]
    lines = [[line for line in page if line] for page in lines]
    _drop_furniture(pages, lines)
    labels = {page.label.lower() for page in pages} | {str(page.number) for page in pages}
    lines = [[] if _is_reference_page(page, labels) else [x for x in page if not _is_leader(x, labels)] for page in lines]
    _join_split_words(lines)
    return [_set_headings_apart(page, _full_length(lines)) for page in lines]


def printed_number(text: str) -> str | None:
    """The page number a page shows alone on its last or first line ("- 17 -", "Page 17 of 40"),
    in digits; None when it shows none. Read from a scanned page's OCR text, where the PDF
    defines no label.

    >>> printed_number("Chapter 2\\nThe treaty was signed.\\n- 17 -"), printed_number("Signed in\\n1918.")
    ('17', None)
    """
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    for line in (lines[-1], lines[0]) if lines else ():
        digits = _DIGITS.search(line)
        if digits and _PAGE_NUMBER.match(line):
            return str(int(digits.group(0)))
    return None


def _skeleton(line: str, page: Page) -> str:
    """A line without its digits and the page's label, for comparing running heads across pages."""
    words = [w for w in line.lower().split() if w not in (page.label.lower(), str(page.number))]
    return " ".join(_DIGITS.sub("", " ".join(words)).split())


def _drop_furniture(pages: list[Page], lines: list[list[str]]) -> None:
    """Remove running headers, footers and page numbers, from each page's edges inwards."""
    at_edge: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    for page, page_lines in zip(pages, lines):
        edge = set(range(min(EDGE_LINES, len(page_lines)))) | set(range(max(0, len(page_lines) - EDGE_LINES), len(page_lines)))
        seen_edge: set[str] = set()
        seen_inside: set[str] = set()
        for number, line in enumerate(page_lines):
            (seen_edge if number in edge else seen_inside).add(_skeleton(line, page))
        at_edge.update(seen_edge)
        inside.update(seen_inside)

    def furniture(line: str, page: Page) -> bool:
        if _PAGE_NUMBER.match(line):
            return True
        skeleton = _skeleton(line, page)
        if not any(ch.isalpha() for ch in skeleton) or len(skeleton) > 100:
            return False
        words = line.lower().split()
        numbered = words[0] in (page.label.lower(), str(page.number)) or words[-1] in (page.label.lower(), str(page.number))
        needed = 2 if numbered else REPEATED_ON_PAGES
        return at_edge[skeleton] >= needed and at_edge[skeleton] > inside[skeleton]

    for page, page_lines in zip(pages, lines):
        top = 0
        while top < min(EDGE_LINES, len(page_lines)) and furniture(page_lines[top], page):
            top += 1
        bottom = len(page_lines)
        while bottom > max(top, len(page_lines) - EDGE_LINES) and furniture(page_lines[bottom - 1], page):
            bottom -= 1
        page_lines[:] = page_lines[top:bottom]


def _is_reference_page(lines: list[str], labels: set[str]) -> bool:
    """A contents or index page: most of its lines end in one of the document's page labels,
    and there are enough of them (fewer will do when they have dot leaders, which body text never has)."""
    ending = leaders = 0
    for line in lines:
        last = re.split(r"[\s,]+", line.rstrip(" ."))[-1].lower()
        last = re.split(r"[-–]", last)[-1]  # a range of pages: "12–14"
        ending += last in labels and len(line) > len(last)
        leaders += _is_leader(line, labels)
    enough = ending >= MIN_REFERENCE_LINES or leaders >= MIN_LEADER_LINES
    return enough and ending >= REFERENCE_SHARE * len(lines)


def _is_leader(line: str, labels: set[str]) -> bool:
    """A contents or index line: a dot leader, then one of the document's page labels."""
    match = _LEADER.search(line)
    return match is not None and match.group(1).lower() in labels


def _join_split_words(pages: list[list[str]]) -> None:
    """Join words hyphenated at a line end and identifiers split after "_", across pages too."""
    text = "\n".join(line for page in pages for line in page)
    known = Counter(w.lower() for w in _WORD.findall(text))
    previous = None  # (page, line) of the last line left with text
    for q, m in [(q, m) for q, page in enumerate(pages) for m in range(len(page))]:
        if previous is None:
            previous = (q, m)
            continue
        (p, n), previous = previous, (q, m)
        line, following = pages[p][n], pages[q][m]
        if re.search(r"\w-$", line) and not line.endswith("--") and re.match(r"\w", following):
            head_match = re.search(r"[^\W\d_]*-$", line)
            tail_match = re.match(r"[^\W\d_]*", following)
            # Both always match: the line ends in "-", and either pattern may match no letters.
            assert head_match is not None and tail_match is not None
            head = head_match.group(0)[:-1]
            tail = tail_match.group(0)
            # A hyphen is part of the word only when the document writes it so elsewhere and
            # never solid ("well-known"), or joins a capital or a digit ("Brest-Litovsk",
            # "x86-64"); a typesetter's hyphen ("manip-ulation") is the common case.
            compound = known[f"{head}-{tail}".lower()] > 0 and known[f"{head}{tail}".lower()] == 0
            joined = line[:-1] if head and tail and tail[0].islower() and not compound else line
        elif re.search(r"\w_$", line) and re.match(r"\w", following):
            joined = line
        else:
            continue
        word = following.split(" ", 1)
        pages[p][n] = joined + word[0]
        pages[q][m] = word[1] if len(word) > 1 else ""
        if not pages[q][m]:  # the whole line moved up: the joined line meets the next one
            previous = (p, n)
    for page in pages:
        page[:] = [line for line in page if line]


def _full_length(pages: list[list[str]]) -> float:
    """The length of a full line of running text: most lines are full, so the 75th percentile."""
    lengths = [len(line) for page in pages for line in page]
    if len(lengths) < 4:
        return max(lengths, default=0)
    return statistics.quantiles(lengths, n=4)[-1]


def _set_headings_apart(lines: list[str], full: float) -> str:
    """The page's lines, with a blank line before and after each heading."""
    out: list[str] = []
    previous_heading = False
    for number, line in enumerate(lines):
        before = lines[number - 1] if number else None
        after = lines[number + 1] if number + 1 < len(lines) else None
        heading = (
            after is not None
            and len(line) < HEADING_SHARE * full
            and len(line.split()) <= HEADING_MAX_WORDS
            and not line.endswith(_FINAL)
            and (after[0].isupper() or after[0].isdigit() or bool(_NUMBERED.match(line)))
            and (before is None or previous_heading or before.endswith((".", "!", "?", ":")) or len(before) < HEADING_SHARE * full)
        )
        if out and (heading or previous_heading):
            out.append("")  # a blank line: a paragraph break for the splitter
        out.append(line)
        previous_heading = heading
    return "\n".join(out)
