"""Scanned PDFs: pages without a text layer are read by OCR (Tesseract), cited verbatim with
their page, read once per file, and refused with what to install when Tesseract is missing.

The scans are made here: the sample set with fpdf2, rendered to pictures by PDFium, blurred,
given noise and saved as an image-only PDF (eval.ocr_compare.scan), so no text layer remains.
Tesseract (Debian's tesseract-ocr) reads them for real; the tests that need it skip without it.
"""
from __future__ import annotations

import doctest
import hashlib

import pytest
from conftest import assert_one_line_error, run_rag

import rag.ocr
from eval.ocr_compare import sample_paragraphs, scan, text_pdf, true_pages
from rag import Assistant
from rag.documents import read_document
from rag.errors import DocumentError

FLAGSHIP = "When was the Brest peace treaty signed?"
# The words of the sample's sentence that answers the flagship question.
SIGNED = "signed the Brest Peace Treaty"
# The scan's pages print their number at the bottom, ten more than their place in the file (as
# a chapter scanned out of a book): citations must give the printed one.
PRINTED_OFFSET = 10
MISSING = rag.ocr.engine_missing()
needs_tesseract = pytest.mark.skipif(MISSING is not None, reason=f"OCR tests need Tesseract: {MISSING}")
# Two made-up facts for the mixed PDF: one on its text page, one on its scanned page.
TEXT_PAGE = "The lighthouse at Penmorra was first lit in 1902. Its keeper kept a diary for forty years."
SCANNED_PAGE = "The Varnholt Bridge was opened to traffic on September 14, 1893. It crosses the river Elsmere."


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> dict:
    """A folder holding the sample as an image-only PDF, and the page that says when the treaty was signed."""
    folder = tmp_path_factory.mktemp("scans") / "docs"
    folder.mkdir()
    original = text_pdf(sample_paragraphs(), footer=lambda number: str(number + PRINTED_OFFSET))
    (folder / "brest-scan.pdf").write_bytes(scan(original))
    # Where the sentence is, from the text layer the scan was made from (the scan has none).
    page = next(n for n, text in enumerate(true_pages(original), 1) if SIGNED in " ".join(text.split()))
    return {"folder": folder, "pdf": folder / "brest-scan.pdf", "page": page}


@pytest.fixture(scope="module")
def indexed(scanned, tmp_path_factory) -> Assistant:
    return Assistant.build([scanned["folder"]], index_dir=tmp_path_factory.mktemp("scan-index") / "index")


def hide_tesseract(monkeypatch, tmp_path) -> None:
    """This process and its children find no `tesseract` program: PATH is one empty folder."""
    empty = tmp_path / "no-programs"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


def test_the_scan_has_no_text_layer(scanned):
    assert not "".join(true_pages(scanned["pdf"].read_bytes())).strip()


@needs_tesseract
def test_the_flagship_is_answered_from_a_scan_citing_its_printed_page_verbatim(indexed, scanned):
    answer = indexed.ask(FLAGSHIP)

    assert answer.grounded and "March 1918" in answer.text, answer.text
    citation = next(c for c in answer.citations if SIGNED in " ".join(c.text.split()))
    page = scanned["page"]
    assert citation.location == f"p. {page + PRINTED_OFFSET} (PDF page {page}, OCR)"
    assert citation.source == str(scanned["pdf"].resolve())
    for cited in answer.citations:
        assert indexed.source_text(cited.source)[cited.start : cited.end] == cited.text


@needs_tesseract
def test_every_page_of_the_scan_is_read_and_marked_as_read_by_ocr(indexed, scanned):
    pages = len(true_pages(text_pdf(sample_paragraphs())))
    locations = {p.location for p in indexed.passages}
    assert locations == {f"p. {n + PRINTED_OFFSET} (PDF page {n}, OCR)" for n in range(1, pages + 1)}
    text = indexed.source_text(str(scanned["pdf"].resolve()))
    assert "In February 1918, Germany launched a full-scale attack on Soviet Russia." in text
    # The printed page numbers are page furniture: never indexed as text.
    assert not any(p.text.strip() == str(1 + PRINTED_OFFSET) for p in indexed.passages)


