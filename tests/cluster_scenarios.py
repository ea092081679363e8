"""What tests/test_cluster.py runs inside a loopback-only network namespace: a real two-node Ray
cluster on this machine, `rag index --ray`, a node removed mid-build, and `rag serve` (on the
cluster, and with a Ray of its own).

Ray binds the machine's network address whatever it is told, so this script only ever runs
under `unshare --net` (where the only interface is 127.0.0.1) and never sends anything
elsewhere. It measures and prints one JSON object on its last line; the test asserts on it.

    unshare --net sh -c 'ip link set lo up && exec python tests/cluster_scenarios.py WORKDIR'
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from processes import default_sigint  # noqa: E402 - tests/ is this script's own folder

SQUAD = REPO.parent / "shared" / "data" / "squad-v1.1-dev-part-a.json"
SAMPLE_QUESTIONS = [
    "When was the Brest peace treaty signed?",
    "Who was the German ambassador?",
    "How many tanks did the Germans use?",
    "What is the capital of Peru?",
]
# Generous bounds for a busy 2-core machine: each is a limit on waiting for a condition, never a
# measured time. A run that reaches one has failed.
COMMAND_TIMEOUT = 900
SERVER_READY_TIMEOUT = 600


def rag(*args: str, cwd: Path, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], cwd=cwd, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, env={**os.environ})


def start_rag(*args: str, cwd: Path) -> subprocess.Popen:
    """`rag ARGS` in the background, its output read line by line (see `watch_lines`)."""
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8", env={**os.environ},
                            preexec_fn=default_sigint)  # `rag serve` is stopped with SIGINT


def watch_lines(stream, lines: list[str], marker: Callable[[str], bool]) -> threading.Event:
    """Collect `stream`'s lines into `lines` in a thread. The event is set by the first line
    `marker` accepts, or when the stream ends (so a wait on it never outlasts the process)."""
    seen = threading.Event()

    def watch() -> None:
        for line in iter(stream.readline, ""):
            lines.append(line)
            if marker(line):
                seen.set()
        seen.set()

    threading.Thread(target=watch, daemon=True).start()
    return seen


def finish(process: subprocess.Popen, *, timeout: float) -> None:
    """Wait for `process` to end, killing it after `timeout` seconds."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_server(*args: str, cwd: Path) -> tuple[subprocess.Popen, bool]:
    """`rag serve ARGS` in the background, and whether it said it was serving (within
    `SERVER_READY_TIMEOUT`) and still runs."""
    server = start_rag("serve", *args, cwd=cwd)
    out: list[str] = []
    watch_lines(server.stdout, out, lambda line: line.startswith("serving ")).wait(timeout=SERVER_READY_TIMEOUT)
    return server, server.poll() is None and any(line.startswith("serving ") for line in out)


def stop_server(server: subprocess.Popen) -> str:
    """Stop `rag serve` as Ctrl-C does; the end of what it wrote to stderr."""
    server.send_signal(signal.SIGINT)
    finish(server, timeout=120)
    return server.stderr.read()[-1500:]


def documents(workdir: Path, articles: int) -> tuple[Path, list[str]]:
    from eval.squad import load_articles, write_documents
    from rag.settings import SAMPLE_DOCUMENT

    chosen, _ = load_articles(SQUAD, articles=articles, questions=5)
    docs = workdir / "docs"
    write_documents(chosen, docs)
    shutil.copy(SAMPLE_DOCUMENT, docs / "sample.txt")
    return docs, [q.text for a in chosen for q in a.questions] + SAMPLE_QUESTIONS


