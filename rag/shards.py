"""Sharded indexes: S ordinary index folders under one top-level manifest, searched together.

Layout of a sharded index folder:

    manifest.json               "layout": "sharded"; the settings, every source (with the shard
                                holding it) and, per shard, its folder and its manifest's SHA-256
    shard-<i>-<gen>/            shard i: an ordinary index folder written by rag.store
    .lock                       held while writing

Each source goes to shard `sha256(source path) mod S` (Python's `hash` is salted per process,
so it would move sources between runs). A build writes a new folder for each shard whose
sources changed, leaves the other shards' folders as they are, and commits by replacing the
top-level manifest in one `os.replace`, as rag.store commits one index: a crash at any point
leaves the previous manifest and every folder it names intact. Folders no manifest names are
removed after the next successful commit.

Searching merges the shards' candidates: dense results exactly (inner products are comparable
across shards). BM25 scores each shard with its own statistics, as Elasticsearch does by
default, but that ranks one index's passages differently when a shard holds few documents: on
4 SQuAD articles in 3 shards (60 questions) the top-10 overlap with one index was 0.815, and
0.975 with corpus-wide idf (`pytest tests/test_shards.py -k squad -s` prints both).
So, like Elasticsearch's `dfs_query_then_fetch`, each shard scores with the collection's
statistics (`CORPUS_STATISTICS`): a shard stores term frequencies and passage lengths
(rag.lexical), so it scores idf * tf / (tf + k1 (1 - b + b dl/avgdl)) with the collection's idf
and average length: exactly one index's score.
With corpus idf alone the overlap was 0.975; 4 of 14 answers on 2 SQuAD articles still differed
from one index's through the fused ranking. The answerer weighs question words by the same
corpus-wide document frequencies, summed over the shards, so it sees one collection.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import columns, lexical, store
from . import vectors as vector_index
from .errors import ConfigError, IndexCorruptError, IndexStaleError, RagError
from .retrieval import Retriever
from .text import Vocabulary
from .types import Document, Passage
from .version import __version__

LAYOUT = "sharded"
# 1: the first sharded layout (shard folders written by rag.store format 3).
# 2: shard folders written by rag.store format 4 (columnar passages, BM25 postings).
# 3: shard folders written by rag.store format 5 (fp16 IVF vectors).
SHARDED_FORMAT_VERSION = 3
SHARD_PREFIX = "shard-"
# More shards than this only multiplies small files and per-question fan-out on one machine;
# at 100 million passages, 256 shards hold ~400,000 passages each (see README, Beyond one machine).
MAX_SHARDS = 256
# BM25 with the collection's idf and average passage length (True) or each shard's own (False,
# Elasticsearch's default); see the module docstring for what each reached.
CORPUS_STATISTICS = True


def lucene_idf(df: int, n: int) -> float:
    """Lucene's idf, as rag.lexical scores with it."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def shard_of(source: str, shards: int) -> int:
    """The shard a source belongs to: stable across processes and machines.

    >>> shard_of("/docs/a.txt", 4) == shard_of("/docs/a.txt", 4)
    True
    """
    return int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big") % shards


