"""The served app under load: 16 concurrent clients for 60 seconds against `rag ui` on 127.0.0.1.

The server runs as a user starts it (`rag ui --index DIR --port N`, no --host), in its own
process, so its memory can be read from /proc and its listening address checked. The load is
bounded in time and in requests per client and stops by itself; it goes to 127.0.0.1 only.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import free_port
from processes import default_sigint

pytest.importorskip("gradio")
from test_ui import CONCURRENT_QUESTIONS  # noqa: E402 - the questions whose answers are known

from ui.app import QUEUE_CONCURRENCY, QUEUE_MAX_SIZE  # noqa: E402

CLIENTS = 16
SECONDS = 60
MAX_REQUESTS_PER_CLIENT = 2_000  # a second bound, should requests ever become very fast
# A refused client waits this long before asking again, as a person (or a polite script) would.
RETRY_AFTER = 0.2
# Memory may grow a little (caches, allocator arenas); a leak of a few KB per request over the
# thousands made here would pass 200 MB. A behaviour check, not a measurement.
MAX_RSS_GROWTH_MB = 200
# A pause in the answers longer than this many p95 latencies is a stall. With two answered at a
# time and eight waiting, answers normally arrive every half latency or so; three p95s leaves room
# for a slow spell of a shared machine. (It was "an answer in every tenth of the minute", which
# failed on a loaded machine whose first answers took 9 s: a test of the machine's speed.)
STALL_LATENCIES = 3
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
STARTUP_TIMEOUT = 300  # loading torch and the model on a busy 2-core machine


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def listening_addresses(pid: int, port: int) -> set[str]:
    """The local addresses process `pid` listens on at `port`, read from /proc/PID/net/tcp{,6}."""
    addresses = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                if table == "tcp":
                    addresses.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8))
                    addresses.add(socket.inet_ntop(socket.AF_INET6, raw))
    return addresses


@pytest.fixture(scope="module")
def server(sample, tmp_path_factory):
    """`rag ui` over a copy of the sample index, as its own process; yields (url, pid, port)."""
    import shutil

    folder = tmp_path_factory.mktemp("load")
    index_dir = folder / "index"
    shutil.copytree(sample.index_dir, index_dir)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(folder / "server.log", "w+", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "ui", "--index", str(index_dir), "--port", str(port)],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=default_sigint,  # the teardown stops it with SIGINT
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, f"rag ui exited: {(folder / 'server.log').read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "rag ui did not start listening"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", process.pid, port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_rag_ui_listens_on_127_0_0_1_only_by_default(server):
    url, pid, port = server
    assert listening_addresses(pid, port) == {"127.0.0.1"}


def test_sixteen_clients_for_a_minute_keep_getting_right_answers_with_flat_memory(server):
    from gradio_client import Client
    from gradio_client.utils import QueueError

    url, pid, _ = server
    questions = [q for q, expected in CONCURRENT_QUESTIONS.items() if expected is not None]
    clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
    clients[0].predict(questions[0], api_name="/ask")  # warm: the first answer loads lazy parts
    rss_start = rss_mb(pid)
    rss_peak = rss_start

    latencies: list[float] = []
    finished_at: list[float] = []
    refused = 0
    wrong: list[tuple[str, dict]] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop_at = started + SECONDS

    def hammer(number: int) -> None:
        nonlocal refused
        client = clients[number]
        for request in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= stop_at:
                return
            question = questions[(number + request) % len(questions)]
            sent = time.perf_counter()
            try:
                result = client.predict(question, api_name="/ask")
            except QueueError:
                with lock:
                    refused += 1
                time.sleep(RETRY_AFTER)
                continue
            except Exception as error:  # noqa: BLE001 - any other failure is recorded and fails the test
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - sent
            with lock:
                latencies.append(elapsed)
                finished_at.append(time.monotonic() - started)
                if not (result["grounded"] and CONCURRENT_QUESTIONS[question] in result["answer"]):
                    wrong.append((question, result))

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(hammer, n) for n in range(CLIENTS)]
        while not all(f.done() for f in futures):
            time.sleep(1)
            rss_peak = max(rss_peak, rss_mb(pid))
        for future in futures:
            future.result()
    duration = time.monotonic() - started
    rss_end = rss_mb(pid)

    # Then a burst: every client sends three questions at once, far more than the queue holds.
    burst = [client.submit(questions[n % len(questions)], api_name="/ask") for n, client in enumerate(clients * 3)]
    burst_refused = burst_answered = 0
    for job in burst:
        try:
            job.result(timeout=120)
            burst_answered += 1
        except QueueError:
            burst_refused += 1

    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    report = {
        "clients": CLIENTS,
        "seconds": round(duration, 1),
        "answered": len(latencies),
        "refused_queue_full": refused,
        "other_errors": len(errors),
        "p50_seconds": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "p95_seconds": round(p95, 3),
        "max_seconds": round(latencies[-1], 3) if latencies else None,
        "answers_per_second": round(len(latencies) / duration, 1),
        "queue": {"concurrency": QUEUE_CONCURRENCY, "max_size": QUEUE_MAX_SIZE},
        "burst": {"sent": len(burst), "answered": burst_answered, "refused_queue_full": burst_refused},
        "server_rss_mb": {"start": round(rss_start), "peak": round(rss_peak), "end": round(rss_end)},
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nload: {json.dumps(report)}")

    assert not errors, errors[:5]
    assert not wrong, wrong[:3]
    # It kept answering to the end: from the first answer on, no pause between two answers (or
    # after the last, up to the end of the run) was longer than STALL_LATENCIES answer latencies.
    # In the machine's own units: a loaded machine answers slower, a stalled server stops.
    marks = sorted(finished_at) + [duration]
    longest_pause = max(later - earlier for earlier, later in zip(marks, marks[1:]))
    assert longest_pause < STALL_LATENCIES * p95, (round(longest_pause, 1), report)
    assert rss_end - rss_start < MAX_RSS_GROWTH_MB, report["server_rss_mb"]
    # The queue is bounded: a burst beyond it is refused at once with "Queue is full", never
    # left to pile up; what was accepted is answered.
    assert burst_refused > 0 and burst_answered >= QUEUE_CONCURRENCY, report["burst"]
    # And the app still answers afterwards.
    result = clients[0].predict(questions[1], api_name="/ask")
    assert CONCURRENT_QUESTIONS[questions[1]] in result["answer"]
