"""Reading documents: what is refused (with a message that says why), what is decoded, what is skipped."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag import Assistant
from rag.documents import collect, read_document
from rag.errors import DocumentError, RagError

GOOD_TEXT = "The lighthouse at Penmorra was first lit in 1902. Its keeper, Tobias Wren, kept a diary for forty years.\n"

# Western European text, as saved by an old Windows editor (cp1252).
FRENCH = "Le café est très bon. Nous avons mangé une crème brûlée à côté de la fenêtre. " * 5
ENGLISH_WITH_ACCENTS = (
    "The Café Renée stood on the corner of the old market square in Zürich. "
    "It was opened in 1904 by José Núñez, a cook who had come from Sevilla. "
    "The café served crème brûlée, pâté and strong coffee to students and clerks. "
    "In its best years it employed 14 waiters and seated about 120 guests. "
    "The building was sold in 1961 and the café closed its doors the following spring. "
)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(DocumentError, match=r"missing\.txt: no such file or folder"):
        collect([tmp_path / "missing.txt"])


def test_unsupported_extension_is_refused_with_the_supported_list_and_the_way_to_force_text(tmp_path):
    write(tmp_path / "report.odt", b"PK not really")
    with pytest.raises(
        DocumentError,
        match=r"unsupported file type '\.odt'; supported: \.txt, \.md.*\.pdf.*\.docx.*`rag index --as text PATH`",
    ):
        collect([tmp_path / "report.odt"])


def test_a_text_file_without_an_extension_is_read_as_plain_text(tmp_path):
    path = write(tmp_path / "FAQ", GOOD_TEXT)
    [document] = collect([path]).documents
    assert (document.text, document.format, document.encoding) == (GOOD_TEXT, "text", "utf-8")


def test_a_binary_file_without_an_extension_is_refused_as_binary(tmp_path):
    path = write(tmp_path / "tool", b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    with pytest.raises(DocumentError, match=r"tool: looks like a binary file \(NUL bytes\); only text files"):
        collect([path])


def test_a_folder_indexes_its_extensionless_text_files_and_passes_over_binary_ones(tmp_path):
    write(tmp_path / "docs" / "README", GOOD_TEXT)
    write(tmp_path / "docs" / "sub" / "FAQ", "Q: Who kept the diary? A: Tobias Wren.\n")
    write(tmp_path / "docs" / "tool", b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    write(tmp_path / "docs" / "config.cfg", "x = 1\n")  # an unknown extension: not read without --as
    collected = collect([tmp_path / "docs"])
    assert sorted(Path(d.source).name for d in collected.documents) == ["FAQ", "README"]
    assert collected.skipped == []


def test_read_as_text_reads_any_named_file_as_text_and_refuses_an_unknown_format(tmp_path):
    path = write(tmp_path / "server.cfg", "The port is 8080.\n")
    [document] = collect([path], read_as="text").documents
    assert (document.text, document.format) == ("The port is 8080.\n", "text")
    [document] = collect([path], read_as={str(path.resolve()): "markdown"}).documents
    assert document.format == "markdown"
    with pytest.raises(DocumentError, match=r"unknown format 'txt' to read files as; use one of: docx, html, markdown"):
        collect([path], read_as="txt")
    binary = write(tmp_path / "image.cfg", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DocumentError, match=r"image\.cfg: looks like a binary file"):
        collect([binary], read_as="text")


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  \n"], ids=["empty", "whitespace-only"])
def test_empty_file_is_refused(tmp_path, content):
    path = write(tmp_path / "empty.txt", content)
    with pytest.raises(DocumentError, match=r"empty\.txt: the file is empty"):
        collect([path])


def test_binary_file_is_refused(tmp_path):
    path = write(tmp_path / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    with pytest.raises(DocumentError, match=r"image\.txt: looks like a binary file"):
        read_document(path)


def test_undecodable_file_is_refused_with_a_message_naming_utf8(tmp_path):
    noise = bytes((i * 7919 + 13) % 255 + 1 for i in range(4000))  # no NUL byte, not any encoding
    path = write(tmp_path / "noise.txt", noise)
    with pytest.raises(DocumentError, match=r"noise\.txt: not UTF-8 .*convert it to UTF-8"):
        read_document(path)


def test_file_over_the_size_limit_is_refused(tmp_path):
    path = write(tmp_path / "big.txt", GOOD_TEXT * 10)
    with pytest.raises(DocumentError, match=r"big\.txt: .* over the .* limit; split the file"):
        read_document(path, max_bytes=100)


def test_utf8_text_keeps_its_newlines(tmp_path):
    path = write(tmp_path / "crlf.txt", b"First line.\r\nSecond line.\r\n")
    document = read_document(path)
    assert document.text == "First line.\r\nSecond line.\r\n"
    assert document.encoding == "utf-8"
    assert document.source == str(path.resolve())


def test_utf16_with_bom_is_decoded(tmp_path):
    path = write(tmp_path / "utf16.txt", "Hello world. This file is UTF-16 with a byte order mark.".encode("utf-16"))
    assert read_document(path).text == "Hello world. This file is UTF-16 with a byte order mark."


@pytest.mark.parametrize(
    "text",
    [
        FRENCH,
        pytest.param(
            ENGLISH_WITH_ACCENTS
        ),
    ],
    ids=["french", "english-with-accents"],
)
def test_latin1_file_is_decoded_exactly_or_refused(tmp_path, text):
    path = write(tmp_path / "latin1.txt", text.encode("cp1252"))
    try:
        document = read_document(path)
    except DocumentError as error:
        assert "UTF-8" in str(error)
        return
    assert document.text == text  # never silently decoded to something else


def test_folder_with_one_bad_file_still_indexes_the_others(tmp_path):
    folder = tmp_path / "docs"
    write(folder / "good.txt", GOOD_TEXT)
    write(folder / "notes" / "more.md", "# Notes\n\nThe light can be seen from 27 kilometres away.\n")
    write(folder / "broken.txt", b"\x00\x01\x02binary")
    write(folder / "empty.md", b"")
    write(folder / "picture.png", b"\x89PNG")  # unsupported files in a folder are ignored silently
    write(folder / ".hidden.txt", GOOD_TEXT)  # hidden files too

    collected = collect([folder])

    assert sorted(Path(d.source).name for d in collected.documents) == ["good.txt", "more.md"]
    skipped = {Path(path).name: reason for path, reason in collected.skipped}
    assert sorted(skipped) == ["broken.txt", "empty.md"]
    assert "binary" in skipped["broken.txt"]
    assert "empty" in skipped["empty.md"]


def test_build_reports_skipped_files_and_indexes_the_rest(tmp_path):
    folder = tmp_path / "docs"
    write(folder / "good.txt", GOOD_TEXT)
    write(folder / "broken.txt", b"\x00\x01\x02binary")

    assistant = Assistant.build([folder], index_dir=tmp_path / "index")

    assert [Path(path).name for path, _ in assistant.last_build.skipped] == ["broken.txt"]
    assert {Path(p.source).name for p in assistant.passages} == {"good.txt"}
    assert "Tobias Wren" in assistant.ask("Who kept a diary at the Penmorra lighthouse?").text


def test_folder_with_no_readable_document_is_refused(tmp_path):
    folder = tmp_path / "docs"
    write(folder / "broken.txt", b"\x00\x01\x02binary")
    with pytest.raises(DocumentError, match=r"no readable documents in .*docs.*broken\.txt: .*binary"):
        Assistant.build([folder], index_dir=tmp_path / "index")


def test_a_single_path_string_is_not_split_into_characters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative name: the bug then fails fast instead of walking '/'
    write(tmp_path / "doc.txt", GOOD_TEXT)
    try:
        assistant = Assistant.build("doc.txt", index_dir=tmp_path / "index")
    except (TypeError, RagError) as error:
        assert "doc.txt" in str(error) or "str" in str(error)
        return
    assert {Path(p.source).name for p in assistant.passages} == {"doc.txt"}


def test_no_paths_is_refused(tmp_path):
    with pytest.raises(DocumentError, match="no documents given"):
        Assistant.build([], index_dir=tmp_path / "index")


def test_symlink_loop_in_a_folder_does_not_hang(tmp_path):
    folder = tmp_path / "docs"
    write(folder / "sub" / "good.txt", GOOD_TEXT)
    os.symlink(folder, folder / "sub" / "loop")  # docs/sub/loop -> docs: a folder loop
    os.symlink(folder / "sub" / "good.txt", folder / "alias.txt")  # the same file twice

    collected = collect([folder])

    assert [d.source for d in collected.documents] == [str((folder / "sub" / "good.txt").resolve())]
    assert collected.skipped == []


def test_file_symlink_loop_in_a_folder_is_skipped(tmp_path):
    folder = tmp_path / "docs"
    write(folder / "good.txt", GOOD_TEXT)
    os.symlink(folder / "a.txt", folder / "b.txt")
    os.symlink(folder / "b.txt", folder / "a.txt")

    collected = collect([folder])

    assert [Path(d.source).name for d in collected.documents] == ["good.txt"]
    assert {Path(path).name for path, _ in collected.skipped} <= {"a.txt", "b.txt"}  # reported, or ignored
