"""The browser interface, served for real on 127.0.0.1 and driven by gradio_client and Chromium.

The browser tests need Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`);
they are skipped, saying so, only when it is absent. Screenshots go to artifacts/ (git-ignored).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import BRIDGE_TEXT, serve_app, source_text
from fpdf import FPDF

from rag import Assistant
from rag.errors import DocumentError

gr = pytest.importorskip("gradio")
from ui.app import (  # noqa: E402
    PENDING,
    AssistantHolder,
    add_upload,
    render_answer,
    render_sources,
    safe_upload_name,
    stream_steps,
)

FLAGSHIP = "When was the Brest peace treaty signed?"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# Generous: the first question loads the model's query path on a busy 2-core machine.
ANSWER_TIMEOUT_MS = 60_000

XSS_TEXT = (
    "The Quillfen Lighthouse\n"
    "\n"
    "The Quillfen Lighthouse stands on a basalt rock north of the harbour of Selmark.\n"
    "\n"
    "In 1902 the keeper Orrin Vask painted the words <script>window.__xss=1</script> and "
    '<img src=x onerror="window.__xss=2"> on the lighthouse door.\n'
    "\n"
    "The lamp was electrified in 1931.\n"
)
XSS_QUESTION = "When did the keeper paint the words on the lighthouse door?"


def _ask_in_page(page, question: str, answers_before: int) -> str:
    """Type a question, send it, and return the text of the new answer once it has fully arrived
    (a streamed message ends with PENDING until its final version replaces it)."""
    page.locator("#rag-question textarea").fill(question)
    page.locator("#rag-ask").click()
    page.wait_for_function(
        """([n, pending]) => {
            const bots = document.querySelectorAll('#rag-chat [data-testid="bot"]');
            return bots.length > n && !bots[n].innerText.trim().endsWith(pending);
        }""",
        arg=[answers_before, PENDING],
        timeout=ANSWER_TIMEOUT_MS,
    )
    return page.locator('#rag-chat [data-testid="bot"]').nth(answers_before).inner_text()


# -- the /ask endpoint ----------------------------------------------------------------------------


def test_ask_endpoint_answers_with_verbatim_citations(served):
    from gradio_client import Client

    result = Client(served, verbose=False).predict(FLAGSHIP, api_name="/ask")
    assert result["grounded"] is True
    assert "March" in result["answer"] and "1918" in result["answer"]
    assert result["citations"]
    for citation in result["citations"]:
        assert source_text(citation["source"])[citation["start"] : citation["end"]] == citation["text"]
    assert any("signed the Brest Peace Treaty" in c["text"] for c in result["citations"])


def test_ask_endpoint_reports_a_bad_question_as_a_message(served):
    from gradio_client import Client

    with pytest.raises(Exception, match="the question is empty"):
        Client(served, verbose=False).predict("   ", api_name="/ask")


# Questions on the sample, each with a fragment only its right answer holds (None: not answered).
CONCURRENT_QUESTIONS = {
    "When was the Brest peace treaty signed?": "March 1918",
    "How many tanks did the Germans attack with?": "4,300",
    "How many aircraft were there?": "4,980",
    "How many divisions did Germany have?": "181",
    "Who was the German ambassador?": "Schulenburg",
    "Who was the leader of the Bolsheviks?": "Lenin",
    "When did Molotov meet the ambassador?": "June 23",
    "When did Stalin die?": None,
}


def test_eight_concurrent_sessions_each_get_their_own_answer(served):
    from gradio_client import Client

    start = threading.Barrier(len(CONCURRENT_QUESTIONS))

    def session(question: str) -> dict:
        client = Client(served, verbose=False)  # its own session
        start.wait(timeout=60)  # all eight ask at once
        return client.predict(question, api_name="/ask")

    with ThreadPoolExecutor(max_workers=len(CONCURRENT_QUESTIONS)) as pool:
        futures = {question: pool.submit(session, question) for question in CONCURRENT_QUESTIONS}
        results = {question: future.result(timeout=180) for question, future in futures.items()}
    assert set(results) == set(CONCURRENT_QUESTIONS)
    for question, expected in CONCURRENT_QUESTIONS.items():
        result = results[question]
        assert result["query"] == question
        if expected is None:
            assert result["grounded"] is False and not result["citations"], (question, result)
        else:
            assert result["grounded"] is True and expected in result["answer"], (question, result)
    # No answer leaked into another session: only its own question's answer opens with its fragment
    # (a quoted sentence may mention another's number, so only the answer's opening is compared).
    for question, expected in CONCURRENT_QUESTIONS.items():
        for other, result in results.items():
            if expected is not None and other != question:
                assert not result["answer"].startswith(expected), (question, other, result)


# -- the browser ----------------------------------------------------------------------------------


def test_chat_in_the_browser_cites_and_follows_up(served, browser):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(served)
        page.wait_for_selector("#rag-question textarea")
        assert "passages" in page.locator("#rag-status").inner_text()
        # Record every text the answer shows, to see it stream in.
        page.evaluate(
            """() => {
                window.__shown = [];
                new MutationObserver(() => {
                    const bot = document.querySelector('#rag-chat [data-testid="bot"]');
                    if (bot) window.__shown.push(bot.innerText.trim());
                }).observe(document.querySelector('#rag-chat'), {childList: true, subtree: true, characterData: true});
            }"""
        )

        answer = _ask_in_page(page, FLAGSHIP, 0)
        assert "March" in answer and "1918" in answer
        assert "[1]" in answer  # numbered citation markers
        partial = [t for t in page.evaluate("window.__shown") if t.endswith(PENDING) and len(t) > len(PENDING)]
        assert partial, "the answer arrived in one piece instead of streaming"
        assert answer.startswith(partial[0][: -len(PENDING)].strip())
        mark = page.locator("#rag-sources mark").filter(has_text="signed the Brest Peace Treaty")
        mark.first.wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert "stalin-brest.txt" in page.locator("#rag-sources").inner_text()
        page.screenshot(path=str(ARTIFACTS / "ui-flagship.png"), full_page=True)

        # The [1] marker brings source 1 into view: first scroll it out of a short viewport.
        page.set_viewport_size({"width": 1280, "height": 400})
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        source = page.locator("#src-1")
        assert "[1] stalin-brest.txt" in source.inner_text()
        expect(source).not_to_be_in_viewport()
        page.locator('#rag-chat a[href="#src-1"]').first.click()
        expect(source).to_be_in_viewport(timeout=5_000)
        page.set_viewport_size({"width": 1280, "height": 1000})

        follow_up = _ask_in_page(page, "Who led them?", 1)
        assert follow_up.strip()
        page.screenshot(path=str(ARTIFACTS / "ui-follow-up.png"), full_page=True)

        page.locator("#rag-new").click()
        page.wait_for_function(
            "() => document.querySelectorAll('#rag-chat [data-testid=\"bot\"]').length === 0", timeout=10_000
        )
    finally:
        page.close()


def test_two_browser_sessions_keep_their_own_conversations(served, browser):
    """Two sessions ask different first questions, then the same follow-up: each follow-up is
    understood from its own session's first turn."""
    turns = {"Who was the German ambassador?": "Schulenburg", "Who was the leader of the Bolsheviks?": "Lenin"}
    contexts = [browser.new_context(viewport={"width": 1280, "height": 1000}) for _ in turns]
    try:
        pages = [context.new_page() for context in contexts]
        for page in pages:
            page.goto(served)
            page.wait_for_selector("#rag-question textarea")
        for page, (first, name) in zip(pages, turns.items()):
            assert name in _ask_in_page(page, first, 0)
        for page, name in zip(pages, turns.values()):
            follow_up = _ask_in_page(page, "What happened to him later?", 1)
            assert f"Understood as: “What happened to {name} later?”" in follow_up, follow_up
    finally:
        for context in contexts:
            context.close()


