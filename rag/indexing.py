"""Incremental building: bring an index folder up to date with a set of documents, re-embedding
only new and changed sources and reusing the vectors of the unchanged ones.

`Assistant.build` is the entry point and says what was done in a `BuildReport`; `update` does the
work for one index folder, and rag.shards writes each shard of a sharded index with it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import columns, store
from .embedding import PassageEncoder, Progress
from .errors import IndexCorruptError, IndexStaleError
from .settings import OWN_TEXT_FORMATS, ChunkSettings
from .splitting import split_document
from .store import SourceRecord
from .types import Document, Passage

# The manifest settings that must match for an existing index to be extended rather than rebuilt:
# vectors of another model, passages of other chunking or terms of another tokenizer cannot be mixed.
REUSABLE_IF_EQUAL = ("model", "chunking", "normalized", "tokenizer")


@dataclass
class BuildReport:
    """What `Assistant.build` did, for the CLI's summary (`Assistant.last_build`).

    Mutable because rag.shards fills one in as it builds a sharded index.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    embedded: int = 0  # passages embedded in this build (0 when nothing changed)
    passages: int = 0
    rebuilt_because: str | None = None  # why an existing index was rebuilt from scratch
    seconds: float = 0.0
    written: bool = False


@dataclass(frozen=True)
class UpdatePlan:
    """What one index folder is to hold."""

    index_dir: Path
    documents: tuple[Document, ...]  # every source the index will hold, new, changed and unchanged
    settings: dict  # what the manifest records: model, chunking, tokenizer, roots ("dimension" is filled in)
    chunking: ChunkSettings
    previous: store.IndexData | None = None  # the index to extend; None writes one from scratch
    progress: Progress = False  # see `rag.embedding.Embedder.encode`


@dataclass(frozen=True)
class Update:
    """What `update` did: the index as it now is, and each source's fate."""

    data: store.IndexData
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    embedded: int = 0  # passages embedded (0 when nothing changed)
    written: bool = False  # False: nothing changed, the previous index is kept as it was


def previous_index(index_dir: Path, settings: dict) -> tuple[store.IndexData | None, str | None]:
    """The existing index if it can be extended; else None, and why it must be rebuilt (None when
    there is none)."""
    if not store.exists(index_dir):
        return None, None
    try:
        previous = store.load(index_dir)
    except (IndexCorruptError, IndexStaleError) as error:
        return None, str(error).split(";")[0]
    manifest = previous.manifest
    for key in REUSABLE_IF_EQUAL:
        if manifest.get(key) != settings[key]:
            return None, f"{key} changed from {manifest.get(key)!r} to {settings[key]!r}"
    return previous, None


def update(plan: UpdatePlan, embedder: PassageEncoder) -> Update:
    """Write the index of `plan.documents` into `plan.index_dir`, reusing `plan.previous`'s vectors
    for unchanged sources. Call while holding `store.lock`.

    An unchanged index is not rewritten (`written` False): nothing is embedded, only files an
    interrupted run left behind are removed.
    """
    previous = plan.previous
    old_sources = previous.sources if previous else {}
    new_by_source = {d.source: d for d in plan.documents}
    removed = tuple(sorted(set(old_sources) - set(new_by_source)))
    added: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for document in plan.documents:
        old = old_sources.get(document.source)
        bucket = added if old is None else updated if old.sha256 != document.sha256 else unchanged
        bucket.append(document.source)
    if previous and not added and not updated and not removed:
        store.remove_unreferenced(plan.index_dir, previous.manifest)  # what an interrupted run left
        return Update(previous, unchanged=tuple(unchanged))  # nothing to write: never re-embed or rewrite an unchanged index

    # Split and embed new and changed sources, in source order; carry the rest's rows over (rag.store.Carried).
    fresh: dict[str, list[Passage]] = {
        d.source: split_document(d, plan.chunking) for d in plan.documents if d.source not in unchanged
    }
    fresh_texts = [p.text for source in sorted(fresh) for p in fresh[source]]
    fresh_vectors = embedder.encode(fresh_texts, progress=plan.progress)
    dimension = embedder.dimension if fresh_texts or not previous else previous.manifest["dimension"]
    passages, vectors, rows, sources, texts = _assemble(plan, new_by_source, fresh, fresh_vectors, dimension)
    if plan.progress is True:  # the bar has finished; a large index takes minutes more to write
        print(f"writing the index of {len(rows):,} passages (vectors, BM25, checksums)", file=sys.stderr, flush=True)
    data = store.write(
        plan.index_dir,
        passages=passages,
        vectors=vectors,
        sources=sources,
        settings={**plan.settings, "dimension": dimension},
        previous=previous.manifest if previous else None,
        texts=texts,
        carried=store.Carried(previous, rows) if previous else None,
    )
    return Update(data, tuple(added), tuple(updated), removed, tuple(unchanged), embedded=len(fresh_texts), written=True)


def _assemble(
    plan: UpdatePlan,
    new_by_source: dict[str, Document],
    fresh: dict[str, list[Passage]],
    fresh_vectors: np.ndarray,
    dimension: int,
) -> tuple[list[Passage], np.ndarray, np.ndarray, dict[str, SourceRecord], dict[str, str]]:
    """The new passages and their vectors in source order, the new index's rows (for each, its row
    in the previous index, or -1 for a new passage), each source's record, and the extracted texts
    it keeps."""
    previous = plan.previous
    old_sources = previous.sources if previous else {}
    old_rows = columns.rows_by_source(previous.passages) if previous else {}
    fresh_start = {}
    cursor = 0
    for source in sorted(fresh):
        fresh_start[source] = cursor
        cursor += len(fresh[source])
    passages: list[Passage] = []
    blocks = []
    carried = []  # per source: its rows in the previous index, or -1 for each new passage
    sources: dict[str, SourceRecord] = {}
    texts: dict[str, str] = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for source in sorted(new_by_source):
        document = new_by_source[source]
        if source in fresh:
            source_passages = fresh[source]
            start = fresh_start[source]
            blocks.append(fresh_vectors[start : start + len(source_passages)])
            passages.extend(source_passages)
            carried.append(np.full(len(source_passages), -1, dtype=np.int64))
        else:
            # Not fresh: the source is unchanged, so it is in the previous index.
            assert previous is not None
            carried.append(old_rows.get(source, np.zeros(0, dtype=np.int64)))
        # The text of a PDF, HTML or Word file is kept in the index: offsets refer to it.
        text_name = None if document.format in OWN_TEXT_FORMATS else store.text_name(document.text)
        if text_name:
            texts[text_name] = document.text
        sources[source] = SourceRecord(
            sha256=document.sha256,
            size=document.size,
            mtime_ns=Path(source).stat().st_mtime_ns,
            encoding=document.encoding,
            passages=len(carried[-1]),
            format=document.format,
            text=text_name,
            indexed_at=now if source in fresh else old_sources[source].indexed_at,
        )
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, dimension), dtype=np.float32)
    rows = np.concatenate(carried) if carried else np.zeros(0, dtype=np.int64)
    return passages, vectors, rows, sources, texts