def check_shards(shards: object) -> int:
    """Validate a shard count given by a user.

    Raises:
        ConfigError: not a whole number between 1 and MAX_SHARDS.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ConfigError(f"shards must be a whole number from 1 to {MAX_SHARDS}, not {shards!r}")
    return shards


def is_sharded(index_dir: Path) -> bool:
    """Whether `index_dir` holds a sharded index (False when it holds none or a plain one)."""
    try:
        manifest = json.loads((Path(index_dir) / store.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("layout") == LAYOUT


# -- reading ------------------------------------------------------------------------------------


class CorpusStatistics:
    """Document frequencies summed over the shards, in the two attributes of `bm25s.BM25` that
    the answerer reads (`vocab_dict` and `scores["indptr"]`, whose differences are the dfs), so
    it weighs question words exactly as over one index of the same passages."""

    def __init__(self, shards: Sequence[store.IndexData]):
        df: dict[str, int] = {}
        for shard in shards:
            counts = np.diff(np.asarray(shard.bm25.scores["indptr"])).tolist()  # plain ints: fast to add
            for term, count in zip(shard.bm25.terms, counts):
                if term:
                    df[term] = df.get(term, 0) + count
        self.vocab_dict = {term: column for column, term in enumerate(df)}
        self.scores = {"indptr": np.concatenate([[0], np.cumsum(list(df.values()), dtype=np.int64)])}


@dataclass
class ShardedIndexData:
    """A sharded index loaded in memory: its shards, and the views the answerer needs of all of them."""

    manifest: dict
    shards: list[store.IndexData]

    @functools.cached_property
    def offsets(self) -> list[int]:
        """Global number of each shard's first passage: passages are numbered shard after shard."""
        starts, total = [], 0
        for shard in self.shards:
            starts.append(total)
            total += len(shard.passages)
        return starts

    @functools.cached_property
    def passages(self) -> Sequence[Passage]:
        # A source lies in one shard, its passages in document order: the answerer finds a
        # passage's neighbours in this sequence as in one index's. Made on demand, as a shard's are.
        return columns.Chain([shard.passages for shard in self.shards])

    @property
    def sources(self) -> dict[str, store.SourceRecord]:
        return {path: store.SourceRecord(**record) for path, record in self.manifest["sources"].items()}

    @functools.cached_property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(t for shard in self.shards for t in shard.bm25.vocab_dict if t)

    @functools.cached_property
    def bm25(self) -> CorpusStatistics:
        return CorpusStatistics(self.shards)

    def vectors(self) -> np.ndarray:
        return np.concatenate([shard.vectors() for shard in self.shards]) if self.shards else np.zeros((0, 0), np.float32)

    def locate(self, i: int) -> tuple[int, int]:
        """(shard number, passage number inside the shard) of global passage `i`."""
        import bisect

        shard = bisect.bisect_right(self.offsets, i) - 1
        return shard, i - self.offsets[shard]


def read_manifest(index_dir: Path) -> dict:
    """The top-level manifest of a sharded index, checked for its layout version.

    Raises:
        IndexNotFoundError, IndexCorruptError, IndexStaleError
    """
    manifest = store.read_manifest(index_dir, any_format=True)
    if manifest.get("layout") != LAYOUT or "shards" not in manifest:
        raise IndexCorruptError(store._corrupt(index_dir, "its manifest does not describe shards"))
    if manifest.get("sharded_format_version") != SHARDED_FORMAT_VERSION:
        raise IndexStaleError(
            f"{index_dir} has sharded format {manifest.get('sharded_format_version')!r}, this version reads "
            f"{SHARDED_FORMAT_VERSION}; rebuild it with `rag index PATH --index {index_dir} --shards N`"
        )
    return manifest


def load_shard(index_dir: Path, record: dict) -> store.IndexData:
    """One shard, checked against the top-level manifest (its own manifest's SHA-256) and its own files.

    Raises:
        IndexCorruptError, IndexStaleError: naming the top-level folder, which is what a user rebuilds.
    """
    folder = index_dir / record["folder"]
    try:
        if store.file_sha256(folder / store.MANIFEST) != record["manifest_sha256"]:
            raise IndexCorruptError(f"{record['folder']}/manifest.json does not match its checksum")
        return store.load(folder)
    except FileNotFoundError:
        raise IndexCorruptError(store._corrupt(index_dir, f"{record['folder']} is missing")) from None
    except RagError as error:
        reason = str(error).split(": ", 1)[-1].split("; rebuild")[0]
        raise IndexCorruptError(store._corrupt(index_dir, f"shard {record['folder']}: {reason}")) from None


def load(index_dir: Path) -> ShardedIndexData:
    """Open a sharded index: every shard is opened as `rag.store.load` opens an index.

    Raises:
        IndexNotFoundError, IndexCorruptError, IndexStaleError
    """
    manifest = read_manifest(index_dir)
    return ShardedIndexData(manifest=manifest, shards=[load_shard(index_dir, r) for r in written_shards(manifest)])


def written_shards(manifest: dict) -> list[dict]:
    """The records of the shards that hold passages: a shard no source hashes to has no folder
    (bm25s cannot index an empty corpus)."""
    return [r for r in manifest["shards"] if r["folder"] is not None]


def verify(index_dir: Path) -> int:
    """Hash every file of every shard (see `rag.store.verify`); returns the number of files."""
    manifest = read_manifest(index_dir)
    total = 0
    for record in written_shards(manifest):
        load_shard(index_dir, record)  # the shard's manifest against the top-level checksum
        total += store.verify(index_dir / record["folder"]) + 1
    return total


