"""`rag bench`: the pipeline's speed and size as ratios against bare baselines, in one run.

Every row compares what we do with the unavoidable cost of doing it at all, measured on this
machine in the same run:

- indexing throughput of `Assistant.build` against a bare `SentenceTransformer.encode` of the
  very same passage texts (same model object, batch size and normalisation): our overhead;
- warm question latency p50/p95 of `Assistant.ask` against a bare encode of the question, and
  the share of an ask spent embedding, searching and extracting the answer;
- cold start of `rag ask` on an existing index against `python -c "import sentence_transformers"`;
- re-opening an unchanged index (`Assistant.build` again, and `Assistant.open`) against building
  it; the rebuild must embed nothing;
- peak memory while writing and opening an index, and its size on disk, per 10,000 passages
  against the raw float32 vectors. The memory rows use synthetic unit vectors and synthetic
  sentences written with `rag.store.write` in a fresh subprocess each, so the peaks are clean
  and no 10,000 passages need embedding.

Timings are only comparable on an otherwise idle machine: the report measures how much CPU other
processes took while each row was measured and marks a row with "!" when it was over 10%.

The corpus is the bundled sample document plus, when the shared SQuAD file exists, the contexts
of its first articles (one text file each); the report says which. Results are printed as a
table and written as JSON.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SQUAD_FILE = Path("/work/shared/data/squad-v1.1-dev-part-a.json")
# SQuAD articles indexed beside the sample: about 1,900 sentence passages, so indexing runs for
# ~15-20 s and the throughput ratio is not dominated by fixed costs.
SQUAD_ARTICLES = 8
SQUAD_QUESTIONS = 20
# Each question is asked this many times; only the last round is timed (the first warms caches).
LATENCY_ROUNDS = 2
COLD_START_RUNS = 3
COLD_START_QUESTION = "When was the Brest peace treaty signed?"
PER = 10_000  # sizes are reported per this many passages
MB = 1024 * 1024
# Share of the machine's CPU time taken by other processes above which the timings are flagged.
CONTENDED = 0.10
# Dense search must find at least this share of the exact top 10 (issue 7).
REQUIRED_RECALL = 0.95

# Questions about the bundled sample, including two it does not answer (abstention is timed too).
SAMPLE_QUESTIONS = [
    "When was the Brest peace treaty signed?",
    "Who led the Bolsheviks when they made peace with Germany in 1918?",
    "On what date did Hitler attack the Soviet Union?",
    "How many tanks did the Germans attack with?",
    "Who was the German ambassador to the Soviet Union?",
    "Through which country were the German diplomats going to travel home?",
    "What was the name of the German operation against Moscow?",
    "Where did Stalin shut himself away after the war broke out?",
    "When was the Treaty of Versailles signed?",
    "Who was the US president during the war?",
]


@dataclass
class Row:
    """One line of the report: our figure, the baseline's, and ours / baseline."""

    what: str
    ours: float
    baseline: float
    unit: str  # unit of `ours` and `baseline`: "s", "ms", "passages/s" or "MB"
    share: bool = False  # the ratio is a share of the baseline (shown as a percentage)
    note: str = ""
    contention: float | None = None  # other processes' share of the CPU while this was measured

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    def to_dict(self) -> dict:
        ratio = self.ratio
        return {**asdict(self), "ratio": None if ratio != ratio else ratio}  # NaN is not JSON


@dataclass
class Corpus:
    """The documents indexed for the throughput, latency and reopen measurements."""

    paths: list[Path]
    description: str
    questions: list[str]
    squad_articles: list[str] = field(default_factory=list)


# -- entry point ------------------------------------------------------------------------------


