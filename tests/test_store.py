"""The index on disk: incremental builds, verification on open, and crash safety."""
from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import pytest
from conftest import ORCHARD, ORCHARD_QUESTION

from rag import Assistant, lexical, store
from rag.embedding import resolve_model_path
from rag.errors import IndexCorruptError, IndexLockedError, IndexNotFoundError, IndexStaleError
from rag.settings import DEFAULT_MODEL, ChunkSettings, default_index_dir


@pytest.fixture
def index_dir(tmp_path) -> Path:
    return tmp_path / "index"


def files_of(index_dir: Path) -> set[str]:
    return {p.name for p in index_dir.iterdir()}


def referenced(index_dir: Path) -> set[str]:
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    return {"manifest.json", ".lock", *manifest["files"].values()}


def sources_of(assistant: Assistant) -> dict[str, int]:
    counts: dict[str, int] = {}
    for passage in assistant.passages:
        counts[Path(passage.source).name] = counts.get(Path(passage.source).name, 0) + 1
    return counts


def test_tests_never_use_the_repo_index_or_the_home_cache(private_index_dir):
    repo = Path(__file__).resolve().parent.parent
    assert default_index_dir() == private_index_dir
    assert not default_index_dir().resolve().is_relative_to(repo)
    assert not default_index_dir().resolve().is_relative_to(Path.home())


def test_build_then_open_gives_the_same_answers(corpus, index_dir):
    built = Assistant.build([corpus], index_dir=index_dir)
    opened = Assistant.open(index_dir)

    for question in (ORCHARD_QUESTION, "How long did the march of Bravo Company last?"):
        assert built.search(question)[0].passage == opened.search(question)[0].passage
        assert built.ask(question) == opened.ask(question)
    answer = opened.ask(ORCHARD_QUESTION)
    assert answer.grounded and answer.text.startswith("1920")


def test_manifest_describes_the_index(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))

    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["model"] == DEFAULT_MODEL
    assert manifest["dimension"] == 384
    assert manifest["normalized"] is True
    assert manifest["chunking"] == ChunkSettings().to_dict()
    assert manifest["counts"] == {"sources": 2, "passages": 6}
    assert {Path(s).name for s in manifest["sources"]} == {"orchard.txt", "company.txt"}
    assert all(len(record["sha256"]) == 64 for record in manifest["sources"].values())
    assert files_of(index_dir) == referenced(index_dir)


