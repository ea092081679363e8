"""The source viewer: a cited PDF page drawn with the cited sentence highlighted
(`Assistant.page_image`), another document's section with the sentence marked, both opened from
the chat's sources panel in a real Gradio app driven by Chromium; and the abstention's badge.

The PDF is the sample laid out as a printed manual by tests/test_formats.py (running heads, page
numbers, words hyphenated at line ends, front matter with roman page labels), so the citation,
made from the cleaned text, must be found again among PDFium's own characters. Where the cited
characters are is worked out here independently: a regular expression over the page's characters.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pypdfium2
import pypdfium2.raw as pdfium_c
import pytest
from conftest import BRIDGE_TEXT, serve_app
from fpdf import FPDF
from PIL import Image
from test_formats import latin_1, sample_paragraphs, write_pdf
from test_ui import ANSWER_TIMEOUT_MS, FLAGSHIP, _ask_in_page

from rag import Answer, Assistant, Citation, IndexStaleError, NotPdfError, RagError

FERRY = "When did the Fenwick ferry begin its crossings?"
FERRY_SENTENCE = "The Fenwick ferry began its crossings in 1868 and carried twelve passengers at a time."
# A made-up page in sections: the ferry's sentence is in "The ferry", between two others.
HARBOUR_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Selmark</title></head><body>
<h1>The harbour of Selmark</h1>
<h2>The lighthouse</h2>
<p>The Quillfen Lighthouse stands on a basalt rock north of the harbour. Its lamp was electrified in 1931.</p>
<h2>The ferry</h2>
<p>Boats have crossed the Selmark sound since the middle ages. FERRY_SENTENCE
The crossing takes forty minutes in calm weather.
The deckhands painted "&lt;script&gt;alert(1)&lt;/script&gt;" on the hull.</p>
<h2>The market</h2>
<p>The fish market opens at five in the morning, and closes when the last boat is sold out.</p>
</body></html>
""".replace("FERRY_SENTENCE", FERRY_SENTENCE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Assistant:
    """One index over the sample as a PDF manual and a sectioned HTML page."""
    folder = tmp_path_factory.mktemp("viewer") / "docs"
    folder.mkdir()
    write_pdf(folder / "brest.pdf", sample_paragraphs())
    (folder / "harbour.html").write_text(HARBOUR_HTML, encoding="utf-8")
    return Assistant.build([folder], index_dir=folder.parent / "index")


# -- what a highlight is, measured independently of rag.pages --------------------------------------


@dataclass(frozen=True)
class CitedOnPage:
    """Where a citation's characters are on a PDF page, found by a regular expression."""

    page: int  # 0-based
    chars: range  # PDFium's indices of the characters, the first cited to the last
    boxes: list[tuple[float, float, float, float]]  # their loose boxes (left, bottom, right, top), PDF points
    width: float  # the page's size in points
    height: float


def find_on_pages(path: Path, cited: str) -> list[CitedOnPage]:
    """Every place on the PDF's pages whose characters spell `cited`, whitespace and hyphens
    aside, with their boxes; [] when no page holds it whole."""
    between = r"[\s\-\u00ad\ufffe\x02]*"
    pattern = re.compile(between.join(re.escape(c) for c in cited if not c.isspace() and c != "-"))
    found = []
    document = pypdfium2.PdfDocument(str(path))
    try:
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            count = textpage.count_chars()
            text = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i)) for i in range(count))
            for match in pattern.finditer(text):
                chars = range(match.start(), match.end())
                boxes = [textpage.get_charbox(i, loose=True) for i in chars if text[i] not in "\r\n"]
                found.append(CitedOnPage(index, chars, boxes, page.get_width(), page.get_height()))
    finally:
        document.close()
    return found


def highlighted(image: Image.Image) -> np.ndarray:
    """Where the pixels are coloured like a highlighter: yellow-orange, far from any grey."""
    red, green, blue = (np.asarray(image.convert("RGB"), dtype=int)[..., band] for band in range(3))
    return (red > 180) & (green > 110) & (red - blue > 90)


def boxes_mask(cited: CitedOnPage, size: tuple[int, int], margin: int) -> np.ndarray:
    """Where the cited characters' boxes are on an image of the page of `size`, `margin` pixels wider."""
    scale = size[0] / cited.width
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for left, bottom, right, top in cited.boxes:
        rows = slice(max(0, round((cited.height - top) * scale) - margin), round((cited.height - bottom) * scale) + margin + 1)
        columns = slice(max(0, round(left * scale) - margin), round(right * scale) + margin + 1)
        mask[rows, columns] = True
    return mask


