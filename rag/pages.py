"""A cited PDF page as a picture, the citation's characters highlighted: what the source viewer shows.

A PDF's citation points into the *cleaned* text the index keeps (rag.pdftext drops running
heads and page numbers, joins words hyphenated at a line end, spells out ligatures), not into
PDFium's characters. So the cited text is found again on its page: both are compared as their
characters without whitespace and hyphens, each compatibility-normalised (NFKC: "ﬁ" is "fi"),
every such character remembering the PDFium character it came from. The page is the one the
citation's location names ("p. 21 (PDF page 24)"); a sentence that runs on to the next page is
highlighted as far as it goes on its first (what the next page does not hold). Each matched
character's box is then filled, line by line, on the page rendered at RENDER_SCALE.

Pages are rendered on demand and the last CACHED_PAGES kept (keyed by the file's SHA-256, so an
edited file is never shown from the cache); a document's other pages are never rendered.
"""
from __future__ import annotations

import hashlib
import io
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DocumentError, IndexStaleError
from .formats import (
    _PDFIUM,  # PDFium is not thread-safe: the lock every use of it takes
    OCR_MARK,
)
from .ocr import page_scale

if TYPE_CHECKING:
    from PIL import Image

# Pixels per PDF point (72 per inch): 108 dpi. An A4 page is 893 × 1263 pixels, sharp where the
# chat's viewer shows it ~740 pixels wide (a high-density screen uses them all), its PNG ~70 KB.
# Twice that is four times the pixels for no visible gain at that width.
RENDER_SCALE = 1.5
# Rendered pages kept: a person goes back and forth between the few pages an answer cites. Each is
# ~3.4 MB in memory (an A4 page at RENDER_SCALE, RGB), so eight are ~27 MB.
CACHED_PAGES = 8
# The highlighter's colour, multiplied into the page: white paper turns this amber-yellow, black
# text stays black (a translucent marker, not a box over the words).
HIGHLIGHT = (255, 205, 60)
# A page is text in greys and the highlight's shades: a palette of 256 colours (PIL's fast octree)
# looks the same as full colour in a quarter of the bytes and half the time (a page of the sample
# as a PDF: 265 KB in RGB, 70 KB). A photograph on the page keeps its 256 most telling colours.
PALETTE_COLOURS = 256
# The PNG text chunk holding the highlighted region's box (see Assistant.page_image).
HIGHLIGHT_KEY = "highlight"
# Pixels the highlight reaches past the characters' boxes, so a line's fill covers its glyphs' edges.
PADDING = 1
# The text before the citation compared when the cited text is on its page more than once: the
# occurrence whose preceding characters agree longest with the document's is the one cited.
CONTEXT_CHARS = 80
# Not compared: whitespace (PDFium adds line ends the cleaned text may not have, and the reverse)
# and hyphens (a word hyphenated at a line end is joined in the cleaned text; PDFium marks the
# hyphen U+FFFE, older versions U+0002; a soft hyphen is U+00AD).
_IGNORED = frozenset("-\u00ad\u2010\u2011\ufffe\x02\x00")
# "p. 21 (PDF page 24)" or "p. 7" (rag.formats.page_location), possibly followed by more (", ¶ 2").
_PAGE_LOCATION = re.compile(rf"^p\. (?P<label>[^\s,(]+)(?: \(PDF page (?P<number>\d+)(?:, {OCR_MARK})?\))?")


@dataclass(frozen=True)
class Found:
    """Where a citation is on a PDF: its page and the PDFium indices of its characters there."""

    page: int  # 0-based index in the file
    chars: tuple[int, ...]  # in reading order; empty when the text was not found on the page


def page_number(location: str | None) -> int | None:
    """The 1-based page in the file a PDF location names (None when it names none).

    >>> from rag.formats import page_location
    >>> page_number(page_location("21", 24)), page_number(page_location("7", 7)), page_number("p. iv")
    (24, 7, None)
    >>> page_number(page_location("1", 4, ocr=True)), page_number(page_location("3", 3, ocr=True))
    (4, 3)
    """
    match = _PAGE_LOCATION.match(location or "")
    if match is None:
        return None
    if match["number"]:
        return int(match["number"])
    return int(match["label"]) if match["label"].isdigit() else None


