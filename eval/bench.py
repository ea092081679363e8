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
import random
import re
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
# Synthetic passages per synthetic source file (the size of a long article).
SYNTHETIC_PASSAGES_PER_SOURCE = 100
MB = 1024 * 1024
# Share of the machine's CPU time taken by other processes above which the timings are flagged.
CONTENDED = 0.10

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

    _progress(f"cold start: {COLD_START_RUNS} runs each of `rag ask` and the bare import")
    with Watch() as watch:
        cold_row, cold_failure = cold_start_row(sample_index)
    rows += watch.mark([cold_row])
    if cold_failure:
        failures.append(cold_failure)

    dimension = int(assistant.manifest["dimension"])
    rows.append(disk_row(corpus_index, len(texts), dimension, f"real corpus, {len(texts):,} passages"))
    _progress(f"synthetic index of {synthetic_passages:,} passages: write and open in subprocesses")
    synthetic = synthetic_store(work, texts, synthetic_passages, dimension, embedder.model_name)
    rows += synthetic_rows(synthetic, dimension)

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
        "synthetic": synthetic,
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
    labels = {"embed": "embedding", "search": "search", "answer": "answer extraction"}
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


def synthetic_store(work: Path, texts: list[str], passages: int, dimension: int, model: str) -> dict:
    """Write, then open, a synthetic index in two fresh subprocesses; their memory, time and size."""
    texts_file = work / "synthetic-texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    index_dir = work / "synthetic-index"
    common = [str(passages), str(dimension), str(index_dir), str(texts_file), model]
    written = _child("write", common)
    opened = _child("open", common)
    return {"passages": passages, "dimension": dimension, "write": written, "open": opened,
            "bytes_on_disk": _folder_bytes(index_dir)}


def synthetic_rows(synthetic: dict, dimension: int) -> list[Row]:
    n = synthetic["passages"]
    raw = _raw_vector_bytes(PER, dimension) / MB
    label = f"synthetic vectors, {n:,} passages"
    per = PER / n
    return [
        Row(what=f"peak memory writing the index, per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["write"]["peak_increase_bytes"] * per / MB, baseline=raw, unit="MB",
            note=f"write took {synthetic['write']['seconds']:.1f} s"),
        Row(what=f"peak memory opening the index, per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["open"]["peak_increase_bytes"] * per / MB, baseline=raw, unit="MB",
            note=f"open took {synthetic['open']['seconds']:.2f} s; "
            f"resident after: {synthetic['open']['resident_increase_bytes'] * per / MB:.1f} MB per {PER:,}"),
        Row(what=f"index on disk per {PER:,} passages ({label}) vs raw float32 vectors",
            ours=synthetic["bytes_on_disk"] * per / MB, baseline=raw, unit="MB"),
    ]


# -- the subprocess side of the synthetic measurement -----------------------------------------


def _child(action: str, arguments: list[str]) -> dict:
    command = [sys.executable, "-m", "eval.bench", "--store-child", action, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"synthetic {action} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def store_child(action: str, passages: int, dimension: int, index_dir: Path, texts_file: Path, model: str) -> dict:
    """In a fresh process: write (or open) a synthetic index; peak memory above the state before."""
    import bm25s  # noqa: F401 - imported before the baseline so import costs are not counted
    import faiss  # noqa: F401

    from rag import store

    if action == "open":
        before = _reset_peak_memory()
        data, seconds = _timed(lambda: store.load(index_dir))
        current, peak = _memory_bytes()
        assert len(data.passages) == passages
        return {"seconds": seconds, "peak_increase_bytes": peak - before, "resident_increase_bytes": current - before,
                "peak_reset": _PEAK_RESET[0]}
    contents = _synthetic_contents(passages, dimension, json.loads(texts_file.read_text(encoding="utf-8")), model)
    index_dir.mkdir(parents=True, exist_ok=True)
    before = _reset_peak_memory()
    with store.lock(index_dir):
        _, seconds = _timed(lambda: store.write(index_dir, **contents, previous=None))
    _, peak = _memory_bytes()
    return {"seconds": seconds, "peak_increase_bytes": peak - before, "peak_reset": _PEAK_RESET[0]}


def _synthetic_contents(passages: int, dimension: int, texts: list[str], model: str) -> dict:
    """Arguments for `store.write`: corpus sentences with random numbers, random unit vectors."""
    from rag.settings import ChunkSettings
    from rag.splitting import passage_id
    from rag.store import SourceRecord
    from rag.text import terms
    from rag.types import Passage

    rng = random.Random(0)
    items: list[Passage] = []
    sources: dict[str, SourceRecord] = {}
    for number in range(0, passages, SYNTHETIC_PASSAGES_PER_SOURCE):
        source = f"/synthetic/document-{number // SYNTHETIC_PASSAGES_PER_SOURCE:05d}.txt"
        offset = 0
        count = min(SYNTHETIC_PASSAGES_PER_SOURCE, passages - number)
        for position in range(count):
            text = f"{rng.choice(texts)} ({rng.randint(0, 10**9)} / {rng.random():.4f})"
            items.append(Passage(id=passage_id(source, offset, offset + len(text), text), source=source, start=offset,
                                 end=offset + len(text), text=text, position=position, paragraph=position // 5))
            offset += len(text) + 1
        sources[source] = SourceRecord(sha256="0" * 64, size=offset, mtime_ns=0, encoding="utf-8", passages=count)
    vectors = np.random.default_rng(0).standard_normal((passages, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {
        "passages": items,
        "vectors": vectors,
        "passage_terms": [terms(p.text) for p in items],
        "sources": sources,
        "settings": {"model": model, "dimension": dimension, "normalized": True, "chunking": ChunkSettings().to_dict()},
    }


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
    print(f"memory rows: synthetic vectors ({results['synthetic']['passages']:,} random unit vectors, corpus "
          f"sentences with random numbers), written with rag.store.write in a fresh subprocess\n")
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
        _, _, child_action, n, dim, folder, texts_path, model_name = sys.argv
        result = store_child(child_action, int(n), int(dim), Path(folder), Path(texts_path), model_name)
        print(json.dumps(result))
        sys.exit(0)
    sys.exit("usage: rag bench [--out FILE] [--passages N]")
