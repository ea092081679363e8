"""The public entry point: build or open an index, then ask questions of it."""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from . import shards as sharding
from . import store
from .answering import CANDIDATES, Answerer
from .conversation import Conversation
from .documents import collect, read_document, walk
from .embedding import Embedder, Progress, QuestionEncoding
from .errors import DocumentError, IndexStaleError, NotPdfError
from .indexing import BuildReport, UpdatePlan, previous_index, update
from .ocr import OcrCache, OcrOptions
from .questions import clean_question
from .retrieval import MODES, Mode, Retriever
from .settings import (
    MAX_FILE_BYTES,
    SAMPLE_DOCUMENT,
    SUPPORTED_EXTENSIONS,
    ChunkSettings,
    default_index_dir,
    default_model,
)
from .text import TOKENIZER_VERSION
from .types import Answer, Citation, Document, Hit, IndexedSource, Passage, Timings
from .vectors import VectorIndexSpec

if TYPE_CHECKING:
    from .generation import Generator
    from .remote import RemoteAssistant

# Passages `search` returns by default (`ask` retrieves the answerer's CANDIDATES).
RETRIEVE_K = 10


class Assistant:
    """Answers questions about a set of documents, citing verbatim sentences.

    >>> assistant = Assistant.default()           # the bundled sample document
    >>> assistant.ask("When was the Brest peace treaty signed?").text[:10]
    'March 1918'
    """

    def __init__(
        self,
        index_dir: Path,
        data: store.IndexData | sharding.ShardedIndexData,
        embedder: QuestionEncoding,
        report: BuildReport | None = None,
        retriever: Retriever | None = None,
    ):
        """
        Args:
            retriever: searches `data`; by default in this process (a sharded index searches
                every shard and merges, rag.shards). `rag serve` passes one that asks the
                shards' searchers on the cluster.
        """
        self.index_dir = index_dir
        self._data = data
        self._embedder = embedder
        if retriever is None:
            retriever = sharding.ShardedRetriever(data) if isinstance(data, sharding.ShardedIndexData) else Retriever(data)
        self._retriever = retriever
        self._answerer = Answerer(data)
        self.last_build = report
        self.generator: Generator | None = None  # writes fluent answers when set: see `with_generator`

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def default(cls, *, progress: bool = False) -> "Assistant":
        """The default index: the bundled sample document, indexed on first use and reused.

        If `rag index PATH` (without --index) has put other documents there, those are kept:
        the index is brought up to date with its own sources, never reset to the sample.
        """
        index_dir = default_index_dir()
        if store.exists(index_dir):
            # An index written by an older version is rebuilt from the sources it recorded.
            sources, read_as = _recorded_sources(store.read_manifest(index_dir, any_format=True))
            if sources:
                return cls.build(sources, index_dir=index_dir, progress=progress, read_as=read_as)
        return cls.build([SAMPLE_DOCUMENT], index_dir=index_dir, progress=progress)

    @classmethod
    def build(
        cls,
        paths: str | Path | Iterable[str | Path],
        index_dir: str | Path | None = None,
        *,
        model: str | None = None,
        chunking: ChunkSettings = ChunkSettings(),
        progress: Progress = False,
        max_file_bytes: int = MAX_FILE_BYTES,
        read_as: str | dict[str, str] | None = None,
        shards: int | None = None,
        ray: str | None = None,
        workers: int | None = None,
    ) -> "Assistant":
        """Index files and folders into `index_dir`, re-embedding only what changed.

        A file larger than `max_file_bytes` (default 50 MB) is skipped, from its size alone.
        `read_as` reads the named files as that format whatever their extension ("text", …;
        see rag.documents.collect); a file without an extension is read as text if it is text.
        `progress`: True draws a bar with passages/s on stderr while embedding (and one of pages
        while a scanned PDF is read by OCR, rag.ocr); a callable is told (done, total, seconds)
        of the embedding instead (see `rag.embedding.Embedder.encode`).

        Interrupting it (KeyboardInterrupt) before the new manifest is committed leaves the
        previous index exactly as it was.

        The index then holds exactly the documents found under `paths`: new and changed files
        are (re-)embedded, files no longer there are dropped, unchanged ones are reused as they
        are. A different model or chunking setting rebuilds the whole index.

        `shards` splits the index into that many shards (see rag.shards): a change rewrites only
        the shards holding changed sources. An existing sharded index stays sharded (None keeps
        its shard count). `ray` (a Ray address, e.g. "auto" or "127.0.0.1:6379", the `cluster`
        extra) embeds on the cluster with Ray Data on `workers` actors (default: one per node)
        and writes the shards as Ray tasks (see rag.cluster.ingest); it implies a sharded index.

        Raises:
            DocumentError: a named path is missing or unreadable, or no document could be read.
            IndexLockedError: another process is writing this index.
            ConfigError: a bad shard or worker count, or Ray is not installed or not reachable.
        """
        started = time.perf_counter()
        # One path, not an iterable of its characters.
        given = [paths] if isinstance(paths, (str, Path)) else paths
        roots = [Path(p) for p in given]
        if shards is not None:
            sharding.check_shards(shards)
        if not roots:
            raise DocumentError("no documents given; name files or folders to index")
        index_dir = Path(index_dir) if index_dir else default_index_dir()
        # A scanned PDF's OCR text is kept in the index: an unchanged scan is never read twice.
        ocr_cache = OcrCache.of_index(index_dir)
        ocr = OcrOptions(cache=ocr_cache, progress=progress is True)
        collected = collect(roots, max_bytes=max_file_bytes, read_as=read_as, ocr=ocr)
        if not collected.documents:
            reasons = "; ".join(f"{p}: {r}" for p, r in collected.skipped[:3])
            raise DocumentError(
                f"no readable documents in {', '.join(map(str, roots))} "
                f"(supported: {', '.join(SUPPORTED_EXTENSIONS)}){'; ' + reasons if reasons else ''}"
            )
        embedder = Embedder(model or default_model())
        embedder.preload_questions()  # an index that needs no update is asked at once
        settings = {
            "model": embedder.model_name,
            "dimension": None,  # filled in once the model is loaded, only if something is embedded
            "normalized": True,
            "chunking": chunking.to_dict(),
            "tokenizer": TOKENIZER_VERSION,
            # What was asked for, so `status` can tell files added to these folders since.
            "roots": sorted(str(p.resolve()) for p in roots),
        }
        plan = UpdatePlan(index_dir, tuple(collected.documents), settings, chunking, progress=progress)
        data, report = _write_index(plan, embedder, collected.skipped, shards=shards, ray=ray, workers=workers)
        ocr_cache.forget_all_but({record.sha256 for record in data.sources.values()})
        if report.embedded:
            # torch is loaded now (or the passages were embedded on a cluster): export the question
            # model (once per model) so that no question asked of this index ever needs torch.
            embedder.question_encoder()
        report.seconds = time.perf_counter() - started
        return cls(index_dir, data, embedder, report)

    def add(self, paths: str | Path | Iterable[str | Path], *, progress: Progress = False) -> "Assistant":
        """This index with `paths` added: what `Assistant.build` over the indexed sources and
        `paths` gives, re-embedding only what is new or changed (the UI's upload).

        The indexed sources still on disk are kept, each read as it was (a file indexed with
        `--as text` stays text), with the index's own model and chunking; a source inside a
        folder named in `paths` is kept only if it is still there. The answer writer is kept.
        Returns a new assistant; this one still answers from the index as it was opened.

        Raises:
            DocumentError: a named path is missing or unreadable.
            IndexLockedError: another process is writing this index.
        """
        given = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        folders = [p.resolve() for p in given if p.is_dir()]
        manifest = self.manifest
        kept, read_as = _recorded_sources(manifest)
        kept = [s for s in kept if not any(folder in s.resolve().parents for folder in folders)]
        added = Assistant.build(
            [*kept, *given], index_dir=self.index_dir, model=manifest["model"],
            chunking=ChunkSettings(**manifest["chunking"]), progress=progress, read_as=read_as,
        )
        return added.with_generator(self.generator)

    def read(self, path: str | Path) -> Document:
        """`path` read as adding it to this index would read it, without indexing it (the UI
        checks an upload with it). A scan's OCR text is kept in the index's OCR folder, so the
        `add` that follows reads no page again.

        Raises:
            DocumentError: the file is unreadable, empty, too large, binary or without text.
        """
        return read_document(Path(path), ocr=OcrOptions(cache=OcrCache.of_index(self.index_dir)))

    @classmethod
    def open(cls, index_dir: str | Path, *, stale_ok: bool = False) -> "Assistant":
        """Open an existing index, checking its files against the manifest and its sources on disk.

        Args:
            stale_ok: open even if sources changed since indexing (for `status`, which reports them).

        Raises:
            IndexNotFoundError: nothing is indexed there.
            IndexCorruptError: a file is missing, truncated or altered.
            IndexStaleError: a source changed or disappeared since it was indexed.
        """
        index_dir = Path(index_dir)
        sharded = sharding.is_sharded(index_dir)
        manifest = sharding.read_manifest(index_dir) if sharded else store.read_manifest(index_dir)
        embedder = Embedder(manifest["model"])
        if not stale_ok:  # (`status` opens with stale_ok and asks nothing)
            embedder.preload_questions()  # in the background, while the index is read
        data = sharding.load(index_dir) if sharded else store.load(index_dir)
        stale = [] if stale_ok else _stale_sources(data)
        if stale:
            raise IndexStaleError(
                f"{index_dir} is out of date: {', '.join(stale[:3])}{' and more' if len(stale) > 3 else ''} "
                f"changed since indexing; update it with `rag index PATH --index {index_dir}`"
            )
        return cls(index_dir, data, embedder)

    @staticmethod
    def remote(url: str) -> "RemoteAssistant":
        """An assistant that asks the `rag serve` server at `url` (see rag.remote): its `ask`
        returns the `Answer` a local one gives, through HTTP; nothing is loaded here.

        >>> Assistant.remote("http://127.0.0.1:8000").url
        'http://127.0.0.1:8000'
        """
        from .remote import RemoteAssistant

        return RemoteAssistant(url)

    # -- questions ---------------------------------------------------------------------------

    def ask(self, question: str, *, mode: Mode = "hybrid", min_confidence: float | None = None) -> Answer:
        """Answer one question from the documents, or say that they don't answer it.

        Args:
            question: the question, in plain text.
            mode: retrieval mode; "hybrid" (default), or "dense"/"bm25" for baselines.
            min_confidence: answer only above this confidence (default: the threshold fitted
                with the reader, in rag/models/reader/reader.json); 0 never abstains, which
                evaluation uses to trace the coverage curve.

        Raises:
            QuestionError: the question is empty, too long, or not text.
        """
        question = clean_question(question)
        return self.ask_standalone(question, mode=mode, min_confidence=min_confidence)

    def ask_standalone(
        self,
        question: str,
        *,
        search: str | None = None,
        mode: Mode = "hybrid",
        min_confidence: float | None = None,
    ) -> Answer:
        """Answer `question` as a turn of a conversation.

        Args:
            search: words retrieval also gets (a conversation adds the turns the question
                continues); they are embedded beside the question, which keeps equal weight.
        """
        # Timings travel with the answer: one assistant may answer several sessions at once.
        hits, timings = self._retrieve(search or question, question, k=CANDIDATES, mode=mode)
        started = time.perf_counter()
        answer = self._answerer.answer(question, hits, min_confidence=min_confidence)
        timings = replace(timings, answer=time.perf_counter() - started)
        if self.generator is not None and answer.grounded:  # never when the documents don't say
            started = time.perf_counter()
            answer = self._write(question, answer, hits)
            timings = replace(timings, generate=time.perf_counter() - started)
        return replace(answer, timings=timings)

    def with_generator(self, generator) -> "Assistant":
        """This assistant, writing fluent answers with `generator` (None: extractive answers).

        The model writes from the extractive answer's citations and the other retrieved
        sentences; each sentence it writes is kept only if the excerpts it cites support it,
        and when none is, the extractive answer is given (see `rag.generation`). The index and
        models are shared with this assistant, which is left as it was.

        Args:
            generator: e.g. `rag.generation.LlamaCppGenerator()` (a local model, the `generate`
                extra) or `rag.generation.HttpGenerator("http://127.0.0.1:8080/v1")`.
        """
        import copy

        clone = copy.copy(self)
        clone.generator = generator
        return clone

    def _write(self, question: str, answer: Answer, hits: list[Hit]) -> Answer:
        from .generation import write_answer

        assert self.generator is not None  # `ask` writes only with a generator set
        return write_answer(question, answer, hits, self.generator, self._embedder)

    @property
    def embedder(self) -> QuestionEncoding:
        """The model that embeds this index's questions (and, for checking written answers, any
        text): an `Embedder`, or a `rag serve` server's embedding deployment."""
        return self._embedder

    @property
    def ready(self) -> bool:
        """Whether the question model is loaded: no question will wait for it."""
        return self._embedder.questions_ready

    def warm_up(self) -> "Assistant":
        """Load what answering needs (the question model, its first run, and the reader) now rather
        than on the first question. Returns this assistant."""
        self._embedder.warm_up()
        self._answerer.reader  # loading the reader's ONNX session is most of a first question's wait
        return self

    def chat(self) -> Conversation:
        """Start a conversation: follow-up questions are understood from the previous turns."""
        return Conversation(self.ask_standalone)

    def search(self, question: str, *, k: int = RETRIEVE_K, mode: Mode = "hybrid") -> list[Hit]:
        """The `k` passages most relevant to `question`, best first."""
        question = clean_question(question)
        return self._retrieve(question, question, k=k, mode=mode)[0]

    def _retrieve(self, words: str, question: str, *, k: int, mode: Mode) -> tuple[list[Hit], Timings]:
        """BM25 on `words` (the question, or a follow-up with the turns it continues), dense
        search on the question with those words in the background; and the time each took."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        started = time.perf_counter()
        # The query is embedded in every mode: the answerer weighs each sentence's similarity to
        # it, so a "bm25" baseline differs from "hybrid" in retrieval alone.
        if words == question:
            vector = self._embedder.encode_query(question)
        else:
            # A follow-up's own words weigh as much as all the earlier turns': "What led to that
            # treaty being abrogated?" must not drift to the sentence the last turn cited, yet
            # "How many divisions did they use?" needs to know who "they" were.
            both = self._embedder.encode_questions([question, words])
            vector = both[0] + both[1]
            vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        embedded = time.perf_counter()
        hits = self._retriever.search(words, vector, k=k, mode=mode)
        return hits, Timings(embed=embedded - started, search=time.perf_counter() - embedded)

    # -- facts -------------------------------------------------------------------------------

    @property
    def passages(self) -> Sequence[Passage]:
        return self._data.passages

    @property
    def sources(self) -> tuple[IndexedSource, ...]:
        """Each indexed document (name, path, format, passages, size, when indexed), by file name."""
        records = sorted(self._data.sources.items(), key=lambda item: (Path(item[0]).name, item[0]))
        return tuple(
            # A file without an extension shows by its name like any other.
            IndexedSource(name=Path(path).name, path=path, format=record.format, passages=record.passages,
                   size=record.size, indexed_at=record.indexed_at)
            for path, record in records
        )

    def source_text(self, source: str) -> str | None:
        """The text a source's citations and passages refer to: for a PDF, HTML or Word file the
        text extracted from it (kept in the index), else the file as decoded. None when a
        plain-text file cannot be read any more; check `text[c.start:c.end] == c.text`.
        """
        record = self._data.manifest["sources"].get(source)
        if record is None:
            raise KeyError(f"{source} is not indexed in {self.index_dir}")
        try:
            if record.get("text"):
                return store.read_text(self.index_dir, record["text"])
            with open(source, encoding=record.get("encoding") or "utf-8", newline="") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError, LookupError):
            return None

    def page_image(self, citation: Citation) -> bytes:
        """A PNG of the PDF page `citation` is on, its characters highlighted (the UI's viewer).

        The citation's offsets refer to the PDF's cleaned text (`source_text`), so the cited text
        is found again on the page its location names (see rag.pages); the page is rendered when
        first asked for and the last few are cached. The printed page label is the citation's
        location ("p. 21 (PDF page 24)"). The PNG's text chunk "highlight" holds the box around the
        highlight, "left,top,right,bottom" in pixels, for a viewer to scroll to (absent when the
        cited text could not be found on the page, which is then shown without a highlight).

        Raises:
            KeyError: the citation's source is not indexed here.
            NotPdfError: its source is not a PDF (its text is `source_text(citation.source)`).
            IndexStaleError: the PDF is gone, or changed since it was indexed.
            DocumentError: the cited text is on none of the PDF's pages.
        """
        from . import pages  # lazy: PIL and PDFium are loaded only when a page is shown

        record = self._data.sources.get(citation.source)
        if record is None:
            raise KeyError(f"{citation.source} is not indexed in {self.index_dir}")
        name = Path(citation.source).name
        if record.format != "pdf":
            raise NotPdfError(f"{name} is not a PDF (it was read as {record.format}); only a PDF citation has a page to show")
        text = self.source_text(citation.source) or ""
        before = text[max(0, citation.start - pages.CONTEXT_CHARS) : citation.start]
        if text[citation.start : citation.end] != citation.text:
            before = ""  # a citation from elsewhere: its text alone says where it is
        return pages.highlighted_page(Path(citation.source), record.sha256, citation.text, before=before, location=citation.location)

    @property
    def manifest(self) -> dict:
        return self._data.manifest

    def status(self, *, verify: bool = False) -> dict:
        """What is indexed: documents, passages, model, index type, size, when, and what is stale.

        `sources` lists each indexed document: its file name and path, format, passages, size
        in bytes and when it was indexed (`indexed_at`: its passages were last made then).

        `stale` names sources changed ("a.txt") or gone ("a.txt (missing)") since indexing, and
        supported files in the indexed folders that the index does not hold ("b.txt (not
        indexed)": new, or skipped by the last build). `verify` also hashes every index file.

        Raises:
            IndexCorruptError: with `verify`, a file does not match its checksum.
        """
        manifest = self._data.manifest
        size = sum(p.stat().st_size for p in self.index_dir.rglob("*") if p.is_file())
        status = {
            "index": str(self.index_dir),
            "documents": manifest["counts"]["sources"],
            "passages": manifest["counts"]["passages"],
            "model": manifest["model"],
            "dimension": manifest["dimension"],
            "index_type": VectorIndexSpec.from_manifest(manifest).describe(),
            "updated_at": manifest["updated_at"],
            "bytes_on_disk": size,
            "stale": _stale_sources(self._data) + _unindexed_files(manifest),
            "sources": [source.to_dict() for source in self.sources],
        }
        if verify:
            verify_files = sharding.verify if isinstance(self._data, sharding.ShardedIndexData) else store.verify
            status["verified_files"] = verify_files(self.index_dir)
        return status


def _recorded_sources(manifest: dict) -> tuple[list[Path], dict[str, str]]:
    """The sources an index recorded that are still files, and the format each was read as (so a
    file indexed with `--as text` is read as text again)."""
    recorded = manifest["sources"]
    sources = [Path(s) for s in recorded if Path(s).is_file()]
    return sources, {s: r["format"] for s, r in recorded.items() if r.get("format")}


def _write_index(
    plan: UpdatePlan,
    embedder: Embedder,
    skipped: list[tuple[str, str]],
    *,
    shards: int | None,
    ray: str | None,
    workers: int | None,
) -> tuple[store.IndexData | sharding.ShardedIndexData, BuildReport]:
    """Bring the index at `plan.index_dir` up to date, as one index (rag.indexing) or a sharded one
    (rag.shards, embedding here or on a Ray cluster with rag.cluster.ingest), under its lock."""
    report = BuildReport(skipped=skipped)
    data: store.IndexData | sharding.ShardedIndexData
    with store.lock(plan.index_dir):
        if shards is not None or ray is not None or sharding.is_sharded(plan.index_dir):
            if ray is None:
                embed, writer = (lambda texts, shown: embedder.encode(texts, progress=shown)), sharding.write_locally
            else:
                from .cluster.ingest import ray_backend

                embed, writer = ray_backend(ray, model=embedder.model_name, workers=workers)
            # rag.shards fills in the report as it goes.
            data = sharding.build(
                plan.index_dir, list(plan.documents), shards=shards or (None if sharding.is_sharded(plan.index_dir) else 1),
                settings=plan.settings, chunking=plan.chunking, report=report, progress=plan.progress, embed=embed,
                dimension=lambda: embedder.dimension, writer=writer,
            )
        else:
            previous, report.rebuilt_because = previous_index(plan.index_dir, plan.settings)
            done = update(replace(plan, previous=previous), embedder)
            data = done.data
            report.added, report.updated, report.removed = list(done.added), list(done.updated), list(done.removed)
            report.unchanged, report.embedded, report.written = list(done.unchanged), done.embedded, done.written
    report.passages = len(data.passages)
    return data, report


def _unindexed_files(manifest: dict) -> list[str]:
    """Supported files under the indexed folders that the index does not hold."""
    indexed = set(manifest["sources"])
    found = []
    for root in manifest.get("roots", []):
        if Path(root).is_dir():
            found += [f"{p.name} (not indexed)" for p in walk(Path(root), skipped=[]) if str(p.resolve()) not in indexed]
    return found


def _stale_sources(data: store.IndexData | sharding.ShardedIndexData) -> list[str]:
    """Sources that are gone or whose content differs from what was indexed."""
    stale = []
    for source, record in data.sources.items():
        path = Path(source)
        try:
            stat = path.stat()
        except OSError:
            stale.append(f"{path.name} (missing)")
            continue
        if stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns:
            continue
        if stat.st_size != record.size or hashlib.sha256(path.read_bytes()).hexdigest() != record.sha256:
            stale.append(path.name)
    return stale