# -- searching ----------------------------------------------------------------------------------


class ShardSearcher:
    """Candidates from one shard: what a searcher process (or a Ray Serve replica) answers."""

    def __init__(self, data: store.IndexData):
        self.data = data

    @property
    def lengths(self) -> np.ndarray:
        """Each passage's length in BM25 terms (stored by rag.lexical)."""
        return self.data.bm25.lengths

    def candidates(
        self, query_terms: list[str], vector: np.ndarray | None, depth: int, mode: str,
        idf: dict[str, float] | None = None, average_length: float | None = None,
    ) -> dict:
        """The shard's `depth` best passages by each retriever, as local passage numbers.

        Args:
            query_terms: stemmed BM25 terms, already matched against the whole collection's vocabulary.
            vector: the question's unit embedding (None in "bm25" mode).
            idf, average_length: the collection's idf of the query terms and average passage
                length, which BM25 then scores with (see the module docstring); None scores with
                the shard's own statistics.

        Returns:
            {"dense": [(i, score)...], "lexical": [(i, score)...], "dense_of": {i: score}}, where
            "dense_of" holds the inner product of every lexical candidate, so a merged hit never
            needs a second round trip for its dense score.
        """
        n = len(self.data.passages)
        depth = min(depth, n)
        out: dict = {"dense": [], "lexical": [], "dense_of": {}}
        if not depth:
            return out
        if vector is not None and mode in ("hybrid", "dense"):
            scores, ids = vector_index.search(self.data.faiss_index, vector, depth)
            out["dense"] = [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        if mode in ("hybrid", "bm25"):
            known = [t for t in query_terms if t in self.data.bm25.vocab_dict]
            if known and idf is not None and average_length is not None:  # set together by the caller
                scores = self._collection_scores(known, idf, average_length)
            elif known:
                scores = self.data.bm25.get_scores(known)
            if known:
                out["lexical"] = [(int(i), float(scores[i])) for i in lexical.top(scores, depth)]
        if vector is not None:
            for i, _ in out["lexical"]:
                out["dense_of"][i] = float(vector_index.vector(self.data.faiss_index, i) @ vector)
        return out


    def _collection_scores(self, known: list[str], idf: dict[str, float], average_length: float) -> np.ndarray:
        """BM25 scores of every passage of this shard as one index of the whole collection gives them."""
        return self.data.bm25.get_scores(known, idf_of=idf, average_length=average_length)


# Asks every shard for its candidates: in process by default; rag.cluster.serve passes one that
# asks the shards' searcher actors at once.
FanOut = Callable[[list[str], "np.ndarray | None", int, str, "dict | None", "float | None"], list[dict]]


class ShardedRetriever(Retriever):
    """Hybrid retrieval over all shards, with `Retriever.search`'s fusion over the merged lists."""

    def __init__(self, index: ShardedIndexData, fan_out: FanOut | None = None, *, corpus_statistics: bool = CORPUS_STATISTICS):
        super().__init__(index)
        self.corpus_statistics = corpus_statistics
        self._searchers = [ShardSearcher(shard) for shard in index.shards]
        self._fan_out = fan_out or self._local
        self._dense_of: dict[int, float] = {}
        self._lexical_cache: tuple | None = None

    def _local(self, query_terms, vector, depth, mode, idf, average_length) -> list[dict]:
        return [s.candidates(query_terms, vector, depth, mode, idf, average_length) for s in self._searchers]

    @functools.cached_property
    def average_length(self) -> float:
        """The collection's average passage length in BM25 terms."""
        lengths = [s.lengths for s in self._searchers]
        return float(sum(x.sum() for x in lengths) / max(1, sum(len(x) for x in lengths)))

    def search(self, query, query_vector, *, k=10, mode="hybrid"):
        vocabulary = self.index.vocabulary
        from .text import terms

        # Terms matched against the whole vocabulary, as one index matches them: a shard alone
        # would take a near-inflection for a word only another shard holds.
        query_terms = list(dict.fromkeys(v for t in terms(query) for v in vocabulary.variants(t)))
        from .retrieval import CANDIDATES

        depth = min(CANDIDATES, len(self.index.passages))  # as Retriever.search caps it
        idf = average_length = None
        if self.corpus_statistics and mode in ("hybrid", "bm25"):
            average_length = self.average_length
            statistics, n = self.index.bm25, len(self.index.passages)
            indptr = statistics.scores["indptr"]
            found = [(t, statistics.vocab_dict[t]) for t in query_terms if t in statistics.vocab_dict]
            idf = {t: lucene_idf(int(indptr[c + 1] - indptr[c]), n) for t, c in found}
        answers = self._fan_out(query_terms, query_vector, depth, mode, idf, average_length)
        dense, lexical, dense_of = {}, {}, {}
        for offset, answer in zip(self.index.offsets, answers):
            dense.update((offset + i, s) for i, s in answer["dense"])
            lexical.update((offset + i, s) for i, s in answer["lexical"])
            dense_of.update((offset + int(i), s) for i, s in answer["dense_of"].items())
        # Ties broken by global number, so the merge never depends on which shard answered first.
        self._merged = (
            dict(sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]),
            dict(sorted(lexical.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]),
        )
        self._dense_of = {**dense_of, **dense}
        return super().search(query, query_vector, k=k, mode=mode)

    def _dense(self, query_vector, depth):
        return self._merged[0]

    def _lexical(self, query, depth):
        return self._merged[1]

    def _dense_score(self, query_vector, i):
        return self._dense_of.get(i, 0.0) if query_vector is not None else 0.0