@needs_tesseract
def test_reindexing_the_unchanged_scan_runs_no_ocr(indexed, scanned, monkeypatch, tmp_path):
    manifest = indexed.manifest
    hide_tesseract(monkeypatch, tmp_path)  # any OCR now would fail: the scan could not be read

    again = Assistant.build([scanned["folder"]], index_dir=indexed.index_dir)

    report = again.last_build
    assert report.unchanged == [str(scanned["pdf"].resolve())] and report.embedded == 0 and not report.written
    assert again.manifest["generation"] == manifest["generation"]
    assert "March 1918" in again.ask(FLAGSHIP).text
    # The same folder indexed afresh without Tesseract cannot read the scan: hiding it is real.
    with pytest.raises(DocumentError, match="Tesseract is not installed"):
        Assistant.build([scanned["folder"]], index_dir=tmp_path / "fresh-index")


@needs_tesseract
def test_a_pdf_with_a_text_page_and_a_scanned_page_reads_both(tmp_path):
    import pypdfium2

    mixed = pypdfium2.PdfDocument.new()
    for part in (text_pdf([TEXT_PAGE]), scan(text_pdf([SCANNED_PAGE]))):
        mixed.import_pages(pypdfium2.PdfDocument(part))
    path = tmp_path / "mixed.pdf"
    mixed.save(str(path))

    read = read_document(path)

    (text_start, text_label), (scan_start, scan_label) = read.marks
    assert (text_label, scan_label) == ("p. 1", "p. 2 (OCR)")
    assert " ".join(read.text[text_start:scan_start].split()) == TEXT_PAGE
    assert " ".join(read.text[scan_start:].split()) == SCANNED_PAGE


def test_without_tesseract_a_scan_is_refused_in_one_line_naming_what_to_install(scanned, monkeypatch, tmp_path):
    hide_tesseract(monkeypatch, tmp_path)  # the child `rag` finds no tesseract (python is run by its full path)

    result = run_rag("index", str(scanned["pdf"]), "--index", str(tmp_path / "index"), cwd=tmp_path)

    assert_one_line_error(
        result, "brest-scan.pdf: no text layer; it may be a scanned PDF, which needs OCR, and Tesseract is not installed",
        "apt-get install tesseract-ocr tesseract-ocr-eng",
    )


def test_the_ocr_cache_keeps_only_the_pages_of_pdfs_the_index_holds(tmp_path):
    cache = rag.ocr.OcrCache(tmp_path / "ocr")
    kept, dropped = b"%PDF kept", b"%PDF dropped"
    cache.keep(kept, {1: "page one", 3: "page three"})
    cache.keep(dropped, {1: "gone"})
    (cache.folder / "damaged.json").write_text("{", encoding="utf-8")

    cache.forget_all_but({hashlib.sha256(kept).hexdigest()})

    assert cache.pages(kept) == {1: "page one", 3: "page three"}
    assert cache.pages(dropped) == {}
    assert sorted(p.name for p in cache.folder.iterdir()) == [f"{hashlib.sha256(kept).hexdigest()}.json"]


def test_the_comparisons_measures_hold_their_worked_examples():
    import eval.ocr_compare

    result = doctest.testmod(eval.ocr_compare)
    assert result.attempted > 0 and result.failed == 0


@needs_tesseract
def test_a_scan_uploaded_in_the_chat_is_read_by_ocr_once(tmp_path, monkeypatch):
    from ui.app import AssistantHolder, add_upload

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "lighthouse.txt").write_text(TEXT_PAGE, encoding="utf-8")
    holder = AssistantHolder(Assistant.build([notes], index_dir=tmp_path / "index"))
    (tmp_path / "bridge-scan.pdf").write_bytes(scan(text_pdf([SCANNED_PAGE])))  # one page, no text layer
    pages_read = []
    real_read_image = rag.ocr.read_image

    def counted(image):  # Tesseract still reads every page; this only counts them
        pages_read.append(image.size)
        return real_read_image(image)

    monkeypatch.setattr(rag.ocr, "read_image", counted)
    message = add_upload(holder, tmp_path / "bridge-scan.pdf")

    assert "Added bridge-scan.pdf" in message
    assert len(pages_read) == 1  # checking the upload and indexing it read the page once
    answer = holder.assistant.ask("When was the Varnholt Bridge opened to traffic?")
    assert answer.grounded and "1893" in answer.text and answer.citations[0].location.endswith("OCR)")
