"""Reliability: awkward files in a folder, `rag index` killed at random points, two writers at once.

Complements test_documents.py (empty, binary, undecodable, symlink loops, the size check) and
test_store.py (damaged files, faults injected while writing, the lock refusing a second writer):
here the real `rag` command runs in subprocesses and is killed with SIGKILL, files are huge,
and folders are deeper than the system's path limit.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_rag, source_text

from rag import Assistant, store
from rag.documents import collect
from rag.settings import MAX_FILE_BYTES

GOOD = "The Penmorra lighthouse was first lit in 1902. Its keeper, Tobias Wren, kept a diary for forty years.\n"
GOOD_QUESTION = "Who kept a diary at the Penmorra lighthouse?"
MORE = "# Notes\n\nThe light of Penmorra can be seen from 27 kilometres away.\n"
MB = 2**20


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def good_folder(folder: Path) -> Path:
    write(folder / "good.txt", GOOD)
    write(folder / "notes" / "more.md", MORE)
    return folder


def names(paths) -> list[str]:
    return sorted(Path(p).name for p in paths)


def rag_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.cli", *args]


def rag_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_DEBUG", None)
    return env


def run_measured(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run `command` and return it with its peak resident memory in MB.

    Measured by a small parent process with RUSAGE_CHILDREN: a process started straight from
    pytest would report pytest's own peak, which the kernel carries across fork and exec.
    """
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
    )
    result = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True,
                            env=rag_env(), timeout=600, **kwargs)
    stderr, _, peak = result.stderr.rpartition("PEAK_KB ")
    result.stderr = stderr
    return result, int(peak.split()[0]) / 1024


# -- bad files in a folder: skipped with a message, the rest indexed ------------------------------


def test_a_nul_byte_past_the_sniffed_head_is_still_binary(tmp_path):
    folder = good_folder(tmp_path / "docs")
    write(folder / "late-nul.txt", GOOD * 200 + "\x00 and then more text.\n")  # NUL at ~20 KB

    collected = collect([folder])

    assert names(d.source for d in collected.documents) == ["good.txt", "more.md"]
    [(path, reason)] = collected.skipped
    assert Path(path).name == "late-nul.txt" and "binary file (NUL bytes)" in reason


def test_a_named_pipe_in_a_folder_is_skipped_not_waited_on(tmp_path):
    folder = good_folder(tmp_path / "docs")
    os.mkfifo(folder / "pipe.txt")  # reading it would block until someone writes: forever
    code = (
        "import json, sys; from rag.documents import collect; c = collect([sys.argv[1]]); "
        "print(json.dumps({'documents': [d.source for d in c.documents], 'skipped': c.skipped}))"
    )
    # In a subprocess with a timeout: were the pipe opened, the test fails instead of hanging.
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    collected = json.loads(result.stdout)
    assert names(collected["documents"]) == ["good.txt", "more.md"]
    [(path, reason)] = collected["skipped"]
    assert Path(path).name == "pipe.txt" and "not a regular file" in reason


def test_an_unreadable_file_is_skipped_with_a_message(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root, which reads a chmod 000 file anyway; the pipe and too-deep cases cover unreadable entries")
    folder = good_folder(tmp_path / "docs")
    locked = write(folder / "locked.txt", GOOD.replace("Penmorra", "Skerrin"))
    locked.chmod(0)
    try:
        collected = collect([folder])
    finally:
        locked.chmod(0o644)
    assert names(d.source for d in collected.documents) == ["good.txt", "more.md"]
    [(path, reason)] = collected.skipped
    assert Path(path).name == "locked.txt" and "cannot read (Permission denied); check its permissions" in reason


def _nest(top: Path, depth: int, part: str) -> Path:
    """Folders nested `depth` deep below `top`, made relative to each folder so the full path may
    exceed PATH_MAX (4096 bytes); returns the path of a file written in the deepest one."""
    handle = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(part, dir_fd=handle)
            deeper = os.open(part, os.O_RDONLY, dir_fd=handle)
            os.close(handle)
            handle = deeper
        fd = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=handle)
        os.write(fd, b"The deepest note says the spare key of the boathouse hangs behind the clock.\n")
        os.close(fd)
    finally:
        os.close(handle)
    return top.joinpath(*[part] * depth, "deep.txt")


