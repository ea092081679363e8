"""Which OCR engine reads scanned pages best: accuracy and speed on pages scanned here.

    python -m eval.ocr_compare [--pages 3] [--scan-dpi 200] [--ocr-dpi 300] [--engines tesseract,rapidocr] [--out FILE]

The pages are made from the bundled sample: set with fpdf2 (Helvetica 11 pt, A4), rendered to a
grayscale picture at `--scan-dpi` (a scanner's resolution), slightly blurred and given a little
noise, and saved as an image-only PDF (no text layer remains), as a scanner or a fax would
make it. The true text of each page is the text layer of the PDF it was rendered from.

Each engine reads the pictures rag.ocr renders from the scanned PDF (at `--ocr-dpi`, by default
rag.ocr.DPI), so both get what the library would give them. For each page:

- accuracy: 1 - (edit distance / length of the true text), whitespace runs made one space;
- word accuracy: the share of the true words (in order) found in the OCR text (difflib's
  matching blocks), which counts "signedthe" as two words lost.

and the pages per second (each engine warmed up on the first page first: loading is not timed).
Engines: tesseract (Debian's tesseract-ocr through pytesseract, the OCR extra) and rapidocr
(rapidocr-onnxruntime 1.4.x, PP-OCRv4 models in ONNX shipped in its wheel), each when installed.
"""
from __future__ import annotations

import argparse
import difflib
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

from .internals import ocr

# A scanner's mild blur (a Gaussian radius in pixels at the scan's resolution) and noise (the
# standard deviation of grey levels added to each pixel, of 255): a clean office scan.
BLUR_RADIUS = 0.6
NOISE_SIGMA = 12


def sample_paragraphs() -> list[str]:
    from rag import SAMPLE_DOCUMENT

    text = SAMPLE_DOCUMENT.read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def text_pdf(paragraphs: list[str], *, footer: Callable[[int], str] | None = None) -> bytes:
    """The paragraphs set as an A4 PDF with a text layer (fpdf2, Helvetica 11 pt); `footer(page
    number)` is printed at the bottom of each page when given."""
    from fpdf import FPDF

    class Document(FPDF):
        def footer(self):
            if footer is not None:
                self.set_y(-15)
                self.set_font("Helvetica", size=10)
                self.cell(0, 10, footer(self.page_no()), align="C")

    pdf = Document(format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for paragraph in paragraphs:
        # The core fonts draw Latin-1 only: the sample's curly quote becomes a straight one.
        drawable = paragraph.replace("”", '"').replace("“", '"').replace("’", "'")
        pdf.multi_cell(0, 5.5, drawable.encode("latin-1", "replace").decode("latin-1"))
        pdf.ln(3)
    return bytes(pdf.output())


def scan(pdf: bytes, *, dpi: int = 200, noisy: bool = True, seed: int = 0) -> bytes:
    """The PDF as a scanner would return it: each page a grayscale picture at `dpi` (mildly
    blurred and noisy when `noisy`, the same noise for the same `seed`), in an image-only PDF
    without any text layer."""
    import numpy as np
    import pypdfium2
    from PIL import Image, ImageFilter

    document = pypdfium2.PdfDocument(pdf)
    try:
        pictures = [page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for page in document]
    finally:
        document.close()
    if noisy:
        generator = np.random.default_rng(seed)
        scanned = []
        for picture in pictures:
            grey = np.asarray(picture.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), dtype=np.float32)
            grey += generator.normal(0, NOISE_SIGMA, grey.shape)
            scanned.append(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)))
        pictures = scanned
    out = io.BytesIO()
    pictures[0].save(out, format="PDF", save_all=True, append_images=pictures[1:], resolution=dpi)
    return out.getvalue()


