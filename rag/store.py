"""The index on disk: a FAISS index, a BM25 index and the passages, committed by a manifest.

Layout of an index folder (every name but the manifest carries a generation tag):

    manifest.json               format version, model, chunking, sources with hashes, file checksums
    passages-<gen>.utf8         the passages' texts, locations and sources, one UTF-8 blob ...
    passages-<gen>.npy          ... and one fixed-size row per passage, in the order of the vectors
                                (see rag.columns: memory-mapped, a passage is made when asked for)
    vectors-<gen>.faiss         FAISS inner-product index over unit vectors: exact, or IVF for
                                large collections (see rag.vectors; the manifest records which)
    bm25-<gen>/                 BM25 postings (term frequencies) over the same passages (rag.lexical)
    texts/<sha256>.txt          the text extracted from each PDF, HTML or Word source, which its
                                passages' offsets refer to (named by the hash of that text)
    .lock                       held while writing

Writes are atomic: a new generation is written beside the old one and the manifest is replaced
in one `os.replace`, so a crash at any point leaves the previous manifest and its files intact.
Files no manifest refers to are removed on the next successful write.

An update carries the unchanged passages over from the previous generation without making them
into objects again (`Carried`): their rows and text are copied from the previous files, their
BM25 postings merged with the new passages' (rag.lexical.merge), and an IVF index keeps its
trained lists, the new vectors assigned to them (rag.vectors.update), so changing one document
of a million passages costs a few seconds where a rebuild costs minutes.

Opening checks each file's size and modification time against the manifest and hashes only a
file whose time differs, so opening costs the same at any size; a truncated file is always
caught. `verify` (`rag status --verify`) hashes every file.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import columns, lexical
from . import vectors as vector_index
from .errors import IndexCorruptError, IndexLockedError, IndexNotFoundError, IndexStaleError
from .text import Vocabulary, terms
from .types import Passage
from .version import __version__

if TYPE_CHECKING:  # heavy imports, made where they are used
    import faiss

# 2: passages carry their location (page or heading); sources their format and extracted text.
# 3: PDF text cleaned of headers, footers, contents pages and line-end hyphens (rag.pdftext);
#    locations name printed page labels, the paragraph under a heading, a plain text's lines;
#    sources record when they were indexed.
# 4: passages as columns (rag.columns) instead of JSON Lines, BM25 as term-frequency arrays
#    (rag.lexical) instead of bm25s's scores: opening parses nothing, an update merges.
# 5: an IVF index stores fp16 vectors (IndexIVFScalarQuantizer) instead of float32 (rag.vectors).
# An index of an earlier format is rebuilt by `rag index` (and by the default index on first
# use); opening it says so.
FORMAT_VERSION = 5
MANIFEST = "manifest.json"
TEXTS = "texts"  # the folder of extracted texts
LOCK = ".lock"
# How long a writer waits for another writer of the same index before giving up.
LOCK_TIMEOUT_SECONDS = 600


@dataclass
class SourceRecord:
    """What the manifest remembers of one source, to tell whether it changed."""

    sha256: str
    size: int
    mtime_ns: int
    encoding: str | None  # None for a format whose text is extracted rather than decoded
    passages: int
    format: str = "text"  # see rag.settings.FORMATS
    text: str | None = None  # the stored extracted text (`text_name`); None: the file itself is the text
    indexed_at: str | None = None  # when its passages were made (ISO 8601, local time with offset)


@dataclass
class IndexData:
    """An index loaded in memory."""

    manifest: dict
    passages: Sequence[Passage]  # a rag.columns.PassageTable when read from disk
    faiss_index: faiss.Index
    bm25: lexical.Bm25Index

    @property
    def sources(self) -> dict[str, SourceRecord]:
        return {path: SourceRecord(**record) for path, record in self.manifest["sources"].items()}

    @functools.cached_property
    def vocabulary(self) -> Vocabulary:
        """The stemmed terms BM25 indexed, for matching question words."""
        return Vocabulary(t for t in self.bm25.terms if t)

    def vectors(self) -> np.ndarray:
        """All passage vectors, in passage order (read back from the FAISS index)."""
        return vector_index.all_vectors(self.faiss_index)


def lock(index_dir: Path, *, timeout: float = LOCK_TIMEOUT_SECONDS):
    """A file lock on the index folder; two writers never interleave."""
    from filelock import FileLock, Timeout

    index_dir.mkdir(parents=True, exist_ok=True)
    file_lock = FileLock(str(index_dir / LOCK), timeout=timeout)

    class _Guard:
        def __enter__(self):
            try:
                file_lock.acquire()
            except Timeout:
                raise IndexLockedError(
                    f"{index_dir} is being written by another process; wait for it to finish"
                ) from None
            return self

        def __exit__(self, *exc):
            file_lock.release()

    return _Guard()


def exists(index_dir: Path) -> bool:
    return (index_dir / MANIFEST).is_file()


def read_manifest(index_dir: Path, *, any_format: bool = False) -> dict:
    """The manifest, checked for damage and (unless `any_format`) for this version's format.

    `any_format` is for reading what an older index recorded (its sources) in order to rebuild it.
    """
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(f"no index at {index_dir}; create it with `rag index PATH --index {index_dir}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for key in ("files", "sources", "model", "dimension", "checksums", "counts"):
            manifest[key]  # noqa: B018 - a missing key is damage
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexCorruptError(_corrupt(index_dir, f"manifest.json is unreadable ({error})")) from None
    if not any_format and manifest.get("format_version") != FORMAT_VERSION:
        raise IndexStaleError(
            f"{index_dir} has index format {manifest.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}; rebuild it with `rag index PATH --index {index_dir}`"
        )
    return manifest


def load(index_dir: Path) -> IndexData:
    """Open an index, checking its files against the manifest; the vectors are memory-mapped.

    A file of the wrong size is damage; a file whose modification time differs from the one
    recorded is hashed and must match its checksum. A same-size alteration that also kept the
    time is found by `verify` (`rag status --verify`), which hashes everything.

    Raises:
        IndexNotFoundError, IndexCorruptError, IndexStaleError
    """
    manifest = read_manifest(index_dir)
    _check_files(index_dir, manifest, full=False)
    files = manifest["files"]
    try:
        passages = columns.read(index_dir / _stem(files["passages"]))
        spec = vector_index.VectorIndexSpec.from_manifest(manifest)
        faiss_index = vector_index.read(index_dir / files["vectors"], spec)
        bm25 = lexical.load(index_dir / files["bm25"])
    except Exception as error:  # any failure to parse a verified file is damage we cannot repair
        raise IndexCorruptError(_corrupt(index_dir, f"cannot read it ({type(error).__name__}: {error})")) from None
    if not faiss_index.ntotal == len(passages) == bm25.n:
        raise IndexCorruptError(_corrupt(index_dir, "the vectors, passages and BM25 disagree in number"))
    return IndexData(manifest=manifest, passages=passages, faiss_index=faiss_index, bm25=bm25)


def verify(index_dir: Path) -> int:
    """Hash every file of an index and compare it with the manifest's checksum.

    Returns:
        The number of files verified.

    Raises:
        IndexNotFoundError, IndexCorruptError, IndexStaleError
    """
    manifest = read_manifest(index_dir)
    _check_files(index_dir, manifest, full=True)
    return len(manifest["checksums"])


def _check_files(index_dir: Path, manifest: dict, *, full: bool) -> None:
    """Every file the manifest lists exists with its recorded size; hashed if `full` or its time changed."""
    stats = manifest.get("file_stats", {})  # absent in indexes written before it: hash everything
    for name, expected in manifest["checksums"].items():
        path = index_dir / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise IndexCorruptError(_corrupt(index_dir, f"{name} is missing")) from None
        recorded = stats.get(name)
        if recorded and stat.st_size != recorded["size"]:
            raise IndexCorruptError(_corrupt(
                index_dir, f"{name} has {stat.st_size:,} bytes where {recorded['size']:,} were written"))
        if full or not recorded or stat.st_mtime_ns != recorded["mtime_ns"]:
            if file_sha256(path) != expected:
                raise IndexCorruptError(_corrupt(index_dir, f"{name} does not match its checksum"))


@dataclass(frozen=True)
class Carried:
    """The rows of the previous generation that an update keeps as they are."""

    previous: IndexData
    # For each row of the new index, its row in `previous`, or -1 for a new passage (given to
    # `write`, in order). Rows of one source stay together, in document order.
    rows: np.ndarray


def write(
    index_dir: Path,
    *,
    passages: Sequence[Passage],
    vectors: np.ndarray,
    passage_terms: Sequence[Sequence[str]] | None = None,
    sources: dict[str, SourceRecord],
    settings: dict,
    previous: dict | None,
    texts: dict[str, str] | None = None,
    carried: Carried | None = None,
) -> IndexData:
    """Write a new generation and commit it by replacing the manifest. Call while holding `lock`.

    Args:
        passages, vectors: the passages and their unit vectors: all of them, or with `carried`
            only the new ones (its rows of -1, in order).
        passage_terms: each of `passages`' BM25 terms (default: `rag.text.terms` of its text).
        texts: maps `text_name(text)` to the text, for every source whose record names one; a
            text already on disk from an earlier generation is not written again (its name is its hash).
        carried: the previous generation's rows kept unchanged: they are copied from its files
            rather than given again (see the module docstring).

    Returns:
        The index just written, as `load` would read it.
    """
    if passage_terms is None:
        passage_terms = [terms(p.text) for p in passages]
    assert len(passages) == len(vectors) == len(passage_terms)
    generation = (previous or {}).get("generation", 0) + 1
    tag = f"{generation:06d}-{secrets.token_hex(3)}"
    files = {
        "passages": f"passages-{tag}{columns.BLOB_SUFFIX}",
        "passage_rows": f"passages-{tag}{columns.ROWS_SUFFIX}",
        "vectors": f"vectors-{tag}.faiss",
        "bm25": f"bm25-{tag}",
    }
    stages: dict[str, float] = {}  # seconds per step, kept in the manifest as build metadata
    clock = time.perf_counter()
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(passages), settings["dimension"])
    if carried is None:
        count = len(passages)
        columns.write(passages, index_dir / f"passages-{tag}")
    else:
        count = len(carried.rows)
        assert int(np.sum(carried.rows < 0)) == len(passages)
        columns.write_carried(carried.previous.passages, carried.rows, passages, index_dir / f"passages-{tag}")
    stages["passages"], clock = time.perf_counter() - clock, time.perf_counter()
    built = None
    if carried is not None:
        built = vector_index.update(carried.previous.faiss_index,
                                    vector_index.VectorIndexSpec.from_manifest(carried.previous.manifest),
                                    carried.rows, vectors)
    if built is None:
        built = vector_index.build(_all_vectors(vectors, carried))
    faiss_index, spec = built
    vector_index.write(faiss_index, index_dir / files["vectors"])
    stages["vectors"], clock = time.perf_counter() - clock, time.perf_counter()
    if carried is None:
        bm25 = lexical.build(passage_terms)
    else:
        old_to_new = np.full(len(carried.previous.passages), -1, dtype=np.int64)
        kept = np.nonzero(carried.rows >= 0)[0]
        old_to_new[carried.rows[kept]] = kept
        bm25 = lexical.merge(carried.previous.bm25, old_to_new, passage_terms, np.nonzero(carried.rows < 0)[0], count)
    bm25_files = lexical.save(bm25, index_dir / files["bm25"])
    stages["bm25"], clock = time.perf_counter() - clock, time.perf_counter()

    checksums = {files[name]: file_sha256(index_dir / files[name]) for name in ("passages", "passage_rows", "vectors")}
    for path in sorted(bm25_files):
        checksums[f"{files['bm25']}/{path.name}"] = file_sha256(path)
    for name in sorted({r.text for r in sources.values() if r.text}):
        checksums[name] = _write_text(index_dir, name, (texts or {}).get(name))
    for name in checksums:
        _fsync_path(index_dir / name)
    # What `load` compares instead of hashing: stat after fsync, so nothing changes them later.
    file_stats = {}
    for name in checksums:
        stat = (index_dir / name).stat()
        file_stats[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stages["checksums"] = time.perf_counter() - clock

    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        **settings,
        "index_type": spec.kind,
        "vector_index": spec.to_dict(),
        "generation": generation,
        "created_at": (previous or {}).get("created_at", now),
        "updated_at": now,
        "counts": {"sources": len(sources), "passages": count},
        "sources": {path: asdict(record) for path, record in sorted(sources.items())},
        "files": files,
        "checksums": checksums,
        "file_stats": file_stats,
        "build_seconds": {stage: round(value, 3) for stage, value in stages.items()},
    }
    temporary = index_dir / f"{MANIFEST}.{tag}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, ensure_ascii=False)
        _sync(handle)
    os.replace(temporary, index_dir / MANIFEST)  # the commit point
    _fsync_path(index_dir)
    remove_unreferenced(index_dir, manifest)
    table = columns.read(index_dir / _stem(files["passages"]))
    return IndexData(manifest=manifest, passages=table, faiss_index=faiss_index, bm25=bm25)


def _all_vectors(new: np.ndarray, carried: Carried | None) -> np.ndarray:
    """Every vector of the new index, in row order: the new ones, and the carried ones read back."""
    if carried is None:
        return new
    out = np.empty((len(carried.rows), new.shape[1]), dtype=np.float32)
    fresh = carried.rows < 0
    out[fresh] = new
    if (~fresh).any():
        out[~fresh] = carried.previous.vectors()[carried.rows[~fresh]]
    return out


def _stem(name: str) -> str:
    """The name of an index's passage files without their suffix."""
    return name.removesuffix(columns.BLOB_SUFFIX)