def _final_answers(page, count: int) -> list[str]:
    """The first `count` answers in the chat, once each has fully arrived."""
    page.wait_for_function(
        """([n, pending]) => {
            const bots = [...document.querySelectorAll('#rag-chat [data-testid="bot"]')];
            return bots.length >= n && bots.slice(0, n).every(b => !b.innerText.trim().endsWith(pending));
        }""",
        arg=[count, PENDING],
        timeout=ANSWER_TIMEOUT_MS,
    )
    return [page.locator('#rag-chat [data-testid="bot"]').nth(i).inner_text() for i in range(count)]


# A question, a follow-up that needs it, and a new topic: sent without waiting for answers.
QUICK_QUESTIONS = ["Who was the German ambassador?", "What happened to him later?", FLAGSHIP]


def _send_without_waiting(page, questions: list[str]) -> None:
    box = page.locator("#rag-question textarea")
    for question in questions:
        box.fill(question)
        box.press("Enter")
        # Sent: the box was emptied in the browser at once, so the next question typed stays.
        page.wait_for_function("() => document.querySelector('#rag-question textarea').value === ''")


def _assert_quick_questions_answered_in_order(page) -> None:
    """QUICK_QUESTIONS are in the chat in the order sent, each answered, the follow-up from the question before it."""
    answers = _final_answers(page, len(QUICK_QUESTIONS))
    users = [page.locator('#rag-chat [data-testid="user"]').nth(i).inner_text().strip() for i in range(len(QUICK_QUESTIONS))]
    assert users == QUICK_QUESTIONS
    assert "Schulenburg" in answers[0]
    assert "Understood as: “What happened to Schulenburg later?”" in answers[1], answers[1]
    assert "March" in answers[2] and "1918" in answers[2]


