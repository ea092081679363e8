"""Text out of document formats: a PDF's text layer, an HTML page's visible text, a Word file's
paragraphs, and the headings and pages a person uses to find a place in them.

Each reader returns the text that is indexed and cited (offsets refer to it) and its marks:
where each page or heading begins. The text of PDF, HTML and Word files is kept in the index
(see rag.store) so a citation can always be checked against the very text it was cut from.
"""
from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from html.parser import HTMLParser

from . import pdftext
from .errors import DocumentError
from .ocr import OcrOptions, engine_missing, read_scanned, render

# Between paragraphs, blocks and pages: a blank line, which the splitter reads as a paragraph
# break (a PDF page whose first sentence runs on from the page before is joined by a newline).
_BREAK = "\n\n"
# A heading's location label: the section sign reads as "section" in any language.
_SECTION = "§ "

NO_TEXT_LAYER = "no text layer; it may be a scanned PDF, which needs OCR"
# Added to a page's location when its text was read by OCR: "p. 3 (OCR)".
OCR_MARK = "OCR"


@dataclass(frozen=True)
class Extracted:
    """The text of a document and where its pages or headings begin."""

    text: str
    marks: tuple[tuple[int, str], ...] = ()  # (offset into text, label), in increasing offset


# -- PDF ---------------------------------------------------------------------------------------

# The PDF reader is PDFium (pypdfium2), chosen on 14 real manuals from Debian packages (R's FAQ,
# data and intro; bzip2, camlidl, DocBook XSL, fontconfig, libtasn1, live-manual, nettle,
# ReportLab, shared-mime-info, SISCone, Valgrind: 1,476 pages), measured in one run by
# `python -m eval.pdf_extractors FOLDER` on this 2-core machine while it was busy (other work
# took most of it, so the speeds are ratios, not absolutes):
#                 pages/s   unknown words (median)   words glued together per 1,000 (median)
#   pypdfium2      47.8          0.086                    0.0   ligatures spelled out; best or equal on 13 of 14
#   pypdf           3.5          0.093                    0.0   keeps "ﬁ" ligatures ("identiﬁes" is not "identifies")
#   pdfplumber      0.9          0.161                    5.2   glues words ("alltherest(libraries,on-linehelpsystem")
# ("unknown": lower-case words not in /usr/share/dict/words; see eval/pdf_extractors.py.) PDFium
# also reads the page labels and marks line-end hyphens. The cleaning (rag.pdftext) then left 0 of
# the 1,660 line-end hyphenations and 0 of the 2,738 dot-leader lines, and dropped 80 contents
# and index pages.
# PDFium is not thread-safe: one PDF is read at a time.
_PDFIUM = threading.Lock()


