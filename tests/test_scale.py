"""Scale: the vector index type chosen by size, interrupting a build, and what `rag status` reports.

Real FAISS and real indexes throughout; the approximate index is exercised on small collections
by lowering the threshold with RAG_ANN_THRESHOLD.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ORCHARD, ORCHARD_QUESTION, assert_one_line_error, run_rag
from processes import default_sigint

from eval.bench import clustered_vectors, nearby_queries
from rag import Assistant, store, vectors
from rag.cli import main
from rag.embedding import CHUNK
from rag.errors import ConfigError
from rag.settings import ENV_PAUSE_EMBEDDING


def manifest_of(index_dir: Path) -> dict:
    return json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))


# -- the vector index type ----------------------------------------------------------------------


def test_below_the_threshold_the_index_is_exact(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv(vectors.ENV_ANN_THRESHOLD, "7")  # the corpus has 6 passages
    Assistant.build([corpus], index_dir=tmp_path / "index")

    manifest = manifest_of(tmp_path / "index")
    assert manifest["index_type"] == "flat"
    assert manifest["vector_index"]["kind"] == "flat"


def test_above_the_threshold_an_ivf_index_is_recorded_reopened_and_updated(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv(vectors.ENV_ANN_THRESHOLD, "6")
    index_dir = tmp_path / "index"
    built = Assistant.build([corpus], index_dir=index_dir)

    recorded = manifest_of(index_dir)["vector_index"]
    assert recorded["kind"] == "ivf" and recorded["nlist"] >= 1 and 1 <= recorded["nprobe"] <= recorded["nlist"]
    opened = Assistant.open(index_dir)
    assert type(opened._data.faiss_index).__name__ == "IndexIVFScalarQuantizer"
    assert opened.ask(ORCHARD_QUESTION).text.startswith("1920")
    assert opened.status()["index_type"].startswith("ivf (nlist=")
    # The IVF lists hold the vectors themselves (fp16): they read back as stored, for incremental builds.
    np.testing.assert_array_equal(opened._data.vectors(), built._data.vectors())

    (corpus / "harbour.txt").write_text("The harbour of Lessing was built in 1777 by merchants.\n", encoding="utf-8")
    updated = Assistant.build([corpus], index_dir=index_dir)
    assert updated.last_build.embedded == 1  # the six IVF-held vectors were reused, not re-embedded
    assert Assistant.open(index_dir).ask("When was the harbour of Lessing built?").text.startswith("1777")
    assert Assistant.open(index_dir).ask(ORCHARD_QUESTION).text.startswith("1920")


def test_ivf_search_agrees_with_exact_search_on_clustered_vectors(tmp_path):
    stored = clustered_vectors(4000, 384)
    rng = np.random.default_rng(7)
    queries = nearby_queries(stored[rng.choice(len(stored), 100)], rng)
    exact_index, exact_spec = vectors.build(stored, threshold=len(stored) + 1)
    ann_index, ann_spec = vectors.build(stored, threshold=len(stored))
    assert (exact_spec.kind, ann_spec.kind) == ("flat", "ivf")

    # Written and memory-mapped back, as `rag` opens it.
    vectors.write(ann_index, tmp_path / "ann.faiss")
    reopened = vectors.read(tmp_path / "ann.faiss", ann_spec)
    _, exact = vectors.search(exact_index, queries, 10)
    _, found = vectors.search(reopened, queries, 10)

    assert vectors.recall_at(found, exact, 10) >= 0.9
    assert ann_spec.calibration_recall >= vectors.CALIBRATION_RECALL or ann_spec.nprobe == ann_spec.nlist
    # The vectors read back as stored (fp16), within a rounding of the originals; stored again, they do not change.
    np.testing.assert_array_equal(vectors.all_vectors(reopened), vectors.as_stored(stored))
    np.testing.assert_allclose(vectors.all_vectors(reopened), stored, atol=1e-3)
    np.testing.assert_array_equal(vectors.as_stored(vectors.all_vectors(reopened)), vectors.all_vectors(reopened))
    np.testing.assert_array_equal(vectors.vector(reopened, 1234), vectors.as_stored(stored[1234:1235])[0])


def test_recall_at_counts_shared_neighbours():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 2, 9], [7, 8, 9]])
    assert vectors.recall_at(found, exact, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert vectors.recall_at(found, exact, 3, exclude=np.array([9, 4])) == pytest.approx((2 / 3 + 0) / 2)


@pytest.mark.parametrize("value", ["many", "0", "-5"])
def test_a_bad_threshold_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(vectors.ENV_ANN_THRESHOLD, value)
    with pytest.raises(ConfigError, match=rf"RAG_ANN_THRESHOLD must be a positive whole number of passages, not '{value}'"):
        vectors.ann_threshold()


# -- opening checks cheap invariants; a truncated IVF file is still caught ------------------------


def test_a_truncated_ivf_file_is_refused_at_open_without_crashing(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv(vectors.ENV_ANN_THRESHOLD, "1")
    index_dir = tmp_path / "index"
    Assistant.build([corpus], index_dir=index_dir)
    path = next(index_dir.glob("vectors-*.faiss"))
    path.write_bytes(path.read_bytes()[:-100])  # memory-mapped unchecked, this would be a SIGBUS

    result = run_rag("ask", ORCHARD_QUESTION, "--index", str(index_dir), cwd=tmp_path)

    assert_one_line_error(result, "damaged", "bytes where", f"rag index PATH --index {index_dir}")


# -- interrupting a build -----------------------------------------------------------------------


def _write_many_documents(folder: Path, files: int, sentences: int) -> None:
    words = "river harbour treaty orchard valley mill army winter bridge castle market tower".split()
    rng = np.random.default_rng(0)
    for number in range(files):
        lines = [
            f"Report {number}-{i}: the {' '.join(rng.choice(words, 6))} was recorded in {1800 + i}."
            for i in range(sentences)
        ]
        (folder / f"report-{number:03d}.txt").write_text(" ".join(lines) + "\n", encoding="utf-8")


def test_ctrl_c_during_a_build_leaves_the_previous_index_and_exits_130(corpus, tmp_path):
    index_dir = tmp_path / "index"
    Assistant.build([corpus], index_dir=index_dir)
    manifest_before = (index_dir / "manifest.json").read_bytes()
    files_before = sorted(p.name for p in index_dir.iterdir())
    # More passages than one chunk of embeddings (rag.embedding.CHUNK): the build is paused in
    # the middle of embedding them, before anything is written.
    _write_many_documents(corpus, files=8, sentences=100)

    # $RAG_PAUSE_EMBEDDING holds the build inside its embedding loop until it is interrupted and
    # says so on stderr: the interrupt lands there on a machine of any speed.
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "index", str(corpus), "--index", str(index_dir), "--progress"],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1", ENV_PAUSE_EMBEDDING: "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=default_sigint,  # the Ctrl-C a terminal would send must reach it
    )
    stderr = bytearray()
    paused = threading.Event()

    def read() -> None:
        for chunk in iter(lambda: os.read(process.stderr.fileno(), 4096), b""):
            stderr.extend(chunk)
            if b"embedding paused after" in stderr:
                paused.set()
        paused.set()  # the process ended (or closed stderr) without pausing: the asserts below say so

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    paused.wait()
    assert f"embedding paused after {CHUNK} of".encode() in bytes(stderr), f"the build never paused: {bytes(stderr)!r}"
    process.send_signal(signal.SIGINT)
    process.wait(timeout=300)
    reader.join(timeout=10)
    text = bytes(stderr).decode("utf-8", errors="replace")

    assert process.returncode == 130, text
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].split("\r")[-1] == "rag: interrupted; the previous index is unchanged"
    assert text.count("interrupted") == 1
    assert (index_dir / "manifest.json").read_bytes() == manifest_before
    survivor = Assistant.open(index_dir)
    assert len(survivor.passages) == 6
    assert survivor.ask(ORCHARD_QUESTION).text.startswith("1920")
    # Whatever the interrupted build left behind is not part of the index and goes next time.
    assert set(files_before) <= {p.name for p in index_dir.iterdir()}


# -- rag status -----------------------------------------------------------------------------------


def test_status_reports_changed_missing_and_unindexed_sources(corpus, tmp_path, capsys):
    index_dir = tmp_path / "index"
    Assistant.build([corpus], index_dir=index_dir)
    assert main(["status", "--index", str(index_dir), "--json"]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert fresh["stale"] == []
    assert (fresh["documents"], fresh["passages"], fresh["index_type"]) == (2, 6, "flat (exact)")
    assert fresh["bytes_on_disk"] == sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())

    (corpus / "orchard.txt").write_text(ORCHARD.replace("1920", "1921 or 1922"), encoding="utf-8")
    (corpus / "company.txt").unlink()
    (corpus / "notes.md").write_text("A new note about the mill.\n", encoding="utf-8")

    assert main(["status", "--index", str(index_dir), "--json"]) == 0
    stale = json.loads(capsys.readouterr().out)["stale"]
    assert sorted(stale) == ["company.txt (missing)", "notes.md (not indexed)", "orchard.txt"]

    assert main(["status", "--index", str(index_dir)]) == 0
    text = capsys.readouterr().out
    assert "company.txt (missing), orchard.txt, notes.md (not indexed)" in text
    assert f"next: rag index {corpus.resolve()} --index {index_dir}" in text


def test_status_verify_hashes_every_file(corpus, tmp_path, capsys):
    index_dir = tmp_path / "index"
    Assistant.build([corpus], index_dir=index_dir)
    assert main(["status", "--index", str(index_dir), "--verify"]) == 0
    assert "every file matches its checksum" in capsys.readouterr().out

    path = next(index_dir.glob("passages-*.utf8"))
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[data.index(b"orchard at Alpha")] = ord("O")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same time

    assert main(["status", "--index", str(index_dir)]) == 0  # opening checks sizes and times only
    capsys.readouterr()
    assert main(["status", "--index", str(index_dir), "--verify"]) == 1
    error = capsys.readouterr().err
    assert "passages-" in error and "does not match its checksum" in error and "rag index PATH" in error
    with pytest.raises(Exception, match="does not match its checksum"):
        store.verify(index_dir)