def true_pages(pdf: bytes) -> list[str]:
    """The text of each page of a PDF with a text layer (the ground truth of its scan)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        return [page.get_textpage().get_text_range().replace("\r\n", "\n") for page in document]
    finally:
        document.close()


def rendered_pages(pdf: bytes, *, dpi: int) -> list:
    """The pictures rag.ocr renders from a scanned PDF, one per page."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        return [ocr.render(page, dpi=dpi) for page in document]
    finally:
        document.close()


def read_tesseract() -> Callable:
    return ocr.read_image


def read_rapidocr() -> Callable:
    import numpy as np
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(image) -> str:
        result, _ = engine(np.asarray(image.convert("RGB")))
        return "\n".join(line[1] for line in result or [])

    return read


ENGINES: dict[str, Callable[[], Callable]] = {"tesseract": read_tesseract, "rapidocr": read_rapidocr}


def normalised(text: str) -> str:
    return " ".join(text.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), one row at a time."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def accuracy(read: str, truth: str) -> float:
    """1 - edit distance / length of the true text, whitespace normalised (0 at worst).

    >>> accuracy("The  treaty was signed", "The treaty was signed."), accuracy("", "abc")
    (0.9545454545454546, 0.0)
    """
    read, truth = normalised(read), normalised(truth)
    return max(0.0, 1 - edit_distance(read, truth) / max(1, len(truth)))


def word_accuracy(read: str, truth: str) -> float:
    """The share of the true words found, in order, among the words read.

    >>> word_accuracy("The treatywas signed", "The treaty was signed")
    0.5
    """
    read_words, true_words = read.split(), truth.split()
    matcher = difflib.SequenceMatcher(None, true_words, read_words, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / max(1, len(true_words))


def compare(engines: list[str], *, pages: int, scan_dpi: int, ocr_dpi: int) -> dict:
    original = text_pdf(sample_paragraphs())
    truth = true_pages(original)[:pages]
    pictures = rendered_pages(scan(original, dpi=scan_dpi), dpi=ocr_dpi)[:pages]
    results: dict = {"pages": len(truth), "scan_dpi": scan_dpi, "ocr_dpi": ocr_dpi, "engines": {}}
    for name in engines:
        try:
            read = ENGINES[name]()
            read(pictures[0])  # warm up: loading the models or starting the program is not timed
        except Exception as error:  # noqa: BLE001 - an engine that cannot run here is a result too
            results["engines"][name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        started = time.perf_counter()
        texts = [read(picture) for picture in pictures]
        seconds = time.perf_counter() - started
        results["engines"][name] = {
            "accuracy": [round(accuracy(t, x), 4) for t, x in zip(texts, truth)],
            "word_accuracy": [round(word_accuracy(t, x), 4) for t, x in zip(texts, truth)],
            "pages_per_second": round(len(texts) / seconds, 3),
            "sample": normalised(texts[0])[:300],
        }
    return results


def table(results: dict) -> str:
    lines = [
        "| engine | character accuracy (per page) | word accuracy (per page) | pages/s |",
        "|---|---|---|---|",
    ]
    for name, row in results["engines"].items():
        if "error" in row:
            lines.append(f"| {name} | {row['error']} | | |")
            continue
        per_page = ", ".join(f"{a:.3f}" for a in row["accuracy"])
        words = ", ".join(f"{a:.3f}" for a in row["word_accuracy"])
        lines.append(f"| {name} | {per_page} | {words} | {row['pages_per_second']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=3, help="pages of the sample to read (default 3)")
    parser.add_argument("--scan-dpi", type=int, default=200, help="the scanner's resolution (default 200)")
    parser.add_argument("--ocr-dpi", type=int, default=ocr.DPI, help=f"the resolution pages are rendered at for OCR (default {ocr.DPI})")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {', '.join(ENGINES)}")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    unknown = set(args.engines.split(",")) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engine {', '.join(sorted(unknown))}; use some of: {', '.join(ENGINES)}")
    results = compare(args.engines.split(","), pages=args.pages, scan_dpi=args.scan_dpi, ocr_dpi=args.ocr_dpi)
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
