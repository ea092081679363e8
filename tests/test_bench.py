"""`rag bench`'s parts that can be checked in seconds: the subprocess protocol, the memory it reads,
and one small synthetic index written, opened and searched in fresh processes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eval.bench.process import memory_bytes, reset_peak_memory
from eval.bench.protocol import StoreTask, task_from_argv
from eval.bench.scaling import budget_checks, raw_vector_bytes, synthetic_growth
from rag.settings import SAMPLE_DOCUMENT

MB = 1024 * 1024


def test_a_store_task_makes_the_trip_to_the_child_as_json(tmp_path):
    task = StoreTask(action="open", passages=3, dimension=4, index_dir=tmp_path / "index", inputs=tmp_path / "in.json",
                     model="all-MiniLM-L6-v2")

    assert task_from_argv(["-m", "--store-child", task.to_json()]) == task
    assert task_from_argv(["-m"]) is None  # run by hand: the caller prints the usage


@pytest.mark.parametrize(
    "change, message",
    [({"action": "delete"}, "action must be one of write, update, open, not 'delete'"), ({"extra": 1}, "has the keys")],
)
def test_a_malformed_task_is_refused_naming_what_is_wrong(tmp_path, change, message):
    task = StoreTask(action="write", passages=3, dimension=4, index_dir=tmp_path, inputs=tmp_path / "in.json", model="m")

    with pytest.raises(ValueError, match=message):
        StoreTask.from_json(json.dumps({**json.loads(task.to_json()), **change}))


def test_the_peak_memory_counts_what_was_allocated_since_the_reset():
    before, reset = reset_peak_memory()
    if not reset:
        pytest.skip("this kernel does not let a process reset its peak resident size (/proc/self/clear_refs)")
    block = np.ones(64 * MB, dtype=np.uint8)  # ones, not zeros: every page is touched
    del block
    resident, peak = memory_bytes()

    assert peak - before >= 60 * MB
    assert resident < peak  # the block was freed; the peak remembers it


def test_a_small_synthetic_index_is_written_then_searched_in_fresh_processes(tmp_path):
    sentences = [s.strip() + "." for s in SAMPLE_DOCUMENT.read_text(encoding="utf-8").split(".") if s.strip()]
    questions = ("When was the Brest peace treaty signed?", "Who was the German ambassador?")

    [size] = synthetic_growth(tmp_path, sentences, questions, 2_000, 384, "all-MiniLM-L6-v2")

    written, opened = size["write"], size["open"]
    assert size["passages"] == 2_000 and written["vector_index"]["kind"] == "flat"  # small: exact search
    assert opened["recall_at_10"] == 1.0 and opened["queries"] == 200
    assert written["peak_increase_bytes"] > 0 and opened["resident_increase_bytes"] > 0
    assert size["bytes_on_disk"] > raw_vector_bytes(2_000, 384)  # the vectors, and BM25 and the passages besides
    assert not (tmp_path / "synthetic-2000").exists()  # freed before the next size
    # One document of 200 passages was replaced before the index was opened and searched.
    assert size["update"]["passages"] == 200 and size["update"]["vector_index"]["kind"] == "flat"
    checks = {what.split(" (")[0]: holds for what, _, _, holds in budget_checks(size)}
    assert set(checks) == {"open", "hybrid search p95, ms", "dense recall@10 against exact, updated index",
                           "dense recall@10 against exact float32 search, fresh index", "one document updated"}
    assert written["recall_at_10_float32"] == 1.0  # exact search stores float32: nothing rounded
