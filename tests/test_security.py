"""Security: what the served app does with hostile uploads, questions and requests.

Uploads go through the real path (a browser's file input → Gradio's upload route → the upload
handler), with the names an attacker would choose; requests go to the running server on
127.0.0.1. See SECURITY.md for what is trusted and what is not.
"""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from conftest import BRIDGE_TEXT, serve_app

from rag import Assistant

gr = pytest.importorskip("gradio")
from test_ui import ANSWER_TIMEOUT_MS, _ask_in_page  # noqa: E402

SECRET = "The vault combination at Harrowgate is 7731, known only to the night porter Ilse Brandt.\n"
UPLOADED = "The Fenwick ferry began its crossings in 1868 and carried twelve passengers at a time.\n"


@pytest.fixture
def site(tmp_path):
    """An index over the bridge document, a secret file beside (not inside) what is indexed, and
    the app serving it. Yields (url, assistant, tmp_path)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "varnholt.txt").write_text(BRIDGE_TEXT, encoding="utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET, encoding="utf-8")
    assistant = Assistant.build([tmp_path / "docs"], index_dir=tmp_path / "index")
    app, url = serve_app(assistant)
    try:
        yield url, assistant, tmp_path
    finally:
        app.close()


def _upload(page, name: str, content: str) -> str:
    """Upload a file under `name` through the page's file input; the message shown afterwards."""
    message = page.locator("#rag-upload-message")
    before = message.inner_text()
    page.locator("#rag-upload input[type=file]").set_input_files(
        {"name": name, "mimeType": "text/plain", "buffer": content.encode("utf-8")}
    )
    page.wait_for_function(
        r"""([before]) => {
            const shown = document.querySelector('#rag-upload-message'), t = shown.innerText;
            return t !== before && shown.querySelector('.rag-done, .rag-warning') && !/\d\.\ds/.test(t);
        }""",
        arg=[before], timeout=ANSWER_TIMEOUT_MS,
    )
    return message.inner_text()


def test_uploads_stay_in_the_index_folder_whatever_their_name_or_a_planted_link(site, browser):
    url, assistant, root = site
    uploads = root / "index" / "uploads"
    uploads.mkdir()
    victim = root / "outside" / "victim.txt"
    victim.write_text("ORIGINAL\n", encoding="utf-8")
    (uploads / "notes.txt").symlink_to(victim)  # planted: an upload named notes.txt must not write through it
    (uploads / "linked.txt").symlink_to(root / "outside" / "secret.txt")  # planted: must not be indexed
    absolute = Path("/tmp") / f"rag-escape-{secrets.token_hex(4)}.txt"

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_selector("#rag-question textarea")
        page.get_by_text("Add a document").click()
        for name in ("../../escape.txt", "..\\..\\escape-win.txt", str(absolute), "notes.txt"):
            message = _upload(page, name, UPLOADED.replace("Fenwick", f"Fenwick {name}"))
            assert "Added" in message, (name, message)
    finally:
        page.close()

    assert victim.read_text(encoding="utf-8") == "ORIGINAL\n"
    assert not absolute.exists()
    stored = sorted(p.name for p in uploads.iterdir())
    assert not (uploads / "notes.txt").is_symlink() and "Fenwick notes.txt" in (uploads / "notes.txt").read_text()
    assert "7731" not in " ".join(p.text for p in Assistant.open(root / "index").passages)  # the planted link was not followed
    assert stored == sorted(["escape.txt", "escape-win.txt", absolute.name, "notes.txt"]), stored
    assert all(not name.startswith(".") for name in stored)  # no temporary file left behind
    # Nothing was written anywhere else under the test's folder or above it.
    # (Files only: other tests' folders beside this one may have "escape" in their names.)
    written = {p for p in [*root.rglob("*escape*"), *root.parent.glob("*escape*")] if p.is_file()}
    assert all(uploads in p.parents for p in written), written
    for source in Assistant.open(root / "index").manifest["sources"]:
        assert uploads.resolve() in Path(source).parents or source == str((root / "docs" / "varnholt.txt").resolve())


def test_an_uploads_folder_that_is_a_link_is_refused(site):
    from ui.app import AssistantHolder, add_upload

    _, assistant, root = site
    elsewhere = root / "outside" / "elsewhere"
    elsewhere.mkdir()
    (root / "index" / "uploads").symlink_to(elsewhere, target_is_directory=True)
    incoming = root / "incoming.txt"
    incoming.write_text(UPLOADED, encoding="utf-8")
    with pytest.raises(Exception, match="is a symbolic link; uploads are stored only inside the index folder"):
        add_upload(AssistantHolder(assistant), incoming)
    assert list(elsewhere.iterdir()) == []


def test_the_server_reads_nothing_outside_the_indexed_sources(site):
    import httpx
    from gradio_client import Client

    url, assistant, root = site
    secret = root / "outside" / "secret.txt"
    # Gradio's file route serves only its own upload cache: not a file beside the documents,
    # not a system file, not an indexed document (its text reaches the page as citations only).
    for path in (secret, Path("/etc/passwd"), root / "docs" / "varnholt.txt"):
        for route in (f"gradio_api/file={path}", f"gradio_api/file={path}".replace("/", "%2F", 1)):
            response = httpx.get(url + route, timeout=30)
            assert response.status_code in (403, 404), (route, response.status_code)
            assert "7731" not in response.text and "root:" not in response.text
    # A question about the secret, or naming its path, is answered from the index alone.
    client = Client(url, verbose=False)
    sources = set(assistant.manifest["sources"])
    for question in ("What is the vault combination at Harrowgate?", f"What does {secret} say?", "../../outside/secret.txt"):
        result = client.predict(question, api_name="/ask")
        assert "7731" not in str(result)
        assert {c["source"] for c in result["citations"]} <= sources
    with pytest.raises(KeyError, match="is not indexed"):
        assistant.source_text(str(secret))


def test_markup_in_a_question_is_shown_as_text_and_never_runs(site, browser):
    url, _, _ = site
    question = 'When was the Varnholt Bridge opened? <img src=x onerror="window.__xss=3"><script>window.__xss=4</script>'
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_selector("#rag-question textarea")
        answer = _ask_in_page(page, question, 0)
        assert answer.strip() and "&#x27;" not in answer and "&quot;" not in answer  # answered or abstained, as text
        page.wait_for_timeout(500)  # give a broken image's onerror time to fire, were it markup
        chat = page.locator("#rag-chat").inner_text()
        assert '<img src=x onerror="window.__xss=3">' in chat and "<script>window.__xss=4</script>" in chat
        assert page.evaluate("typeof window.__xss") == "undefined"
    finally:
        page.close()