def test_questions_sent_quickly_are_all_answered_in_order_with_their_context(served, browser):
    """Three questions sent one after the other without waiting for any answer: none is dropped,
    each gets its own answer in the order sent, and the follow-up is understood from the turn
    before it (Gradio's default would have ignored the questions sent while one was pending)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(served)
        page.wait_for_selector("#rag-question textarea")
        _send_without_waiting(page, QUICK_QUESTIONS)
        _assert_quick_questions_answered_in_order(page)
        page.screenshot(path=str(ARTIFACTS / "ui-quick-questions.png"), full_page=True)
    finally:
        page.close()


def test_a_question_that_reaches_the_server_after_the_next_one_keeps_its_place(served, browser):
    """Nothing orders two requests on their way to the server: here the network holds the
    follow-up back until the question sent after it has arrived. The chat still shows and answers
    them in the order sent, so the follow-up is understood from the question before it."""
    follow_up, last = QUICK_QUESTIONS[1], QUICK_QUESTIONS[2]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    held = []

    def hold_the_follow_up(route):
        if follow_up in (route.request.post_data or "") and not held:
            held.append(route)  # continued below, once the next question is in the chat
        else:
            route.continue_()

    try:
        page.goto(served)
        page.wait_for_selector("#rag-question textarea")
        page.route("**/run/predict", hold_the_follow_up)
        _send_without_waiting(page, QUICK_QUESTIONS)
        page.wait_for_function(
            "q => [...document.querySelectorAll('#rag-chat [data-testid=\"user\"]')].some(m => m.innerText.includes(q))",
            arg=last,
            timeout=ANSWER_TIMEOUT_MS,
        )
        assert len(held) == 1, "the follow-up's request was never seen, so this test proved nothing"
        held[0].continue_()
        _assert_quick_questions_answered_in_order(page)
    finally:
        page.close()


def test_a_page_whose_session_the_server_forgot_still_gets_answers(served, browser):
    """The server keeps MAX_SESSIONS chats and forgets the least recently used; a page it forgot
    has numbered many questions already. Its next question waits a moment for the ones the
    server never saw, then is answered."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(served)
        page.wait_for_selector("#rag-question textarea")
        page.evaluate("() => { window.ragSent = 41; }")  # as if 41 questions had been asked before
        answer = _ask_in_page(page, FLAGSHIP, 0)
        assert "March" in answer and "1918" in answer
    finally:
        page.close()


def test_the_question_model_is_loaded_before_the_first_question(sample, tmp_path, monkeypatch, browser):
    """`rag ui` loads the question model before it serves: the first question loads nothing."""
    import shutil

    from conftest import QUESTION_MODELS

    # An index opened where no export is cached starts no background load of the question model...
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    index_dir = tmp_path / "index"
    shutil.copytree(sample.index_dir, index_dir)
    assistant = Assistant.open(index_dir)
    assert not assistant.ready
    # ... then the export appears (so loading needs no torch), and the app is started.
    shutil.copytree(QUESTION_MODELS, tmp_path / "empty-cache" / "rag" / "onnx")
    app, url = serve_app(assistant)
    try:
        assert assistant.ready  # loaded before the server took its first request
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#rag-question textarea")
        answer = _ask_in_page(page, FLAGSHIP, 0)
        assert "March" in answer and "1918" in answer
        page.close()
    finally:
        app.close()


def test_document_markup_is_shown_as_text_and_never_runs(tmp_path, browser):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "quillfen.txt").write_text(XSS_TEXT, encoding="utf-8")
    assistant = Assistant.build([tmp_path / "docs"], index_dir=tmp_path / "index")
    assert assistant.ask(XSS_QUESTION).grounded  # otherwise this test would prove nothing
    app, url = serve_app(assistant)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_selector("#rag-question textarea")
        answer = _ask_in_page(page, XSS_QUESTION, 0)
        page.locator("#rag-sources mark").first.wait_for(timeout=ANSWER_TIMEOUT_MS)
        page.wait_for_timeout(500)  # give a broken image's onerror time to fire, were it markup
        sources = page.locator("#rag-sources").inner_text()
        for literal in ("<script>window.__xss=1</script>", '<img src=x onerror="window.__xss=2">'):
            assert literal in sources
            assert literal in answer
        assert page.evaluate("typeof window.__xss") == "undefined"
        page.screenshot(path=str(ARTIFACTS / "ui-xss.png"), full_page=True)

        # An upload is copied under the index folder and indexed; every session sees it.
        upload = tmp_path / "varnholt bridge.txt"
        upload.write_text(BRIDGE_TEXT, encoding="utf-8")
        page.get_by_text("Add a document").click()
        page.locator("#rag-upload input[type=file]").set_input_files(str(upload))
        page.locator("#rag-upload-message").filter(has_text="Added varnholt_bridge.txt").wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert "2 document(s)" in page.locator("#rag-status").inner_text()
        assert (tmp_path / "index" / "uploads" / "varnholt_bridge.txt").exists()
        bridge = _ask_in_page(page, "When was the Varnholt Bridge opened to traffic?", 1)
        assert "1893" in bridge
        page.screenshot(path=str(ARTIFACTS / "ui-upload.png"), full_page=True)
    finally:
        page.close()
        app.close()