# -- writing ------------------------------------------------------------------------------------


class _Precomputed:
    """Stands in for the embedder when a shard is written: the vectors were computed before
    (all shards' new passages at once, locally or on Ray), looked up by passage text."""

    def __init__(self, vectors: dict[str, np.ndarray], dimension: int):
        self._vectors = vectors
        self.dimension = dimension

    def encode(self, texts: list[str], *, progress=False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)


@dataclass(frozen=True)
class ShardPlan:
    """What a build does to one shard."""

    number: int
    documents: tuple[Document, ...]
    previous_folder: str | None  # the shard's folder in the previous manifest, if any
    touched: bool  # a source was added, changed or removed: the shard is rewritten


@dataclass(frozen=True)
class ShardWritten:
    """A shard folder just written, as the top-level manifest records it."""

    number: int
    folder: str | None  # None: the shard holds no source
    manifest_sha256: str | None
    report: dict  # the shard's BuildReport fields (added, updated, removed, unchanged, embedded)


def plan(documents: list[Document], previous: dict | None, shards: int) -> list[ShardPlan]:
    """Assign documents to shards and decide which shards must be rewritten."""
    by_shard: list[list[Document]] = [[] for _ in range(shards)]
    for document in sorted(documents, key=lambda d: d.source):
        by_shard[shard_of(document.source, shards)].append(document)
    old_sources = (previous or {}).get("sources", {})
    old_folders = [r["folder"] for r in previous["shards"]] if previous else [None] * shards
    plans = []
    for number, docs in enumerate(by_shard):
        old = {s: r for s, r in old_sources.items() if shard_of(s, shards) == number}
        new = {d.source: d.sha256 for d in docs}
        touched = (old_folders[number] is None and bool(docs)) or set(old) != set(new) or any(
            old[s]["sha256"] != sha for s, sha in new.items())
        plans.append(ShardPlan(number, tuple(docs), old_folders[number], touched))
    return plans


def passages_to_embed(plans: list[ShardPlan], previous_index_dir: Path | None, previous: dict | None, chunking) -> list[str]:
    """The texts of every passage a rewritten shard needs embedded: those of new or changed
    sources, in source order (the order one index embeds them in)."""
    from .splitting import split_document

    old_sources = (previous or {}).get("sources", {})
    # All shards' documents in source order, as one index embeds them: the model then sees the
    # same batches (padding included), so the vectors are bit for bit one index's.
    documents = sorted((d for shard in plans if shard.touched for d in shard.documents), key=lambda d: d.source)
    texts: list[str] = []
    for document in documents:
        old = old_sources.get(document.source)
        if old is None or old["sha256"] != document.sha256:
            texts.extend(p.text for p in split_document(document, chunking))
    return texts


