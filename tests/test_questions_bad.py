"""Bad questions: each gets a one-line message (QuestionError) or an abstention, never a crash,
through the Python API, the `rag ask` command and the UI's /ask endpoint."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, assert_verbatim, run_rag

from rag import MAX_QUESTION_CHARS
from rag.errors import QuestionError

# Questions refused before anything is searched, with the words the message must hold.
REFUSED = {
    "empty": ("", "the question is empty"),
    "whitespace": (" \t\n\r  \u3000 ", "the question is empty"),
    "control-characters-only": ("\x01\x02\x1b\x7f\u200b\x00", "the question is empty"),
    "100-KB": ("Who signed the treaty? " * 4500, f"ask in at most {MAX_QUESTION_CHARS:,}"),
}
# Questions that are asked; the sample document (English, about 1918 and 1941) answers none of
# them, so the answer is an abstention, and any citation it still carries must be verbatim.
ASKED = {
    "punctuation-only": "?!... ,;: -- ??? (!)",
    "cyrillic": "Когда был подписан Брестский мир?",
    "chinese": "布列斯特和约是什么时候签订的？",
    "emoji": "🙂🚀❓",
    "markup": '<img src=x onerror="alert(1)"><script>alert(2)</script>',
    "combining-marks": "\u0301\u0308\u0301",
}
# Control characters inside a real question are read as spaces: it is still answered.
WITH_CONTROLS = "When\x00 was the\x07 Brest\x1b peace\u200b treaty signed?"


@pytest.mark.parametrize("question, message", REFUSED.values(), ids=REFUSED.keys())
def test_api_refuses_a_bad_question_with_a_one_line_message(sample, question, message):
    with pytest.raises(QuestionError, match=message) as caught:
        sample.ask(question)
    assert "\n" not in str(caught.value)
    with pytest.raises(QuestionError, match=message):
        sample.chat().ask(question)  # the conversation path the UI uses


@pytest.mark.parametrize("question", ASKED.values(), ids=ASKED.keys())
def test_api_abstains_on_a_question_the_documents_cannot_answer(sample, question):
    for answer in (sample.ask(question), sample.chat().ask(question)):
        assert answer.grounded is False, answer
        assert answer.text.startswith("The documents don't say")
        assert_verbatim(answer)


def test_api_reads_control_characters_as_spaces(sample):
    answer = sample.ask(WITH_CONTROLS)
    assert answer.grounded and "March" in answer.text and "1918" in answer.text
    assert_verbatim(answer)


@pytest.mark.parametrize("kind", ["empty", "whitespace", "control-characters-only", "100-KB"])
def test_cli_refuses_a_bad_question_in_one_line_before_loading_anything(tmp_path, kind):
    question, message = REFUSED[kind]
    question = question.replace("\x00", "")  # a command line cannot carry a NUL
    assert_one_line_error(run_rag("ask", question, cwd=tmp_path, index_dir=tmp_path / "index"), message)
    assert not (tmp_path / "index").exists()  # refused before the default index was built


def test_cli_abstains_on_questions_the_documents_cannot_answer(sample, tmp_path):
    index_dir = tmp_path / "index"
    shutil.copytree(sample.index_dir, index_dir)
    # One process (the model loads once); `rag chat` reads the questions as a user types them.
    questions = [ASKED["chinese"], ASKED["punctuation-only"], ASKED["markup"], "When was the Brest peace treaty signed?"]
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "chat", "--index", str(index_dir)],
        input="\n".join([*questions, "\x01\x02", "/quit"]) + "\n",
        cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout.count("The documents don't say") == 3, result.stdout
    assert "March" in result.stdout and "1918" in result.stdout
    assert "rag: the question is empty" in result.stdout  # the control characters, one line

    single = run_rag("ask", ASKED["cyrillic"], "--index", str(index_dir), cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert single.stdout.startswith("The documents don't say") and "Traceback" not in single.stderr


@pytest.mark.parametrize("question, message", REFUSED.values(), ids=REFUSED.keys())
def test_ui_endpoint_refuses_a_bad_question_with_its_message(served, question, message):
    from gradio_client import Client

    with pytest.raises(Exception, match=message) as caught:
        Client(served, verbose=False).predict(question, api_name="/ask")
    assert "Traceback" not in str(caught.value)


def test_ui_endpoint_abstains_and_answers_through_control_characters(served):
    from gradio_client import Client

    client = Client(served, verbose=False)
    for question in ASKED.values():
        result = client.predict(question, api_name="/ask")
        assert result["grounded"] is False and result["citations"] == [], (question, result)
    result = client.predict(WITH_CONTROLS, api_name="/ask")
    assert result["grounded"] is True and "1918" in result["answer"]