def highlighted_page(path: Path, sha256: str, cited: str, *, before: str = "", location: str | None = None) -> bytes:
    """A PNG of the page of the PDF at `path` holding `cited`, its characters highlighted.

    Args:
        sha256: the hash the file had when it was indexed: a file that differs is refused.
        cited: the cited text, as the index's cleaned text has it.
        before: the document's text just before `cited`, to tell repeated sentences apart.
        location: the citation's location ("p. 21 (PDF page 24)"): the page looked at first.

    Raises:
        IndexStaleError: the file is gone, or changed since it was indexed.
        DocumentError: the cited text is on none of its pages and the location names none.
    """
    import pypdfium2  # lazy: only a PDF's viewer needs it

    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise IndexStaleError(f"{name} can no longer be read ({error.strerror}); it was moved or deleted since indexing") from None
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise IndexStaleError(f"{name} changed since it was indexed; update the index (`rag index`) to see its pages")
    with _PDFIUM:
        document = pypdfium2.PdfDocument(raw)
        try:
            found = _find(document, cited, before, page_number(location))
            if found is None:
                raise DocumentError(f"{name}: the cited text was not found on any of its pages")
            page = document[found.page]
            image, position = _rendered(document, found.page, sha256)
            # PDF points to the rendered bitmap's pixels, rotation and crop box included.
            to_pixels = pypdfium2.PdfPosConv(page, position).to_bitmap
            rectangles = [_pixels(box, to_pixels) for box in _line_boxes(page.get_textpage(), found.chars)]
        finally:
            document.close()
    return _png(_highlight(image, rectangles), rectangles)


def _find(document, cited: str, before: str, hinted: int | None) -> Found | None:
    """The page holding `cited` and its characters there: the hinted page when it holds the text,
    or its start with the rest on the next page; else the first page holding it whole. The
    hinted page with no characters when the text is on no page; None without a hinted page."""
    count = len(document)
    first = hinted - 1 if hinted is not None and 0 < hinted <= count else None
    target, _ = _comparable(cited)
    context, _ = _comparable(before)
    if not target:
        return None if first is None else Found(first, ())
    if first is not None:
        characters, owners = _page_characters(document[first])
        place = _place(characters, target, context)
        if place is not None:
            return Found(first, tuple(owners[place : place + len(target)]))
        if first + 1 < count:  # a sentence running on to the next page: its start, on this one
            head = target[: len(target) - _longest_end(_page_characters(document[first + 1])[0], target)]
            place = _place(characters, head, context) if head else None
            if place is not None:
                return Found(first, tuple(owners[place : place + len(head)]))
    for index in range(count):  # the location named no page, or not this text's: every page, in order
        if index != first:
            characters, owners = _page_characters(document[index])
            place = _place(characters, target, context)
            if place is not None:
                return Found(index, tuple(owners[place : place + len(target)]))
    return None if first is None else Found(first, ())


def _comparable(text: str) -> tuple[str, list[int]]:
    """`text` as compared (see the module docstring), and for each of its characters the index
    in `text` of the character it came from."""
    kept: list[str] = []
    owners: list[int] = []
    for index, character in enumerate(text):
        if character in _IGNORED or character.isspace():
            continue
        if "\ud800" <= character <= "\udfff":  # a broken font mapping, stored as "?" (rag.formats)
            character = "?"
        for part in unicodedata.normalize("NFKC", character):
            if part not in _IGNORED and not part.isspace():
                kept.append(part)
                owners.append(index)
    return "".join(kept), owners


def _page_characters(page) -> tuple[str, list[int]]:
    """A page's characters as compared, each with its PDFium character index."""
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    # One code point per PDFium index (`get_text_range` may return more or fewer characters).
    text = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i)) for i in range(textpage.count_chars()))
    return _comparable(text)


def _place(characters: str, target: str, context: str) -> int | None:
    """Where `target` is in `characters` (None: nowhere); of several places, the one whose
    preceding characters agree longest with `context`, the text the document has before it."""
    places = [m.start() for m in re.finditer(f"(?={re.escape(target)})", characters)]
    return max(places, key=lambda place: _agreeing(characters[:place], context), default=None)