def write_shard(
    index_dir: str, shard: ShardPlan, vectors: dict[str, np.ndarray], settings: dict, chunking, generation: int
) -> ShardWritten:
    """Write one shard's new folder (reusing its previous folder's vectors for unchanged sources).

    Runs in this process or as a Ray task: arguments and result are plain picklable values.
    """
    from .indexing import UpdatePlan, update

    root = Path(index_dir)
    if not shard.documents:  # every source of this shard was removed: it has no folder any more
        return ShardWritten(shard.number, None, None, {"removed": [], "embedded": 0})
    previous = store.load(root / shard.previous_folder) if shard.previous_folder else None
    folder = f"{SHARD_PREFIX}{shard.number:03d}-{generation:06d}-{secrets.token_hex(3)}"
    (root / folder).mkdir()
    embedder = _Precomputed(vectors, settings["dimension"])
    report = update(UpdatePlan(root / folder, tuple(shard.documents), settings, chunking, previous=previous), embedder)
    if not report.written:  # nothing changed after all (a touched shard always changes): keep the old
        shutil.rmtree(root / folder, ignore_errors=True)
        # Only a shard with a previous folder can be left unchanged (a new shard's sources are all added).
        assert shard.previous_folder is not None
        folder = shard.previous_folder
    fields = ("added", "updated", "removed", "unchanged", "embedded")
    return ShardWritten(shard.number, folder, store.file_sha256(root / folder / store.MANIFEST),
                        {f: getattr(report, f) for f in fields})


# Writes the rewritten shards: in this process by default; rag.cluster.ingest passes one that
# runs them as Ray tasks.
ShardWriter = Callable[[Path, list[ShardPlan], dict, dict, object, int], list[ShardWritten]]


def write_locally(index_dir, plans, vectors, settings, chunking, generation) -> list[ShardWritten]:
    return [write_shard(str(index_dir), p, vectors, settings, chunking, generation) for p in plans]


# Embeds texts, told (texts, progress): the local embedder by default; rag.cluster.ingest passes Ray Data.
Embed = Callable[[list[str], object], np.ndarray]


def build(
    index_dir: Path,
    documents: list[Document],
    *,
    shards: int | None,
    settings: dict,
    chunking,
    report,
    progress,
    embed: Embed,
    dimension: Callable[[], int],
    writer: ShardWriter = write_locally,
) -> ShardedIndexData:
    """Bring the sharded index at `index_dir` up to date with `documents`. Call while holding `store.lock`.

    Args:
        shards: the shard count; None keeps the existing index's (a new index needs one).
        settings: the settings the manifest records (model, chunking, tokenizer, roots).
        report: the `BuildReport` to fill in.
        embed: turns passage texts into unit vectors.
        dimension: the model's dimension (called only if nothing needs embedding).
        writer: writes the rewritten shards.
    """
    if shards is None:  # keep the existing index's count, even if a shard is damaged
        try:  # of any format: an index of an earlier one is rebuilt with as many shards
            shards = len(store.read_manifest(index_dir, any_format=True)["shards"])
        except (RagError, KeyError, TypeError):
            raise ConfigError(f"{index_dir} is not a sharded index; give the number of shards (--shards N)") from None
    previous = _previous(index_dir, settings, report, shards)
    plans = plan(documents, previous, shards)
    if previous is None:  # shards no source hashes to get no folder
        previous_records = [{"folder": None, "manifest_sha256": None}] * shards
    old_sources = (previous or {}).get("sources", {})
    new_sources = {d.source for d in documents}
    report.removed = sorted(set(old_sources) - new_sources)
    for document in documents:
        old = old_sources.get(document.source)
        bucket = report.added if old is None else report.updated if old["sha256"] != document.sha256 else report.unchanged
        bucket.append(document.source)
    if previous and not any(p.touched for p in plans):
        _remove_unreferenced(index_dir, previous)  # what an interrupted run left
        return load(index_dir)

    texts = passages_to_embed(plans, index_dir, previous, chunking)
    distinct = list(dict.fromkeys(texts))
    embedded = embed(distinct, progress) if distinct else None
    report.embedded = len(texts)
    dim = int(embedded.shape[1]) if embedded is not None else (previous["dimension"] if previous else dimension())
    vectors = dict(zip(distinct, embedded)) if embedded is not None else {}
    settings = {**settings, "dimension": dim}
    generation = (previous or {}).get("generation", 0) + 1
    touched = [p for p in plans if p.touched]
    if progress is True:
        print(f"writing {len(touched)} of {shards} shards", file=sys.stderr, flush=True)
    written = {w.number: w for w in writer(index_dir, touched, vectors, settings, chunking, generation)}
    records = []
    for shard in plans:
        if shard.number in written:
            w = written[shard.number]
            records.append({"folder": w.folder, "manifest_sha256": w.manifest_sha256})
        else:
            records.append(dict((previous["shards"] if previous else previous_records)[shard.number]))
    manifest = _commit(index_dir, records, settings, previous, generation)
    report.written = True
    _remove_unreferenced(index_dir, manifest)
    return load(index_dir)


