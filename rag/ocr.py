"""Text out of a picture of a page: OCR for the PDF pages that have no text layer (a scan, a fax).

The engine is Tesseract 5, Debian's `tesseract-ocr` and `tesseract-ocr-eng` packages (the
language data ships in the package: nothing is downloaded). It was chosen over RapidOCR
(PP-OCRv4 in ONNX, whose models ship in its wheel) by `python -m eval.ocr_compare` (docs/ocr.md):
on rendered, blurred and noisy pages of the sample Tesseract read 99.9% of the characters right,
RapidOCR under 51%, gluing the words of a line together ("MondoMilitaryUpdatedon2024-02-12")
and missing lines.

The program is run directly, a page image piped in and the text read back: a Python binding
(pytesseract) does the same through temporary files, and could not give the program its own
environment. That environment matters: Tesseract's OpenMP threads spin while they wait, and on
a busy 2-core machine one page took 44 s with them and 11 s with one thread (OMP_THREAD_LIMIT=1,
measured on the same page back to back); setting the limit in this process instead would also
limit torch's threads.

A PDF is read once: `OcrCache` keeps each PDF's OCR text in the index folder, under the PDF's
content hash, so re-indexing an unchanged scan (or re-indexing it with another model) runs no
OCR at all.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import DocumentError

if TYPE_CHECKING:
    from PIL import Image

PROGRAM = "tesseract"
# What to install, named by every message about a missing engine.
INSTALL = "Debian, Ubuntu: apt-get install tesseract-ocr tesseract-ocr-eng; macOS: brew install tesseract"
# Pages are rendered at 300 dpi, the resolution Tesseract's documentation recommends ("accuracy
# drops off below 10pt x 300dpi, rapidly below 8pt x 300dpi"). On 11-point type 200 dpi read as
# well and 1.5x faster (`python -m eval.ocr_compare --ocr-dpi 200`, docs/ocr.md), but an 8-point
# footnote at 200 dpi is as small as 5-point print at 300.
DPI = 300
# Tesseract's language: English (tesseract-ocr-eng; another installed one can be added: "eng+deu").
LANGUAGE = "eng"
# The OCR text is kept by PDF hash and these settings: a change of resolution or language reads
# the pages again.
SETTINGS = f"tesseract-{LANGUAGE}-{DPI}dpi"
# The folder of an index that keeps the OCR text of its scanned PDFs.
CACHE_FOLDER = "ocr"
# The longest one page may take. An A4 page took 10-25 s on a 2-core machine shared with other
# work (load average 17-20; docs/ocr.md); a program still running after this is stuck, and the
# file is refused rather than the build hung.
PAGE_TIMEOUT_SECONDS = 600


def engine_missing() -> str | None:
    """Why OCR cannot run here (one line naming what to install), or None when it can.
    Asked once per scanned PDF: it runs `tesseract --list-langs` (a few milliseconds)."""
    program = shutil.which(PROGRAM)
    if program is None:
        return f"Tesseract is not installed ({INSTALL})"
    try:
        listed = subprocess.run([program, "--list-langs"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        return f"Tesseract does not run ({type(error).__name__}); reinstall it ({INSTALL})"
    if LANGUAGE not in listed.stdout.split():
        return f"Tesseract has no {LANGUAGE!r} language data (apt-get install tesseract-ocr-{LANGUAGE})"
    return None


def read_image(image: "Image.Image") -> str:
    """The text Tesseract reads in a page image: lines separated by "\\n", blocks by a blank line.

    Raises:
        DocumentError: Tesseract is not installed, or fails on the image.
    """
    png = io.BytesIO()
    image.save(png, format="PNG")
    command = [PROGRAM, "stdin", "stdout", "-l", LANGUAGE]
    environment = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # see the module docstring
    try:
        done = subprocess.run(command, input=png.getvalue(), capture_output=True, env=environment, timeout=PAGE_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise DocumentError(f"Tesseract is not installed ({INSTALL})") from None
    except (OSError, subprocess.SubprocessError) as error:
        raise DocumentError(f"OCR failed ({type(error).__name__}: {error})") from None
    if done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[-200:]
        raise DocumentError(f"OCR failed (tesseract exited with {done.returncode}: {said})")
    # Tesseract ends a page with a form feed; one inside would split the text oddly.
    return done.stdout.decode("utf-8", "replace").replace("\f", "\n").strip()


# The most pixels a page is rendered with: an A2 page at 300 dpi (4,961 x 7,016). A PDF page may
# be 200 inches square, which at 300 dpi would be a 3.6-gigapixel picture; a larger page is
# rendered at the resolution that fits.
MAX_PIXELS = 35_000_000


def page_scale(page, scale: float) -> float:
    """`scale` (pixels per PDF point) for a pypdfium2 page, or less for a page that would need more
    than MAX_PIXELS: what every rendering of a page (OCR, the source viewer) is drawn at."""
    width, height = page.get_size()  # in points, 72 to the inch
    return min(scale, (MAX_PIXELS / max(1.0, width * height)) ** 0.5)


def render(page, *, dpi: int = DPI) -> "Image.Image":
    """A pypdfium2 page as a grayscale picture at `dpi`, or less for a page larger than A2 (see
    MAX_PIXELS). Call while holding rag.formats' PDFium lock."""
    return page.render(scale=page_scale(page, dpi / 72), grayscale=True).to_pil()