# -- rendering and uploads, without a server ------------------------------------------------------


def test_markers_link_to_their_source_entries(sample):
    answer = sample.ask(FLAGSHIP)
    message, panel = render_answer(FLAGSHIP, answer), render_sources(answer, sample)
    for number in range(1, len(answer.citations) + 1):
        assert f'<a href="#src-{number}" class="rag-marker">[{number}]</a>' in message
        assert f'id="src-{number}"' in panel


def test_stream_steps_grow_by_words_to_the_whole_text():
    steps = stream_steps("one two three four five six seven eight nine")
    assert len(steps) > 1 and steps[-1] == "one two three four five six seven eight nine"
    assert all(later.startswith(earlier) and len(later) > len(earlier) for earlier, later in pairwise(steps))
    assert stream_steps("") == [""] and stream_steps("one") == ["one"]


def test_sources_panel_escapes_and_highlights(sample):
    answer = sample.ask(FLAGSHIP)
    panel = render_sources(answer, sample)
    assert "<mark>" in panel and "signed the Brest Peace Treaty" in panel
    assert "stalin-brest.txt" in panel and f"chars {answer.citations[0].start}–{answer.citations[0].end}" in panel
    assert "No sources yet" in render_sources(None)


def test_an_answer_the_documents_do_not_hold_looks_different(sample):
    answer = sample.ask("What is the boiling point of mercury?")
    assert not answer.grounded
    assert render_answer("What is the boiling point of mercury?", answer).startswith("> ")


@pytest.mark.parametrize(
    "name, stored",
    [("notes.md", "notes.md"), ("../../etc/My notes (1).txt", "My_notes_1_.txt"), ("C:\\x\\.hidden.md", "hidden.md")],
)
def test_upload_names_keep_only_a_safe_base_name(name, stored):
    assert safe_upload_name(name) == stored


@pytest.mark.parametrize("name", ["photo.png", "", "...", "notes.md.exe"])
def test_upload_names_refuse_other_types(name):
    with pytest.raises(DocumentError, match=r"only \.txt, .*\.pdf, .*\.docx files are accepted"):
        safe_upload_name(name)


def test_upload_adds_a_document_and_refuses_binary_and_large_files(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "quillfen.txt").write_text(XSS_TEXT, encoding="utf-8")
    holder = AssistantHolder(Assistant.build([tmp_path / "docs"], index_dir=tmp_path / "index"))
    incoming = tmp_path / "incoming"
    incoming.mkdir()

    binary = incoming / "data.txt"
    binary.write_bytes(b"text\0\1\2")
    with pytest.raises(DocumentError, match="^data.txt: looks like a binary file"):
        add_upload(holder, binary)
    scan = incoming / "scan.pdf"  # a PDF of one blank page: no text layer, as a scan has none
    blank = FPDF()
    blank.add_page()
    blank.output(str(scan))
    with pytest.raises(DocumentError, match="^scan.pdf: .*no text layer"):
        add_upload(holder, scan)
    assert not (holder.assistant.index_dir / "uploads" / "scan.pdf").exists()  # refused before it is copied
    large = incoming / "big.md"
    large.write_bytes(b"a" * (5 * 1024 * 1024 + 1))
    with pytest.raises(DocumentError, match="at most 5 MB"):
        add_upload(holder, large)

    bridge = incoming / "varnholt bridge.txt"
    bridge.write_text(BRIDGE_TEXT, encoding="utf-8")
    message = add_upload(holder, bridge)
    assert "Added varnholt_bridge.txt" in message
    assert (tmp_path / "index" / "uploads" / "varnholt_bridge.txt").exists()
    assert holder.assistant.status()["documents"] == 2
    answer = holder.assistant.ask("When was the Varnholt Bridge opened?")
    assert answer.grounded and "1893" in answer.text