def test_rebuilding_an_unchanged_index_embeds_and_writes_nothing(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    before = {p.name: p.stat().st_mtime_ns for p in index_dir.iterdir()}

    again = Assistant.build([corpus], index_dir=index_dir)

    report = again.last_build
    assert report.embedded == 0
    assert report.written is False
    assert report.added == report.updated == report.removed == []
    assert sorted(Path(s).name for s in report.unchanged) == ["company.txt", "orchard.txt"]
    assert report.passages == 6
    assert {p.name: p.stat().st_mtime_ns for p in index_dir.iterdir()} == before


def test_changing_one_file_re_embeds_only_that_file(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    (corpus / "company.txt").write_text(
        "Bravo Company marched south along the coast. The march lasted four days. "
        "They reached the harbour of Lessing. The harbour was empty.\n",
        encoding="utf-8",
    )

    rebuilt = Assistant.build([corpus], index_dir=index_dir)

    report = rebuilt.last_build
    assert [Path(s).name for s in report.updated] == ["company.txt"]
    assert [Path(s).name for s in report.unchanged] == ["orchard.txt"]
    assert report.embedded == sources_of(rebuilt)["company.txt"] == 4
    assert sources_of(rebuilt) == {"orchard.txt": 3, "company.txt": 4}
    assert not any("nine days" in p.text for p in rebuilt.passages)
    assert "harbour of Lessing" in rebuilt.search("the harbour of Lessing")[0].passage.text
    assert "harbour of Lessing" in Assistant.open(index_dir).search("the harbour of Lessing")[0].passage.text
    assert rebuilt.ask(ORCHARD_QUESTION).text.startswith("1920")  # reused vectors still answer


def test_deleting_a_file_drops_its_passages(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    (corpus / "company.txt").unlink()

    rebuilt = Assistant.build([corpus], index_dir=index_dir)

    assert [Path(s).name for s in rebuilt.last_build.removed] == ["company.txt"]
    assert rebuilt.last_build.embedded == 0
    assert sources_of(rebuilt) == {"orchard.txt": 3}
    opened = Assistant.open(index_dir)
    assert sources_of(opened) == {"orchard.txt": 3}
    assert opened.status()["documents"] == 1
    assert all(Path(hit.passage.source).name == "orchard.txt" for hit in opened.search("Bravo Company march"))


def test_changed_chunking_rebuilds_everything(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)

    rebuilt = Assistant.build([corpus], index_dir=index_dir, chunking=ChunkSettings(max_chars=300))

    assert "chunking" in rebuilt.last_build.rebuilt_because
    assert rebuilt.last_build.embedded == 6
    assert rebuilt.manifest["chunking"]["max_chars"] == 300


def test_changed_model_rebuilds_everything(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    model_folder = resolve_model_path(DEFAULT_MODEL)  # the same weights, named by their folder

    rebuilt = Assistant.build([corpus], index_dir=index_dir, model=model_folder)

    assert "model" in rebuilt.last_build.rebuilt_because
    assert rebuilt.last_build.embedded == 6
    assert rebuilt.manifest["model"] == model_folder
    assert Assistant.open(index_dir).ask(ORCHARD_QUESTION).text.startswith("1920")


def test_open_on_a_missing_folder_says_how_to_create_it(tmp_path):
    with pytest.raises(IndexNotFoundError, match=r"no index at .*nowhere; create it with `rag index PATH"):
        Assistant.open(tmp_path / "nowhere")


def test_open_on_a_folder_without_manifest_is_not_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="rag index"):
        Assistant.open(tmp_path / "empty")


def _truncate_vectors(index_dir: Path) -> None:
    path = next(index_dir.glob("vectors-*.faiss"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _alter_passages(index_dir: Path) -> None:
    path = next(index_dir.glob("passages-*.utf8"))
    data = bytearray(path.read_bytes())
    position = data.index(b"orchard at Alpha")
    data[position] = ord("O")  # one byte, still valid JSON and UTF-8
    path.write_bytes(bytes(data))


def _delete_bm25(index_dir: Path) -> None:
    folder = next(index_dir.glob("bm25-*"))
    next(p for p in folder.iterdir() if p.is_file()).unlink()


def _truncate_manifest(index_dir: Path) -> None:
    path = index_dir / "manifest.json"
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    "damage, what",
    [
        (_truncate_vectors, r"vectors-.*\.faiss has [\d,]+ bytes where [\d,]+ were written"),
        (_alter_passages, r"passages-.*\.utf8 does not match its checksum"),
        (_delete_bm25, r"bm25-.* is missing"),
        (_truncate_manifest, r"manifest\.json is unreadable"),
    ],
    ids=["truncated-vectors", "altered-passages", "missing-bm25-file", "truncated-manifest"],
)
def test_damaged_index_is_refused_with_the_fix_and_rebuilt_by_the_next_build(corpus, index_dir, damage, what):
    Assistant.build([corpus], index_dir=index_dir)
    damage(index_dir)

    with pytest.raises(IndexCorruptError, match=rf"damaged: {what}.*; rebuild it with `rag index PATH --index "):
        Assistant.open(index_dir)

    repaired = Assistant.build([corpus], index_dir=index_dir)
    assert "damaged" in repaired.last_build.rebuilt_because
    assert repaired.last_build.embedded == 6
    assert Assistant.open(index_dir).ask(ORCHARD_QUESTION).text.startswith("1920")
    assert files_of(index_dir) == referenced(index_dir)


def test_an_alteration_that_keeps_size_and_time_is_found_by_verify(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    path = next(index_dir.glob("passages-*.utf8"))
    before = path.stat()
    _alter_passages(index_dir)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # bit rot keeps the file's time

    # Opening compares sizes and times only (so it costs the same at any size); verify hashes.
    Assistant.open(index_dir)
    with pytest.raises(IndexCorruptError, match=r"damaged: passages-.*\.utf8 does not match its checksum.*rag index PATH"):
        store.verify(index_dir)


def test_verify_counts_the_files_it_hashed(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert store.verify(index_dir) == len(manifest["checksums"]) >= 3


def test_index_of_another_format_version_is_stale(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    manifest_path = index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = store.FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    expected = rf"index format {store.FORMAT_VERSION + 1}, this version reads {store.FORMAT_VERSION}; rebuild it with `rag index"
    with pytest.raises(IndexStaleError, match=expected):
        Assistant.open(index_dir)


def test_source_changed_after_indexing_makes_open_stale(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    (corpus / "orchard.txt").write_text(ORCHARD.replace("1920", "1921"), encoding="utf-8")  # same size

    with pytest.raises(IndexStaleError, match=r"out of date: orchard\.txt changed since indexing; update it with `rag index"):
        Assistant.open(index_dir)

    Assistant.build([corpus], index_dir=index_dir)
    answer = Assistant.open(index_dir).ask(ORCHARD_QUESTION)
    assert "1921" in answer.direct and "1920" not in answer.text  # the changed text, not the old one


def test_source_deleted_after_indexing_makes_open_stale(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    (corpus / "company.txt").unlink()

    with pytest.raises(IndexStaleError, match=r"company\.txt \(missing\)"):
        Assistant.open(index_dir)


def test_touching_a_source_without_changing_it_is_not_stale(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    path = corpus / "orchard.txt"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))

    assert Assistant.open(index_dir).status()["stale"] == []
    assert Assistant.build([corpus], index_dir=index_dir).last_build.embedded == 0


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    "owner, name",
    [(faiss, "write_index"), (lexical, "save")],
    ids=["crash-after-passages", "crash-after-vectors"],
)
def test_a_build_that_fails_midway_leaves_the_previous_index_intact(corpus, index_dir, monkeypatch, owner, name):
    first = Assistant.build([corpus], index_dir=index_dir)
    before_answer = first.ask(ORCHARD_QUESTION)
    before_top = first.search("Bravo Company march")[0].passage
    manifest_before = (index_dir / "manifest.json").read_bytes()
    (corpus / "harbour.txt").write_text("The harbour of Lessing was built in 1777 by the Hanseatic merchants.\n", encoding="utf-8")

    # Fault injection on the filesystem step: the new generation's files are half written.
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, _fail)
        with pytest.raises(OSError, match="No space left"):
            Assistant.build([corpus], index_dir=index_dir)

    assert (index_dir / "manifest.json").read_bytes() == manifest_before
    assert files_of(index_dir) - referenced(index_dir), "the failed write left no partial files to clean up"
    survivor = Assistant.open(index_dir)
    assert survivor.ask(ORCHARD_QUESTION) == before_answer
    assert survivor.search("Bravo Company march")[0].passage == before_top
    assert sources_of(survivor) == {"orchard.txt": 3, "company.txt": 3}

    # The next successful build commits the new file and removes the leftovers.
    recovered = Assistant.build([corpus], index_dir=index_dir)
    assert [Path(s).name for s in recovered.last_build.added] == ["harbour.txt"]
    assert recovered.last_build.embedded == 1
    assert files_of(index_dir) == referenced(index_dir)
    assert Assistant.open(index_dir).ask("When was the harbour of Lessing built?").text.startswith("1777")


def test_a_run_stopped_between_commit_and_cleanup_is_tidied_by_the_next_unchanged_build(corpus, index_dir, monkeypatch):
    Assistant.build([corpus], index_dir=index_dir)
    (corpus / "harbour.txt").write_text("The harbour of Lessing was built in 1777 by the Hanseatic merchants.\n", encoding="utf-8")
    # As if killed right after the new manifest was committed: the old generation stays on disk.
    with monkeypatch.context() as patch:
        patch.setattr(store, "remove_unreferenced", lambda *args: None)
        Assistant.build([corpus], index_dir=index_dir)
    assert files_of(index_dir) - referenced(index_dir), "the previous generation was left behind"

    again = Assistant.build([corpus], index_dir=index_dir)  # nothing changed, so nothing is written

    assert again.last_build.written is False
    assert files_of(index_dir) == referenced(index_dir)
    assert Assistant.open(index_dir).ask("When was the harbour of Lessing built?").text.startswith("1777")


def test_a_second_writer_is_refused_while_the_index_is_locked(tmp_path):
    index_dir = tmp_path / "index"
    with store.lock(index_dir):
        with pytest.raises(IndexLockedError, match="being written by another process; wait for it to finish"):
            with store.lock(index_dir, timeout=0.1):
                pass
    with store.lock(index_dir, timeout=0.1):  # released: the next writer gets it
        pass


def test_status_reports_what_is_indexed(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    status = Assistant.open(index_dir).status()
    assert status["index"] == str(index_dir)
    assert (status["documents"], status["passages"], status["dimension"]) == (2, 6, 384)
    assert status["model"] == DEFAULT_MODEL
    assert status["stale"] == []
    assert status["bytes_on_disk"] > 6 * 384 * 4


def test_manifest_missing_a_required_key_is_corrupt(corpus, index_dir):
    Assistant.build([corpus], index_dir=index_dir)
    manifest_path = index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["checksums"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(IndexCorruptError, match="rag index"):
        Assistant.open(index_dir)


def test_default_index_keeps_what_rag_index_put_there(tmp_path):
    from rag.settings import default_index_dir

    note = tmp_path / "note.txt"
    note.write_text("The lighthouse at Kerrow Point was lit for the first time in 1871.\n", encoding="utf-8")
    Assistant.build([note], index_dir=default_index_dir())  # what `rag index note.txt` does

    assistant = Assistant.default()  # what `rag ask` without --index opens

    assert {p.source for p in assistant.passages} == {str(note.resolve())}
    assert assistant.last_build.embedded == 0
    assert "1871" in assistant.ask("When was the lighthouse at Kerrow Point first lit?").text


def test_a_default_index_from_an_older_version_is_rebuilt_with_its_own_sources(tmp_path):
    from rag.settings import default_index_dir

    note = tmp_path / "note.txt"
    note.write_text("The lighthouse at Kerrow Point was lit for the first time in 1871.\n", encoding="utf-8")
    Assistant.build([note], index_dir=default_index_dir())
    manifest_path = default_index_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = store.FORMAT_VERSION - 1  # as an earlier release wrote it
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexStaleError, match="rag index"):
        Assistant.open(default_index_dir())  # a named index says how to rebuild it

    assistant = Assistant.default()  # `rag ask` without --index: rebuilt, nothing to do by hand

    assert {p.source for p in assistant.passages} == {str(note.resolve())}
    assert assistant.last_build.embedded == 1
    assert "1871" in assistant.ask("When was the lighthouse at Kerrow Point first lit?").text