@dataclass(frozen=True)
class OcrCache:
    """The OCR text of each scanned PDF an index holds, by the PDF's content hash: one JSON file
    per PDF in `folder` ({"settings": SETTINGS, "pages": {"3": text, ...}})."""

    folder: Path

    @classmethod
    def of_index(cls, index_dir: Path) -> "OcrCache":
        return cls(Path(index_dir) / CACHE_FOLDER)

    def pages(self, raw: bytes) -> dict[int, str]:
        """The OCR text kept for this PDF's pages (1-based numbers); empty when none is kept."""
        try:
            with open(self._path(raw), encoding="utf-8") as handle:
                kept = json.load(handle)
        except (OSError, ValueError):  # none kept, or a file damaged by a crash: read the pages again
            return {}
        if not isinstance(kept, dict) or kept.get("settings") != SETTINGS or not isinstance(kept.get("pages"), dict):
            return {}
        return {int(number): text for number, text in kept["pages"].items() if isinstance(text, str)}

    def keep(self, raw: bytes, pages: dict[int, str]) -> None:
        """Remember this PDF's OCR text (written whole, then renamed: never a half-written file).
        A folder that cannot be written (read-only, full) keeps nothing: the pages are read again
        next time, and this build goes on."""
        content = json.dumps({"settings": SETTINGS, "pages": {str(n): t for n, t in sorted(pages.items())}}, ensure_ascii=False)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(content)
            os.replace(temporary, self._path(raw))
        except OSError:
            pass

    def forget_all_but(self, sha256s: set[str]) -> None:
        """Delete the OCR text of PDFs the index no longer holds (and leftovers of interrupted writes)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.stem not in sha256s:
                path.unlink(missing_ok=True)

    def _path(self, raw: bytes) -> Path:
        # Named by the same hash the manifest records for the source (rag.documents.read_document).
        return self.folder / f"{hashlib.sha256(raw).hexdigest()}.json"


def page_bar(total: int, name: str):
    """The progress bar of one PDF's OCR, a page at a time, drawn like the embedding's (tqdm on stderr)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=" pages", desc=f"OCR {Path(name).name}", file=sys.stderr, dynamic_ncols=True)


@dataclass(frozen=True)
class OcrOptions:
    """How rag.formats.pdf reads the pages of a PDF that have no text layer."""

    cache: OcrCache | None = None  # keeps the text read, by the PDF's hash (an index's ocr/ folder); None keeps none
    progress: bool = False  # draw a bar on stderr, a page at a time, while OCR runs


def read_scanned(
    raw: bytes, numbers: list[int], render_page: Callable[[int], "Image.Image"], *, name: str, options: OcrOptions
) -> dict[int, str]:
    """The OCR text of a PDF's pages `numbers` (1-based), from `options.cache` where it is kept,
    else read from the picture `render_page(number)` gives; only the kept ones when Tesseract is
    not installed (the caller says so). What was read is kept, even when the reading is interrupted.

    Raises:
        DocumentError: Tesseract fails on a page.
    """
    kept = options.cache.pages(raw) if options.cache else {}
    found = {number: kept[number] for number in numbers if number in kept}
    unread = [number for number in numbers if number not in found]
    if not unread or engine_missing():
        return found
    cached = len(found)
    bar = page_bar(len(unread), name) if options.progress else None
    try:
        for number in unread:
            found[number] = read_image(render_page(number))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if options.cache is not None and len(found) > cached:
            options.cache.keep(raw, found)
    return found