def main(workdir: Path) -> dict:
    import ray
    import torch

    from eval.bench_ray import add_node, start_local_cluster
    from rag import Assistant
    from rag import shards as sharding

    # The local index is embedded on 1 thread, as each Ray actor is (1 CPU): a matrix product
    # split over another number of threads may round differently in the last bit.
    torch.set_num_threads(1)
    report: dict = {}
    docs, questions = documents(workdir, articles=2)
    report["questions"] = len(questions)
    single = Assistant.build([docs], index_dir=workdir / "single")

    started = time.perf_counter()
    cluster = start_local_cluster(1)
    worker = add_node(cluster)
    report["cluster_up_seconds"] = round(time.perf_counter() - started, 1)
    address = cluster.address
    report["address"] = address
    try:
        # 1. A sharded index built on the cluster answers as one local index does.
        built = rag("index", str(docs), "--index", str(workdir / "sharded"), "--ray", address, "--shards", "3",
                    "--workers", "2", "--json", cwd=workdir)
        report["index_returncode"], report["index_stderr"] = built.returncode, built.stderr[-2000:]
        if built.returncode != 0:
            return report
        sharded = Assistant.open(workdir / "sharded")
        report["shards"] = sharded.manifest["counts"]["shards"]
        report["same_answers"] = [single.ask(q).to_dict() == sharded.ask(q).to_dict() for q in questions]
        report["same_dense_top10"] = [
            [h.passage.id for h in single.search(q, k=10, mode="dense")]
            == [h.passage.id for h in sharded.search(q, k=10, mode="dense")] for q in questions]
        overlaps = []
        for q in questions:
            one = {h.passage.id for h in single.search(q, k=10, mode="bm25")}
            many = {h.passage.id for h in sharded.search(q, k=10, mode="bm25")}
            overlaps.append(len(one & many) / max(1, len(one)))
        report["bm25_top10_overlap"] = sum(overlaps) / len(overlaps)

        # 2. A node removed while `rag index --ray` embeds: the index afterwards is either the
        # previous one, untouched, or the finished new one; both pass `rag status --verify`.
        previous_manifest = (workdir / "sharded" / "manifest.json").read_bytes()
        for path in docs.glob("*.txt"):  # every shard changes, so every shard is rewritten
            path.write_text(path.read_text(encoding="utf-8") + "\nA closing remark was added to this file.\n",
                            encoding="utf-8")
        process = start_rag("index", str(docs), "--index", str(workdir / "sharded"), "--ray", address,
                            "--workers", "2", "--progress", cwd=workdir)
        stderr_lines: list[str] = []
        # The bar appears once the job is submitted.
        seen = watch_lines(process.stderr, stderr_lines, lambda line: "embedding" in line)
        seen.wait(timeout=COMMAND_TIMEOUT)
        cluster.remove_node(worker, allow_graceful=False)
        report["removed_node_during_embedding"] = process.poll() is None
        finish(process, timeout=COMMAND_TIMEOUT)
        report["kill_returncode"] = process.returncode
        report["kill_stderr_last"] = "".join(stderr_lines)[-600:].strip().splitlines()[-1:] if stderr_lines else []
        after_manifest = (workdir / "sharded" / "manifest.json").read_bytes()
        report["kill_outcome"] = "previous" if after_manifest == previous_manifest else "finished"
        verified = rag("status", "--index", str(workdir / "sharded"), "--verify", "--json", cwd=workdir)
        report["verify_after_kill"] = verified.returncode
        if report["kill_outcome"] == "finished":
            fresh = Assistant.build([docs], index_dir=workdir / "single")
            now = Assistant.open(workdir / "sharded")
            report["finished_same_answers"] = all(fresh.ask(q).to_dict() == now.ask(q).to_dict() for q in questions)
        else:  # the previous index answers for the previous documents: it is intact
            report["previous_opens"] = sharding.load(workdir / "sharded").manifest["generation"]
        add_node(cluster)
        rebuilt = rag("index", str(docs), "--index", str(workdir / "sharded"), "--ray", address, cwd=workdir)
        report["rebuild_returncode"], report["rebuild_stderr"] = rebuilt.returncode, rebuilt.stderr[-1000:]
        single = Assistant.build([docs], index_dir=workdir / "single")

        # 3. `rag serve` on the cluster answers over HTTP as `rag ask --json` does locally.
        port = 8000  # the namespace is fresh: nothing else listens here
        server, report["server_ready"] = start_server("--index", str(workdir / "sharded"), "--ray", address,
                                                      "--port", str(port), "--replicas", "2", cwd=workdir)
        if report["server_ready"]:
            url = f"http://127.0.0.1:{port}"
            agree, remote_agree = [], []
            for q in questions[:4] + SAMPLE_QUESTIONS[-1:]:
                served = rag("ask", q, "--server", url, "--json", cwd=workdir)
                local = rag("ask", q, "--index", str(workdir / "sharded"), "--json", cwd=workdir)
                agree.append(served.returncode == 0 and json.loads(served.stdout) == json.loads(local.stdout))
                remote_agree.append(Assistant.remote(url).ask(q).to_dict() == single.ask(q).to_dict())
            report["serve_agrees_with_ask_json"] = agree
            report["remote_agrees_with_single_index"] = remote_agree
            # The client asks with GET; a POST with a JSON body gets the same answer, and a
            # request without a question a one-line error.
            question = questions[0]
            posted = urllib.request.Request(f"{url}/ask", data=json.dumps({"question": question}).encode("utf-8"),
                                            headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(posted, timeout=120) as response:
                report["post_agrees_with_get"] = json.loads(response.read()) == Assistant.remote(url).ask_json(question)
            try:
                urllib.request.urlopen(f"{url}/ask", timeout=120)
            except urllib.error.HTTPError as error:
                report["no_question"] = [error.code, json.loads(error.read()).get("error", "")]
        report["server_stderr"] = stop_server(server)

        # 4. Without --ray, `rag serve` starts a Ray of its own, even while a cluster runs on this
        # machine (ray.init would join that one, and refuse the server's settings for it).
        own, report["own_ray_server_ready"] = start_server("--index", str(workdir / "sharded"), "--port", str(port + 1),
                                                           cwd=workdir)
        if report["own_ray_server_ready"]:
            served = rag("ask", questions[0], "--server", f"http://127.0.0.1:{port + 1}", "--json", cwd=workdir)
            local = rag("ask", questions[0], "--index", str(workdir / "sharded"), "--json", cwd=workdir)
            report["own_ray_server_agrees"] = served.returncode == 0 and json.loads(served.stdout) == json.loads(local.stdout)
        report["own_ray_server_stderr"] = stop_server(own)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return report


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    print(json.dumps(result))