# -- Assistant.page_image -----------------------------------------------------------------------


def test_page_image_highlights_the_cited_characters_on_their_page(library):
    answer = library.ask(FLAGSHIP)
    assert answer.text.startswith("March 1918")
    citation = answer.citations[0]
    assert Path(citation.source).name == "brest.pdf"
    png = library.page_image(citation)
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png)).convert("RGB")

    [cited] = find_on_pages(Path(citation.source), citation.text)  # one place: no doubt where it is
    assert f"PDF page {cited.page + 1})" in (citation.location or "")  # the page the location names
    assert abs(image.width / image.height - cited.width / cited.height) < 0.01  # a whole page
    marked = highlighted(image)
    inside = boxes_mask(cited, image.size, margin=0)
    near = boxes_mask(cited, image.size, margin=4)
    # Most of the cited characters' boxes are highlighter-coloured (the glyphs themselves stay dark)...
    assert (marked & inside).sum() > 0.5 * inside.sum()
    # ... and nothing is beyond a few pixels of them.
    assert (marked & ~near).sum() == 0
    # The PNG says where the highlight is, for the viewer to scroll to: around those boxes.
    left, top, right, bottom = (int(v) for v in Image.open(io.BytesIO(png)).text["highlight"].split(","))
    rows, columns = np.nonzero(inside)
    assert abs(top - rows.min()) <= 4 and abs(bottom - rows.max()) <= 4
    assert abs(left - columns.min()) <= 4 and abs(right - columns.max()) <= 4

    # The rest is the page itself: PDFium's own rendering of that page, unchanged.
    document = pypdfium2.PdfDocument(citation.source)
    reference = document[cited.page].render(scale=image.width / cited.width).to_pil().convert("RGB")
    document.close()
    assert reference.size == image.size
    different = np.abs(np.asarray(reference, dtype=int) - np.asarray(image, dtype=int)).max(axis=2) > 48
    assert (different & ~near).sum() < 0.001 * image.width * image.height


def test_every_sentence_of_the_pdf_is_found_where_a_brute_force_search_finds_it(library):
    """Each passage of the PDF, looked for as a citation of it would be, is found at one of the
    places a regular expression over every page finds it (on the page its location names, when it
    is there), from the same first character to the same last; a sentence no page holds whole (it
    runs on to the next page) is found by its start on the page it is cited on."""
    import rag.pages

    source = next(s.path for s in library.sources if s.format == "pdf")
    text = library.source_text(source)
    assert text is not None
    passages = [p for p in library.passages if p.source == source]
    document = pypdfium2.PdfDocument(source)
    try:
        runs_on = 0
        for passage in passages:
            before = text[max(0, passage.start - rag.pages.CONTEXT_CHARS) : passage.start]
            found = rag.pages._find(document, passage.text, before, rag.pages.page_number(passage.location))
            assert found is not None and found.chars, passage
            places = {(p.page, p.chars[0], p.chars[-1]) for p in find_on_pages(Path(source), passage.text)}
            named = rag.pages.page_number(passage.location)
            assert named is not None
            if not places:
                runs_on += 1
                assert found.page + 1 == named, passage
                assert found.chars[-1] - found.chars[0] < 100, passage  # its start only, on the page's last line
            else:
                assert (found.page, found.chars[0], found.chars[-1]) in places, passage
                assert found.page + 1 == named or all(page + 1 != named for page, _, _ in places), passage
    finally:
        document.close()
    assert len(passages) > 50 and runs_on < len(passages) / 10


def test_the_page_a_location_names_is_read_back_as_rag_formats_writes_it():
    import doctest

    import rag.pages

    result = doctest.testmod(rag.pages)
    assert result.attempted > 0 and result.failed == 0


def test_page_image_of_a_citation_that_is_not_from_a_pdf_says_so(library):
    answer = library.ask(FERRY)
    citation = answer.citations[0]
    assert citation.text == FERRY_SENTENCE
    with pytest.raises(NotPdfError, match=r"^harbour\.html is not a PDF \(it was read as html\)"):
        library.page_image(citation)
    assert issubclass(NotPdfError, RagError)
    with pytest.raises(KeyError, match="is not indexed"):  # a source the index does not hold is never read
        library.page_image(Citation(FERRY_SENTENCE, "/etc/passwd", 0, 10, 1.0))


