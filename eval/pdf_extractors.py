"""Which library reads a PDF's text layer best: speed and quality on a folder of real PDFs.

    python -m eval.pdf_extractors FOLDER [--out eval/out/pdf-extractors.json] [--extractors pypdfium2,pypdf]

For every PDF in FOLDER and every extractor installed (pypdf, pypdfium2, pdfplumber), it times
reading every page's text (a quick read is timed twice and the best kept, so the first run's
imports and caches do not count)
and scores the text without any ground truth:

- unknown: the share of lower-case words (3+ letters) not in the system word list
  (/usr/share/dict/words, Debian's `wamerican`). Words glued together ("alltherest") or torn
  apart ("trea ty"), broken ligatures and garbage all raise it; the technical words every
  extractor reads alike add the same to each, so only the differences matter.
- glued: words of 25+ letters per 1,000 words (two or more words run together).

Then it counts, in PDFium's text and in the text rag.formats.pdf stores from it, the words
hyphenated at a line end and the table-of-contents leader lines, and the lines each holds (the
difference: running heads, page numbers, contents and index pages dropped, split words joined).
The figures are the ones quoted beside the choice in rag/formats.py.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

WORD_LIST = Path("/usr/share/dict/words")
# A word this long is almost always two or more words run together (the longest common English
# words, "internationalization" and the like, are 20 letters).
GLUED_LETTERS = 25


def read_pypdf(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(path).pages]


def read_pypdfium2(path: Path) -> list[str]:
    import pypdfium2

    document = pypdfium2.PdfDocument(path)
    try:
        pages = []
        for page in document:
            # PDFium joins a word hyphenated at a line end and marks the hyphen U+FFFE.
            text = page.get_textpage().get_text_range()
            pages.append(text.replace("\r\n", "\n").replace("\ufffe", ""))
        return pages
    finally:
        document.close()


def read_pdfplumber(path: Path) -> list[str]:
    import pdfplumber

    with pdfplumber.open(path) as document:
        return [page.extract_text() or "" for page in document.pages]


EXTRACTORS = {"pypdf": read_pypdf, "pypdfium2": read_pypdfium2, "pdfplumber": read_pdfplumber}


def available() -> dict:
    import importlib.util

    return {name: read for name, read in EXTRACTORS.items() if importlib.util.find_spec(name)}


def quality(pages: list[str], vocabulary: set[str]) -> dict:
    words = re.findall(r"[A-Za-z]+", "\n".join(pages))
    lower = [w for w in words if w.islower() and len(w) >= 3]
    unknown = sum(1 for w in lower if w not in vocabulary)
    glued = sum(1 for w in words if len(w) >= GLUED_LETTERS)
    return {
        "words": len(words),
        "unknown": round(unknown / max(len(lower), 1), 4),
        "glued_per_1000": round(1000 * glued / max(len(words), 1), 2),
    }


# A read faster than this is timed again and the best kept (the first pays for imports and caches).
RETIME_BELOW_SECONDS = 5.0


def timed(read, path: Path) -> tuple[list[str], float]:
    started = time.perf_counter()
    pages = read(path)
    best = time.perf_counter() - started
    if best < RETIME_BELOW_SECONDS:
        started = time.perf_counter()
        pages = read(path)
        best = min(best, time.perf_counter() - started)
    return pages, best


_HYPHENATED = re.compile(r"[^\W\d_]-\n[a-z]")  # "manip-" at a line end, "ulation" on the next
_LEADER_LINE = re.compile(r"(?:\.\s?){4,}\s*\w{1,8}$")  # "19 some_function . . . . 23"


def leftovers(path: Path) -> dict:
    """Line-end hyphenations and dot-leader lines in the text PDFium gives (its hyphen marks put
    back as line ends) and in the text rag.formats.pdf stores; lines it dropped in all."""
    import pypdfium2

    from .internals import pdf

    document = pypdfium2.PdfDocument(path)
    raw = "\n".join(
        page.get_textpage().get_text_range().replace("\r\n", "\n").replace("\ufffe", "-\n") for page in document
    )
    document.close()
    stored = pdf(path.read_bytes(), name=path.name).text

    def lines(text: str) -> list[str]:
        return [line.strip() for line in text.split("\n") if line.strip()]

    return {
        **reference_shares(path),
        "hyphenated_before": len(_HYPHENATED.findall(raw)),
        "hyphenated_after": len(_HYPHENATED.findall(stored)),
        "leaders_before": sum(1 for line in lines(raw) if _LEADER_LINE.search(line)),
        "leaders_after": sum(1 for line in lines(stored) if _LEADER_LINE.search(line)),
        "lines_before": len(lines(raw)),
        "lines_after": len(lines(stored)),
    }


def reference_shares(path: Path) -> dict:
    """How rag.pdftext tells contents and index pages from the body: the share of a page's lines
    that end in a page label, lowest on the pages it drops, highest on the pages it keeps."""
    import pypdfium2

    from .internals import clean_pdf_text as _clean
    from .internals import pdftext

    document = pypdfium2.PdfDocument(path)
    pages = [
        pdftext.Page(i + 1, document.get_page_label(i) or str(i + 1),
                     _clean(document[i].get_textpage().get_text_range().replace("\ufffe", "-\n")))
        for i in range(len(document))
    ]
    document.close()
    lines = [[line for line in (" ".join(x.split()) for x in page.text.split("\n")) if line] for page in pages]
    pdftext._drop_furniture(pages, lines)
    labels = {page.label.lower() for page in pages} | {str(page.number) for page in pages}
    dropped: list[float] = []
    kept: list[float] = []
    for page_lines in filter(None, lines):
        ending = sum(re.split(r"[-–]", re.split(r"[\s,]+", x.rstrip(" ."))[-1].lower())[-1] in labels for x in page_lines)
        (dropped if pdftext._is_reference_page(page_lines, labels) else kept).append(ending / len(page_lines))
    return {
        "reference_pages": len(dropped),
        "reference_share_min": round(min(dropped), 2) if dropped else None,
        "body_share_max": round(max(kept), 2) if kept else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=Path("eval/out/pdf-extractors.json"))
    parser.add_argument("--extractors", help=f"comma-separated subset of {', '.join(EXTRACTORS)} (default: those installed)")
    args = parser.parse_args(argv)
    if not WORD_LIST.is_file():
        print(f"needs the word list {WORD_LIST}: apt-get install wamerican", file=sys.stderr)
        return 1
    vocabulary = {w.strip() for w in WORD_LIST.read_text(encoding="utf-8", errors="replace").split("\n")}
    vocabulary |= {w.lower() for w in vocabulary}
    extractors = available()
    if args.extractors:
        extractors = {name: read for name, read in extractors.items() if name in args.extractors.split(",")}
    files = sorted(args.folder.glob("*.pdf"))
    rows = []
    for path in files:
        row: dict = {"file": path.name}
        for name, read in extractors.items():
            try:
                pages, seconds = timed(read, path)
            except Exception as error:  # noqa: BLE001 - a library that fails on a file is a result too
                row[name] = {"error": f"{type(error).__name__}: {error}"}
                continue
            row[name] = {"pages": len(pages), "seconds": round(seconds, 3), **quality(pages, vocabulary)}
        row["rag"] = leftovers(path)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for name in extractors:
        ok = [r[name] for r in rows if "error" not in r[name]]
        pages = sum(r["pages"] for r in ok)
        summary[name] = {
            "files_read": len(ok),
            "pages": pages,
            "pages_per_second": round(pages / max(sum(r["seconds"] for r in ok), 1e-9), 1),
            "median_unknown": round(statistics.median(r["unknown"] for r in ok), 4) if ok else None,
            "median_glued_per_1000": round(statistics.median(r["glued_per_1000"] for r in ok), 2) if ok else None,
        }
    counts = [key for key in (rows[0]["rag"] if rows else {}) if "share" not in key]
    summary["rag_cleaning"] = {key: sum(r["rag"][key] for r in rows) for key in counts}
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"files": rows, "summary": summary}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
