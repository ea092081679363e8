"""The immutable records that flow through the pipeline: documents → passages → hits → answers."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Document:
    """A source file as text. Offsets everywhere refer to `text`."""

    source: str  # absolute path of the file
    # Plain text and Markdown: the decoded contents, newlines untouched (no \r\n translation).
    # PDF, HTML, Word: the text extracted from the file (see rag.formats).
    text: str
    sha256: str  # hash of the raw bytes: decides whether the source must be re-embedded
    size: int  # bytes on disk
    encoding: str | None  # the codec `text` was decoded with; None when it was extracted from a binary format
    format: str = "text"  # "text", "markdown", "pdf", "html" or "docx" (see rag.settings.FORMATS)
    # Where each page or heading begins, in increasing offset: (offset, "p. 3") for a PDF's pages,
    # (offset, "§ Heading") for headings. Empty when the format has none (see rag.locations).
    marks: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Passage:
    """The unit that is embedded and retrieved: one sentence (or a piece of a very long one)."""

    id: str  # hash of source, offsets and text: stable across rebuilds
    source: str
    start: int  # document.text[start:end] == text
    end: int
    text: str
    position: int  # index of this passage within its source; neighbours are position ± 1
    paragraph: int  # index of the paragraph within its source
    # Where a person finds it: "p. 3", "§ Heading, ¶ 2" or "lines 4–6" (see rag.locations)
    location: str | None = None


@dataclass(frozen=True)
class Hit:
    """A passage returned by retrieval, with the evidence for its rank."""

    passage: Passage
    score: float  # fused score (higher is better)
    dense_score: float  # cosine similarity between question and passage
    lexical_score: float  # BM25 score (0 when no query term matches)


@dataclass(frozen=True)
class Citation:
    """A verbatim excerpt of a source that supports an answer."""

    text: str
    source: str
    start: int
    end: int
    score: float
    location: str | None = None  # where a person finds it: "p. 3", "§ Heading, ¶ 2", "lines 4–6" (rag.locations)
    # The other sources holding the same sentence (rag.copies.sentence_key), as `source` names
    # them: a document saved as PDF and HTML is cited once, from one of them (rag.answering).
    also_in: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives a list (rag.remote reads citations back with Citation(**fields)): keep a tuple.
        object.__setattr__(self, "also_in", tuple(self.also_in))

    def to_dict(self) -> dict:
        return {**asdict(self), "also_in": list(self.also_in)}


@dataclass(frozen=True)
class SentenceSupport:
    """One sentence of a generated answer, and whether the excerpts it cites support it."""

    text: str  # the sentence; kept ones with their markers renumbered to the answer's citations
    supported: bool  # kept in the answer; False: removed, and `reason` says why
    cites: tuple[int, ...] = ()  # 1-based numbers of the answer's citations it cites (kept ones)
    reason: str = ""  # why it was removed: "no citation marker", "states 1920, not in [1]", ...
    similarity: float = 0.0  # best cosine similarity between the sentence and an excerpt it cites

    def to_dict(self) -> dict:
        return {**asdict(self), "cites": list(self.cites), "similarity": round(self.similarity, 4)}


@dataclass(frozen=True)
class IndexedSource:
    """One document an index holds, as `Assistant.sources` lists it (the UI's list, `rag status`)."""

    name: str  # the file's name ("FAQ" for a file without an extension)
    path: str  # the absolute path it was read from: `Passage.source` and `Citation.source`
    format: str  # what it was read as: "text", "markdown", "pdf", "html" or "docx"
    passages: int
    size: int  # bytes on disk when it was indexed
    indexed_at: str | None  # when its passages were last made (local time, ISO 8601); None in old indexes

    def to_dict(self) -> dict:
        """The shape `rag status --json` prints for each document."""
        return {"name": self.name, "path": self.path, "format": self.format, "passages": self.passages,
                "bytes": self.size, "indexed_at": self.indexed_at}


@dataclass(frozen=True)
class Timings:
    """Seconds one question spent in each stage, carried by its answer (`rag bench` reports the shares).

    They belong to the call, not to the assistant: one assistant answers several sessions at once.
    """

    embed: float = 0.0  # embedding the question
    search: float = 0.0  # dense and BM25 retrieval, fused
    answer: float = 0.0  # the learned reader on the candidate sentences, the fusion, deciding and citing
    generate: float | None = None  # a language model writing the answer and its check; None: not asked


@dataclass(frozen=True)
class Answer:
    """What `Assistant.ask` returns: the answer text, whether the documents support it, and the evidence."""

    text: str
    grounded: bool
    citations: tuple[Citation, ...] = ()  # a list given here is stored as a tuple: an answer never changes
    query: str = ""  # the standalone question that was actually searched
    confidence: float = 0.0  # the abstention score the decision was taken on (see rag.answering)
    generated: bool = False  # the text was written by a language model and checked (see rag.generation)
    sentences: tuple[SentenceSupport, ...] = ()  # a generated answer's sentences, kept and removed
    # The direct answer, verbatim in the first citation's source at
    # [direct_start, direct_end) ("" and None when the answer abstains).
    direct: str = ""
    direct_start: int | None = None
    direct_end: int | None = None
    # How long this answer took, stage by stage; not part of what was answered, so not compared.
    timings: Timings = field(default=Timings(), compare=False)

    def __post_init__(self) -> None:
        # The answerer and the generation step build their citations as lists: freeze them here, so
        # an answer handed out (or shared by the UI's sessions) cannot be changed afterwards.
        object.__setattr__(self, "citations", tuple(self.citations))

    def to_dict(self) -> dict:
        """The JSON shape used by the CLI (`--json`), the UI's /ask endpoint and the eval reports."""
        return {
            "answer": self.text,
            "grounded": self.grounded,
            "citations": [c.to_dict() for c in self.citations],
            "query": self.query,
            "confidence": round(self.confidence, 4),
            "direct": self.direct,
            "direct_start": self.direct_start,
            "direct_end": self.direct_end,
            "generated": self.generated,
            "sentences": [s.to_dict() for s in self.sentences],
        }