def pdf(raw: bytes, *, name: str, ocr: OcrOptions = OcrOptions()) -> Extracted:
    """The text layer of a PDF, page by page, cleaned of what the layout added (rag.pdftext);
    each page is marked with its printed label: "p. 21", and "p. 21 (PDF page 24)" where the
    label is not the page's position in the file.

    A page without a text layer that shows a picture (a scan) is read by OCR (rag.ocr) when
    Tesseract is installed, and marked so: "p. 3 (OCR)"; its printed label is the one the PDF
    defines, else the page number printed at its top or bottom, else its position in the file.

    Raises:
        DocumentError: the file is not a readable PDF, needs a password, or has no text layer
            (and OCR is not installed, or reads no text in it).
    """
    import pypdfium2  # lazy: only needed when a PDF is indexed

    pages: list[pdftext.Page] = []
    scanned: list[int] = []  # the pages without a text layer that show a picture
    labelled: set[int] = set()  # the pages whose label the PDF defines
    read: dict[int, str] = {}  # the OCR text of scanned pages
    with _PDFIUM:
        try:
            document = pypdfium2.PdfDocument(raw)
        # As below: whatever a damaged file makes the reader raise refuses this file only.
        except Exception as error:  # noqa: BLE001
            if "password" in str(error).lower():  # PDFium: "Failed to load document (PDFium: Incorrect password error)."
                raise DocumentError(f"{name}: the PDF is encrypted; save an unprotected copy and index that") from None
            raise DocumentError(f"{name}: not a readable PDF ({type(error).__name__}: {error})") from None
        try:
            for index in range(len(document)):
                page = document[index]
                text = page.get_textpage().get_text_range()
                # PDFium joins a word hyphenated at a line end and marks the hyphen U+FFFE (older
                # versions U+0002): put the line end back, so rag.pdftext decides on the hyphen.
                text = text.replace("\ufffe", "-\n").replace("\x02", "-\n")
                label = document.get_page_label(index)
                if label:
                    labelled.add(index + 1)
                pages.append(pdftext.Page(index + 1, label or str(index + 1), _clean(text)))
                if not text.strip() and _shows_picture(page):
                    scanned.append(index + 1)
            # OCR holds the lock too: rendering needs it, and files are read one at a time anyway.
            if scanned:
                read = read_scanned(raw, scanned, lambda number: render(document[number - 1]), name=name, options=ocr)
        except DocumentError as error:  # OCR failed: its message says why
            raise DocumentError(f"{name}: {error}") from None
        # A damaged or hostile PDF can make the reader fail in several ways: whatever it raises,
        # this one file is refused, never the whole build.
        except Exception as error:  # noqa: BLE001
            raise DocumentError(f"{name}: not a readable PDF ({type(error).__name__}: {error})") from None
        finally:
            document.close()
    for number, text in read.items():
        page = pages[number - 1]
        printed = None if number in labelled else pdftext.printed_number(text)
        pages[number - 1] = pdftext.Page(number, printed or page.label, _clean(text))
    parts: list[str] = []
    marks: list[tuple[int, str]] = []
    length = 0
    for page, text in zip(pages, pdftext.clean(pages)):
        text = text.strip()
        if not text:  # a blank, image-only, contents or index page: no place to point at
            continue
        if parts:
            # A sentence running on from the page before stays one passage (cited on the page
            # it starts on); otherwise pages are paragraphs apart.
            runs_on = not parts[-1].endswith((".", "!", "?", ":")) and text[0].islower()
            parts.append("\n" if runs_on else _BREAK)
            length += len(parts[-1])
        marks.append((length, page_location(page.label, page.number, ocr=page.number in read)))
        parts.append(text)
        length += len(text)
    if not parts:
        if any(page.text.strip() for page in pages):
            raise DocumentError(f"{name}: only contents, index or page furniture; nothing to index")
        if read:
            raise DocumentError(f"{name}: no text layer, and OCR read no text on its pages; nothing to index")
        missing = engine_missing() if scanned else None
        raise DocumentError(f"{name}: {NO_TEXT_LAYER}" + (f", and {missing}" if missing else ""))
    return Extracted("".join(parts), tuple(marks))


def page_location(label: str, number: int, *, ocr: bool = False) -> str:
    """Where a person finds a PDF page: its printed label, and its position in the file when
    that differs (a viewer's "go to page" takes either); "OCR" when its text was read by OCR.

    >>> page_location("21", 24), page_location("7", 7), page_location("3", 3, ocr=True), page_location("1", 4, ocr=True)
    ('p. 21 (PDF page 24)', 'p. 7', 'p. 3 (OCR)', 'p. 1 (PDF page 4, OCR)')
    """
    if label == str(number):
        return f"p. {label} ({OCR_MARK})" if ocr else f"p. {label}"
    return f"p. {label} (PDF page {number}, {OCR_MARK})" if ocr else f"p. {label} (PDF page {number})"


def _shows_picture(page) -> bool:
    """Whether a PDF page holds an image (a scan is one); a blank page or a drawing needs no OCR."""
    import pypdfium2.raw as pdfium_c

    return next(iter(page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,))), None) is not None


def _clean(text: str) -> str:
    """Drop NUL characters (some PDF fonts map glyphs to them), unify newlines, and replace a
    lone surrogate (a broken font mapping) with "?" so the text can be stored as UTF-8."""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return text.encode("utf-8", "replace").decode("utf-8")


# -- Word --------------------------------------------------------------------------------------


