"""Shared fixtures: a private index folder for every test, and indexes built once per session.

Everything here is real: the bundled sentence-transformers model, FAISS and BM25 indexes on
disk in temporary folders. The model loads once per process (the embedder caches it).
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub, gradio or matplotlib: no network, no analytics, and
# no cache written into the user's home.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="rag-tests-mpl-"))
# The cache the session's indexes export the question model to (rag.question_model), never the
# user's: session fixtures run before the per-test fixture below points elsewhere. Every test's
# own cache links its `rag/onnx` here, so the model is exported once per run, not once per test.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="rag-tests-cache-"))
os.environ["XDG_CACHE_HOME"] = str(SESSION_CACHE)
QUESTION_MODELS = SESSION_CACHE / "rag" / "onnx"
QUESTION_MODELS.mkdir(parents=True)
atexit.register(shutil.rmtree, SESSION_CACHE, ignore_errors=True)  # 90 MB per run otherwise
os.environ.pop("RAG_DEBUG", None)
os.environ.pop("RAG_MODEL", None)

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import rag.settings  # noqa: E402
from rag import Assistant  # noqa: E402
from rag.types import Answer  # noqa: E402

# Property tests: no deadline (the machine may be busy; we never assert on time), and the
# autouse index-folder fixture below is irrelevant to them.
settings.register_profile(
    "rag", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
settings.load_profile("rag")

SAMPLE = rag.settings.SAMPLE_DOCUMENT

# A small made-up document: nothing in the code can be special-cased to it.
BRIDGE_TEXT = (
    "The Varnholt Bridge\n"
    "\n"
    "The Varnholt Bridge crosses the river Elsmere between the towns of Kestrel and Dunmore.\n"
    "\n"
    "The bridge was designed by the engineer Miriam Okonkwo-Hale. Construction began in 1887. "
    "The bridge was opened to traffic on September 14, 1893.\n"
    "\n"
    "The main span hangs from 212 steel cables anchored in two granite towers. "
    "In 1951 a flood damaged the northern tower, and repairs took three years.\n"
    "\n"
    "Today about 18,000 vehicles cross the bridge every day. "
    "The town of Kestrel holds a lantern festival on the bridge every spring.\n"
)


# Two small documents for index tests: one answers ORCHARD_QUESTION, the other says nothing of it.
ORCHARD = (
    "Alpha Farm lies in the valley below the old mill. "
    "The orchard at Alpha Farm was planted in 1920 by Greta Lindqvist. "
    "Its apple trees produce about 40 tonnes of fruit each autumn.\n"
)
COMPANY = (
    "Bravo Company marched north through the pass. "
    "The march lasted nine days in heavy snow. "
    "Nobody in the company complained about the boots.\n"
)
ORCHARD_QUESTION = "When was the orchard at Alpha Farm planted?"


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "orchard.txt").write_text(ORCHARD, encoding="utf-8")
    (folder / "company.txt").write_text(COMPANY, encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def private_index_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own default index folder: never the repo's index/ or the user's cache."""
    folder = tmp_path / "default-index"
    monkeypatch.setenv(rag.settings.ENV_INDEX_DIR, str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    share_question_models(tmp_path / "xdg-cache")
    return folder


def share_question_models(cache: Path) -> None:
    """Make `cache` (an XDG_CACHE_HOME) use the run's exported question models."""
    (cache / "rag").mkdir(parents=True, exist_ok=True)
    (cache / "rag" / "onnx").symlink_to(QUESTION_MODELS, target_is_directory=True)


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Assistant:
    """The bundled sample, indexed once for the many read-only tests."""
    return Assistant.build([SAMPLE], index_dir=tmp_path_factory.mktemp("sample") / "index")


@pytest.fixture(scope="session")
def bridge(tmp_path_factory) -> Assistant:
    """An assistant over the made-up bridge document."""
    folder = tmp_path_factory.mktemp("bridge")
    (folder / "docs").mkdir()
    (folder / "docs" / "varnholt.txt").write_text(BRIDGE_TEXT, encoding="utf-8")
    return Assistant.build([folder / "docs"], index_dir=folder / "index")


def source_text(source: str, encoding: str = "utf-8") -> str:
    """A source file as the user's editor sees it: decoded, newlines untouched."""
    with open(source, encoding=encoding, newline="") as handle:
        return handle.read()


def assert_verbatim(answer: Answer, encoding: str = "utf-8") -> None:
    """Every citation is exactly the source's text at [start:end], and so is the direct answer
    in the first citation's source (when the answer has offsets for it: hand-made ones don't)."""
    for citation in answer.citations:
        assert source_text(citation.source, encoding)[citation.start : citation.end] == citation.text, citation
    if answer.grounded and not answer.generated and answer.direct_start is not None:
        first = answer.citations[0]
        assert answer.direct, answer
        assert source_text(first.source, encoding)[answer.direct_start : answer.direct_end] == answer.direct, answer
        assert first.start <= answer.direct_start < answer.direct_end <= first.end, answer


@pytest.fixture(scope="session")
def verbatim():
    return assert_verbatim


# -- the command line -----------------------------------------------------------------------------


def run_rag(*args: str, cwd: Path, index_dir: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`rag ARGS...` run as a user runs it: a subprocess with its exit code, stdout and stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_DEBUG", None)
    if index_dir is not None:
        env["RAG_INDEX_DIR"] = str(index_dir)
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A failed command: non-zero exit, nothing on stdout, one `rag: error:` line on stderr."""
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rag: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# -- serving the app ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_app(assistant: Assistant):
    """The real app over `assistant`, served as `rag ui` serves it (same bounded queue) on a free
    local port in this process. Returns (app, url); call `app.close()` when done."""
    from ui.app import build_app, launch  # gradio is heavy: only the tests that serve import it

    port = free_port()
    app = launch(build_app(assistant), host="127.0.0.1", port=port, block=False)
    return app, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="session")
def served(sample):
    """The app over the bundled sample, served on a free local port for the whole session."""
    pytest.importorskip("gradio")
    app, url = serve_app(sample)
    yield url
    app.close()


# -- the browser ---------------------------------------------------------------------------------

# Debian's Chromium (never `playwright install`, which downloads a browser), headless and quiet.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """One Chromium for the whole run: Playwright's sync API allows a single driver at a time."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