def _one_page_pdf(path: Path, text: str) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for paragraph in text.split("\n\n"):
        pdf.multi_cell(0, 6, latin_1(paragraph))
        pdf.ln(4)
    pdf.output(str(path))
    return path


def test_page_image_of_a_pdf_changed_or_gone_since_indexing_says_so(tmp_path):
    (tmp_path / "docs").mkdir()
    path = _one_page_pdf(tmp_path / "docs" / "varnholt.pdf", BRIDGE_TEXT)
    assistant = Assistant.build([path], index_dir=tmp_path / "index")
    citation = assistant.ask("When was the Varnholt Bridge opened to traffic?").citations[0]
    assert assistant.page_image(citation).startswith(PNG_SIGNATURE)
    _one_page_pdf(path, BRIDGE_TEXT.replace("1893", "1894"))
    with pytest.raises(IndexStaleError, match=r"^varnholt\.pdf changed since it was indexed; update the index"):
        assistant.page_image(citation)
    # The viewer says so, and shows the place in the text the index kept instead.
    from ui.app import render_viewer

    viewer = render_viewer(citation, assistant)
    assert "The page cannot be shown: varnholt.pdf changed since it was indexed" in viewer
    assert "<img" not in viewer and f"<mark>{html.escape(citation.text)}</mark>" in viewer
    path.unlink()
    with pytest.raises(IndexStaleError, match=r"^varnholt\.pdf can no longer be read .*moved or deleted since indexing"):
        assistant.page_image(citation)


# -- the panel and the viewer, rendered --------------------------------------------------------------


def test_the_viewer_shows_an_html_citation_in_its_section_escaped(library):
    from ui.app import render_viewer

    citation = library.ask(FERRY).citations[0]
    viewer = render_viewer(citation, library)
    assert '<div class="rag-heading">The ferry</div>' in viewer
    assert f"<mark>{html.escape(FERRY_SENTENCE)}</mark>" in viewer
    assert "Boats have crossed the Selmark sound" in viewer and "forty minutes" in viewer  # the section around it
    assert "Quillfen" not in viewer and "fish market" not in viewer  # not the other sections
    assert "on the hull.</div>" in viewer  # the whole section: nothing cut, no "…"
    assert "painted &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in viewer and "<script>" not in viewer


def test_the_viewer_shows_a_text_citation_among_the_lines_around_it(tmp_path):
    from ui.app import VIEWER_LINES, render_viewer

    lines = [f"Entry {n} of the harbour log: the {n % 7 + 2} o'clock boat left on time." for n in range(1, 201)]
    lines[99] = "The Orwell beacon was relit on 4 May 1954 after the war."
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "log.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assistant = Assistant.build([tmp_path / "docs"], index_dir=tmp_path / "index")
    citation = assistant.ask("When was the Orwell beacon relit?").citations[0]
    assert citation.location == "line 100"
    viewer = render_viewer(citation, assistant)
    assert f"<mark>{html.escape(lines[99])}</mark>" in viewer
    shown = [n for n in range(1, 201) if f"Entry {n} of" in viewer]
    assert shown == [n for n in range(100 - VIEWER_LINES, 101 + VIEWER_LINES) if n != 100]
    assert ">…Entry" in viewer and "time.…<" in viewer  # cut, and saying so


def test_the_sources_panel_names_the_other_files_holding_the_sentence():
    from ui.app import render_sources

    cited = Citation(FERRY_SENTENCE, "/docs/harbour.html", 0, len(FERRY_SENTENCE), 0.9, also_in=("/a/copy.html", "/b/<b>notes.md"))
    panel = render_sources(Answer("1868", True, [cited, Citation("x", "/docs/y.txt", 0, 1, 0.5)]), panel=3)
    assert panel.count("also in:") == 1
    assert '<div class="rag-also">also in: copy.html, &lt;b&gt;notes.md</div>' in panel
    assert 'data-rag-open="3:1"' in panel and 'data-rag-open="3:2"' in panel


def test_a_viewer_request_names_only_a_citation_of_the_panel_shown(library):
    from ui.app import ChatSession

    session = ChatSession()
    assert session.shown_citation("1:1") is None  # nothing shown yet
    answer = library.ask(FLAGSHIP)
    panel = session.show(answer, library)
    assert session.shown_citation(f"{panel}:1") == (answer.citations[0], library)
    later = session.show(answer, library)
    for forged in (f"{panel}:1", f"{later}:0", f"{later}:{len(answer.citations) + 1}", f"{later}:-1", "/etc/passwd", "", f"{later}:1:2"):
        assert session.shown_citation(forged) is None, forged