def docx(raw: bytes, *, name: str) -> Extracted:
    """The paragraphs and table rows of a Word (.docx) file, in document order; headings are
    marked "§ heading text". A heading is what Word itself takes for one (`_heading_styles`):
    never a paragraph guessed from its place or its look, so a file written without heading
    styles is located by paragraph number alone.

    Raises:
        DocumentError: the file is not a readable .docx file.
    """
    import docx as python_docx  # lazy: python-docx brings lxml
    from docx.table import Table

    try:
        document = python_docx.Document(io.BytesIO(raw))
        # `paragraph.style` searches the style sheet on every call (2 s for 1,000 paragraphs);
        # the style ids are looked up in this table made once instead.
        headings = _heading_styles(document)
        blocks: list[tuple[str, bool]] = []  # (text, is heading)
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells = [" ".join(cell.text.split()) for cell in row.cells]
                    blocks.append((" | ".join(_unique(c for c in cells if c)), False))
            else:
                # _p.style: the paragraph's style id (None: the document's default paragraph style)
                level = _outline_level(item._p.pPr)
                heading = headings.get(item._p.style, False) if level is None else level < _BODY_TEXT
                blocks.append((item.text, heading))
    # As for PDFs: whatever a damaged file makes the parser raise refuses this file only.
    except Exception as error:  # noqa: BLE001
        raise DocumentError(f"{name}: not a readable Word (.docx) file ({type(error).__name__}: {error})") from None
    builder = _Builder()
    for text, heading in blocks:
        builder.block()
        if heading:
            builder.start_heading()
        for number, line in enumerate(text.split("\n")):  # a line break inside a paragraph
            if number:
                builder.newline()
            builder.add(line)
        if heading:
            builder.end_heading()
    return builder.result()


# Word's outline levels: 0 to 8 are heading levels 1 to 9, 9 is body text.
_BODY_TEXT = 9
_HEADING_NAMES = frozenset({"Title", *(f"Heading {level}" for level in range(1, 10))})


def _heading_styles(document) -> dict[str | None, bool]:
    """Whether each paragraph style (by id; None: the default one) makes a heading: a built-in
    "Title" or "Heading 1"-"Heading 9" (python-docx gives Word's built-in names in English
    whatever the document's language), or an outline level 0-8, its own or inherited from the
    style it is based on ("TOC Heading" is based on "Heading 1" but sets body text)."""
    from docx.enum.style import WD_STYLE_TYPE

    def outline_level(style, depth: int = 0) -> int | None:
        level = _outline_level(style.element.pPr)
        if level is None and style.base_style is not None and depth < 10:  # a loop of styles ends
            return outline_level(style.base_style, depth + 1)
        return level

    headings: dict[str | None, bool] = {}
    for style in document.styles:
        if style.type == WD_STYLE_TYPE.PARAGRAPH:
            level = outline_level(style)
            headings[style.style_id] = level < _BODY_TEXT if level is not None else style.name in _HEADING_NAMES
    default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    headings[None] = default is not None and headings.get(default.style_id, False)
    return headings


def _outline_level(properties) -> int | None:
    """The outline level set in a paragraph's or style's properties (<w:pPr>), if any."""
    from docx.oxml.ns import qn

    found = properties.find(qn("w:outlineLvl")) if properties is not None else None
    value = found.get(qn("w:val")) if found is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _unique(cells):
    """Merged cells repeat their text in every grid cell they span: keep it once."""
    seen: list[str] = []
    for cell in cells:
        if not seen or seen[-1] != cell:
            seen.append(cell)
    return seen


# -- HTML --------------------------------------------------------------------------------------

# Elements whose content is never shown as text.
_INVISIBLE = {"head", "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas", "title"}
# Elements that have no content and no end tag.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Elements that start a new block of text (a paragraph break before and after).
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def html(text: str) -> Extracted:
    """The visible text of an HTML page: no head, scripts, styles or hidden elements; blocks
    separated by blank lines; whitespace collapsed as a browser does (a non-breaking space
    becomes a space, so words either side stay apart for search); headings marked "§ text".

    >>> html("<head><title>T</title></head><h2>The treaty</h2><script>x=1</script><p>Signed  in\\nMarch.</p>")
    Extracted(text='The treaty\\n\\nSigned in March.', marks=((0, '§ The treaty'),))
    """
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    return parser.builder.result()


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.builder = _Builder()
        self._hidden: list[str] = []  # the invisible elements we are inside, outermost first
        self._pre = 0  # depth of <pre>: whitespace is kept there
        self._heading: str | None = None  # the heading element being read

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self._hidden = []  # a <head> left unclosed ends here
        if tag in _VOID:
            if tag == "br" and not self._hidden:
                self.builder.newline()
            elif tag == "hr" and not self._hidden:
                self.builder.block()
            return
        attributes = dict(attrs)
        hidden = (
            "hidden" in attributes or attributes.get("aria-hidden") == "true" or _display_none(attributes.get("style"))
        )
        if self._hidden or tag in _INVISIBLE or hidden:
            self._hidden.append(tag)
            return
        if tag in _BLOCKS:
            self.builder.block()
        if tag == "pre":
            self._pre += 1
        if tag in _HEADINGS:
            self._heading = tag
            self.builder.start_heading()

    def handle_endtag(self, tag):
        if self._hidden:
            if tag in self._hidden:  # close it and anything left open inside it
                del self._hidden[len(self._hidden) - 1 - self._hidden[::-1].index(tag) :]
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        if tag == self._heading:
            self._heading = None
            self.builder.end_heading()
        if tag in _BLOCKS:
            self.builder.block()

    def handle_data(self, data):
        if not self._hidden:
            self.builder.add(data, collapse=not self._pre)


