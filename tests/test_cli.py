"""The `rag` command, run as a user runs it: a subprocess, its exit code, stdout and stderr.

Each call that loads the model costs several seconds, so only two do; the error paths fail before
the model is needed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ORCHARD, ORCHARD_QUESTION, assert_one_line_error, run_rag

import rag
from rag.settings import SAMPLE_DOCUMENT


def test_ask_json(sample, tmp_path):
    index_dir = tmp_path / "index"
    shutil.copytree(sample.index_dir, index_dir)  # RAG_INDEX_DIR: the default index, already built

    result = run_rag("ask", "When was the Brest peace treaty signed?", "--json", cwd=tmp_path, index_dir=index_dir)

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"answer", "grounded", "citations"} <= set(data)
    assert data["grounded"] is True
    assert "March" in data["answer"] and "1918" in data["answer"]
    assert data["citations"]
    text = SAMPLE_DOCUMENT.read_text(encoding="utf-8")
    for citation in data["citations"]:
        assert set(citation) >= {"text", "source", "start", "end", "score"}
        assert isinstance(citation["start"], int) and isinstance(citation["end"], int)
        assert isinstance(citation["score"], float)
        assert Path(citation["source"]).resolve() == SAMPLE_DOCUMENT.resolve()
        assert text[citation["start"] : citation["end"]] == citation["text"]
    assert any("Brest Peace Treaty" in c["text"] for c in data["citations"])


def test_index_a_folder_reports_and_suggests_the_next_command(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lighthouse.txt").write_text(
        "The Penmorra lighthouse was first lit in 1902. Its keeper, Tobias Wren, kept a diary.\n", encoding="utf-8"
    )
    (docs / "broken.txt").write_bytes(b"\x00\x01binary")
    index_dir = tmp_path / "index"

    result = run_rag("index", str(docs), "--index", str(index_dir), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "1 added" in result.stdout and "1 skipped" in result.stdout and "2 passages" in result.stdout
    assert f'next: rag ask "your question" --index {index_dir}' in result.stdout
    assert "broken.txt" in result.stderr and "binary" in result.stderr
    assert (index_dir / "manifest.json").is_file()


@pytest.mark.parametrize("kind", ["missing", "empty", "binary", "unsupported", "binary-without-extension"])
def test_index_of_a_bad_file_is_a_one_line_error(tmp_path, kind):
    paths = {
        "missing": tmp_path / "missing.txt",
        "empty": tmp_path / "empty.txt",
        "binary": tmp_path / "binary.txt",
        "unsupported": tmp_path / "slides.pptx",
        "binary-without-extension": tmp_path / "tool",
    }
    paths["empty"].write_bytes(b"")
    paths["binary"].write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    paths["binary-without-extension"].write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    paths["unsupported"].write_bytes(b"PK\x03\x04")
    expected = {
        "missing": "no such file", "empty": "empty", "binary": "binary", "unsupported": "unsupported file type",
        "binary-without-extension": "looks like a binary file",
    }

    result = run_rag("index", str(paths[kind]), "--index", str(tmp_path / "index"), cwd=tmp_path)

    assert_one_line_error(result, paths[kind].name, expected[kind])
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_ask_on_a_damaged_index_is_a_one_line_error_naming_the_fix(sample, tmp_path):
    index_dir = tmp_path / "index"
    shutil.copytree(sample.index_dir, index_dir)
    vectors = next(index_dir.glob("vectors-*.faiss"))
    vectors.write_bytes(vectors.read_bytes()[:1000])

    result = run_rag("ask", "x", "--index", str(index_dir), cwd=tmp_path)

    assert_one_line_error(result, "damaged", f"rag index PATH --index {index_dir}")


def test_ask_an_empty_question_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_rag("ask", "  ", cwd=tmp_path), "the question is empty")


def test_help_and_version(tmp_path):
    help_result = run_rag("--help", cwd=tmp_path)
    assert help_result.returncode == 0
    for word in ("index", "ask", "status", "eval", "RAG_INDEX_DIR", "RAG_MODEL"):
        assert word in help_result.stdout
    version = run_rag("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"rag {rag.__version__}"


def test_importing_rag_and_building_the_cli_parser_is_light(tmp_path):
    code = (
        "import sys, rag, rag.cli\n"
        "from rag import Answer, Citation, RagError\n"
        "rag.cli._parser().format_help()\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'gradio', 'faiss', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readmes_test_command_verbatim_and_it_compiles_nothing():
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"Run the tests.*?```\n(.*?)\n```", readme, re.DOTALL)
    assert len(blocks) == 1, "the README has one test command, in a code block after 'Run the tests'"
    command = blocks[0].strip()
    assert "pytest" in command and "generate" not in command and "CMAKE" not in command
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci.splitlines()
    # ... after CI installed the answer writer, so that its tests run there.
    assert ci.index('".[test,generate') < ci.index(command)


def test_an_extensionless_text_file_is_indexed_answered_cited_by_line_and_listed_by_status(tmp_path, capsys):
    from rag.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "FAQ").write_text("Questions about the farm.\n\n" + ORCHARD, encoding="utf-8")
    (docs / "tool").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)  # a program: passed over
    config = tmp_path / "gate.cfg"
    config.write_text("The gate of Alpha Farm opens at six in the morning.\n", encoding="utf-8")
    index_dir = tmp_path / "index"

    assert main(["index", str(docs), str(config), "--as", "text", "--index", str(index_dir)]) == 0
    assert "2 added" in capsys.readouterr().out

    assert main(["ask", ORCHARD_QUESTION, "--index", str(index_dir), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["grounded"] and "1920" in answer["answer"]
    cited = answer["citations"][0]
    assert Path(cited["source"]).name == "FAQ" and cited["location"] == "line 3"
    assert (docs / "FAQ").read_text(encoding="utf-8")[cited["start"] : cited["end"]] == cited["text"]

    assert main(["status", "--index", str(index_dir)]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"^FAQ +text +4 +\d+ bytes +\d{4}-\d\d-\d\d \d\d:\d\d$", shown, re.M), shown
    assert re.search(r"^gate\.cfg +text +1 ", shown, re.M), shown
    assert "tool" not in shown

    assert main(["status", "--index", str(index_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    listed = {s["name"]: s for s in status["sources"]}
    assert set(listed) == {"FAQ", "gate.cfg"}
    assert listed["FAQ"]["bytes"] == (docs / "FAQ").stat().st_size and listed["FAQ"]["format"] == "text"
    assert sum(s["passages"] for s in status["sources"]) == status["passages"]
    assert all(s["indexed_at"] for s in status["sources"])
