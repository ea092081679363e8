"""Splitting text into sentence passages whose offsets slice back to the document exactly."""
from __future__ import annotations

import signal
from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag import Assistant
from rag.documents import read_document
from rag.errors import ConfigError
from rag.settings import SAMPLE_DOCUMENT, ChunkSettings
from rag.splitting import split_document
from rag.types import Document, Passage


def document(text: str, source: str = "/docs/example.txt") -> Document:
    return Document(source=source, text=text, sha256="0" * 64, size=len(text.encode()), encoding="utf-8")


def split(text: str, chunking: ChunkSettings = ChunkSettings()) -> list[Passage]:
    """Split and check every invariant a citation relies on."""
    passages = split_document(document(text), chunking)
    previous_end = 0
    previous_paragraph = 0
    for number, passage in enumerate(passages):
        assert text[passage.start : passage.end] == passage.text  # offsets slice back
        assert passage.text and passage.text == passage.text.strip()  # no empty or padded passage
        assert passage.start >= previous_end  # in order, never overlapping
        assert passage.position == number
        assert passage.paragraph >= previous_paragraph
        assert len(passage.text) <= chunking.max_chars
        previous_end, previous_paragraph = passage.end, passage.paragraph
    return passages


def texts(text: str, chunking: ChunkSettings = ChunkSettings()) -> list[str]:
    return [p.text for p in split(text, chunking)]


def test_sample_document_offsets_slice_back():
    doc = read_document(SAMPLE_DOCUMENT)
    passages = split_document(doc)
    assert len(passages) > 50
    for passage in passages:
        assert doc.text[passage.start : passage.end] == passage.text
    assert "in March of the same year they signed the Brest Peace Treaty" in " ".join(p.text for p in passages)
    # The file read as a user would (no newline translation) gives the same slices.
    with open(SAMPLE_DOCUMENT, encoding="utf-8", newline="") as handle:
        raw = handle.read()
    assert all(raw[p.start : p.end] == p.text for p in passages)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t \r\n ",
        "no punctuation at all",
        "Ends with dots...",
        "Ellipsis… Next one.",
        "“Quoted.” Then more.",
        "Multiple!!! Marks??? Yes.",
        "# Heading\n- item one\n- item two\n\nA paragraph.",
        "tabs\tand\vvertical\fforms. Next.",
        "emoji 🙂 text. Next 🚀 sentence.",
        "Combining e\u0301 accents. Next.",
        "\u2028line separator\u2029paragraph separator",
        "a\n\n\n\n\nb",
        "\r\r\r",
        "trailing spaces.   ",
        "Dr.",
        "...",
        ".",
        "x" * 2000,
        "Hello world.Next",
    ],
    ids=repr,
)
def test_awkward_inputs_keep_exact_offsets(text):
    passages = split(text)
    covered = {i for p in passages for i in range(p.start, p.end)}
    assert all(ch.isspace() or i in covered for i, ch in enumerate(text)), "text was lost"


@given(st.text())
def test_any_text_splits_into_ordered_exact_passages(text):
    passages = split(text)
    covered = {i for p in passages for i in range(p.start, p.end)}
    assert all(ch.isspace() or i in covered for i, ch in enumerate(text)), "text was lost"


@given(
    st.text(alphabet=st.sampled_from(list("ab .!?\n\r\t,;:\"'()Aé…-#*1")), max_size=400),
    st.integers(min_value=50, max_value=200),
    st.integers(min_value=0, max_value=49),
)
def test_any_chunk_size_keeps_exact_offsets(text, max_chars, min_chars):
    split(text, ChunkSettings(max_chars=max_chars, min_chars=min_chars))


def test_sentences_are_split_at_full_stops():
    assert texts("He slept. She woke! Did they talk? No.") == ["He slept.", "She woke!", "Did they talk?", "No."]


def test_abbreviations_and_initials_do_not_end_a_sentence():
    text = (
        "Dr. Smith met Mr. Jones at 5 p.m. on Jan. 5. They talked about e.g. the weather. "
        "J. R. R. Tolkien wrote books."
    )
    assert texts(text) == [
        "Dr. Smith met Mr. Jones at 5 p.m. on Jan. 5.",
        "They talked about e.g. the weather.",
        "J. R. R. Tolkien wrote books.",
    ]


def test_hard_wrapped_lines_join_into_one_sentence_and_headings_stand_alone():
    text = "# Notes\nThe bridge was opened\nto traffic in 1893.\n- first item\n- second item"
    assert texts(text) == ["# Notes", "The bridge was opened\nto traffic in 1893.", "- first item", "- second item"]


def test_paragraphs_are_numbered():
    passages = split("One. Two.\n\nThree.\n \t\nFour.")
    assert [(p.text, p.paragraph) for p in passages] == [("One.", 0), ("Two.", 0), ("Three.", 1), ("Four.", 2)]


def test_long_sentence_is_cut_under_max_chars_at_a_clause_break():
    chunking = ChunkSettings(max_chars=100, min_chars=20)
    clause = "the army advanced through the forest for many days"  # 50 characters
    text = f"{clause}; {clause}, {clause} and {clause} while {clause}."
    passages = split(text, chunking)
    assert len(passages) > 1
    assert passages[0].text.endswith(";")  # the best break (a semicolon) is preferred
    assert all(len(p.text) <= 100 for p in passages)
    assert " ".join(p.text for p in passages) == text  # nothing lost or duplicated


def test_unbroken_token_longer_than_the_limit_is_cut_hard():
    assert [len(t) for t in texts("x" * 250, ChunkSettings(max_chars=100, min_chars=40))] == [100, 100, 50]


def test_default_limit_applies_to_a_very_long_sentence():
    text = "word " * 1000
    passages = split(text)
    assert len(passages) >= 1000 * 5 // 600
    assert all(len(p.text) <= ChunkSettings().max_chars for p in passages)


def test_crlf_text_keeps_offsets():
    text = "First line.\r\nSecond line.\r\n\r\nThe bridge was opened\r\nto traffic in 1893.\r\n"
    passages = split(text)
    assert [(p.text, p.paragraph) for p in passages] == [
        ("First line.", 0),
        ("Second line.", 0),
        ("The bridge was opened\r\nto traffic in 1893.", 1),
    ]


def test_passage_ids_are_stable_and_depend_on_the_source():
    text = "Alpha is first. Beta is second."
    first = split_document(document(text))
    again = split_document(document(text))
    elsewhere = split_document(document(text, source="/docs/other.txt"))
    assert [p.id for p in first] == [p.id for p in again]
    assert len({p.id for p in first}) == len(first)
    assert not {p.id for p in first} & {p.id for p in elsewhere}


@contextmanager
def hang_guard(seconds: int):
    """Turn an infinite loop into a TimeoutError (SIGALRM interrupts pure-Python loops)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: an infinite loop")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_zero_max_chars_is_refused(tmp_path):
    (tmp_path / "doc.txt").write_text("A sentence that is long enough to be cut somewhere.", encoding="utf-8")
    with hang_guard(5), pytest.raises(ConfigError, match="max_chars"):
        Assistant.build([tmp_path / "doc.txt"], index_dir=tmp_path / "index", chunking=ChunkSettings(max_chars=0))