def _display_none(style: str | None) -> bool:
    return style is not None and re.search(r"display\s*:\s*none|visibility\s*:\s*hidden", style, re.I) is not None


# -- Markdown ----------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_SETEXT = re.compile(r"^ {0,3}(\S[^\n]*)\n {0,3}(=+|-+)[ \t]*$", re.M)
_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.M | re.S)
_FRONT_MATTER = re.compile(r"\A---\n.*?^---[ \t]*$", re.M | re.S)  # YAML metadata at the top
# Lines an underline never makes a heading (CommonMark): only a paragraph's line can be one, so
# "- item" or "> quote" then "---" is a list or quote followed by a rule.
_NOT_PARAGRAPH = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)|>|#{1,6}(?:[ \t]|$)")


def markdown(text: str) -> Extracted:
    """A Markdown file is indexed as written; its headings ("# Title" or underlined) are marked.

    >>> markdown("# Brest\\n\\nSigned in March.\\n").marks
    ((0, '§ Brest'),)
    """
    fenced = [(m.start(), m.end()) for m in (*_FENCE.finditer(text), *_FRONT_MATTER.finditer(text))]
    marks = []
    for match in (*_ATX.finditer(text), *_SETEXT.finditer(text)):
        if any(start <= match.start() < end for start, end in fenced):
            continue  # a "# comment" in a code block, or "key: value\n---" in front matter, is no heading
        if match.re is _SETEXT and _NOT_PARAGRAPH.match(match.group(1)):
            continue
        title = match.group(2) if match.re is _ATX else match.group(1)
        marks.append((match.start(), _SECTION + " ".join(title.split())))
    return Extracted(text, tuple(sorted(marks)))


# -- building extracted text -------------------------------------------------------------------


class _Builder:
    """Appends text as a browser lays it out, with offsets final as they are recorded: a run of
    whitespace is one space, none at the start of a line, and blocks are one blank line apart."""

    def __init__(self):
        self._parts: list[str] = []
        self._length = 0
        self._newlines = 0  # newlines at the end of what is written
        self._space = False  # a space is due before the next word on this line
        self._marks: list[tuple[int, str]] = []
        self._heading: list[str] | None = None  # the text of the heading being read
        self._heading_offset: int | None = None

    def add(self, data: str, *, collapse: bool = True) -> None:
        if not collapse:  # preformatted: as it is
            self._space = False
            self._write(data.replace("\r\n", "\n").replace("\r", "\n") if self._length else data.lstrip("\r\n"))
            return
        words = " ".join(data.split())
        if not words:
            self._space = self._space or bool(data)
            return
        if (self._space or data[0].isspace()) and self._length and not self._newlines:
            self._write(" ")
        self._write(words)
        self._space = data[-1].isspace()

    def newline(self) -> None:
        self._space = False
        if self._length and self._newlines < 2:  # never more than one blank line
            self._write("\n")

    def block(self) -> None:
        """End the current block: the next text starts after a blank line."""
        self._space = False
        if self._length and self._newlines < 2:
            self._write("\n" * (2 - self._newlines))

    def start_heading(self) -> None:
        self._heading, self._heading_offset = [], None

    def end_heading(self) -> None:
        if self._heading is not None and self._heading_offset is not None:
            title = " ".join("".join(self._heading).split())
            if title:
                self._marks.append((self._heading_offset, _SECTION + title))
        self._heading, self._heading_offset = None, None

    def result(self) -> Extracted:
        text = "".join(self._parts).rstrip()
        return Extracted(text, tuple(m for m in self._marks if m[0] < len(text)))

    def _write(self, data: str) -> None:
        if not data:
            return
        if self._heading is not None:
            if self._heading_offset is None and data.strip():
                self._heading_offset = self._length + len(data) - len(data.lstrip())
            self._heading.append(data)
        self._parts.append(data)
        self._length += len(data)
        stripped = data.rstrip("\n")
        self._newlines = len(data) - len(stripped) + (self._newlines if not stripped else 0)