def test_deeply_nested_folders_are_indexed_and_too_deep_ones_reported(tmp_path):
    folder = good_folder(tmp_path / "docs")
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    deep = _nest(folder / "a", 100, "level")  # 100 levels, ~600 characters: fine
    too_deep = _nest(folder / "b", 300, "a-rather-long-folder-name")  # ~7,800 characters: over PATH_MAX

    collected = collect([folder])

    assert names(d.source for d in collected.documents) == ["deep.txt", "good.txt", "more.md"]
    assert str(deep.resolve()) in [d.source for d in collected.documents]
    [(path, reason)] = collected.skipped
    assert str(too_deep).startswith(path)  # the folder that could not be listed, above the file
    assert "cannot list this folder (File name too long); its files are skipped" in reason
    assert len(reason) < 300  # one readable line, not 8,000 characters of path


def test_a_200_mb_file_is_skipped_from_its_size_without_being_read(tmp_path):
    folder = good_folder(tmp_path / "docs")
    line = ("The river was wide and slow and the ferry crossed it twice a day. " * 16)[:1023] + "\n"
    with open(folder / "huge.txt", "w", encoding="utf-8") as handle:
        for _ in range(200 * 1024):  # 200 MB of real text, written 1 KB at a time
            handle.write(line)
    assert (folder / "huge.txt").stat().st_size == 200 * MB

    # The library on its own, in a fresh process: its peak memory is far below the file's size.
    code = (
        "import json, sys; from rag.documents import collect; c = collect([sys.argv[1]]); "
        "print(json.dumps({'documents': [d.source for d in c.documents], 'skipped': c.skipped}))"
    )
    result, peak_mb = run_measured([sys.executable, "-c", code, str(folder)])
    assert result.returncode == 0, result.stderr
    collected = json.loads(result.stdout)
    assert names(collected["documents"]) == ["good.txt", "more.md"]
    [(path, reason)] = collected["skipped"]
    assert Path(path).name == "huge.txt"
    assert f"200 MB is over the {MAX_FILE_BYTES // MB} MB limit; split the file" in reason
    assert "raise the limit with `rag index --max-file-mb N`" in reason
    print(f"\npeak RSS collecting a folder with a 200 MB file: {peak_mb:.0f} MB")
    assert peak_mb < 100

    # `rag index` with a lower limit: both large files skipped, named in the summary, the rest indexed.
    write(folder / "two-mb.md", GOOD * (2 * MB // len(GOOD)))
    index_dir = tmp_path / "index"
    cli, peak_mb = run_measured(rag_command("index", str(folder), "--index", str(index_dir), "--max-file-mb", "1"), cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert "2 added" in cli.stdout and "2 skipped" in cli.stdout
    skipped_lines = [line for line in cli.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped_lines) == 2
    assert any("huge.txt: 200 MB is over the 1 MB limit" in line for line in skipped_lines)
    assert any("two-mb.md: 2 MB is over the 1 MB limit" in line for line in skipped_lines)
    print(f"peak RSS of `rag index` on that folder (model loaded): {peak_mb:.0f} MB")
    # torch and the model need ~550 MB; reading the file would add 400 MB more (its bytes, its text).
    assert peak_mb < 900
    assert "Tobias Wren" in Assistant.open(index_dir).ask(GOOD_QUESTION).text
    (folder / "huge.txt").unlink()  # not left in the temporary folders pytest keeps


def test_a_5_mb_file_on_one_line_is_indexed_exactly(tmp_path):
    """One 5 MB line without sentence breaks (an export that lost its newlines) is cut into
    thousands of passages at word boundaries, every one of them embedded and citable.

    The filler repeats one phrase, so its ~8,700 passages are a few dozen distinct texts, each
    embedded once: random words would make this one test embed for minutes on 2 cores."""
    filler = " ".join(["river bank old town merchants traded salt iron grain during long winters ferry tolls"] * 60_000)
    fact = " The keeper of the Quillfen light was Orrin Vask, who painted its door blue in 1902. "
    half = (5 * MB - len(fact)) // 2
    line = filler[:half] + fact + filler[-(5 * MB - len(fact) - half) :]
    assert len(line) == 5 * MB and "\n" not in line
    folder = good_folder(tmp_path / "docs")
    path = write(folder / "one-line.txt", line)

    assistant = Assistant.build([folder], index_dir=tmp_path / "index")

    mine = [p for p in assistant.passages if Path(p.source).name == "one-line.txt"]
    assert len(mine) > 5 * MB // 600
    on_disk = source_text(str(path.resolve()))
    end = 0
    for passage in mine:
        assert on_disk[passage.start : passage.end] == passage.text and len(passage.text) <= 600
        assert not on_disk[end : passage.start].strip()  # nothing but the spaces at a cut is left out
        end = passage.end
    assert end == len(line.rstrip())
    answer = Assistant.open(tmp_path / "index").ask("Who was the keeper of the Quillfen light?")
    assert answer.grounded and "Orrin Vask" in answer.text
    assert any(on_disk[c.start : c.end] == c.text and "Orrin Vask" in c.text for c in answer.citations)


# -- crashes and concurrent writers ---------------------------------------------------------------

ROUND_FACT = "The tide gauge at station {name} was installed in {year} by the harbour office."
FILLER = (
    "Boats left the harbour at dawn and returned before the evening bell. "
    "The market sold nets, rope, tar and salted fish to the crews. "
    "Gulls followed the boats into the bay and waited on the breakwater. "
)


def station_file(folder: Path, number: int, sentences: int = 60) -> tuple[Path, str, str]:
    """A document about one made-up station, with filler to make indexing take a while."""
    name = f"Korvald-{number}"
    year = str(1800 + number)
    body = (FILLER * (sentences // 3)).replace("harbour", f"harbour {number}")
    path = write(folder / f"station-{number:02d}.txt", f"{ROUND_FACT.format(name=name, year=year)}\n\n{body}\n")
    return path, f"When was the tide gauge at station {name} installed?", year


def files_of(index_dir: Path) -> set[str]:
    return {p.name for p in index_dir.iterdir()}


def referenced(index_dir: Path) -> set[str]:
    manifest = json.loads((index_dir / store.MANIFEST).read_text(encoding="utf-8"))
    return {store.MANIFEST, store.LOCK, *manifest["files"].values()}


def _kill_when_writing(process: subprocess.Popen, index_dir: Path, before: set[str], prefix: str) -> bool:
    """SIGKILL `process` as soon as a new file starting with `prefix` appears in the index folder
    (the next generation being written). False if the process finished first."""
    while process.poll() is None:
        if any(name.startswith(prefix) for name in files_of(index_dir) - before):
            process.kill()
            return True
        time.sleep(0.001)
    return False


def test_kill_9_at_random_points_of_rag_index_never_breaks_the_index(tmp_path):
    docs = tmp_path / "docs"
    index_dir = tmp_path / "index"
    _, first_question, first_year = station_file(docs, 0)
    station_file(docs, 1)
    Assistant.build([docs], index_dir=index_dir)
    baseline = Assistant.open(index_dir).ask(first_question)
    assert baseline.grounded and first_year in baseline.text

    # How long an uninterrupted run takes here (on a scratch copy), to spread the kills over it.
    scratch = tmp_path / "scratch"
    shutil.copytree(index_dir, scratch)
    for number in range(2, 6):
        station_file(docs, number)
    started = time.monotonic()
    timing = subprocess.run(rag_command("index", str(docs), "--index", str(scratch)), env=rag_env(),
                            capture_output=True, text=True, timeout=600)
    assert timing.returncode == 0, timing.stderr
    duration = time.monotonic() - started

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    rounds = 5
    plan = [("delay", duration * (i + rng.random()) / rounds) for i in range(rounds)]
    # And twice while the next generation is being written: as its first file appears, and as
    # the new manifest (written beside the old one, then renamed over it) appears.
    plan += [("writing", "passages-"), ("writing", f"{store.MANIFEST}.")]
    outcomes = []
    for number, (how, when) in enumerate(plan, start=6):
        _, last_question, last_year = station_file(docs, number)  # something new to index in every round
        before = files_of(index_dir)
        manifest_before = (index_dir / store.MANIFEST).read_bytes()
        process = subprocess.Popen(rag_command("index", str(docs), "--index", str(index_dir)), env=rag_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if how == "delay":
            time.sleep(when)
            process.kill()
        else:
            _kill_when_writing(process, index_dir, before, when)
        returncode = process.wait(timeout=600)
        killed = returncode == -9
        outcomes.append(f"{how}:{when if how == 'writing' else round(when, 1)}:{'killed' if killed else 'finished'}")
        assert killed or returncode == 0, returncode
        committed = (index_dir / store.MANIFEST).read_bytes() != manifest_before  # killed after the commit point, or finished
        outcomes[-1] += ":committed" if committed else ""
        survivor = Assistant.open(index_dir)  # verified against its checksums
        answer = survivor.ask(first_question)
        cited = [c.text for c in answer.citations]
        assert answer.grounded and first_year in answer.text and baseline.citations[0].text in cited, (seed, outcomes)
        assert survivor.status()["passages"] == len(survivor.passages)
    print(f"\nkill -9 rounds (seed {seed}, uninterrupted run {duration:.1f} s): {outcomes}")
    assert sum(o.endswith("killed") for o in outcomes) >= rounds // 2, outcomes  # most rounds really were kills

    # The next run completes, indexes everything and removes what the killed runs left behind.
    final = run_rag("index", str(docs), "--index", str(index_dir), "--json", cwd=tmp_path, timeout=600)
    assert final.returncode == 0, final.stderr
    assert files_of(index_dir) == referenced(index_dir)
    recovered = Assistant.open(index_dir)
    assert names(recovered.manifest["sources"]) == names(docs.iterdir())
    assert last_year in recovered.ask(last_question).text


def _holds_lock(index_dir: Path) -> bool:
    from filelock import FileLock, Timeout

    probe = FileLock(str(index_dir / store.LOCK), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    probe.release()
    return False


def test_two_rag_index_at_once_take_turns_and_leave_one_consistent_index(tmp_path):
    docs = tmp_path / "docs"
    for number in range(6):
        station_file(docs, number)
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    command = rag_command("index", str(docs), "--index", str(index_dir), "--json")
    first = subprocess.Popen(command, env=rag_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not _holds_lock(index_dir):  # until the first is writing
        assert first.poll() is None, first.communicate()
        time.sleep(0.01)
    second = subprocess.Popen(command, env=rag_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first_out, first_err = first.communicate(timeout=600)
    second_out, second_err = second.communicate(timeout=600)

    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    first_report, second_report = json.loads(first_out), json.loads(second_out)
    # The second waited for the first and then found everything already indexed: had the two
    # interleaved, both would have embedded every passage.
    assert first_report["embedded"] == first_report["passages"] > 0
    assert second_report["embedded"] == 0 and len(second_report["unchanged"]) == 6
    assert files_of(index_dir) == referenced(index_dir)
    assistant = Assistant.open(index_dir)
    assert len(assistant.passages) == first_report["passages"]
    _, question, year = station_file(docs, 3)
    assert year in assistant.ask(question).text


def test_bit_rot_that_opening_cannot_see_is_found_by_rag_status_verify(tmp_path):
    """Opening checks sizes and times (cheap at any size); a same-size change that kept its time
    is found by `rag status --verify`, which hashes every file, with a one-line error naming the fix."""
    docs = tmp_path / "docs"
    station_file(docs, 0)
    index_dir = tmp_path / "index"
    Assistant.build([docs], index_dir=index_dir)
    assert run_rag("status", "--verify", "--index", str(index_dir), cwd=tmp_path).returncode == 0

    passages = next(index_dir.glob("passages-*.utf8"))
    times = (passages.stat().st_atime_ns, passages.stat().st_mtime_ns)
    data = bytearray(passages.read_bytes())
    position = data.index(b"tide gauge")
    data[position] = ord("T")  # same size, still valid JSON
    passages.write_bytes(bytes(data))
    os.utime(passages, ns=times)

    result = run_rag("status", "--verify", "--index", str(index_dir), cwd=tmp_path)
    assert_one_line_error(result, "damaged", passages.name, "does not match its checksum", f"rag index PATH --index {index_dir}")
