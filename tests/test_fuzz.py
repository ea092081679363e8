"""Property tests over arbitrary input: bytes on disk → passages whose offsets slice back to the
file as a user reads it; any question → an answer citing verbatim text, or a QuestionError.

The splitter alone is fuzzed in test_splitting.py; here the whole path from a file's bytes is,
and the question path runs the real model (about 20 ms a question), so example counts are modest.
"""
from __future__ import annotations

from conftest import assert_verbatim, source_text
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rag.documents import read_document
from rag.errors import DocumentError, QuestionError
from rag.splitting import split_document

# Characters that make splitting and decoding awkward: sentence ends, quotes, every kind of
# newline, NUL and other controls, non-Latin scripts, combining marks, emoji, a BOM.
AWKWARD = st.sampled_from(
    list("ab Z9.!?…\"'”»)(\n\r\t\x0b\x0c\x00\x1b\x85\u2028\u2029,;:-#*")
    + ["Ж", "я", "中", "文", "é", "\u0301", "🙂", "\ufeff", "\u200b"]
)


@settings(max_examples=150)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.text(AWKWARD, max_size=600).map(lambda t: t.encode("utf-8")),
        st.text(max_size=300).map(lambda t: t.encode("utf-16")),
    )
)
@example(b"\xef\xbb\xbfBOM first. Then more.")
@example(b"text with a NUL\x00 after the start")
@example(b"caf\xe9 cr\xe8me. Na\xefve r\xe9sum\xe9.")
def test_any_file_is_read_exactly_or_refused_with_a_message(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "doc.txt"
    path.write_bytes(raw)
    try:
        document = read_document(path)
    except DocumentError as error:
        message = str(error)
        assert "\n" not in message and "doc.txt" in message
        return
    # What a citation is checked against: the file opened in the codec the index recorded.
    on_disk = source_text(document.source, document.encoding)
    assert document.text == on_disk
    assert "\x00" not in document.text  # NUL bytes mean binary, wherever they are
    for passage in split_document(document):
        assert on_disk[passage.start : passage.end] == passage.text


QUESTIONS = st.one_of(
    st.text(max_size=80),
    st.text(AWKWARD, max_size=80),
    st.lists(st.sampled_from(["When", "was", "the", "treaty", "signed", "Brest", "Stalin", "?", "tanks", "1918"]),
             max_size=8).map(" ".join),
)


@settings(max_examples=60)
@given(QUESTIONS)
@example("")
@example("?")
@example("x" * 5000)
def test_any_question_cites_verbatim_or_is_refused(sample, question):
    try:
        answer = sample.ask(question)
    except QuestionError as error:
        assert "\n" not in str(error)
        return
    assert_verbatim(answer)
    assert answer.grounded == bool(answer.citations)


@settings(max_examples=20)
@given(st.lists(QUESTIONS, min_size=2, max_size=3))
def test_any_conversation_cites_verbatim_or_is_refused(sample, questions):
    conversation = sample.chat()
    for question in questions:
        try:
            answer = conversation.ask(question)
        except QuestionError:
            continue
        assert_verbatim(answer)
