"""`rag ask --server` and `Assistant.remote`: the client side, without a server (the served
answers themselves are checked against `rag ask --json` in tests/test_cluster.py)."""
from __future__ import annotations

import pytest
from conftest import assert_one_line_error, free_port, run_rag

from rag import Assistant
from rag.errors import ClusterError
from rag.remote import answer_from_dict
from rag.types import Answer, Citation


def test_an_answer_survives_its_json_unchanged():
    answer = Answer(text="March 1918. “…”", grounded=True, query="When?", confidence=0.91,
                    citations=[Citation(text="In March 1918 …", source="/d/a.txt", start=3, end=17, score=0.5, location="page 2")],
                    direct="March 1918", direct_start=6, direct_end=16)
    assert answer_from_dict(answer.to_dict()) == answer


def test_asking_a_server_that_is_not_there_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(run_rag("ask", "When?", "--server", url, cwd=tmp_path), "cannot ask the server at", "rag serve")
    with pytest.raises(ClusterError, match="cannot ask the server"):
        Assistant.remote(url).ask("When?")


def test_server_and_index_together_are_refused(tmp_path):
    result = run_rag("ask", "When?", "--server", "http://127.0.0.1:9", "--index", str(tmp_path), cwd=tmp_path)
    assert_one_line_error(result, "--server answers with the server's index")