def _previous(index_dir: Path, settings: dict, report, shards: int | None) -> dict | None:
    """The existing sharded manifest if its shards can be reused; None (and why) if not."""
    if not store.exists(index_dir):
        return None
    if not is_sharded(index_dir):
        report.rebuilt_because = f"split into {shards} shards" if shards else None
        return None
    try:
        manifest = read_manifest(index_dir)
    except RagError as error:
        report.rebuilt_because = str(error).split(";")[0]
        return None
    if shards is not None and len(manifest["shards"]) != shards:
        report.rebuilt_because = f"shards changed from {len(manifest['shards'])} to {shards}"
        return None
    for key in ("model", "chunking", "normalized", "tokenizer"):
        if manifest.get(key) != settings[key]:
            report.rebuilt_because = f"{key} changed from {manifest.get(key)!r} to {settings[key]!r}"
            return None
    for record in written_shards(manifest):  # a damaged shard is rebuilt with the rest
        folder = index_dir / record["folder"]
        try:  # sizes and times only, as opening checks them: an update must not read every shard
            if store.file_sha256(folder / store.MANIFEST) != record["manifest_sha256"]:
                raise IndexCorruptError(f"the index at {index_dir} is damaged: {record['folder']}'s manifest")
            store._check_files(folder, store.read_manifest(folder), full=False)
        except FileNotFoundError:
            report.rebuilt_because = f"the index at {index_dir} is damaged: {record['folder']} is missing"
            return None
        except RagError as error:
            report.rebuilt_because = str(error).split(";")[0]
            return None
    return manifest


def _commit(index_dir: Path, records: list[dict], settings: dict, previous: dict | None, generation: int) -> dict:
    """Write the top-level manifest and replace the old one in one rename: the commit point."""
    sources: dict[str, dict] = {}
    passages = 0
    specs = []
    for record in records:
        if record["folder"] is None:
            record.update(passages=0, sources=0)
            continue
        shard_manifest = json.loads((index_dir / record["folder"] / store.MANIFEST).read_text(encoding="utf-8"))
        record["passages"] = shard_manifest["counts"]["passages"]
        record["sources"] = shard_manifest["counts"]["sources"]
        passages += record["passages"]
        specs.append((record["passages"], shard_manifest.get("vector_index") or {"kind": "flat"}))
        for path, source in shard_manifest["sources"].items():
            # A stored text is named from the top-level folder, so `Assistant.source_text` reads it.
            sources[path] = {**source, "text": f"{record['folder']}/{source['text']}" if source.get("text") else None}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = {
        "layout": LAYOUT,
        "sharded_format_version": SHARDED_FORMAT_VERSION,
        "format_version": store.FORMAT_VERSION,
        "package_version": __version__,
        **settings,
        "sharding": "sha256(source path) mod shards",
        # Each shard is flat or IVF by its own size; `status` describes the largest one's.
        "index_type": max(specs, key=lambda s: s[0])[1]["kind"] if specs else "flat",
        "vector_index": max(specs, key=lambda s: s[0])[1] if specs else {"kind": "flat"},
        "generation": generation,
        "created_at": (previous or {}).get("created_at", now),
        "updated_at": now,
        "counts": {"sources": len(sources), "passages": passages, "shards": len(records)},
        "shards": records,
        "sources": dict(sorted(sources.items())),
        "files": {},
        "checksums": {},
    }
    tag = f"{generation:06d}-{secrets.token_hex(3)}"
    temporary = index_dir / f"{store.MANIFEST}.{tag}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, ensure_ascii=False)
        store._sync(handle)
    os.replace(temporary, index_dir / store.MANIFEST)  # the commit point
    store._fsync_path(index_dir)
    return manifest


def _remove_unreferenced(index_dir: Path, manifest: dict) -> None:
    """Remove shard folders no manifest names, and what a plain index there left behind."""
    store.remove_unreferenced(index_dir, {**manifest, "files": {}, "checksums": {}})
    keep = {r["folder"] for r in written_shards(manifest)}
    for path in index_dir.iterdir():
        if path.is_dir() and path.name.startswith(SHARD_PREFIX) and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
