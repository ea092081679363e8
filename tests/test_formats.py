"""PDF, HTML and Word documents: indexed as their text, cited with their page or section.

The documents are made here from the bundled sample with real writers (fpdf2 for the PDF,
python-docx for the Word file) and read back by the library's real readers; the indexes are
built once for the module with the real embedding model.
"""
from __future__ import annotations

import doctest
import html
import io
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rag.formats
import rag.pdftext
from rag import Assistant
from rag.documents import collect, read_document
from rag.errors import DocumentError, IndexCorruptError
from rag.settings import SAMPLE_DOCUMENT
from rag.splitting import split_document

FLAGSHIP = "When was the Brest peace treaty signed?"
# The sample's paragraph that answers the flagship question comes after this heading in the
# HTML and Word versions.
SECTION = "The Brest treaty"
SECTION_BEFORE = "In February 1918"
# Words that only the HTML's head, scripts and styles contain: they must never be indexed.
NOISE = ("zqxscriptword", "zqxstyleword", "zqxtitleword", "zqxhiddenword")
LIGHTHOUSE = "The lighthouse at Penmorra was first lit in 1902.\r\nIts keeper kept a diary for forty years.\n"


def sample_paragraphs() -> list[str]:
    text = SAMPLE_DOCUMENT.read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def latin_1(text: str) -> str:
    """Text a PDF core font can draw (they cover Latin-1 only)."""
    for wide, narrow in {"’": "'", "‘": "'", "“": '"', "”": '"', "—": "-", "–": "-", "…": "..."}.items():
        text = text.replace(wide, narrow)
    return text.encode("latin-1", "replace").decode("latin-1")


# What the layout of the test PDF adds, which must never reach a passage.
RUNNING_HEAD = "Brest and after: a short history"
CONTENTS = [("The road to Brest", 1), ("The Brest treaty", 2), ("Version", 3), ("Limits", 3)]
VERSION_NOTE = "This is version 0.21 of the history, revised after the archives opened."
IDENTIFIER_NOTE = "The archive keeps at most MAX_\nLENGTH pages in one box, and the rest in the annex."
# Words of this many letters or more get a soft hyphen in their middle, so the PDF writer
# hyphenates them at a line end ("manip-" / "ulation"), as a typesetter does.
HYPHENATE_FROM = 8


def hyphenable(text: str) -> str:
    def soft(match: re.Match) -> str:
        word = match.group(0)
        return word[: len(word) // 2] + "\u00ad" + word[len(word) // 2 :]

    return re.sub(rf"[A-Za-z]{{{HYPHENATE_FROM},}}", soft, text)


def write_pdf(path: Path, paragraphs: list[str]) -> Path:
    """The sample laid out as a printed manual: a title page and a contents page with dot
    leaders (page labels i, ii), then the body numbered from 1 (page labels), with a running
    head carrying the page number, a page number in the footer, words hyphenated at line ends,
    a one-word heading and an identifier broken after "_"."""
    from fpdf import FPDF

    class Manual(FPDF):
        def header(self):
            if self.page_no() > 2:  # the body: its printed number is its place after the front matter
                self.set_font("Helvetica", size=9)
                self.cell(0, 8, f"{RUNNING_HEAD}    {self.page_no() - 2}", align="R")
                self.ln(12)

        def footer(self):
            self.set_y(-15)
            self.set_font("Helvetica", size=9)
            printed = self.page_no() - 2 if self.page_no() > 2 else "i" * self.page_no()
            self.cell(0, 10, str(printed), align="C")

    pdf = Manual()
    pdf.add_page()
    pdf.set_page_label("r")
    pdf.set_font("Helvetica", size=20)
    pdf.multi_cell(0, 12, latin_1(paragraphs[0]))
    pdf.add_page()
    pdf.set_font("Helvetica", size=14)
    pdf.cell(0, 10, "Contents")
    pdf.ln(12)
    pdf.set_font("Helvetica", size=12)
    for number, (title, page) in enumerate(CONTENTS, 1):
        pdf.cell(0, 8, f"{number} {title} " + ". " * 30 + str(page))
        pdf.ln(8)
    pdf.add_page()
    pdf.set_page_label("D", label_start=1)
    for paragraph in paragraphs[1:]:
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 6, hyphenable(latin_1(paragraph)))
        pdf.ln(4)
    pdf.set_font("Helvetica", style="B", size=14)
    pdf.cell(0, 8, "Version")
    pdf.ln(10)
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 6, VERSION_NOTE)
    pdf.ln(4)
    pdf.multi_cell(0, 6, IDENTIFIER_NOTE)
    pdf.output(str(path))
    return path