def _drawable_by(font_path: Path) -> set[int]:
    from fontTools.ttLib import TTFont

    return set(TTFont(str(font_path)).getBestCmap())


def test_the_abstention_and_warning_messages_have_no_character_the_page_font_cannot_draw(library):
    import matplotlib

    from ui.app import TOO_MANY, render_answer

    question = "What is the boiling point of mercury?"
    answer = library.ask(question)
    assert not answer.grounded
    message = render_answer(question, answer)
    # DejaVu Sans (shipped with matplotlib) is a large font, and the one Chromium falls back to here.
    drawable = _drawable_by(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    for shown in (message, TOO_MANY):
        visible = re.sub(r"<[^>]+>", "", shown)
        assert [c for c in visible if ord(c) not in drawable] == [], shown
    assert "rag-abstain" in message and "rag-warning" in TOO_MANY


# -- in the browser -----------------------------------------------------------------------------


def _open_source(page, number: int) -> None:
    """Click the sources panel's "Show in the document" of citation `number`."""
    page.locator(f"#src-{number} .rag-open").click()


def test_the_chat_opens_a_pdf_citation_on_its_page_and_an_html_one_in_its_section(library, browser):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    app, url = serve_app(library)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(url)
        answer = _ask_in_page(page, FLAGSHIP, 0)  # (it waits for the question box)
        assert "March 1918" in answer
        first = library.ask(FLAGSHIP).citations[0]
        page.locator("#src-1 .rag-open").wait_for(timeout=ANSWER_TIMEOUT_MS)
        _open_source(page, 1)
        picture = page.locator("#rag-viewer img.rag-page")
        picture.wait_for(timeout=ANSWER_TIMEOUT_MS)
        title = page.locator("#rag-viewer .rag-viewer-title").inner_text()
        assert "brest.pdf" in title and first.location and first.location in title  # the printed page label
        assert page.evaluate("() => document.querySelector('#rag-viewer img.rag-page').naturalWidth") > 500  # drawn
        expect(picture).to_be_in_viewport()
        source = picture.get_attribute("src") or ""
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert highlighted(image).sum() > 2_000  # the sentence's lines, highlighted
        expect(page.locator("#rag-viewer .rag-page-spot")).to_be_in_viewport()  # scrolled to the highlight
        page.screenshot(path=str(ARTIFACTS / "viewer-pdf.png"), full_page=True)
        # The last citation (another sentence, so another picture) is scrolled to as well.
        last = page.locator("#rag-sources .rag-open").count()
        assert last > 1
        _open_source(page, last)
        page.wait_for_function(
            "before => document.querySelector('#rag-viewer img.rag-page')?.src !== before", arg=source, timeout=ANSWER_TIMEOUT_MS
        )
        expect(page.locator("#rag-viewer .rag-page-spot")).to_be_in_viewport()

        answer = _ask_in_page(page, FERRY, 1)
        assert "1868" in answer
        expect(page.locator("#rag-viewer img.rag-page")).to_have_count(0)  # new sources close the viewer
        _open_source(page, 1)
        mark = page.locator("#rag-viewer mark")
        mark.wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert mark.inner_text() == FERRY_SENTENCE
        assert page.locator("#rag-viewer .rag-heading").inner_text() == "The ferry"
        assert "fish market" not in page.locator("#rag-viewer").inner_text()
        expect(mark).to_be_in_viewport()
        page.screenshot(path=str(ARTIFACTS / "viewer-html.png"), full_page=True)

        # A button naming anything but a citation of the panel shown opens nothing.
        page.evaluate(
            """() => {
                const forged = document.createElement('button');
                forged.dataset.ragOpen = '../../etc/passwd';
                forged.id = 'forged';
                document.querySelector('#rag-sources .rag-sources').appendChild(forged);
            }"""
        )
        page.locator("#forged").click()
        page.locator("#rag-viewer").filter(has_text="replaced by a newer answer").wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert "root:" not in page.locator("#rag-viewer").inner_text()

        # The abstention's badge is a "?" the page draws, not an emoji shown as an empty box.
        abstained = _ask_in_page(page, "What is the boiling point of mercury?", 2)
        assert abstained.strip().startswith("?") and "The documents don't say" in abstained
        badge = page.locator('#rag-chat [data-testid="bot"] .rag-abstain')
        assert badge.inner_text() == "?" and badge.evaluate("e => getComputedStyle(e).borderRadius") == "50%"
    finally:
        page.close()
        app.close()
