"""Questions embedded without torch: the ONNX export gives the torch model's vectors and answers.

All real: the bundled MiniLM, exported with torch's exporter, run with onnxruntime.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ORCHARD_QUESTION, QUESTION_MODELS

from eval.questions import DEFAULT_QUESTIONS, load_questions
from rag import Assistant, Embedder, question_model, store
from rag.embedding import resolve_model_path

# Sentences of every kind a question can be: short, long past MiniLM's 256-token window (cut
# there), non-Latin scripts and emoji, stray whitespace, digits and punctuation.
VARIED = [
    "When was the Brest peace treaty signed?",
    "Who?",
    "   What did Molotov tell Schulenburg on June 22, 1941?\n",
    "Quelle était la réaction de l'Allemagne à la révolution de novembre ?",
    "Что произошло в Брест-Литовске в марте 1918 года?",
    "ブレスト条約はいつ署名されましたか？ 😀",
    "How many tanks, aircraft and divisions (4,300 / 4,980 / 181) did the attack use — and why?",
    " ".join(f"clause{n} about the treaty and its consequences for the front" for n in range(60)),  # > 256 tokens
]
HEAVY = ("torch", "sentence_transformers", "transformers", "gradio", "matplotlib")


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    return Embedder(onnx_questions=False)


def test_question_vectors_match_the_torch_model(sample, torch_embedder):
    onnx = Embedder()
    assert onnx.question_encoder() is not None
    expected = torch_embedder.encode(VARIED)
    one_by_one = np.stack([onnx.encode_query(text) for text in VARIED])
    batched = onnx.encode_questions(VARIED)  # padded to the longest: padding must not count
    for vectors in (one_by_one, batched):
        cosines = (vectors * expected).sum(axis=1)
        assert cosines.min() >= 0.9999, dict(zip(VARIED, cosines.round(6)))
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The long sentence is cut where sentence-transformers cuts it (256 tokens, not the
    # tokenizer file's own 128): text past that point changes nothing.
    longer = VARIED[-1] + " and a tail that lies far beyond the window"
    assert float(onnx.encode_query(longer) @ onnx.encode_query(VARIED[-1])) > 0.99999


def test_the_sample_questions_get_the_answers_of_the_torch_path(sample, torch_embedder):
    # The same index, questions embedded with torch.
    torch_path = Assistant(sample.index_dir, store.load(sample.index_dir), torch_embedder)
    questions = load_questions(DEFAULT_QUESTIONS)
    assert len(questions.questions) > 50
    for question in questions.questions:
        ours, theirs = sample.ask(question.question), torch_path.ask(question.question)
        assert _shown(ours) == _shown(theirs), question.question
        assert ours.confidence == pytest.approx(theirs.confidence, abs=1e-4)
    for conversation in questions.conversations:  # follow-ups embed the question with its context
        ours, theirs = sample.chat(), torch_path.chat()
        for turn in conversation.turns:
            assert _shown(ours.ask(turn.question)) == _shown(theirs.ask(turn.question)), turn.question


def _shown(answer) -> tuple:
    """What a user sees of an answer: its text, how the question was understood, the citations."""
    return answer.text, answer.grounded, answer.query, [(c.source, c.start, c.end, c.text) for c in answer.citations]


def test_a_cold_rag_ask_imports_no_torch_gradio_or_matplotlib(sample, tmp_path):
    # The real command, run in a fresh interpreter; then what it imported is listed.
    code = (
        "import sys\n"
        "from rag.cli import main\n"
        f"code = main(['ask', {ORCHARD_QUESTION!r}, '--index', sys.argv[1], '--json'])\n"
        f"print('heavy:', [m for m in {HEAVY!r} if m in sys.modules])\n"
        "sys.exit(code)\n"
    )
    index_dir = tmp_path / "index"
    shutil.copytree(sample.index_dir, index_dir)
    result = subprocess.run(
        [sys.executable, "-c", code, str(index_dir)], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    answer, imported = result.stdout.rsplit("heavy:", 1)
    assert json.loads(answer)["grounded"] is False  # the sample says nothing of the orchard
    assert imported.strip() == "[]"
    assert result.stderr == ""


def _private_cache(tmp_path, monkeypatch, *, copy_export: bool):
    """Point the cache at an empty folder (optionally holding a copy of the run's export)."""
    cache = tmp_path / "own-cache"
    if copy_export:
        shutil.copytree(QUESTION_MODELS, cache / "rag" / "onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_a_missing_or_damaged_export_is_made_again(damage, sample, tmp_path, monkeypatch, torch_embedder):
    _private_cache(tmp_path, monkeypatch, copy_export=damage != "missing")
    embedder = Embedder()
    folder = question_model.export_folder(embedder._path)
    if damage == "truncated":
        with open(folder / "model.onnx", "r+b") as handle:
            handle.truncate(1000)
    elif damage == "altered":  # same size, not a model any more
        size = (folder / "model.onnx").stat().st_size
        (folder / "model.onnx").write_bytes(b"\0" * size)
    assert embedder.question_encoder() is not None  # exported again
    assert question_model.is_exported(embedder._path)
    vector = embedder.encode_query("When was the Brest peace treaty signed?")
    assert float(vector @ torch_embedder.encode_query("When was the Brest peace treaty signed?")) >= 0.9999


def test_building_an_index_exports_the_question_model(corpus, tmp_path, monkeypatch):
    _private_cache(tmp_path, monkeypatch, copy_export=False)
    assistant = Assistant.build([corpus], index_dir=tmp_path / "index")
    assert question_model.is_exported(resolve_model_path(assistant.embedder.model_name))
    assert assistant.ask(ORCHARD_QUESTION).text.startswith("1920")


def test_an_unwritable_cache_falls_back_to_torch_with_a_note(corpus, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assistant = Assistant.build([corpus], index_dir=tmp_path / "index")
    assert assistant.ask(ORCHARD_QUESTION).text.startswith("1920")
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("rag: note: cannot keep the question model in "), note