def remove_unreferenced(index_dir: Path, manifest: dict) -> None:
    """Delete earlier generations and leftovers of interrupted writes. Call while holding `lock`.

    A process killed after its commit point but before this cleanup leaves the previous
    generation behind, so it also runs when a build finds nothing to write.
    """
    keep = {MANIFEST, LOCK, *manifest["files"].values()}
    if (index_dir / TEXTS).is_dir():
        for path in (index_dir / TEXTS).iterdir():
            if f"{TEXTS}/{path.name}" not in manifest["checksums"]:
                path.unlink(missing_ok=True)
    for path in index_dir.iterdir():
        if path.name in keep:
            continue
        if path.name.startswith(("passages-", "vectors-", "bm25-", f"{MANIFEST}.")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def text_name(text: str) -> str:
    """Where the index keeps an extracted text: named by its hash, so equal texts share a file
    and a file once written never changes."""
    return f"{TEXTS}/{hashlib.sha256(text.encode('utf-8')).hexdigest()}.txt"


def read_text(index_dir: Path, name: str) -> str:
    """A stored extracted text, exactly as its passages' offsets refer to it."""
    with open(index_dir / name, encoding="utf-8", newline="") as handle:
        return handle.read()


def _write_text(index_dir: Path, name: str, text: str | None) -> str:
    """Write a stored text unless it is already there intact; return its checksum."""
    path = index_dir / name
    expected = name.removeprefix(f"{TEXTS}/").removesuffix(".txt")
    if path.is_file() and file_sha256(path) == expected:
        return expected
    assert text is not None and text_name(text) == name, f"no text given for {name}"
    path.parent.mkdir(exist_ok=True)
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(3)}.tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        _sync(handle)
    os.replace(temporary, path)
    return expected


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _corrupt(index_dir: Path, what: str) -> str:
    return (
        f"the index at {index_dir} is damaged: {what}; rebuild it with "
        f"`rag index PATH --index {index_dir}` (your documents are not affected)"
    )
