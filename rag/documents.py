"""Reading documents: files and folders → `Document`s of text, refusing what holds no text."""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from . import formats
from .errors import DocumentError
from .ocr import OcrOptions
from .settings import FORMAT_NAMES, FORMATS, MAX_FILE_BYTES, OWN_TEXT_FORMATS, SUPPORTED_EXTENSIONS
from .types import Document

# Bytes sniffed to tell text from binary.
_SNIFF_BYTES = 8192
# Encodings preferred when the detector finds them about as likely as its first choice.
_PREFERRED = ("cp1252", "latin_1", "iso8859_15")


@dataclass
class Collected:
    """The result of walking the user's paths: what can be read, and what was skipped and why."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def collect(
    paths: Iterable[str | os.PathLike],
    *,
    max_bytes: int = MAX_FILE_BYTES,
    read_as: str | Mapping[str, str] | None = None,
    ocr: OcrOptions = OcrOptions(),
) -> Collected:
    """Read every supported file under `paths`.

    A path the user named explicitly must be readable: a problem with it raises `DocumentError`.
    A file found inside a folder that cannot be read is skipped and reported in `skipped`, so one
    bad file never stops the rest of the folder from being indexed. A file with the same content
    as one read before it (a copy) is skipped too, so its passages are not indexed twice.
    A file without an extension is read as plain text if its content is text.

    Args:
        read_as: read the named files as this format whatever their extension ("text", …; see
            rag.settings.FORMAT_NAMES), or a {resolved path: format} mapping for some of them.
            Files inside named folders are read by their extension.
        ocr: how the pages of a PDF without a text layer are read (rag.ocr).

    Raises:
        DocumentError: a named path is missing, unsupported, empty, binary or undecodable, or
            `read_as` names an unknown format.
    """
    for name in ([read_as] if isinstance(read_as, str) else (read_as or {}).values()):
        if name not in FORMAT_NAMES:
            raise DocumentError(f"unknown format {name!r} to read files as; use one of: {', '.join(FORMAT_NAMES)}")
    result = Collected()
    seen: set[str] = set()
    first_with: dict[str, str] = {}  # content sha256 → the source first read with it
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DocumentError(f"{raw}: no such file or folder; check the path")
        if path.is_dir():
            for file in walk(path, skipped=result.skipped):
                try:
                    key = str(file.resolve(strict=True))
                except (OSError, RuntimeError):  # a dangling link or a loop of links
                    result.skipped.append((str(file), f"{file}: a broken or looping symbolic link; skipped"))
                    continue
                if key in seen:
                    continue
                seen.add(key)
                try:
                    _add(result, read_document(file, max_bytes=max_bytes, ocr=ocr), first_with)
                except DocumentError as error:
                    result.skipped.append((str(file), str(error)))
        else:
            key = str(path.resolve())
            file_format = read_as if isinstance(read_as, str) else (read_as or {}).get(key)
            if file_format is None and path.suffix and path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                raise DocumentError(
                    f"{raw}: unsupported file type {path.suffix!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)} "
                    "and text files without an extension; `rag index --as text PATH` reads any file as text"
                )
            if key not in seen:
                seen.add(key)
                _add(result, read_document(path, max_bytes=max_bytes, file_format=file_format, ocr=ocr), first_with)
    return result


def _add(result: Collected, document: Document, first_with: dict[str, str]) -> None:
    """Keep `document` unless a file with the same content was kept before it."""
    first = first_with.setdefault(document.sha256, document.source)
    if first == document.source:
        result.documents.append(document)
    else:
        result.skipped.append(
            (document.source, f"{document.source}: a duplicate of {first} (same content); indexed once")
        )


def walk(folder: Path, *, skipped: list[tuple[str, str]]) -> Iterable[Path]:
    """Supported files below `folder`, in a stable order, skipping hidden entries. A file without
    an extension is included when its first bytes are text (a program or an image is not).

    Symlinked folders are not followed, so a symlink loop cannot recurse forever. A folder that
    cannot be listed (no permission, a path longer than the system allows) goes to `skipped`.
    """

    def unlistable(error: OSError) -> None:
        where = str(error.filename)
        shown = where if len(where) <= 200 else f"{where[:60]}…{where[-120:]}"  # one readable line
        skipped.append((where, f"{shown}: cannot list this folder ({error.strerror}); its files are skipped"))

    for root, dirs, files in os.walk(folder, followlinks=False, onerror=unlistable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in SUPPORTED_EXTENSIONS or (not suffix and _looks_like_text(Path(root) / name)):
                yield Path(root) / name


def _looks_like_text(path: Path) -> bool:
    """Whether a file's first bytes are text, as `decode` judges them: no NUL byte (except in
    UTF-16, which starts with its byte-order mark). A file that cannot be read is not text."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return bool(head.strip()) and (b"\x00" not in head or head.startswith((b"\xff\xfe", b"\xfe\xff")))