def write_image_only_pdf(path: Path) -> Path:
    """A 'scanned' page without text: a picture of shapes, no text layer (OCR, where Tesseract is
    installed, finds nothing in it either; scans of text are tests/test_ocr.py's)."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (400, 120), "white")
    ImageDraw.Draw(image).ellipse((20, 20, 120, 100), fill="steelblue")
    ImageDraw.Draw(image).rectangle((200, 30, 360, 90), fill="darkgreen")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(buffer, x=10, y=10, w=180)
    pdf.output(str(path))
    return path


def write_html(path: Path, paragraphs: list[str]) -> Path:
    body = []
    for paragraph in paragraphs[1:]:
        if paragraph.startswith(SECTION_BEFORE):
            body.append(f"<h2>{SECTION}</h2>")
            body.append(f"<script>var {NOISE[0]} = 'March 1918';</script>")
        body.append(f"<p>{html.escape(paragraph)}</p>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{NOISE[2]}</title><style>.{NOISE[1]} {{ color: red }}</style>"
        f"<script>console.log('{NOISE[0]}: the treaty was signed in May 1920');</script></head>\n"
        f"<body><h1>{html.escape(paragraphs[0])}</h1>\n"
        f"<div hidden>{NOISE[3]} The Brest treaty was signed in 1066.</div>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(paragraphs[0], level=1)
    for paragraph in paragraphs[1:]:
        if paragraph.startswith(SECTION_BEFORE):
            document.add_heading(SECTION, level=2)
        document.add_paragraph(paragraph)
    document.save(str(path))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A folder with the sample as a PDF, an HTML page and a Word file, a copy of the PDF and a
    scanned (image-only) PDF."""
    folder = tmp_path_factory.mktemp("formats") / "docs"
    folder.mkdir()
    paragraphs = sample_paragraphs()
    files = {
        "pdf": write_pdf(folder / "brest.pdf", paragraphs),
        "html": write_html(folder / "brest.html", paragraphs),
        "docx": write_docx(folder / "brest.docx", paragraphs),
        "scan": write_image_only_pdf(folder / "scan.pdf"),
    }
    files["txt"] = folder / "notes.txt"  # plain text beside them: read as it is, no location
    files["txt"].write_text(LIGHTHOUSE, encoding="utf-8")
    files["copy"] = folder / "copy-of-brest.pdf"  # read after brest.pdf (folders are read in name order)
    shutil.copyfile(files["pdf"], files["copy"])
    return files


@pytest.fixture(scope="module")
def mixed(made, tmp_path_factory) -> Assistant:
    """One index over the whole folder."""
    return Assistant.build([made["pdf"].parent], index_dir=tmp_path_factory.mktemp("mixed") / "index")


@pytest.fixture(scope="module")
def single(made, mixed, tmp_path_factory) -> dict[str, Assistant]:
    """One index per format, so each format must answer on its own: a copy of the mixed index
    updated to hold one file, which reuses its vectors rather than embedding it again."""
    assistants = {}
    for kind in ("pdf", "html", "docx"):
        index_dir = tmp_path_factory.mktemp(kind) / "index"
        shutil.copytree(mixed.index_dir, index_dir)
        assistants[kind] = Assistant.build([made[kind]], index_dir=index_dir)
        report = assistants[kind].last_build
        others = set(mixed.manifest["sources"]) - {str(made[kind].resolve())}
        assert report.embedded == 0 and set(report.removed) == others
    return assistants


