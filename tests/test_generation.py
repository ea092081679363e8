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
import time
import urllib.request

import pytest

from rag.errors import ConfigError, RagError
from rag.generation import Event, HttpGenerator, streaming, verify
from rag.generation.prompt import excerpts_for, messages
from rag.generation.verify import SIMILARITY_MIN, Renumbering, complete_sentences, markers, split_sentences, verify_sentences
from rag.generation import assemble

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
    assert numbering.citations == ["c", "a", "d"]


# -- the checker on real sentences ----------------------------------------------------------------


def test_a_supported_sentence_is_kept_with_its_verbatim_citations(sample, flagship, verbatim):
    answer, excerpts = flagship
    brest, february = _number(excerpts, "Brest Peace Treaty"), _number(excerpts, "February 1918")
    sentence = f"The Brest Peace Treaty was signed in March 1918 [{brest}][{february}]."

    checked = verify(sentence, excerpts, sample._embedder)

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
    checked = verify(f"The Bolsheviks, led by Lenin, signed the Brest Peace Treaty with Germany in March [{brest}].", excerpts, sample._embedder)
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

    checked = verify(f"{supported} {sentence}", excerpts, sample._embedder)

    assert [s.supported for s in checked.sentences] == [True, False]
    assert reason in checked.sentences[1].reason
    assert checked.text == "The Brest Peace Treaty was signed in March 1918 [1][2]."


def test_a_sentence_citing_an_unrelated_excerpt_is_removed(sample, flagship):
    _, excerpts = flagship
    unrelated = next(n for n, e in enumerate(excerpts, 1) if "Beria" in e.text)
    sentence = f"The Bolsheviks signed the Brest Peace Treaty with Germany [{unrelated}]."
    [checked] = verify_sentences([sentence], excerpts, sample._embedder)
    assert not checked.supported
    assert "names Bolsheviks" in checked.reason or "similarity" in checked.reason


def test_no_supported_sentence_falls_back_to_the_extractive_answer(sample, flagship):
    answer, excerpts = flagship
    text = "The treaty was signed by Trotsky in 1920 [1]. It never happened [2]. Peace came later."

    checked = verify(text, excerpts, sample._embedder)
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
    assert excerpts[: len(answer.citations)] == answer.citations
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