def _longest_end(characters: str, target: str) -> int:
    """The length of the longest end of `target` found in `characters` (0: none)."""
    low, high = 0, len(target)  # an end found is found at every shorter length too: bisect the length
    while low < high:
        middle = (low + high + 1) // 2
        if target[len(target) - middle :] in characters:
            low = middle
        else:
            high = middle - 1
    return low


def _agreeing(left: str, right: str) -> int:
    """How many characters `left` and `right` have in common at their ends."""
    count = 0
    while count < min(len(left), len(right)) and left[-1 - count] == right[-1 - count]:
        count += 1
    return count


def _line_boxes(textpage, chars: tuple[int, ...]) -> list[tuple[float, float, float, float]]:
    """One box (left, bottom, right, top, in PDF points) per line the characters are on: each
    line's characters' boxes joined, so the spaces between its words are filled too."""
    lines: list[list[float]] = []
    for index in chars:
        # Loose boxes span the font's whole line height: every line's fill is the same height.
        left, bottom, right, top = textpage.get_charbox(index, loose=True)
        middle = (bottom + top) / 2
        if lines and lines[-1][1] <= middle <= lines[-1][3]:
            line = lines[-1]
            line[:] = [min(line[0], left), min(line[1], bottom), max(line[2], right), max(line[3], top)]
        else:
            lines.append([left, bottom, right, top])
    return [(left, bottom, right, top) for left, bottom, right, top in lines]


def _pixels(box: tuple[float, float, float, float], to_pixels) -> tuple[int, int, int, int]:
    """A box in PDF points as (left, top, right, bottom) pixels of the rendered page."""
    left, bottom, right, top = box
    corners = [to_pixels(left, bottom), to_pixels(right, top)]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return min(xs) - PADDING, min(ys) - PADDING, max(xs) + PADDING, max(ys) + PADDING


# -- rendering ----------------------------------------------------------------------------------

_cache: OrderedDict[tuple[str, int], tuple[Image.Image, tuple[int, int, int, int, int]]] = OrderedDict()
_cache_lock = threading.Lock()


def _rendered(document, index: int, sha256: str) -> tuple[Image.Image, tuple[int, int, int, int, int]]:
    """Page `index` rendered at RENDER_SCALE (from the cache when it is there), and the position
    arguments PDFium drew it with (for PdfPosConv). Called holding the PDFium lock."""
    key = (sha256, index)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    page = document[index]
    bitmap = page.render(scale=page_scale(page, RENDER_SCALE))  # a huge page drawn smaller
    entry = (bitmap.to_pil().convert("RGB"), tuple(bitmap.get_posconv(page).pos_args))
    with _cache_lock:
        _cache[key] = entry
        while len(_cache) > CACHED_PAGES:
            _cache.popitem(last=False)
    return entry


def _highlight(page: Image.Image, rectangles: list[tuple[int, int, int, int]]) -> Image.Image:
    """The page with the rectangles filled as a highlighter would: its colour multiplied in, once
    (overlapping rectangles do not darken twice)."""
    from PIL import Image, ImageChops, ImageDraw

    if not rectangles:
        return page
    mask = Image.new("L", page.size, 0)
    draw = ImageDraw.Draw(mask)
    for rectangle in rectangles:
        draw.rectangle(rectangle, fill=255)
    marked = ImageChops.multiply(page, Image.new("RGB", page.size, HIGHLIGHT))
    return Image.composite(marked, page, mask)


def _png(image: Image.Image, rectangles: list[tuple[int, int, int, int]]) -> bytes:
    """The image as a PNG of PALETTE_COLOURS colours, the box around the rectangles in its text
    chunk HIGHLIGHT_KEY ("left,top,right,bottom" pixels; absent without any): a viewer scrolls there."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if rectangles:
        box = (min(r[0] for r in rectangles), min(r[1] for r in rectangles), max(r[2] for r in rectangles), max(r[3] for r in rectangles))
        info.add_text(HIGHLIGHT_KEY, ",".join(str(max(0, value)) for value in box))
    buffer = io.BytesIO()
    image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
