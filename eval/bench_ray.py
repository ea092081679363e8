"""`rag bench --ray`: beyond one machine, as ratios measured in one run on a local Ray cluster.

Rows (each a ratio of two timings taken in the same process, minutes apart):

- ingestion, 2 nodes ÷ 1 node: passages/s of `rag.cluster.ingest.embed_on_ray` on a local
  cluster of 1-CPU nodes, one actor per node, 1 torch thread each (Ray sets OMP_NUM_THREADS to
  a task's CPUs; the run records what an actor's torch reports);
- Ray with one worker ÷ the local embedder (`Embedder.encode` in this process, 1 torch thread, on
  the same texts in the same batches): Ray's overhead per passage;
- `rag serve` p50 minus in-process `Assistant.ask` p50, the same questions on the same sharded
  index (HTTP, the Serve proxy, the front and the shard searchers);
- updating one document of an S-shard index ÷ building it whole (both local, 1 torch thread).

The 2-nodes ÷ 1-node row is end-to-end: passages/s from submitting the job to the last vector,
starting the actors (a Python process, torch and the model each: seconds that do not grow with
the corpus) included. The 1-worker ÷ local row compares steady throughput, since the local model
was loaded before its timing: the actor's time from its first batch to its last against the
local encoder's time for the same passages (both embed the same texts longest first). Before,
it compared passages/s after the first batch on each side; the actor's first batch held ~1,000
of the longest passages, the local one 512, so the actor looked 1.37 times as fast. The run
reports the end-to-end variant of each row too, and the seconds until the first batches.

Two corpora:

- ingestion: every distinct paragraph of both SQuAD files (`../shared/data`), split as
  `rag index` splits them, copied until one worker needs about `INGEST_TARGET_SECONDS` at the
  local rate, so starting the actors is a small share of a run (the previous 2,506 passages
  were 3 batches an actor: start-up was 41 of 45 s, and 2 nodes looked no faster than 1). Each
  copy is made distinct by a number at its end (`copies`): `Embedder.encode` embeds a repeated
  text once, locally and in each Ray batch alike;
- update and serving: the contexts of the first SQuAD articles' paragraphs, dealt into S
  documents of equal size whose paths hash to distinct shards, so each shard holds one document
  and 1/S of the passages; the update changes one of them.

Without SQuAD, the sample document stands in for both, cut the same way.

The cluster is started here (`ray.cluster_utils.Cluster`); Ray binds the machine's network
address, so `rag bench --ray`, run as root, re-runs itself in a loopback-only network namespace
(`unshare --net`) and nothing leaves the machine. The machine's other load is not controlled:
the report says how busy it was (load average before and after).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from eval.paths import shared_data  # noqa: E402 - after the setting above, which Ray reads when imported

SQUAD = shared_data("squad-v1.1-dev-part-a.json")
SQUAD_V2 = shared_data("squad-v2.0-dev-part-a.json")  # the same articles, some paragraphs not in v1.1's part
# SQuAD articles dealt into the shards' documents for the update and serving rows (~2,500 passages).
ARTICLES = 12
# Seconds one worker should embed the ingestion corpus for, at the local rate: the actors' start
# (~40 s measured on this machine, loaded) is then about a fifth of a 1-node run, and the whole
# `rag bench --ray` stays around 10 minutes on an idle 2-core machine (1 node ~3.5 min, 2 nodes ~2).
INGEST_TARGET_SECONDS = 180
SHARDS = 4
# Questions timed for the serving row: the p50 of 20 moved by ~3 ms from run to run on the idle
# machine (a question's reading takes 50-100 ms), against a 10 ms budget.
QUESTIONS = 60
SAMPLE = 512  # passages timed to choose how many copies of the ingestion corpus to embed
ROUNDS = 2  # each question asked this many times; the last round is timed
# Issue 16's targets, printed beside each ratio.
TARGETS = {
    "ingestion_2_nodes_over_1": (">=", 1.6),
    "ray_1_worker_over_local": (">=", 0.85),
    "serve_minus_in_process_p50_ms": ("<=", 10.0),
    "update_over_full_build": ("~=", 1 / SHARDS),
}
# Ray gives a starting node 30 s to register (hard-coded in ray._private.node); on a machine
# loaded 10-fold (measured here: load average 28 on 2 cores) that is not always enough, and
# starting again is.
CLUSTER_START_ATTEMPTS = 3


def start_local_cluster(nodes: int = 1):
    """A `ray.cluster_utils.Cluster` of `nodes` 1-CPU nodes on this machine, its workers at normal
    priority as `rag serve` starts them (rag.cluster.SYSTEM_CONFIG), retried if a node does not
    register in time. Call inside a loopback-only network namespace."""
    from ray.cluster_utils import Cluster

    from .internals import RAY_SYSTEM_CONFIG

    for attempt in range(1, CLUSTER_START_ATTEMPTS + 1):
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                       "_system_config": RAY_SYSTEM_CONFIG})
            for _ in range(nodes - 1):
                add_node(cluster)
            cluster.wait_for_nodes()
            return cluster
        except Exception:
            if cluster is not None:
                cluster.shutdown()
            if attempt == CLUSTER_START_ATTEMPTS:
                raise
            _progress(f"a node did not start in time (attempt {attempt}); starting again")


def add_node(cluster):
    """Add a 1-CPU node, retried like `start_local_cluster`; returns it."""
    for attempt in range(1, CLUSTER_START_ATTEMPTS + 1):
        try:
            node = cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            return node
        except Exception:
            if attempt == CLUSTER_START_ATTEMPTS:
                raise
            _progress(f"a node did not start in time (attempt {attempt}); starting again")


def run_ray_bench(*, out: Path) -> int:
    """Measure every row it can; a row whose step failed (a node that would not start on a
    loaded machine) is reported as not measured, with the reason. Results are written as they come."""
    import torch

    from rag import Assistant, Embedder

    torch.set_num_threads(1)  # the local baseline gets what one Ray worker gets: 1 thread
    work = Path(tempfile.mkdtemp(prefix="rag-bench-ray-"))
    results: dict = {"load_average_before": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count()}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")

    cluster = None
    try:
        docs, questions, corpus = _corpus(work, SHARDS)
        distinct, ingest_corpus = _ingestion_corpus(work)
        embedder = Embedder()
        embedder.encode(distinct[:64])  # the local model loaded before timing, as a running process has it
        sample = distinct[:: max(1, len(distinct) // SAMPLE)][:SAMPLE]  # every length, for the rate's estimate
        estimate = len(sample) / _timed(lambda: embedder.encode(sample))
        repeats = max(1, round(INGEST_TARGET_SECONDS * estimate / len(distinct)))
        texts = copies(distinct, repeats)
        _progress(f"{len(texts)} passages for ingestion; local embedding (1 thread)")
        # The local baseline embeds the very texts Ray embeds, in the same batches (both sort
        # longest first and report every 512 passages), so its rates compare with Ray's row by row.
        local, local_arrivals = _throughput(lambda progress: embedder.encode(texts, progress=progress), len(texts), workers=1)
        results.update({"corpus": corpus, "passages": len(_passages(docs)),
                        "ingestion_corpus": f"{ingest_corpus}, {len(distinct)} passages, {repeats} copies of each",
                        "ingestion_passages": len(texts), "local": local})
        save()

        _progress(f"update one document of a {SHARDS}-shard index vs building it")
        full = _timed(lambda: Assistant.build([docs], index_dir=work / "sharded", shards=SHARDS))
        changed = sorted(docs.glob("*.txt"))[0]
        changed.write_text(changed.read_text(encoding="utf-8") + "\nOne more sentence was added.\n", encoding="utf-8")
        updated, update = _timed_result(lambda: Assistant.build([docs], index_dir=work / "sharded"))
        results.update({"shards": SHARDS, "full_build_s": round(full, 2), "update_one_document_s": round(update, 2),
                        "update_embedded_passages": updated.last_build.embedded if updated.last_build else None,
                        "update_over_full_build": round(update / full, 3)})
        save()

        _progress("starting a 1-node cluster")
        cluster = start_local_cluster(1)
        import ray

        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        results["ray_worker_torch_threads"] = ray.get(ray.remote(num_cpus=1)(_torch_threads).remote())
        one, arrivals = _ray_throughput(texts, embedder.model_name, workers=1)
        # Ray's overhead per passage: the passages after the actor's first batch (both sides sort
        # longest first, so they are the same passages), against the local encoder's time for them.
        first_done, first_at = arrivals[0]
        done, seconds = np.array(local_arrivals, dtype=float).T
        local_seconds = seconds[-1] - float(np.interp(first_done, done, seconds))
        results.update({"ray_1_node": one,
                        "ray_1_worker_over_local": round(local_seconds / (arrivals[-1][1] - first_at), 2),
                        "ray_1_worker_over_local_end_to_end": round(local["seconds"] / one["seconds"], 2)})
        save()

        _progress("serving the sharded index with Ray Serve")
        from ray import serve

        try:
            local_p50, served_p50, paired_p50 = _serve_latency(work / "sharded", questions)
        except Exception as error:  # a replica that would not start on a loaded machine
            results["serve_minus_in_process_p50_ms"] = f"not measured: {type(error).__name__}: {error}"[:300]
        else:
            results.update({"ask_p50_ms_in_process": round(local_p50 * 1000, 1),
                            "ask_p50_ms_served": round(served_p50 * 1000, 1),
                            "serve_minus_in_process_p50_ms": round((served_p50 - local_p50) * 1000, 1),
                            "serve_minus_in_process_per_question_p50_ms": round(paired_p50 * 1000, 1)})
        save()
        serve.shutdown()

        _progress("adding a second node")
        try:
            add_node(cluster)
        except Exception as error:  # Ray's 30 s registration limit, on a loaded machine
            results["ingestion_2_nodes_over_1"] = f"not measured: the second node did not start ({error})"[:300]
        else:
            two, _ = _ray_throughput(texts, embedder.model_name, workers=2)
            results.update({"ray_2_nodes": two,
                            "ingestion_2_nodes_over_1":
                                round(two["end_to_end_passages_per_s"] / one["end_to_end_passages_per_s"], 2),
                            "ingestion_2_nodes_over_1_steady":
                                round(two["steady_passages_per_s"] / one["steady_passages_per_s"], 2)})
    finally:
        results["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
        save()
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    _print(results)
    print(f"written to {out}")
    return 0


def _print(results: dict) -> None:
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = ""
        if target and isinstance(value, (int, float)):
            sign, bound = target
            holds = {">=": value >= bound, "<=": value <= bound, "~=": abs(value - bound) <= 0.5 * bound}[sign]
            verdict = f"   (target {sign} {bound:g}: {'PASS' if holds else 'FAIL'})"
        print(f"{key:>36}: {value}{verdict}")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _ray_throughput(texts: list[str], model: str, *, workers: int) -> tuple[dict, list[tuple[int, float]]]:
    """Embed `texts` on `workers` actors; see `_throughput`."""
    from .internals import embed_on_ray

    return _throughput(lambda progress: embed_on_ray(texts, model=model, workers=workers, progress=progress),
                       len(texts), workers=workers)


def _throughput(embed, passages: int, *, workers: int) -> tuple[dict, list[tuple[int, float]]]:
    """Run `embed(progress)`, which reports (done, total, seconds) after each batch: its rates,
    and the (passages done, seconds since the start) of each batch.

    End to end: every passage over the whole call. Steady: from the workers' first batches (the
    first `workers` arrivals) to the last, so starting actors does not count."""
    arrivals: list[tuple[int, float]] = []
    total = _timed(lambda: embed(lambda done, _total, seconds: arrivals.append((done, seconds))))
    first_done, first_at = arrivals[min(workers, len(arrivals)) - 1]
    steady_seconds = arrivals[-1][1] - first_at
    steady = (passages - first_done) / steady_seconds if steady_seconds > 0 else float("nan")
    return {"workers": workers, "batches": len(arrivals), "seconds": round(total, 2),
            "end_to_end_passages_per_s": round(passages / total, 1),
            "until_first_batches_s": round(first_at, 2), "steady_passages_per_s": round(steady, 1)}, arrivals


def copies(texts: list[str], count: int) -> list[str]:
    """`count` copies of `texts`, each copy's texts made distinct by a number at the end.

    Identical copies would be embedded once per batch (`Embedder.encode` embeds a repeated text
    once, and sorting by length puts a text's copies side by side): an earlier version of this
    bench repeated them verbatim, and Ray with one worker then looked 3.1 times as fast as the
    local encoder, which had embedded each text once."""
    out = [text if copy == 0 else f"{text} ({copy + 1})" for copy in range(count) for text in texts]
    if len(set(out)) != len(out):
        raise ValueError("the copies are not distinct")
    return out


def _timed_result(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _serve_latency(index_dir: Path, questions: list[str]) -> tuple[float, float, float]:
    """p50 of in-process `ask`, of the same questions asked over HTTP of `rag serve`, and of the
    difference per question."""
    from rag import Assistant

    from .internals import deploy_serve

    assistant = Assistant.open(index_dir)
    port = 8000  # inside the bench's own network namespace nothing else listens
    deploy_serve(str(index_dir), port=port)  # as `rag serve` deploys it
    remote = Assistant.remote(f"http://127.0.0.1:{port}")  # the client `rag ask --server` uses

    def ask_http(question: str) -> None:
        remote.ask(question)

    # Interleaved: each question over HTTP, then at once in process, so a burst of load from
    # another process slows both alike.
    local, served = [], []
    for round_ in range(ROUNDS):
        for question in questions:
            seconds = _timed(lambda: ask_http(question)), _timed(lambda: assistant.ask(question))
            if round_ == ROUNDS - 1:
                served.append(seconds[0])
                local.append(seconds[1])
    return statistics.median(local), statistics.median(served), statistics.median(s - x for s, x in zip(served, local))


def _corpus(work: Path, shards: int) -> tuple[Path, list[str], str]:
    """`shards` documents of about equal size, the i-th in shard i; questions on them; what they hold."""
    from eval.squad import load_articles
    from rag import SAMPLE_DOCUMENT

    from .internals import shard_of

    if SQUAD.is_file():
        articles, _ = load_articles(SQUAD, articles=ARTICLES, questions=QUESTIONS // ARTICLES + 1)
        paragraphs = [p for a in articles for p in a.paragraphs]
        questions = [q.text for a in articles for q in a.questions]
        described = f"the paragraphs of the first {len(articles)} articles of {SQUAD.name}"
    else:
        paragraphs = [p for p in SAMPLE_DOCUMENT.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        questions = ["When was the Brest peace treaty signed?", "Who was the German ambassador?"]
        described = f"the paragraphs of {SAMPLE_DOCUMENT.name} ({SQUAD} is absent)"
    docs = work / "docs"
    docs.mkdir()
    parts: list[list[str]] = [[] for _ in range(shards)]
    for paragraph in sorted(paragraphs, key=len, reverse=True):  # longest first, each to the shortest part
        min(parts, key=lambda part: sum(map(len, part))).append(paragraph)
    for number, part in enumerate(parts):
        suffix = 0  # the first name of this part's that hashes to its own shard
        while shard_of(str((docs / f"part-{number}-{suffix}.txt").resolve()), shards) != number:
            suffix += 1
        (docs / f"part-{number}-{suffix}.txt").write_text("\n\n".join(part) + "\n", encoding="utf-8")
    return docs, questions[:QUESTIONS], f"{described}, dealt into {shards} documents of equal size, one per shard"


def _ingestion_corpus(work: Path) -> tuple[list[str], str]:
    """Every distinct passage of both SQuAD files' paragraphs (one document per article), and what they are."""
    from eval.squad import load_articles
    from rag import SAMPLE_DOCUMENT

    docs = work / "ingest-docs"
    docs.mkdir()
    files = [path for path in (SQUAD, SQUAD_V2) if path.is_file()]
    if not files:
        shutil.copy(SAMPLE_DOCUMENT, docs / SAMPLE_DOCUMENT.name)
        return list(dict.fromkeys(_passages(docs))), f"the passages of {SAMPLE_DOCUMENT.name} ({SQUAD} is absent)"
    seen: set[str] = set()
    for number, path in enumerate(files):
        articles, _ = load_articles(path, articles=10_000, questions=0)
        for article_number, article in enumerate(articles):
            paragraphs = [p for p in article.paragraphs if p not in seen]
            seen.update(paragraphs)
            if paragraphs:
                (docs / f"{number}-{article_number:03d}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return list(dict.fromkeys(_passages(docs))), f"the distinct paragraphs of {' and '.join(p.name for p in files)}"


def _passages(docs: Path) -> list[str]:
    from rag import ChunkSettings

    from .internals import collect, split_document

    return [p.text for d in collect([docs]).documents for p in split_document(d, ChunkSettings())]


def _progress(message: str) -> None:
    print(f"bench --ray: {message}", file=sys.stderr, flush=True)


def in_namespace_command(out: Path) -> list[str] | None:
    """The command that re-runs this bench in a loopback-only network namespace, when this
    process may create one (root and `unshare`); None otherwise."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    inner = f"ip link set lo up && exec {sys.executable} -m eval.bench_ray {out}"
    return ["unshare", "--net", "sh", "-c", inner]


if __name__ == "__main__":
    sys.exit(run_ray_bench(out=Path(sys.argv[1])))