def read_document(
    path: Path, *, max_bytes: int = MAX_FILE_BYTES, file_format: str | None = None, ocr: OcrOptions = OcrOptions()
) -> Document:
    """Read one file as text: decoded (plain text, Markdown) or extracted (PDF, HTML, Word).

    Its format is `file_format` if given, else its extension's; a file without a known
    extension is read as plain text.

    Raises:
        DocumentError: the file is unreadable, empty, too large, binary or undecodable, or
            (PDF, HTML, Word) unreadable as its format or without text: a PDF with no text
            layer and no OCR says so, naming what to install.
    """
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a named pipe or a device could block forever
            raise DocumentError(f"{path}: not a regular file (a pipe, socket or device); only files can be indexed")
        size = info.st_size
        if size > max_bytes:  # refused from its size alone: a huge file is never read into memory
            raise DocumentError(
                f"{path}: {size / 2**20:.0f} MB is over the {max_bytes / 2**20:.0f} MB limit; "
                "split the file, or raise the limit with `rag index --max-file-mb N`"
            )
        raw = path.read_bytes()
    except OSError as error:
        raise DocumentError(f"{path}: cannot read ({error.strerror}); check its permissions") from None
    file_format = file_format or FORMATS.get(path.suffix.lower(), "text")  # `collect` checked the extension
    encoding = None
    if file_format == "pdf":
        extracted = formats.pdf(raw, name=str(path), ocr=ocr)
    elif file_format == "docx":
        extracted = formats.docx(raw, name=str(path))
    else:
        text, encoding = decode(raw, name=str(path))
        if file_format == "html":
            extracted = formats.html(text)
        elif file_format == "markdown":
            extracted = formats.markdown(text)
        else:
            extracted = formats.Extracted(text)
    if not extracted.text.strip():
        what = "the file is empty" if file_format in OWN_TEXT_FORMATS or not raw.strip() else "the file has no text"
        raise DocumentError(f"{path}: {what}; add text or leave it out")
    return Document(
        source=str(path.resolve()),
        text=extracted.text,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        encoding=encoding,
        format=file_format,
        marks=extracted.marks,
    )


def decode(raw: bytes, *, name: str) -> tuple[str, str]:
    """Decode bytes as UTF-8, or as a confidently detected encoding; refuse binary data.

    Newlines are kept as they are, so offsets match the file read with
    `open(path, encoding=..., newline="")`.
    """
    head = raw[:_SNIFF_BYTES]
    has_bom16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if b"\x00" in head and not has_bom16:
        raise DocumentError(f"{name}: looks like a binary file (NUL bytes); only text files can be indexed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if "\x00" in text:  # a NUL past the sniffed head: binary all the same
            raise DocumentError(f"{name}: looks like a binary file (NUL bytes); only text files can be indexed")
        return text, "utf-8"
    from charset_normalizer import from_bytes  # lazy: only needed for non-UTF-8 files

    matches = from_bytes(raw)
    best = matches.best()
    # Short Western text is often as plausible in cp1250 as in cp1252; the Western code page is
    # far more common, so it wins when the detector finds it about as plausible.
    for match in matches:
        if best is not None and match.encoding in _PREFERRED and match.chaos <= best.chaos + 0.05:
            best = match
            break
    if best is None or best.encoding is None or (best.chaos > 0.2 and not has_bom16):
        raise DocumentError(
            f"{name}: not UTF-8 and its encoding could not be detected; "
            "convert it to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)"
        )
    text = raw.decode(best.encoding)
    if "\x00" in text:
        raise DocumentError(f"{name}: looks like a binary file (NUL bytes); only text files can be indexed")
    return text, best.encoding
