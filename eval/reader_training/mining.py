"""Each question's candidates: what the project's own hybrid search returns for it, per source.

Every source's documents become text files (as `rag eval squad` writes them) and one index
(`Assistant.build`: sentences, as users' documents are); each question's candidates are the first
`rag.answering.CANDIDATES` sentences the search returns, so the reader is trained on the
retriever's real hard negatives. A candidate is positive when a gold answer lies inside it (by the
answer's character offsets). Out-of-scope candidates are the same search's results from the
source's other documents.

Both are cached per source in the work folder (SQuAD dev part A where the first shipped reader's
work folder kept them: WORK/index, WORK/candidates.json, WORK/outside.json; every other source in
WORK/sources/NAME-DIGEST/, the digest naming its documents in use), so a run that stops after
mining a source starts again at the next one.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.internals import reader as R

from .data import Corpus, Question
from .progress import Progress
from .sources import DEV_PART_A


@dataclass
class Candidate:
    text: str
    previous: str
    following: str
    start: int  # offsets in the document
    end: int
    rank: int | None  # retrieval rank (0-based); None for a gold sentence retrieval missed
    dense: float
    lexical: float
    span: tuple[int, int] | None  # a gold answer's offsets inside the sentence, if it holds one

    @property
    def positive(self) -> bool:
        return self.span is not None

    def window(self) -> R.Window:
        return R.window(self.previous, self.text, self.following)


def folder(corpus: Corpus, work: Path) -> Path:
    """Where a source's documents, index and candidates are kept."""
    return work if corpus.name == DEV_PART_A else work / "sources" / f"{corpus.name}-{corpus.digest()}"


def write_json(path: Path, data) -> None:
    """Written to a temporary file, then renamed: an interrupted write leaves no half a cache."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


def _read_cache(path: Path) -> dict[str, list[Candidate]]:
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {qid: [Candidate(**{**c, "span": tuple(c["span"]) if c["span"] else None}) for c in cands]
            for qid, cands in raw.items()}


def index(corpus: Corpus, work: Path):
    """The source's index (built on first use, with progress): an `Assistant`."""
    from eval.squad import Article, write_documents
    from rag import Assistant

    where = folder(corpus, work)
    if (where / "index" / "manifest.json").is_file():  # a build commits its manifest last
        return Assistant.open(where / "index")
    where.mkdir(parents=True, exist_ok=True)
    write_documents([Article(corpus.file_name(title).removesuffix(".txt"), paragraphs, ())
                     for title, paragraphs in corpus.documents.items()], where / "docs")
    shown = Progress(f"{corpus.name}: embedding", 0, "passages")

    def told(done: int, total: int, seconds: float) -> None:
        shown.total = total
        shown.update(done)

    started, cpu = time.perf_counter(), time.process_time()
    assistant = Assistant.build([where / "docs"], index_dir=where / "index", progress=told)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    passages = len(assistant.passages)
    # Throughput for the time estimate of a full run (docs/training.md): the CPU time (all
    # threads) does not depend on what else the machine runs, the wall time does.
    write_json(where / "mining.json", {"documents": len(corpus.documents), "passages": passages, "index_seconds": round(seconds, 1),
                                       "index_cpu_seconds": round(cpu, 1)})
    print(f"{corpus.name}: indexed {len(corpus.documents)} documents, {passages} passages in {seconds:.0f} s "
          f"({passages / max(seconds, 1e-9):.1f} passages/s; {cpu:.0f} CPU-s, {passages / max(cpu, 1e-9):.1f} passages per CPU-s)",
          file=sys.stderr, flush=True)
    return assistant