def run_bench(*, out: Path, passages: int) -> int:
    """Measure, print the table, write JSON to `out`. Returns the exit code (1 if a check failed)."""
    if passages < 1:
        print("rag bench: error: --passages must be at least 1", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with Watch() as watch, tempfile.TemporaryDirectory(prefix="rag-bench-") as temporary:
        work = Path(temporary)
        corpus = prepare_corpus(work / "corpus")
        _progress(f"corpus: {corpus.description}")
        results = _measure_all(corpus, work, synthetic_passages=passages)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["contention"] = {
        "other_cpu_seconds": None if watch.other_seconds is None else round(watch.other_seconds, 1),
        "share_of_machine": None if watch.share is None else round(watch.share, 3),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print_report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwritten to {out} ({results['seconds']:.0f} s)")
    for failure in results["failures"]:
        print(f"rag bench: check failed: {failure}", file=sys.stderr)
    return 1 if results["failures"] else 0


def _measure_all(corpus: Corpus, work: Path, *, synthetic_passages: int) -> dict:
    from rag.assistant import Assistant
    from rag.embedding import Embedder
    from rag.settings import SAMPLE_DOCUMENT, default_model

    embedder = Embedder(default_model())
    _progress("loading and warming up the model")
    _warm_up(embedder)
    failures: list[str] = []
    sample_index = work / "sample-index"
    Assistant.build([SAMPLE_DOCUMENT], index_dir=sample_index)

    corpus_index = work / "corpus-index"
    _progress("indexing the corpus, then encoding the same passages bare")
    with Watch() as watch:
        assistant, build_seconds = _timed(lambda: Assistant.build(corpus.paths, index_dir=corpus_index))
        texts = [p.text for p in assistant.passages]
        bare_seconds = bare_encode_seconds(embedder, texts)
    rows = watch.mark([throughput_row(len(texts), build_seconds, bare_seconds)])

    _progress("reopening the unchanged index")
    with Watch() as watch:
        reopen_rows, embedded = reopen(corpus.paths, corpus_index, build_seconds)
    rows += watch.mark(reopen_rows)
    if embedded:
        failures.append(f"re-building an unchanged index embedded {embedded} passages (must be 0)")

    _progress(f"asking {len(corpus.questions)} questions x {LATENCY_ROUNDS} rounds")
    with Watch() as watch:
        latency = latency_rows(assistant, embedder, corpus.questions)
    rows += watch.mark(latency)
    from .bench_reader import budget_failures

    failures += budget_failures(latency)

    _progress(f"cold start: {COLD_START_RUNS} runs each of `rag ask` and the bare import")
    with Watch() as watch:
        cold_row, cold_failure = cold_start_row(sample_index)
    rows += watch.mark([cold_row])
    if cold_failure:
        failures.append(cold_failure)

    dimension = int(assistant.manifest["dimension"])
    rows.append(disk_row(corpus_index, len(texts), dimension, f"real corpus, {len(texts):,} passages"))
    growth = synthetic_growth(work, texts, corpus.questions, synthetic_passages, dimension, embedder.model_name)
    rows += synthetic_rows(growth[-1], dimension)
    for size in growth:
        recall = size["open"]["recall_at_10"]
        if recall < REQUIRED_RECALL:
            failures.append(f"dense recall@10 against exact is {recall:.3f} at {size['passages']:,} passages "
                            f"(must be at least {REQUIRED_RECALL})")

    return {
        "machine": _machine(),
        "corpus": {
            "description": corpus.description,
            "documents": len(assistant.manifest["sources"]),
            "passages": len(texts),
            "squad_articles": corpus.squad_articles,
            "questions": len(corpus.questions),
        },
        "model": embedder.model_name,
        "dimension": dimension,
        "rows": [row.to_dict() for row in rows],
        "synthetic": growth[-1],
        "growth": growth,
        "failures": failures,
    }


# -- corpus -----------------------------------------------------------------------------------


def prepare_corpus(folder: Path) -> Corpus:
    """The sample document, plus SQuAD contexts written as text files into `folder` if available."""
    from rag.settings import SAMPLE_DOCUMENT

    if not SQUAD_FILE.is_file():
        return Corpus(
            paths=[SAMPLE_DOCUMENT],
            description=f"the bundled sample only ({SAMPLE_DOCUMENT.name}); {SQUAD_FILE} is absent, "
            "so the throughput ratio rests on few passages",
            questions=list(SAMPLE_QUESTIONS),
        )
    articles = json.loads(SQUAD_FILE.read_text(encoding="utf-8"))["data"][:SQUAD_ARTICLES]
    folder.mkdir(parents=True, exist_ok=True)
    for number, article in enumerate(articles):
        text = "\n\n".join(paragraph["context"] for paragraph in article["paragraphs"]) + "\n"
        name = re.sub(r"[^\w.-]+", "_", article["title"])
        (folder / f"{number:02d}-{name}.txt").write_text(text, encoding="utf-8")
    titles = [article["title"] for article in articles]
    return Corpus(
        paths=[SAMPLE_DOCUMENT, folder],
        description=f"the bundled sample ({SAMPLE_DOCUMENT.name}) + the contexts of the first "
        f"{len(articles)} articles of {SQUAD_FILE.name}, one text file each",
        questions=SAMPLE_QUESTIONS + squad_questions(articles, SQUAD_QUESTIONS),
        squad_articles=titles,
    )


def squad_questions(articles: list[dict], count: int) -> list[str]:
    """`count` questions spread evenly over the articles' paragraphs (the first of each paragraph)."""
    firsts = [p["qas"][0]["question"].strip() for a in articles for p in a["paragraphs"] if p["qas"]]
    step = max(1, len(firsts) // count)
    return firsts[::step][:count]


# -- measurements -----------------------------------------------------------------------------


def throughput_row(passages: int, build_seconds: float, bare_seconds: float) -> Row:
    return Row(
        what=f"indexing throughput, fresh build of {passages:,} passages (vs bare encode)",
        ours=passages / build_seconds,
        baseline=passages / bare_seconds,
        unit="passages/s",
        note=f"build {build_seconds:.1f} s, bare encode {bare_seconds:.1f} s",
    )


def bare_encode_seconds(embedder, texts: list[str]) -> float:
    """Seconds for `SentenceTransformer.encode` of `texts` with the pipeline's batch size."""
    from rag.embedding import BATCH_SIZE

    model = embedder.model
    _, seconds = _timed(lambda: model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False))
    return seconds


def reopen(paths: list[Path], index_dir: Path, build_seconds: float) -> tuple[list[Row], int]:
    """Rows for re-building and opening an unchanged index; and how many passages were re-embedded."""
    from rag.assistant import Assistant

    rebuilt, rebuild_seconds = _timed(lambda: Assistant.build(paths, index_dir=index_dir))
    _, open_seconds = _timed(lambda: Assistant.open(index_dir))
    report = rebuilt.last_build
    return [
        Row(
            what=f"Assistant.build on the unchanged index (embedded {report.embedded}) vs first build",
            ours=rebuild_seconds,
            baseline=build_seconds,
            unit="s",
            note=f"embedded={report.embedded}, written={report.written}",
        ),
        Row(what="Assistant.open of the same index vs first build", ours=open_seconds, baseline=build_seconds, unit="s"),
    ], report.embedded


def latency_rows(assistant, embedder, questions: list[str]) -> list[Row]:
    """p50/p95 of a warm `ask` against a bare encode of the question, and each stage's share.

    Each ask is followed at once by the bare encode of the same question, so a burst of load
    from another process slows both alike.
    """
    totals: list[float] = []
    bare: list[float] = []
    stages: dict[str, list[float]] = {"embed": [], "search": [], "answer": []}
    for round_number in range(LATENCY_ROUNDS):
        last = round_number == LATENCY_ROUNDS - 1
        for question in questions:
            _, seconds = _timed(lambda: assistant.ask(question))
            bare_seconds = bare_question_seconds(embedder, question)
            if last:
                totals.append(seconds)
                bare.append(bare_seconds)
                for stage, values in stages.items():
                    values.append(assistant.timings.get(stage, 0.0))
    mean_total = statistics.fmean(totals)
    rows = [
        Row(what=f"warm ask p50 ({len(questions)} questions) vs bare encode of the question",
            ours=_percentile(totals, 50) * 1000, baseline=_percentile(bare, 50) * 1000, unit="ms"),
        Row(what="warm ask p95 vs bare encode of the question",
            ours=_percentile(totals, 95) * 1000, baseline=_percentile(bare, 95) * 1000, unit="ms"),
    ]
    from .bench_reader import STAGE_LABELS as labels
    for stage, values in stages.items():
        rows.append(Row(what=f"share of a warm ask: {labels[stage]} (mean vs mean ask)",
                        ours=statistics.fmean(values) * 1000, baseline=mean_total * 1000, unit="ms", share=True))
    return rows


def bare_question_seconds(embedder, question: str) -> float:
    """Seconds of `SentenceTransformer.encode([question])` with the pipeline's settings."""
    from rag.embedding import BATCH_SIZE

    model = embedder.model
    return _timed(lambda: model.encode([question], batch_size=BATCH_SIZE, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False))[1]


def cold_start_row(index_dir: Path) -> tuple[Row, str | None]:
    """Median wall time of `rag ask` in a fresh process against a bare `import sentence_transformers`."""
    ask = [*_rag_command(), "ask", COLD_START_QUESTION, "--index", str(index_dir)]
    bare = [sys.executable, "-c", "import sentence_transformers"]
    failure = None
    for command in (ask, bare):  # one untimed run each: the page cache is warm for both
        failure = failure or _run(command, expect_output=command is ask)[1]
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(COLD_START_RUNS):  # interleaved, so drift affects both alike
        seconds, error = _run(ask, expect_output=True)
        ours.append(seconds)
        failure = failure or error
        baseline.append(_run(bare)[0])
    row = Row(
        what=f'cold `rag ask` on an existing index vs `python -c "import sentence_transformers"` '
        f"(median of {COLD_START_RUNS})",
        ours=statistics.median(ours),
        baseline=statistics.median(baseline),
        unit="s",
        note="runs: " + ", ".join(f"{s:.2f}" for s in ours) + " vs " + ", ".join(f"{s:.2f}" for s in baseline),
    )
    return row, failure


def disk_row(index_dir: Path, passages: int, dimension: int, label: str) -> Row:
    return Row(
        what=f"index on disk per {PER:,} passages ({label}) vs raw float32 vectors",
        ours=_folder_bytes(index_dir) * PER / passages / MB,
        baseline=_raw_vector_bytes(PER, dimension) / MB,
        unit="MB",
    )


def growth_sizes(largest: int) -> list[int]:
    """The collection sizes of the scaling table: 10,000, 100,000, ... below `largest`, then it."""
    sizes = []
    size = GROWTH_START
    while size < largest:
        sizes.append(size)
        size *= 10
    return sizes + [largest]


def synthetic_growth(work: Path, texts: list[str], questions: list[str], largest: int, dimension: int,
                     model: str) -> list[dict]:
    """For each size: write, then open and search, a synthetic index in two fresh subprocesses."""
    inputs = work / "synthetic-inputs.json"
    inputs.write_text(json.dumps({"texts": texts, "questions": questions}, ensure_ascii=False), encoding="utf-8")
    results = []
    for n in growth_sizes(largest):
        index_dir = work / f"synthetic-{n}"
        _progress(f"synthetic index of {n:,} passages: write, then open and search, in fresh subprocesses")
        common = [str(n), str(dimension), str(index_dir), str(inputs), model]
        written = _child("write", common)
        opened = _child("open", common)
        results.append({"passages": n, "dimension": dimension, "write": written, "open": opened,
                        "bytes_on_disk": _folder_bytes(index_dir)})
        shutil.rmtree(index_dir)  # a million passages take ~2 GB: free them before the next size
    return results


def synthetic_rows(synthetic: dict, dimension: int) -> list[Row]:
    n = synthetic["passages"]
    raw = _raw_vector_bytes(PER, dimension) / MB
    label = f"synthetic, {n:,} passages"
    per = PER / n
    opened = synthetic["open"]
    return [
        Row(what=f"peak memory writing the index, per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["write"]["peak_increase_bytes"] * per / MB, baseline=raw, unit="MB",
            note=f"write took {synthetic['write']['seconds']:.1f} s"),
        Row(what=f"peak memory opening the index, per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=opened["peak_increase_bytes"] * per / MB, baseline=raw, unit="MB",
            note=f"open took {opened['seconds']:.2f} s; "
            f"resident after: {opened['resident_increase_bytes'] * per / MB:.1f} MB per {PER:,}"),
        Row(what=f"index on disk per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["bytes_on_disk"] * per / MB, baseline=raw, unit="MB"),
        Row(what=f"dense search p50, {synthetic['write']['vector_index']['kind']} index ({label}) vs exact search",
            ours=opened["dense_ms"]["p50"], baseline=opened["exact_ms"]["p50"], unit="ms",
            note=f"recall@10 against exact: {opened['recall_at_10']:.3f}"),
    ]


# -- the subprocess side of the synthetic measurement -----------------------------------------


def _child(action: str, arguments: list[str]) -> dict:
    command = [sys.executable, "-m", "eval.bench", "--store-child", action, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"synthetic {action} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def store_child(action: str, passages: int, dimension: int, index_dir: Path, inputs_file: Path, model: str) -> dict:
    """In a fresh process: write, or open and search, a synthetic index; memory above the state before."""
    import bm25s  # noqa: F401 - imported before the baseline so import costs are not counted
    import faiss  # noqa: F401

    from rag import store

    inputs = json.loads(inputs_file.read_text(encoding="utf-8"))
    if action == "open":
        before = _reset_peak_memory()
        data, seconds = _timed(lambda: store.load(index_dir))
        current, peak = _memory_bytes()
        assert len(data.passages) == passages
        return {"seconds": seconds, "peak_increase_bytes": peak - before, "resident_increase_bytes": current - before,
                "peak_reset": _PEAK_RESET[0], **search_measurements(data, inputs["questions"])}
    contents, tokenizing = synthetic_contents(passages, dimension, inputs["texts"], model)
    index_dir.mkdir(parents=True, exist_ok=True)
    before = _reset_peak_memory()
    with store.lock(index_dir):
        data, seconds = _timed(lambda: store.write(index_dir, **contents, previous=None))
    _, peak = _memory_bytes()
    return {"seconds": seconds, "peak_increase_bytes": peak - before, "peak_reset": _PEAK_RESET[0],
            "vector_index": data.manifest["vector_index"], "stages": data.manifest.get("build_seconds", {}),
            "tokenizing_passages_per_second": tokenizing}


def search_measurements(data, questions: list[str]) -> dict:
    """Latency of dense, BM25 and hybrid search on an open index, and dense recall@10 against exact.

    Dense queries are synthetic questions near stored passages (`nearby_queries`); BM25 and
    hybrid search take the corpus's real questions (the synthetic texts are its sentences).
    """
    import faiss

    from rag import vectors
    from rag.retrieval import CANDIDATES, Retriever

    index = data.faiss_index
    rng = np.random.default_rng(1)
    anchors = np.stack([vectors.vector(index, i) for i in rng.choice(index.ntotal, SEARCH_QUERIES)])
    queries = nearby_queries(anchors, rng)
    retriever = Retriever(data)
    texts = [questions[i % len(questions)] for i in range(SEARCH_QUERIES)]
    for query, text in zip(queries[:10], texts[:10]):  # warm up: page in what a search touches
        retriever.search(text, query, k=10)
    dense = [_timed(lambda: vectors.search(index, q, CANDIDATES))[1] for q in queries]
    lexical = [_timed(lambda: retriever._lexical(t, CANDIDATES))[1] for t in texts]
    hybrid = [_timed(lambda: retriever.search(t, q, k=10))[1] for q, t in zip(queries, texts)]
    _, found = vectors.search(index, queries, 10)
    # The exact answer: every vector, scanned in full (read after the memory was measured).
    stored = vectors.all_vectors(index)
    _, exact = faiss.knn(queries, stored, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_seconds = [_timed(lambda: faiss.knn(q[None], stored, CANDIDATES, metric=faiss.METRIC_INNER_PRODUCT))[1]
                     for q in queries[:EXACT_TIMED_QUERIES]]
    return {
        "queries": SEARCH_QUERIES,
        "dense_ms": _spread(dense),
        "exact_ms": _spread(exact_seconds),
        "bm25_ms": _spread(lexical),
        "hybrid_ms": _spread(hybrid),
        "recall_at_10": vectors.recall_at(found, exact, 10),
    }


def _spread(seconds: list[float]) -> dict:
    return {"p50": _percentile(seconds, 50) * 1000, "p95": _percentile(seconds, 95) * 1000}


# Synthetic vectors. Uniform random unit vectors would make recall meaningless (every point is
# about equally far from every other), so the generator imitates MiniLM passage embeddings:
# documents of ~200 passages, sections of ~10, passages scattered around their section, noise
# concentrated in few directions (variance of direction i falls as 1/i, as in real embedding
# spectra) plus a small shared offset. Questions are drawn near one passage each. Checked on
# 5,103 SQuAD sentences and 1,000 SQuAD questions embedded with MiniLM (real vs synthetic at
# the same size): question-to-nearest cosine 0.66 vs 0.71, to 10th-nearest 0.48 vs 0.46,
# random pairs 0.03 vs 0.02, and IVF recall@10 at nlist=sqrt(n) for nprobe 1/4/8/16 of
# 0.63/0.92/0.96/0.99 vs 0.46/0.81/0.91/0.97: the synthetic set is the harder one.
PASSAGES_PER_DOCUMENT = 200
PASSAGES_PER_SECTION = 10
SECTION_SPREAD = 1.2  # noise around a document, relative to a unit vector's length
PASSAGE_SPREAD = 0.9  # around a section
QUESTION_SPREAD = 1.0  # around the passage a question is about
SPECTRUM_DECAY = 0.5  # standard deviation of direction i is proportional to i ** -SPECTRUM_DECAY
SHARED_OFFSET = 0.1
SEARCH_QUERIES = 200
EXACT_TIMED_QUERIES = 20  # exact search of 1M vectors takes ~0.4 s a question
GROWTH_START = 10_000
# Made-up words appended to each synthetic passage, drawn from a Zipf law over this many
# words: a realistic long tail for the BM25 vocabulary (repeating ~2,000 real sentences alone
# would keep it unrealistically small).
SYNTHETIC_VOCABULARY = 500_000
SYNTHETIC_WORDS_PER_PASSAGE = 2
TOKENIZING_SAMPLE = 20_000  # passages whose tokenizing is timed (it is per-passage work)


def _noise(rng: np.random.Generator, rows: int, dimension: int) -> np.ndarray:
    scale = (1.0 + np.arange(dimension, dtype=np.float32)) ** -SPECTRUM_DECAY
    scale *= np.sqrt(dimension / np.sum(scale**2)) / np.sqrt(dimension)
    out = np.empty((rows, dimension), dtype=np.float32)
    for start in range(0, rows, 100_000):  # in blocks: no float64 temporaries of the whole
        block = rng.standard_normal((min(100_000, rows - start), dimension), dtype=np.float32)
        out[start : start + len(block)] = block * scale
    return out


def _unit(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def clustered_vectors(n: int, dimension: int, *, seed: int = 0) -> np.ndarray:
    """`n` unit vectors clustered like passage embeddings (see the constants above)."""
    rng = np.random.default_rng(seed)
    offset = _unit(rng.standard_normal((1, dimension)).astype(np.float32))
    documents = _unit(_noise(rng, max(1, n // PASSAGES_PER_DOCUMENT), dimension))
    sections = max(1, n // PASSAGES_PER_SECTION)
    sections = _unit(documents[rng.integers(0, len(documents), sections)] + SECTION_SPREAD * _noise(rng, sections, dimension))
    out = _noise(rng, n, dimension)
    out *= PASSAGE_SPREAD
    out += sections[rng.integers(0, len(sections), n)]
    _unit(out)
    out += SHARED_OFFSET * offset
    return _unit(out)


def nearby_queries(anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic question near each anchor passage vector."""
    return _unit(anchors + QUESTION_SPREAD * _noise(rng, len(anchors), anchors.shape[1]))


def synthetic_contents(passages: int, dimension: int, texts: list[str], model: str) -> tuple[dict, float]:
    """Arguments for `store.write` (corpus sentences with made-up words, clustered unit vectors),
    and the measured tokenizing speed in passages/s.

    Tokenizing (`rag.text.terms`) is word by word, so a passage's terms are its sentence's terms
    followed by its made-up words' terms; they are computed once per sentence, and the per-passage
    cost is measured separately on `TOKENIZING_SAMPLE` passages.
    """
    from rag.settings import ChunkSettings
    from rag.splitting import passage_id
    from rag.store import SourceRecord
    from rag.text import terms
    from rag.types import Passage

    rng = np.random.default_rng(0)
    sentence = rng.integers(0, len(texts), passages)
    words = np.minimum(rng.zipf(1.2, (passages, SYNTHETIC_WORDS_PER_PASSAGE)), SYNTHETIC_VOCABULARY)
    sentence_terms = [terms(t) for t in texts]
    items: list[Passage] = []
    passage_terms: list[list[str]] = []
    sources: dict[str, SourceRecord] = {}
    for number in range(0, passages, PASSAGES_PER_DOCUMENT):
        source = f"/synthetic/document-{number // PASSAGES_PER_DOCUMENT:05d}.txt"
        offset = 0
        count = min(PASSAGES_PER_DOCUMENT, passages - number)
        for position in range(count):
            row = number + position
            made_up = [f"zq{w}" for w in words[row]]
            text = f"{texts[sentence[row]]} {' '.join(made_up)}"
            items.append(Passage(id=passage_id(source, offset, offset + len(text), text), source=source, start=offset,
                                 end=offset + len(text), text=text, position=position, paragraph=position // 5))
            passage_terms.append(sentence_terms[sentence[row]] + made_up)
            offset += len(text) + 1
        sources[source] = SourceRecord(sha256="0" * 64, size=offset, mtime_ns=0, encoding="utf-8", passages=count)
    sample = [p.text for p in items[:TOKENIZING_SAMPLE]]
    _, tokenizing_seconds = _timed(lambda: [terms(t) for t in sample])
    assert [terms(t) for t in sample[:100]] == passage_terms[:100]  # the shortcut tokenizes alike
    contents = {
        "passages": items,
        "vectors": clustered_vectors(passages, dimension),
        "passage_terms": passage_terms,
        "sources": sources,
        "settings": {"model": model, "dimension": dimension, "normalized": True, "chunking": ChunkSettings().to_dict()},
    }
    return contents, len(sample) / tokenizing_seconds


_PEAK_RESET = [False]  # whether the kernel let us reset the peak (else the peak is the process's)


def _reset_peak_memory() -> int:
    """Reset the peak-RSS mark if Linux allows it; return the current resident bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _PEAK_RESET[0] = True
    except OSError:
        _PEAK_RESET[0] = False
    return _memory_bytes()[0]


def _memory_bytes() -> tuple[int, int]:
    """(resident, peak resident) bytes of this process."""
    try:
        status = Path("/proc/self/status").read_text()
        fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
        return int(fields["VmRSS"]) * 1024, int(fields["VmHWM"]) * 1024
    except (OSError, KeyError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return peak, peak


# -- choosing the ANN threshold (`rag bench --ann-sweep`) -------------------------------------

ANN_SWEEP_SIZES = (10_000, 20_000, 50_000, 100_000, 200_000)


def run_ann_sweep(*, out: Path) -> int:
    """Exact against IVF dense search by collection size, with embedding a question as the yardstick.

    The threshold is the smallest size at which exact search of one question takes longer than
    embedding it (so search would dominate a question's retrieval) while IVF, with the nprobe
    its own calibration picks, keeps recall@10 against exact at or above REQUIRED_RECALL.
    Each exact search is followed at once by a bare encode of a question, so a burst of load
    from another process slows both alike. Vectors and questions are synthetic
    (`clustered_vectors`, `nearby_queries`).
    """
    from rag import vectors
    from rag.embedding import Embedder
    from rag.retrieval import CANDIDATES
    from rag.settings import default_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = Embedder(default_model())
    _warm_up(embedder)
    results = []
    with Watch() as watch:
        for n in ANN_SWEEP_SIZES:
            _progress(f"ann sweep: {n:,} synthetic vectors")
            stored = clustered_vectors(n, 384)
            rng = np.random.default_rng(1)
            queries = nearby_queries(stored[rng.choice(n, SEARCH_QUERIES)], rng)
            (flat, _), flat_seconds = _timed(lambda: vectors.build(stored, threshold=n + 1))
            (ivf, spec), ivf_seconds = _timed(lambda: vectors.build(stored, threshold=1))
            _, exact = vectors.search(flat, queries, 10)
            _, found = vectors.search(ivf, queries, 10)
            vectors.search(flat, queries[:10], CANDIDATES)  # warm up
            vectors.search(ivf, queries[:10], CANDIDATES)
            exact_seconds, encode_seconds = [], []
            for number, query in enumerate(queries):
                exact_seconds.append(_timed(lambda: vectors.search(flat, query, CANDIDATES))[1])
                encode_seconds.append(bare_question_seconds(embedder, SAMPLE_QUESTIONS[number % len(SAMPLE_QUESTIONS)]))
            ivf_latency = [_timed(lambda: vectors.search(ivf, q, CANDIDATES))[1] for q in queries]
            results.append({"passages": n, "exact_ms": _spread(exact_seconds), "ivf_ms": _spread(ivf_latency),
                            "encode_ms": _spread(encode_seconds),
                            "recall_at_10": vectors.recall_at(found, exact, 10), "ivf": spec.to_dict(),
                            "build_seconds": {"exact": flat_seconds, "ivf": ivf_seconds}})
    chosen = next((r["passages"] for r in results
                   if r["exact_ms"]["p50"] > r["encode_ms"]["p50"] and r["recall_at_10"] >= REQUIRED_RECALL), None)
    print(f"ann sweep on SYNTHETIC vectors (see clustered_vectors), {SEARCH_QUERIES} questions per size; "
          f"other processes took {watch.share or 0:.0%} of the CPU\n")
    table = [("passages", "encode p50 ms", "exact p50/p95 ms", "ivf p50/p95 ms", "ivf nlist/nprobe", "recall@10",
              "build exact/ivf s")]
    for r in results:
        table.append((f"{r['passages']:,}", f"{r['encode_ms']['p50']:.2f}",
                      f"{r['exact_ms']['p50']:.2f}/{r['exact_ms']['p95']:.2f}",
                      f"{r['ivf_ms']['p50']:.2f}/{r['ivf_ms']['p95']:.2f}", f"{r['ivf']['nlist']}/{r['ivf']['nprobe']}",
                      f"{r['recall_at_10']:.3f}",
                      f"{r['build_seconds']['exact']:.2f}/{r['build_seconds']['ivf']:.1f}"))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for number, line in enumerate(table):
        print("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)))
        if number == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\nsmallest size where exact search takes longer than embedding the question and IVF keeps "
          f"recall@10 >= {REQUIRED_RECALL}: {chosen:,}" if chosen else "\nno size in the sweep qualifies")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"contention": watch.share, "sizes": results,
                               "threshold": chosen}, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0


# -- report -----------------------------------------------------------------------------------


def print_report(results: dict) -> None:
    machine = results["machine"]
    print(f"rag bench: {machine['cpus']} CPUs, Python {machine['python']}, torch {machine['torch']}, "
          f"sentence-transformers {machine['sentence_transformers']}; model {results['model']} "
          f"({results['dimension']} dims)")
    contention = machine["contention"]
    if contention["share_of_machine"] is not None:
        print(f"other processes used {contention['other_cpu_seconds']:.0f} CPU-s during the run "
              f"({contention['share_of_machine']:.0%} of the machine)"
              + ("; WARNING: the timings are contended, re-run on an idle machine"
                 if contention["share_of_machine"] > CONTENDED else ""))
    corpus = results["corpus"]
    print(f"corpus: {corpus['description']}: {corpus['documents']} documents, {corpus['passages']:,} passages; "
          f"{corpus['questions']} questions")
    print(f"synthetic rows: {results['synthetic']['passages']:,} SYNTHETIC passages (clustered unit vectors shaped "
          f"like MiniLM's; corpus sentences with made-up words), written with rag.store.write and opened with "
          f"rag.store.load in fresh subprocesses\n")
    table = [("what", "ours", "baseline", "ratio")]
    flagged = False
    for row in results["rows"]:
        if row["ratio"] is None:
            ratio = "n/a"
        else:
            ratio = f"{row['ratio']:.0%}" if row["share"] else f"{row['ratio']:.2f}x"
        if (row["contention"] or 0) > CONTENDED:
            ratio += " !"
            flagged = True
        table.append((row["what"], _format(row["ours"], row["unit"]), _format(row["baseline"], row["unit"]), ratio))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for number, line in enumerate(table):
        print("  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line)))
        if number == 0:
            print("  ".join("-" * w for w in widths))
    if flagged:
        print(f"! measured while other processes took over {CONTENDED:.0%} of the CPU: re-run on an idle machine")
    notes = [(row["what"], row["note"]) for row in results["rows"] if row["note"]]
    if notes:
        print("\nnotes:")
        for what, note in notes:
            print(f"  {what.split(' (')[0].split(' vs ')[0]}: {note}")
    print_growth(results["growth"])


def print_growth(growth: list[dict]) -> None:
    """The search-scaling table: one line per synthetic collection size."""
    print("\nsearch scaling on SYNTHETIC data (clustered unit vectors shaped like MiniLM embeddings of SQuAD, "
          "see eval/bench.py;\ntexts: corpus sentences + Zipf-distributed made-up words). Latencies per question, "
          f"{growth[0]['open']['queries']} questions, one at a time;\n'exact' scans every vector; "
          "bytes and memory are per passage; write = rag.store.write, open = rag.store.load.")
    table = [("passages", "index", "write s", "(vectors/bm25)", "open s", "dense p50/p95 ms", "exact p50 ms",
              "recall@10", "bm25 p50/p95 ms", "hybrid p50/p95 ms", "disk B/psg", "open RSS B/psg", "write peak B/psg")]
    for size in growth:
        n, written, opened = size["passages"], size["write"], size["open"]
        spec = written["vector_index"]
        kind = "flat" if spec["kind"] == "flat" else f"ivf {spec['nlist']}/{spec['nprobe']}"
        stages = written.get("stages") or {}
        table.append((
            f"{n:,}", kind, f"{written['seconds']:.1f}",
            f"{stages.get('vectors', 0):.1f}/{stages.get('bm25', 0):.1f}", f"{opened['seconds']:.2f}",
            f"{opened['dense_ms']['p50']:.2f}/{opened['dense_ms']['p95']:.2f}", f"{opened['exact_ms']['p50']:.1f}",
            f"{opened['recall_at_10']:.3f}",
            f"{opened['bm25_ms']['p50']:.1f}/{opened['bm25_ms']['p95']:.1f}",
            f"{opened['hybrid_ms']['p50']:.1f}/{opened['hybrid_ms']['p95']:.1f}",
            f"{size['bytes_on_disk'] / n:,.0f}", f"{opened['resident_increase_bytes'] / n:,.0f}",
            f"{written['peak_increase_bytes'] / n:,.0f}",
        ))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for number, line in enumerate(table):
        print("  ".join(cell.rjust(widths[i]) for i, cell in enumerate(line)))
        if number == 0:
            print("  ".join("-" * w for w in widths))
    rate = growth[-1]["write"]["tokenizing_passages_per_second"]
    print(f"index = flat (exact) or ivf nlist/nprobe; write s excludes tokenizing for BM25 (rag.text.terms, "
          f"measured apart: {rate:,.0f} passages/s, i.e. {growth[-1]['passages'] / rate:,.0f} s more for "
          f"{growth[-1]['passages']:,} passages)")


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "passages/s":
        return f"{value:,.0f} passages/s"
    return f"{value:,.1f} {unit}"


# -- helpers ----------------------------------------------------------------------------------


def _warm_up(embedder) -> None:
    """Load the model and run a few batches so first-call costs stay out of every timing."""
    from rag.embedding import BATCH_SIZE

    sentences = [f"Warm-up sentence number {i} about treaties, armies and rivers." for i in range(BATCH_SIZE)]
    embedder.model.encode(sentences, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
    embedder.encode_query("A warm-up question?")


def _timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _rag_command() -> list[str]:
    script = Path(sys.executable).parent / "rag"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "rag.cli"]


def _run(command: list[str], *, expect_output: bool = False) -> tuple[float, str | None]:
    """Wall seconds of `command`, and an error message if it failed (or printed nothing when it should)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or (expect_output and not done.stdout.strip()):
        return seconds, f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return seconds, None


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _raw_vector_bytes(passages: int, dimension: int) -> int:
    return passages * dimension * np.dtype(np.float32).itemsize


def _machine() -> dict:
    import sentence_transformers
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its children)."""
    try:
        counters = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = counters[3] + counters[4]  # idle + iowait
    times = os.times()
    ours = times.user + times.system + times.children_user + times.children_system
    return (sum(counters) - idle) / os.sysconf("SC_CLK_TCK"), ours


class Watch:
    """Measures how much CPU other processes took while a block ran: timings are fair only if little."""

    other_seconds: float | None = None
    share: float | None = None  # of the whole machine's CPU time during the block

    def __enter__(self) -> "Watch":
        self._before = _cpu_seconds()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        after = _cpu_seconds()
        wall = time.perf_counter() - self._started
        if self._before is None or after is None or wall <= 0:
            return
        self.other_seconds = max(0.0, (after[0] - self._before[0]) - (after[1] - self._before[1]))
        self.share = self.other_seconds / (wall * (os.cpu_count() or 1))

    def mark(self, rows: list[Row]) -> list[Row]:
        """Record the contention on rows measured in this block (call after the block ended)."""
        for row in rows:
            row.contention = None if self.share is None else round(self.share, 3)
        return rows


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    # Only the synthetic-store subprocess runs this module directly; users run `rag bench`.
    if len(sys.argv) == 8 and sys.argv[1] == "--store-child":
        _, _, child_action, n, dim, folder, inputs_path, model_name = sys.argv
        result = store_child(child_action, int(n), int(dim), Path(folder), Path(inputs_path), model_name)
        print(json.dumps(result))
        sys.exit(0)
    sys.exit("usage: rag bench [--out FILE] [--passages N]")