def pdf_pages(path: Path) -> tuple[list[str], list[str]]:
    """Each page's text and printed label as pypdf reads them, independently of the library."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    return [page.extract_text() or "" for page in reader.pages], list(reader.page_labels)


def letters(text: str) -> str:
    """Only letters and digits: compares texts whatever their line breaks and hyphens."""
    return re.sub(r"[\W_]", "", text.replace("\u00ad", ""))


def page_of(location: str) -> tuple[str, int]:
    """("21", 24) from "p. 21 (PDF page 24)"; ("7", 7) from "p. 7"."""
    match = re.fullmatch(r"p\. (\S+)(?: \(PDF page (\d+)\))?", location)
    assert match, location
    return match.group(1), int(match.group(2) or match.group(1))


# -- building a folder of mixed formats ---------------------------------------------------------


def test_each_format_is_indexed_once_and_the_scan_and_copy_are_skipped_with_their_reason(mixed, made):
    report = mixed.last_build
    indexed = {Path(s).name for s in mixed.manifest["sources"]}
    assert indexed == {"brest.html", "brest.docx", "brest.pdf", "notes.txt"}
    assert {p.source for p in mixed.passages} == set(mixed.manifest["sources"])
    reasons = dict(report.skipped)
    assert "scan.pdf: no text layer" in reasons[str(made["scan"].resolve())]
    assert f"a duplicate of {made['pdf'].resolve()} (same content)" in reasons[str(made["copy"].resolve())]
    formats = {Path(s).suffix: r["format"] for s, r in mixed.manifest["sources"].items()}
    assert formats == {".pdf": "pdf", ".html": "html", ".docx": "docx", ".txt": "text"}


def test_the_flagship_question_is_answered_from_the_mixed_folder_with_a_located_citation(mixed, made):
    answer = mixed.ask(FLAGSHIP)

    assert answer.grounded
    assert "March" in answer.text and "1918" in answer.text
    assert answer.citations
    for citation in answer.citations:
        assert citation.location is not None, citation
        assert_location_is_right(mixed, citation)


@pytest.mark.parametrize("kind", ["pdf", "html", "docx"])
def test_each_format_alone_answers_the_flagship_question_citing_its_page_or_section(single, kind):
    assistant = single[kind]
    answer = assistant.ask(FLAGSHIP)

    assert answer.grounded, answer
    assert "March" in answer.text and "1918" in answer.text
    assert "\n" not in answer.text  # the answer reads as prose, whatever lines the PDF printed
    cited = [c for c in answer.citations if "signed the Brest Peace Treaty" in c.text]
    assert cited, answer.citations
    for citation in answer.citations:
        assert_location_is_right(assistant, citation)
    if kind == "pdf":
        # The body is printed from 1 after two pages of front matter: the label, then the place.
        label, number = page_of(cited[0].location)
        assert number == int(label) + 2
    else:
        assert re.fullmatch(rf"§ {SECTION}, ¶ \d+", cited[0].location)


def assert_location_is_right(assistant: Assistant, citation) -> None:
    """A PDF citation names the printed label of the page pypdf finds its text on, and that
    page; an HTML or Word one the heading last seen before it and its paragraph under it."""
    text = assistant.source_text(citation.source)
    assert text[citation.start : citation.end] == citation.text
    if citation.source.endswith(".pdf"):
        label, number = page_of(citation.location)
        pages, labels = pdf_pages(Path(citation.source))
        assert labels[number - 1] == label
        assert letters(citation.text)[:40] in letters(pages[number - 1]), (citation.location, citation.text)
    else:
        before = text[: citation.start]
        headings = [h for h in (sample_paragraphs()[0], SECTION) if h in before]
        last = max(headings, key=before.rindex)
        under = before[before.rindex(last) + len(last) :]
        # Paragraphs under the heading before the citation, and the citation's own when it starts one.
        paragraph = len([block for block in under.split("\n\n") if block.strip()]) + under.endswith("\n\n")
        assert citation.location == f"§ {last}, ¶ {paragraph}", (citation.location, citation.text)


def test_every_citation_and_passage_slices_back_verbatim_from_the_stored_text(mixed, single):
    for assistant in (mixed, *single.values()):
        for citation in assistant.ask(FLAGSHIP).citations:
            assert assistant.source_text(citation.source)[citation.start : citation.end] == citation.text
        for passage in assistant.passages:
            assert assistant.source_text(passage.source)[passage.start : passage.end] == passage.text


def test_extracted_texts_are_kept_in_the_index_and_checked_when_it_is_opened(mixed):
    records = {s: r for s, r in mixed.manifest["sources"].items() if r["format"] != "text"}
    for source, record in records.items():
        assert record["text"] in mixed.manifest["checksums"]
        assert (mixed.index_dir / record["text"]).is_file()
    reopened = Assistant.open(mixed.index_dir)
    assert reopened.ask(FLAGSHIP).citations == mixed.ask(FLAGSHIP).citations

    stored = mixed.index_dir / next(iter(records.values()))["text"]
    damaged = mixed.index_dir.parent / "damaged"
    shutil.copytree(mixed.index_dir, damaged)
    (damaged / stored.relative_to(mixed.index_dir)).write_text("altered", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match=r"is damaged: texts/[0-9a-f]{64}\.txt"):
        Assistant.open(damaged)


def test_script_style_head_and_hidden_text_is_never_indexed(mixed, single):
    html_source = next(s for s in mixed.manifest["sources"] if s.endswith(".html"))
    stored = mixed.source_text(html_source)
    for assistant in (mixed, single["html"]):
        for passage in assistant.passages:
            assert not any(word in passage.text for word in NOISE), passage.text
    assert not any(word in stored for word in NOISE)
    assert "1066" not in stored and "May 1920" not in stored
    assert "in March of the same year they signed the Brest Peace Treaty" in stored


def test_an_unchanged_folder_is_not_rewritten_and_keeps_its_texts(mixed, made):
    again = Assistant.build([made["pdf"].parent], index_dir=mixed.index_dir)
    assert not again.last_build.written
    assert len(again.last_build.skipped) == 2
    assert again.source_text(again.passages[0].source)


# -- the CLI and the UI show the location -------------------------------------------------------


def test_the_cli_prints_each_citations_page_or_section(single, capsys):
    from rag.cli import _print_answer

    answer = single["pdf"].ask(FLAGSHIP)
    _print_answer(answer, full=True)
    printed = capsys.readouterr().out
    for number, citation in enumerate(answer.citations, 1):
        assert f"[{number}] brest.pdf, {citation.location}, chars {citation.start}–{citation.end}" in printed
    assert answer.to_dict()["citations"][0]["location"] == answer.citations[0].location


def test_the_ui_sources_panel_shows_the_section_and_the_extracted_context(single):
    from ui.app import render_sources

    answer = single["html"].ask(FLAGSHIP)
    panel = render_sources(answer, single["html"])
    assert f"· § {SECTION}, ¶ " in panel
    # The context around the cited sentence comes from the extracted text, not the HTML markup.
    assert "<mark>" in panel and "&lt;p&gt;" not in panel and "In February 1918, Germany launched" in panel


# -- reading single files -----------------------------------------------------------------------


def test_a_named_scanned_pdf_is_refused_as_having_no_text_layer(made):
    with pytest.raises(DocumentError, match=r"scan\.pdf: no text layer"):
        collect([made["scan"]])


@pytest.mark.parametrize("name", ["broken.pdf", "broken.docx"])
def test_a_file_that_is_not_its_format_is_refused_when_named_and_skipped_in_a_folder(tmp_path, name):
    path = tmp_path / "docs" / name
    path.parent.mkdir()
    path.write_bytes(b"this is not a " + name.encode() + b" file at all")
    with pytest.raises(DocumentError, match=rf"{re.escape(name)}: not a readable (PDF|Word)"):
        collect([path])
    (tmp_path / "docs" / "good.txt").write_text("The lighthouse was first lit in 1902.", encoding="utf-8")
    collected = collect([tmp_path / "docs"])
    assert [Path(d.source).name for d in collected.documents] == ["good.txt"]
    assert collected.skipped[0][0] == str(path)


@pytest.mark.parametrize("user_password", ["secret", None], ids=["needs-a-password", "locked-for-editing-only"])
def test_an_encrypted_pdf_is_refused_unless_it_opens_without_a_password(tmp_path, user_password):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password=user_password)
    pdf.add_page()
    pdf.set_font("Helvetica")
    pdf.cell(text="The treaty was signed in March 1918.")
    path = tmp_path / "locked.pdf"
    pdf.output(str(path))
    if user_password:
        with pytest.raises(DocumentError, match=r"locked\.pdf: the PDF is encrypted; save an unprotected copy"):
            read_document(path)
    else:
        assert read_document(path).text == "The treaty was signed in March 1918."


def test_html_text_is_laid_out_as_a_browser_shows_it():
    page = (
        "<p>Signed&nbsp;in   <b>March</b>\n 1918 &amp; abrogated.</p><pre>  kept\n   as is</pre>"
        "<p style='display: none'>invisible</p><ul><li>one</li><li>two<br>lines</li></ul>"
        "<h3>Later <small>on</small></h3><div aria-hidden='true'>icon</div>After."
    )
    extracted = rag.formats.html(page)
    assert extracted.text == (
        "Signed in March 1918 & abrogated.\n\n  kept\n   as is\n\none\n\ntwo\nlines\n\nLater on\n\nAfter."
    )
    assert extracted.marks == ((extracted.text.index("Later"), "§ Later on"),)


_WORDS = st.text(alphabet="abcXYZ09.,&<> \t\n", min_size=0, max_size=20)


@given(st.lists(st.tuples(st.sampled_from(["p", "h2", "li", "span", "br", "script"]), _WORDS), max_size=12))
def test_html_headings_are_marked_where_their_text_is_and_whitespace_is_collapsed(blocks):
    page = "".join(
        f"<{tag}>" if tag == "br" else f"<{tag}>{html.escape(words)}</{tag}>" for tag, words in blocks
    )
    extracted = rag.formats.html(page)
    text = extracted.text
    assert text == text.strip() and "  " not in text and "\n\n\n" not in text and "\t" not in text
    headings = [" ".join(w.split()) for tag, w in blocks if tag == "h2" and w.split()]
    assert [label for _, label in extracted.marks] == [f"§ {h}" for h in headings]
    for offset, label in extracted.marks:
        assert text[offset:].startswith(label.removeprefix("§ "))
    shown = [w for tag, words in blocks if tag not in ("script", "br") for w in words.split()]
    assert "".join(text.split()) == "".join(shown)  # every visible character, in order, and nothing else


def test_an_html_page_without_visible_text_is_refused(tmp_path):
    path = tmp_path / "empty.html"
    path.write_text("<html><head><title>Only a title</title><script>x()</script></head><body> </body></html>")
    with pytest.raises(DocumentError, match=r"empty\.html: the file has no text"):
        read_document(path)


def test_pdf_pages_are_marked_with_their_printed_labels_where_each_page_begins(made):
    document = read_document(made["pdf"])
    pages, labels = pdf_pages(made["pdf"])
    assert len(pages) >= 5 and labels[:3] == ["i", "ii", "1"]  # the sample fills several body pages
    # The contents page (ii) is left out: it has no passage to point at.
    expected = ["p. i (PDF page 1)"] + [f"p. {n - 2} (PDF page {n})" for n in range(3, len(pages) + 1)]
    assert [label for _, label in document.marks] == expected
    for (offset, label), following in zip(document.marks, [*document.marks[1:], (len(document.text), "")]):
        _, number = page_of(label)
        page_text = document.text[offset : following[0]]
        # The page's first words are those pypdf finds on that page (its running head aside).
        assert letters(page_text)[:30] in letters(pages[number - 1]), (label, page_text[:80])


def test_no_passage_of_a_laid_out_pdf_holds_what_the_layout_added(single, made):
    """Running heads, page numbers, the contents page's dot leaders, words hyphenated at a line
    end and a heading fused into the next sentence never reach a passage."""
    assistant = single["pdf"]
    passages = [p.text for p in assistant.passages]
    stored = assistant.source_text(str(made["pdf"].resolve()))
    for text in passages:
        assert RUNNING_HEAD not in text
        assert not re.search(r"(?:\. ){4,}", text), text  # the contents page's dot leaders
        assert not re.search(r"[^\W\d_]-\s+[a-z]", text), text  # "manip- ulation"
        assert not re.fullmatch(r"[ivx\d]+", text), text  # a page number
        assert "Contents" not in text
    assert "Version" in passages and not any(t.startswith("Version This") for t in passages)
    assert VERSION_NOTE in passages
    assert "keeps at most MAX_LENGTH" in stored and "MAX_\n" not in stored
    # Every word the writer hyphenated at a line end is whole again.
    words = set(re.findall(r"[A-Za-z]+", latin_1(" ".join(sample_paragraphs()))))
    hyphenated = [w for w in words if len(w) >= HYPHENATE_FROM]
    assert hyphenated and all(re.search(rf"\b{w}\b", stored) for w in hyphenated), [
        w for w in hyphenated if not re.search(rf"\b{w}\b", stored)
    ]


def test_cleaning_joins_hyphenated_words_keeps_real_compounds_and_drops_only_page_furniture():
    from rag.pdftext import Page, clean

    body = [
        "A well-known method is the manip-\nulation of text by a well-",
        "known typesetter, who writes at most\nMAX_\nLENGTH lines.\nArguments\nNone are needed here.",
        "The cross-page word manip-",
        "ulation ends here.\nArguments\nThe last page says so.",
    ]
    pages = [
        Page(n + 3, str(n + 1), f"Manual of style {n + 1}\n{text}\n{n + 1}") for n, text in enumerate(body)
    ]
    contents = Page(1, "i", "Contents\n" + "\n".join(f"{n} Part {n} . . . . . . {n}" for n in range(1, 7)))
    index = Page(2, "ii", "Index\n" + "\n".join(f"word{n}, {n}, {n + 1}" for n in range(1, 7)))

    cleaned = clean([contents, index, *pages])

    assert cleaned[:2] == ["", ""]  # the contents and index pages
    assert cleaned[2] == "A well-known method is the manipulation\nof text by a well-known"
    assert cleaned[3].startswith("typesetter, who writes at most\nMAX_LENGTH\nlines.\n\nArguments\n\nNone")
    assert cleaned[4] == "The cross-page word manipulation"
    assert cleaned[5].startswith("ends here.")
    assert not any("Manual of style" in page or re.search(r"\n\d+$", page) for page in cleaned)
    # A line that is one long token moves up whole; the line it ended with is joined in turn.
    assert clean([Page(1, "1", "See the x.y.long-\nname.of.one.param-\neter here.")]) == [
        "See the x.y.longname.of.one.parameter\nhere."
    ]


def test_markdown_passages_carry_their_heading_and_the_text_stays_the_file(tmp_path):
    text = (
        "---\ntitle: notes\n---\n\nIntro line.\n\n# The Brest treaty\n\nSigned in March 1918.\n\n"
        "```\n# not a heading\n```\n\nLater\n=====\n\nAbrogated in November.\n"
    )
    path = tmp_path / "notes.md"
    path.write_text(text, encoding="utf-8")
    document = read_document(path)
    assert document.text == text
    locations = {p.text: p.location for p in split_document(document)}
    assert locations["Intro line."] == "¶ 1"  # the metadata block is not a paragraph a reader sees
    assert locations["# The Brest treaty"] == "§ The Brest treaty"
    assert locations["Signed in March 1918."] == "§ The Brest treaty, ¶ 1"
    assert locations["# not a heading"] == "§ The Brest treaty, ¶ 2"  # a code block is a paragraph
    assert locations["Abrogated in November."] == "§ Later, ¶ 1"


def test_plain_text_passages_are_located_by_line_and_no_text_is_stored(mixed, made):
    source = str(made["txt"].resolve())
    assert mixed.manifest["sources"][source]["text"] is None
    passages = [p for p in mixed.passages if p.source == source]
    assert [p.text for p in passages] == LIGHTHOUSE.strip().split("\r\n")
    assert [p.location for p in passages] == ["line 1", "line 2"]
    assert mixed.source_text(source) == LIGHTHOUSE  # the file as decoded, its \r\n kept


def test_docx_headings_and_tables_are_read_in_document_order(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Treaties", level=1)
    document.add_paragraph("The first treaty was signed in March.\nIt was abrogated in November.")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Treaty", "Year"), ("Brest-Litovsk", "1918")]):
        for cell, value in zip(row.cells, cells):
            cell.text = value
    document.add_heading("Aftermath", level=2)
    document.add_paragraph("The army was rebuilt.")
    path = tmp_path / "t.docx"
    document.save(str(path))

    read = read_document(path)
    assert read.text == (
        "Treaties\n\nThe first treaty was signed in March.\nIt was abrogated in November.\n\n"
        "Treaty | Year\n\nBrest-Litovsk | 1918\n\nAftermath\n\nThe army was rebuilt."
    )
    locations = {p.text: p.location for p in split_document(read)}
    assert locations["Brest-Litovsk | 1918"] == "§ Treaties, ¶ 3"
    assert locations["The army was rebuilt."] == "§ Aftermath, ¶ 1"


@pytest.mark.parametrize("module", [rag.formats, rag.pdftext], ids=lambda m: m.__name__)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