class _Places:
    """The index's passages by (source, position) and by file name, for neighbours and gold sentences."""

    def __init__(self, assistant):
        self.by_place = {(p.source, p.position): p for p in assistant.passages}
        self.by_file: dict[str, list] = {}
        for passage in assistant.passages:
            self.by_file.setdefault(Path(passage.source).name, []).append(passage)

    def candidate(self, passage, question: Question, own_file: str, rank: int | None, dense: float, lexical: float) -> Candidate:
        previous = self.by_place.get((passage.source, passage.position - 1))
        following = self.by_place.get((passage.source, passage.position + 1))
        span = None
        if Path(passage.source).name == own_file:
            for gold in question.answers:
                if passage.start <= gold.start and gold.end <= passage.end:
                    span = (gold.start - passage.start, gold.end - passage.start)
                    break
        return Candidate(passage.text, previous.text if previous else "", following.text if following else "",
                         passage.start, passage.end, rank, float(dense), float(lexical), span)

    def ranked(self, hits, question: Question, own_file: str) -> list[Candidate]:
        """The search's hits as candidates, in its order, with its scores."""
        return [self.candidate(hit.passage, question, own_file, rank, hit.dense_score, hit.lexical_score)
                for rank, hit in enumerate(hits)]


def mine(corpus: Corpus, work: Path) -> dict[str, list[Candidate]]:
    """Each of the corpus's questions' candidates (cached in the source's folder as candidates.json)."""
    cache = folder(corpus, work) / "candidates.json"
    found = _read_cache(cache)
    if found and all(q.id in found for q in corpus.questions):
        return found
    from eval.internals import ANSWER_CANDIDATES as CANDIDATES

    assistant = index(corpus, work)
    places = _Places(assistant)
    result: dict[str, list[Candidate]] = {}
    started, cpu = time.perf_counter(), time.process_time()
    # The questions are embedded in one batch (what `Assistant.search` does one at a time:
    # encode_query is encode of a one-question list), then searched as `ask` searches.
    vectors = assistant._embedder.encode([q.text for q in corpus.questions])
    print(f"{corpus.name}: embedded {len(corpus.questions)} questions in {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)
    shown = Progress(f"{corpus.name}: mining", len(corpus.questions), "questions")
    for n, question in enumerate(corpus.questions):
        own = corpus.file_name(question.title)
        hits = assistant._retriever.search(question.text, vectors[n], k=CANDIDATES)
        candidates = places.ranked(hits, question, own)
        if question.answers and not any(c.positive for c in candidates):
            # Retrieval missed the answer: its sentence still teaches the reader where answers are.
            gold = question.answers[0]
            for passage in places.by_file.get(own, []):
                if passage.start <= gold.start and gold.end <= passage.end:
                    candidates.append(places.candidate(passage, question, own, None, 0.0, 0.0))
                    break
        result[question.id] = candidates
        shown.update(n + 1)
    print(f"{corpus.name}: mined {len(result)} questions in {time.perf_counter() - started:.0f} s "
          f"({time.process_time() - cpu:.0f} CPU-s)", file=sys.stderr, flush=True)
    write_json(cache, {qid: [asdict(c) for c in cands] for qid, cands in result.items()})
    return result


def mine_outside(corpus: Corpus, questions: list[Question], work: Path) -> dict[str, list[Candidate]]:
    """Out-of-scope questions: each question's candidates from the source's index with its own
    document left out (the hybrid search's results from the other documents), cached in the
    source's folder as outside.json (questions not yet in it are added).

    They stand for what users ask of documents that never speak of it; SQuAD v2.0's unanswerable
    questions are the other kind (written against a paragraph that almost answers them).
    Filtering a search of the whole index approximates an index without the document: BM25's
    statistics still count its words, which makes the other documents' scores a little lower.
    """
    cache = folder(corpus, work) / "outside.json"
    found = _read_cache(cache)
    missing = [q for q in questions if q.id not in found]
    if missing:
        from eval.internals import ANSWER_CANDIDATES as CANDIDATES

        assistant = index(corpus, work)
        places = _Places(assistant)
        vectors = assistant._embedder.encode([q.text for q in missing])
        shown = Progress(f"{corpus.name}: out-of-scope", len(missing), "questions")
        for n, question in enumerate(missing):
            own = corpus.file_name(question.title)
            # Four times the candidates: a document's own sentences fill most of the top of its search.
            hits = [h for h in assistant._retriever.search(question.text, vectors[n], k=4 * CANDIDATES)
                    if Path(h.passage.source).name != own][:CANDIDATES]
            found[question.id] = places.ranked(hits, question, own)
            shown.update(n + 1)
        write_json(cache, {qid: [asdict(c) for c in cands] for qid, cands in found.items()})
    return {q.id: found[q.id] for q in questions}
