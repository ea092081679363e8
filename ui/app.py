"""The Gradio app: a chat whose answers cite numbered sources, a sources panel, a viewer that opens
a cited source at its place (a PDF's page with the sentence highlighted, another document's
section with the sentence marked), uploads, and /ask.

Every piece of document text shown in the page goes through `html.escape` first: a document is
data, and a `<script>` or `<img onerror=...>` inside one must appear as text, never run. The
viewer is asked for a citation by its number in the sources panel a session was shown: no path
from the browser reaches the file system.

Only the public `rag` API is used: what `rag/__init__.py` exports (`Assistant`, `Answer`,
`read_document`, the errors, ...), never a module inside the package.
"""
from __future__ import annotations

import base64
import bisect
import html
import io
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from rag import (  # noqa: E402
    SUPPORTED_EXTENSIONS,
    Answer,
    Assistant,
    Citation,
    Conversation,
    DocumentError,
    RagError,
    read_document,
)

# Characters of surrounding text shown on each side of a cited sentence in the sources panel:
# enough for the sentence before and after, which is where "the same year" gets its year.
CONTEXT_CHARS = 300
# Lines shown on each side of a plain-text citation in the viewer: a screenful around it.
VIEWER_LINES = 12
# The most characters of a section the viewer shows: a section longer than this (a Markdown file
# without headings, a long chapter) is cut around the citation, at line ends.
VIEWER_CHARS = 6000
# Formats whose sections run from one heading to the next (their marks are headings).
HEADED_FORMATS = frozenset({"markdown", "html", "docx"})
# Largest accepted upload. Plain-text documents are rarely bigger; a larger file is more likely
# a mistake (a dump, a binary) and would block the index for minutes on a laptop CPU.
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD_EXTENSIONS = SUPPORTED_EXTENSIONS  # whatever `rag index` reads: text, Markdown, PDF, HTML, Word
# How a chat answer arrives: its words revealed in this many steps, this many seconds apart,
# before the final message with its citation markers and the sources panel.
STREAM_STEPS = 4
STREAM_DELAY = 0.05
# What a message still arriving ends with (alone, while the answer is being looked up); a final
# message never does, so a reader (or a test) can tell the two apart.
PENDING = "…"
# The reply shown for a question sent while an earlier one is being answered (it still ends with
# PENDING: it is not final).
WAITING = f"<small>Waiting for the answer above.</small> {PENDING}"
# Browser sessions whose chats are kept (one per page load, each a few turns of text); past this
# the least recently used is forgotten, and its page starts a new conversation with its next question.
MAX_SESSIONS = 256
# The queue every request waits in. Answering is CPU-bound and the machine this serves is a
# laptop: two questions at a time keep two cores busy, and a third would only slow all of them.
QUEUE_CONCURRENCY = 2
# Requests allowed to wait beyond those being answered. At ~50 ms a question, eight waiting is
# under half a second of work; past that a request is refused at once ("Queue is full") rather
# than piling up behind a flood and answering minutes late.
QUEUE_MAX_SIZE = 8
# Questions one browser session may have waiting behind the one being answered; a question past
# that is refused in the chat (a person does not queue more; a stuck key or a script might).
MAX_WAITING = QUEUE_MAX_SIZE
# Badges drawn by CSS (APP_CSS) in front of a message: a "?", a "!" or a drawn check, where an
# emoji (⚠️, ✅) showed as an empty box in a page whose fonts have no emoji.
ABSTAIN_BADGE = '<span class="rag-badge rag-abstain" aria-hidden="true">?</span>'
WARNING_BADGE = '<span class="rag-badge rag-warning" role="img" aria-label="Warning">!</span>'
DONE_BADGE = '<span class="rag-badge rag-done" role="img" aria-label="Done"></span>'
TOO_MANY = f"{WARNING_BADGE} Not sent: {MAX_WAITING} questions are already waiting for their answers; send it again once they are answered."
# Seconds a question waits for one sent before it that has not reached the server yet. The page
# numbers what it sends, but two requests can arrive in either order; the earlier one is normally
# milliseconds behind. Past this it is taken as never coming (the server forgot the session, past
# MAX_SESSIONS, or was restarted, and the page goes on counting) and the question is answered.
GAP_WAIT = 2.0
EXAMPLES = [
    "When was the Brest peace treaty signed?",
    "Who was the German ambassador?",
    "What happened to him later?",
]


class AssistantHolder:
    """The assistant every browser session of one app uses; an upload swaps in a rebuilt one.

    One holder per app (not per session): after an upload all sessions see the new documents.
    The lock keeps two uploads from rebuilding the index at the same time.
    """

    def __init__(self, assistant: Assistant):
        self.assistant = assistant
        self.lock = threading.Lock()


# -- rendering ----------------------------------------------------------------------------------

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]#|~$])")
# A line starting "1902." or "- " would otherwise become a list item (an answer "1902. “…”" does).
_LIST_MARKER = re.compile(r"^(\s*)(\d+)([.)])|^(\s*)([-+])(?=\s)", re.MULTILINE)


def _text(value: str) -> str:
    """Document or user text made safe for the chat's Markdown: HTML-escaped, Markdown-inert."""
    # quote=False: this is element text, never an attribute, and the chat's Markdown shows an
    # escaped apostrophe as the literal "&#x27;" ("The documents don&#x27;t say").
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(value, quote=False))
    return _LIST_MARKER.sub(
        lambda m: f"{m[1]}{m[2]}\\{m[3]}" if m[2] else f"{m[4]}\\{m[5]}", escaped
    )


def render_answer(question: str, answer: Answer) -> str:
    """The chat message for an answer: its text with numbered citation markers, or a distinct
    "the documents don't say" look, and the understood query when it differs from the question."""
    if answer.grounded:
        # Each marker links to its entry in the sources panel (`id="src-N"`), bringing it into view.
        markers = "".join(
            f'<sup><a href="#src-{n}" class="rag-marker">[{n}]</a></sup>' for n in range(1, len(answer.citations) + 1)
        )
        if answer.generated:
            # A written answer carries its markers inline, each after the sentence it supports.
            body = re.sub(
                r"\\\[(\d+)\\\]", lambda m: f'<sup><a href="#src-{m[1]}" class="rag-marker">[{m[1]}]</a></sup>', _text(answer.text)
            )
            removed = sum(not s.supported for s in answer.sentences)
            if removed:
                body += f"\n\n<small>{removed} written sentence(s) removed: the excerpts they cite do not support them.</small>"
        else:
            text = _text(answer.text)
            said, quote, rest = answer.text.partition(" “")
            if answer.direct and quote:
                # The direct answer comes first, in bold, as the answer says it (a relative date
                # with its year: "March 1918"); the quoted sentence follows.
                text = f"**{_text(said)}** {_text(quote.strip() + rest)}"
            body = f"{text} {markers}".rstrip()
            if answer.sentences:  # a model wrote, but nothing it wrote was supported
                body += "\n\n<small>The written answer was not supported by its excerpts; this is the extractive answer.</small>"
    else:
        body = f"> {ABSTAIN_BADGE} *{_text(answer.text)}*"
    if answer.query and answer.query.strip() != question.strip():
        body += f"\n\n<small>Understood as: “{_text(answer.query)}”</small>"
    return body


def stream_steps(text: str, steps: int = STREAM_STEPS) -> list[str]:
    """Growing prefixes of `text`, cut between words, the last one `text` itself: what a streamed
    answer shows as it arrives (before its citation markers are added)."""
    words = text.split(" ")
    size = max(1, -(-len(words) // max(1, steps)))
    return [" ".join(words[:end]) for end in range(size, len(words), size)] + [text]


def render_sources(answer: Answer | None, assistant: Assistant | None = None, *, panel: int | None = None) -> str:
    """The sources panel: for each citation, the file, its page or section, offsets, score, the cited sentence
    highlighted in its surrounding text, the other files holding the same sentence, and (given the
    `panel` number its session knows it by) a button that opens it in the viewer. Everything from a
    document is escaped."""
    if answer is None or not answer.citations:
        note = "No sources yet: ask a question." if answer is None else "No sources: the documents don't answer this."
        return f'<div class="rag-sources"><p><em>{html.escape(note)}</em></p></div>'
    items = []
    for number, citation in enumerate(answer.citations, 1):
        # The text the offsets refer to: a PDF's, HTML page's or Word file's is the extracted one.
        text = _source_text(assistant, citation.source) if assistant is not None else None
        if text is not None and text[citation.start : citation.end] == citation.text:
            before = text[max(0, citation.start - CONTEXT_CHARS) : citation.start]
            after = text[citation.end : citation.end + CONTEXT_CHARS]
            lead = "…" if citation.start > CONTEXT_CHARS else ""
            tail = "…" if citation.end + CONTEXT_CHARS < len(text) else ""
        else:  # the file changed or vanished since indexing: show the citation alone
            before = after = lead = tail = ""
        excerpt = (
            f"{lead}{html.escape(before)}<mark>{html.escape(citation.text)}</mark>{html.escape(after)}{tail}"
        )
        # The other files holding this very sentence, which is cited once.
        also_names = ", ".join(Path(path).name for path in citation.also_in)
        also = f'<div class="rag-also">also in: {html.escape(also_names)}</div>' if also_names else ""
        opener = (
            f'<button type="button" class="rag-open" data-rag-open="{panel}:{number}">Show in the document</button>'
            if panel is not None else ""
        )
        items.append(
            f'<li class="rag-source" id="src-{number}"><div><strong>[{number}] {html.escape(Path(citation.source).name)}</strong>'
            f"{' · ' + html.escape(citation.location) if citation.location else ''}"
            f" · chars {citation.start}–{citation.end} · score {citation.score:.3f}</div>"
            f'<blockquote style="white-space: pre-wrap; margin: 0.3em 0 0.3em 0;">{excerpt}</blockquote>{also}{opener}</li>'
        )
    return f'<div class="rag-sources"><ol>{"".join(items)}</ol></div>'


def _source_text(assistant: Assistant, source: str) -> str | None:
    try:
        return assistant.source_text(source)
    except KeyError:  # the index was replaced (an upload) since this answer was given
        return None


def ask_streaming(conversation, question: str):
    """Ask with a model writing the answer: yields the text written so far as it arrives
    (unchecked), then the final, checked `Answer`. Errors are raised here, not in the worker."""
    from rag import streaming

    events: queue.Queue = queue.Queue()
    result: dict = {}

    def work() -> None:
        try:
            with streaming(events.put):
                result["answer"] = conversation.ask(question)
        except Exception as error:  # handed to the caller below
            result["error"] = error
        finally:
            events.put(None)

    threading.Thread(target=work, daemon=True).start()
    written = ""
    while (event := events.get()) is not None:
        if event.kind == "token":
            written += event.text
            yield written
    if "error" in result:
        raise result["error"]
    yield result["answer"]


def render_status(assistant: Assistant) -> str:
    """One line: what the index holds and when it was last updated."""
    status = assistant.status()
    stale = f" · {WARNING_BADGE} stale: {_text(', '.join(status['stale']))}" if status.get("stale") else ""
    return (
        f"Index: **{status['documents']}** document(s) · **{status['passages']}** passages · "
        f"model `{html.escape(Path(str(status['model'])).name)}` · updated {html.escape(str(status['updated_at']))}{stale}"
    )


# -- the viewer ---------------------------------------------------------------------------------

VIEWER_HINT = '<div class="rag-viewer"><p><em>Click “Show in the document” under a source to see it in its document.</em></p></div>'


def render_viewer(citation: Citation | None, assistant: Assistant | None) -> str:
    """The viewer: the citation's source opened at its place. A PDF's page as a picture with the
    cited characters highlighted and the page's printed label; another document's section (the
    lines around it, for plain text) with the cited sentence marked. Everything from a document is
    escaped; the file read is the index's own source, never a path the page sent."""
    if citation is None or assistant is None:
        return VIEWER_HINT
    name = Path(citation.source).name
    title = f"<strong>{html.escape(name)}</strong>{' · ' + html.escape(citation.location) if citation.location else ''}"
    indexed = {source.path: source.format for source in assistant.sources}
    if citation.source not in indexed:  # an upload replaced the index since this answer
        body = '<p class="rag-viewer-note">This document is no longer in the index.</p>'
    elif indexed[citation.source] == "pdf":
        try:
            picture = assistant.page_image(citation)
        except RagError as error:  # the PDF is gone or changed: its indexed text still shows the place
            body = f'<p class="rag-viewer-note">The page cannot be shown: {html.escape(str(error))}</p>'
            body += _section(citation, assistant, "text")
        else:
            alt = f"{name}, {citation.location or 'its page'}, the cited sentence highlighted"
            body = (
                f'<div class="rag-page-frame"><div class="rag-page-sheet"><img class="rag-page" alt="{html.escape(alt)}" '
                f'src="data:image/png;base64,{base64.b64encode(picture).decode("ascii")}">{_highlight_spot(picture)}</div></div>'
            )
    else:
        body = _section(citation, assistant, indexed[citation.source])
    return f'<div class="rag-viewer" data-rag-opened="1"><div class="rag-viewer-title">{title}</div>{body}</div>'


def _highlight_spot(png: bytes) -> str:
    """An empty element over a page image's highlight (its box is in the PNG's "highlight" text
    chunk, see `Assistant.page_image`), which the viewer scrolls into view; "" without one."""
    from PIL import Image  # gradio's own dependency

    with Image.open(io.BytesIO(png)) as image:
        box = getattr(image, "text", {}).get("highlight", "")
        height = image.height
    parts = box.split(",")
    if len(parts) != 4 or not all(part.isdigit() for part in parts) or not height:
        return ""
    top, bottom = int(parts[1]) / height * 100, int(parts[3]) / height * 100
    return f'<div class="rag-page-spot" style="top: {top:.2f}%; height: {bottom - top:.2f}%;"></div>'


@dataclass(frozen=True)
class Section:
    """The part of a document's text the viewer shows around a citation."""

    start: int
    end: int
    headed: bool  # it starts with its heading's line
    cut_before: bool  # text before `start` belongs with it, left out for length: shown as "…"
    cut_after: bool


def _section(citation: Citation, assistant: Assistant, file_format: str) -> str:
    """The citation's section (its heading to the next), or the lines around it, the cited sentence marked."""
    text = _source_text(assistant, citation.source)
    if text is None or text[citation.start : citation.end] != citation.text:
        note = "The document changed since it was indexed; the cited text:"
        return f'<p class="rag-viewer-note">{note}</p><div class="rag-section"><mark>{html.escape(citation.text)}</mark></div>'
    section = _section_around(citation, text, file_format)
    start, heading = section.start, ""
    heading_end = text.find("\n", start, citation.start) if section.headed else -1
    if heading_end != -1:  # the section opens with its heading's line
        heading, start = f'<div class="rag-heading">{html.escape(text[start:heading_end].strip())}</div>', heading_end
    before, after = text[start : citation.start].lstrip("\n"), text[citation.end : section.end].rstrip()
    shown = (
        f"{'…' if section.cut_before else ''}{html.escape(before)}<mark>{html.escape(citation.text)}</mark>"
        f"{html.escape(after)}{'…' if section.cut_after else ''}"
    )
    return f'{heading}<div class="rag-section">{shown}</div>'


def _section_around(citation: Citation, text: str, file_format: str) -> Section:
    """The citation's section in `text`: between the headings around it (read again from the
    indexed file: the index keeps its text, not its headings' places), else VIEWER_LINES lines on
    each side; at most VIEWER_CHARS around the citation, cut at line ends where there are any."""
    start, end = _lines_around(text, citation.start, citation.end, VIEWER_LINES)
    section = Section(start, end, headed=False, cut_before=start > 0, cut_after=end < len(text))
    if file_format in HEADED_FORMATS:
        try:
            document = read_document(Path(citation.source), file_format=file_format)
        except DocumentError:
            document = None
        if document is not None and document.text == text:  # the file is as it was indexed
            offsets = [offset for offset, _ in document.marks]
            index = bisect.bisect_right(offsets, citation.start) - 1
            start = offsets[index] if index >= 0 else 0
            end = offsets[index + 1] if index + 1 < len(offsets) else len(text)
            section = Section(start, end, headed=index >= 0, cut_before=False, cut_after=False)
    room = max(0, VIEWER_CHARS - (citation.end - citation.start)) // 2
    if section.end - section.start > VIEWER_CHARS and citation.start - room > section.start:
        start = citation.start - room
        line = text.find("\n", start, citation.start)
        section = replace(section, start=line + 1 if line != -1 else start, headed=False, cut_before=True)
    if section.end - section.start > VIEWER_CHARS and citation.end + room < section.end:
        end = citation.end + room
        line = text.rfind("\n", citation.end, end)
        section = replace(section, end=line if line != -1 else end, cut_after=True)
    return section


def _lines_around(text: str, start: int, end: int, lines: int) -> tuple[int, int]:
    """[start, end) widened to whole lines, and `lines` more lines on each side."""
    for extra in range(lines + 1):
        if start == 0:
            break
        start = text.rfind("\n", 0, start - 1 if extra else start) + 1
    for extra in range(lines + 1):
        found = text.find("\n", end + 1 if extra else end)
        if found == -1:
            return start, len(text)
        end = found
    return start, end


# -- uploads ------------------------------------------------------------------------------------


def safe_upload_name(name: str) -> str:
    """The file name an upload is stored under: the base name only, restricted to safe characters.

    >>> safe_upload_name("../../etc/My notes (1).md")
    'My_notes_1_.md'

    Raises:
        DocumentError: the name is empty after cleaning or has an unsupported extension.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._-")
    if not cleaned or Path(cleaned).suffix.lower() not in UPLOAD_EXTENSIONS:
        raise DocumentError(f"cannot upload {base!r}: only {', '.join(UPLOAD_EXTENSIONS)} files are accepted")
    return cleaned


def add_upload(holder: AssistantHolder, path: str | Path, progress=None) -> str:
    """Copy an uploaded file into `<index_dir>/uploads/` and rebuild the index incrementally.

    Returns:
        A one-line summary for the user.
    Raises:
        DocumentError: too large, binary, unsupported, or unreadable.
    """
    path = Path(path)
    name = safe_upload_name(path.name)
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise DocumentError(f"{name} is {size / 1e6:.1f} MB; upload files of at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:  # read as the index would, before anything is copied: binary, empty, no text layer…
        holder.assistant.read(path)
    except DocumentError as error:
        raise DocumentError(str(error).replace(str(path), name)) from None
    with holder.lock:
        current = holder.assistant
        uploads = Path(current.index_dir) / "uploads"
        if uploads.is_symlink():  # it would carry the upload to wherever the link points
            raise DocumentError(f"{uploads} is a symbolic link; uploads are stored only inside the index folder")
        uploads.mkdir(parents=True, exist_ok=True)
        for entry in uploads.iterdir():
            # Uploads are stored as files; a link here came from elsewhere, and indexing the
            # folder would follow it to a file outside the index folder. The link goes, not its target.
            if entry.is_symlink():
                entry.unlink()
        if progress:
            progress(0.1, desc=f"Copying {name}")
        _store_upload(path, uploads / name)
        if progress:
            progress(0.3, desc="Updating the index")

        def embedded(done: int, total: int, seconds: float) -> None:
            rate = done / seconds if seconds > 0 else 0.0
            progress(0.3 + 0.6 * done / total, desc=f"Embedding {done:,}/{total:,} passages ({rate:,.0f} passages/s)")

        # The documents indexed so far (those still on disk) plus the whole uploads folder; the
        # answer writer is kept.
        rebuilt = current.add([uploads], progress=embedded if progress else False)
        holder.assistant = rebuilt
    report = rebuilt.last_build
    skipped = [reason for p, reason in (report.skipped if report else []) if Path(p).name == name]
    if skipped:
        return f"{WARNING_BADGE} {name} was not indexed: {skipped[0]}"
    return f"{DONE_BADGE} Added {name}; the index now holds {len(rebuilt.passages)} passages."


def _store_upload(source: Path, target: Path) -> None:
    """Copy `source` to `target` without following a link already at `target`: the bytes go to a
    fresh temporary file beside it (hidden, so never indexed) that is then renamed over `target`,
    so a symbolic link planted there is replaced, never written through."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the app ------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One question of a chat and its reply, by the number the page gave it when it was sent."""

    number: int
    question: str
    reply: str


@dataclass(frozen=True)
class ShownSources:
    """The answer whose sources a session's panel shows, under the number that panel was given."""

    panel: int  # unique in its session: a click from a panel since replaced names an old number
    answer: Answer
    assistant: Assistant  # the one that answered: its index holds the cited sources


class ChatSession:
    """One browser session's chat: its turns, the questions waiting their turn, its conversation.

    The turns live here, not in the browser: a question sent while another is being answered
    is shown at once as waiting, and answered after it, in order, by the same worker, so a
    follow-up is understood from the turns before it. The order is the page's: each question
    comes numbered, and one that arrives before an earlier one waits for it (up to GAP_WAIT).
    `epoch` changes with "New conversation", so an answer still arriving for the old
    conversation is not written into the new one.
    """

    def __init__(self):
        self.turns: list[Turn] = []  # in the order the page sent them
        # Questions to answer by number; None marks a number that needs no answer (an empty or
        # refused question), so the questions after it need not wait for it.
        self.waiting: dict[int, Turn | None] = {}
        self.next_number = 1  # the page numbers from 1 when it loads
        self.answering = False  # a worker is answering this session's questions
        self.epoch = 0
        self.conversation: Conversation | None = None
        self.assistant: Assistant | None = None  # the assistant `conversation` asks (uploads replace it)
        self.shown: ShownSources | None = None  # what the sources panel shows, for the viewer
        self.panels = 0  # sources panels shown so far
        # Guards the fields above; never held while answering. A worker waiting for a question
        # that was sent earlier but has not arrived is woken when it does.
        self.lock = threading.Condition()

    def snapshot(self) -> list[dict]:
        with self.lock:
            messages = []
            for turn in self.turns:
                messages += [{"role": "user", "content": _text(turn.question)}, {"role": "assistant", "content": turn.reply}]
            return messages

    def receive(self, number: int, question: str) -> None:
        """Add a question sent as `number` (an empty one only takes its number), in the page's order."""
        with self.lock:
            if not question:
                self.waiting[number] = None
            else:
                ahead = self.answering or any(self.waiting.values())
                refused = sum(turn is not None for turn in self.waiting.values()) >= MAX_WAITING
                turn = Turn(number, question, TOO_MANY if refused else WAITING if ahead else PENDING)
                bisect.insort(self.turns, turn, key=lambda t: t.number)
                self.waiting[number] = None if refused else turn
            self.lock.notify_all()

    def next_question(self) -> tuple[int, Turn] | None:
        """The next question to answer in the order sent, with the epoch it is answered in; None
        when none is waiting, and then the session is no longer `answering` (in the same lock, so
        a question sent at that moment finds no worker and starts one). A question sent before
        those that arrived is waited for (up to GAP_WAIT), then given up as lost."""
        with self.lock:
            while self.waiting:
                if min(self.waiting) > self.next_number:
                    arrived = self.lock.wait_for(
                        lambda: not self.waiting or min(self.waiting) <= self.next_number, timeout=GAP_WAIT
                    )
                    if not arrived:
                        self.next_number = min(self.waiting)
                    continue
                number = min(self.waiting)
                turn = self.waiting.pop(number)
                self.next_number = max(self.next_number, number + 1)
                if turn is not None:
                    return self.epoch, turn
            self.answering = False
            return None

    def show(self, answer: Answer, assistant: Assistant) -> int:
        """Remember `answer` as the one the sources panel shows; the number that panel is given."""
        with self.lock:
            self.panels += 1
            self.shown = ShownSources(self.panels, answer, assistant)
            return self.panels

    def shown_citation(self, request: str) -> tuple[Citation, Assistant] | None:
        """The citation a viewer request ("PANEL:NUMBER", from a panel's button) names, and the
        assistant that cited it; None unless it names a citation of the panel shown now."""
        panel, _, number = (request or "").partition(":")
        with self.lock:
            shown = self.shown
        if shown is None or not (panel.isdigit() and number.isdigit()) or int(panel) != shown.panel:
            return None
        if not 1 <= int(number) <= len(shown.answer.citations):
            return None
        return shown.answer.citations[int(number) - 1], shown.assistant

    def set_reply(self, epoch: int, turn: Turn, content: str) -> bool:
        """Replace a reply's text; False when the conversation was started over since."""
        with self.lock:
            if epoch != self.epoch:
                return False
            turn.reply = content
            return True


class ChatSessions:
    """The sessions of one app by Gradio's session hash (one per page load), least recently used
    dropped beyond MAX_SESSIONS."""

    def __init__(self):
        self._sessions: OrderedDict[str | None, ChatSession] = OrderedDict()  # None: a page without a session key
        self._lock = threading.Lock()

    def get(self, key: str | None) -> ChatSession:
        with self._lock:
            session = self._sessions.pop(key, None) or ChatSession()
            self._sessions[key] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return session

    def drop(self, key: str | None) -> None:
        with self._lock:
            self._sessions.pop(key, None)


# Runs in the browser when a question is sent, before it goes to the server: empties the question
# box at once, so text typed next (the following question) is never wiped by a late reply, and
# numbers the question, so the server keeps the order it was sent in even when two requests
# arrive the other way round (nothing orders them on the way).
CLEAR_QUESTION_JS = """(question, number) => {
    const box = document.querySelector('#rag-question textarea');
    if (box) { box.value = ''; box.dispatchEvent(new Event('input', {bubbles: true})); }
    window.ragSent = (window.ragSent || 0) + 1;
    return [question, window.ragSent];
}"""


# The sources panel's buttons: the citation a button names ("PANEL:NUMBER") is handed to the
# panel's click event (its `js` reads it back), which asks the server for the viewer.
OPEN_SOURCE_JS = """element.addEventListener('click', (event) => {
    const button = event.target.closest('[data-rag-open]');
    if (!button) return;
    window.ragOpen = button.dataset.ragOpen;
    trigger('click');
});"""
# Once the viewer shows a document: bring the cited sentence (marked, or highlighted on its page)
# into view, once the page's picture is laid out.
SHOW_PLACE_JS = """watch('value', () => {
    if (!element.querySelector('[data-rag-opened]')) return;
    const spot = element.querySelector('mark, .rag-page-spot');
    const show = () => spot ? spot.scrollIntoView({block: 'center'}) : element.scrollIntoView({block: 'start'});
    const image = element.querySelector('img.rag-page');
    if (image && !image.complete) image.addEventListener('load', show, {once: true}); else show();
});"""
# The page's own styles: the messages' badges, the sources' buttons and the viewer.
APP_CSS = """
.rag-badge { display: inline-block; position: relative; width: 1.4em; height: 1.4em; line-height: 1.4em; border-radius: 50%;
  color: #fff; text-align: center; font-weight: bold; font-style: normal; margin-right: 0.3em; vertical-align: middle; }
.rag-abstain { background: #8a94a6; }
.rag-warning { background: #d97706; }
.rag-done { background: #16a34a; }
.rag-done::after { content: ""; position: absolute; left: 0.5em; top: 0.25em; width: 0.3em; height: 0.6em;
  border: solid #fff; border-width: 0 0.15em 0.15em 0; transform: rotate(45deg); }  /* a check drawn, not a glyph */
.rag-open { margin: 0 0 0.8em 0; padding: 0.1em 0.7em; border: 1px solid var(--border-color-primary); border-radius: 0.4em;
  background: var(--button-secondary-background-fill); cursor: pointer; font-size: var(--text-sm); font-weight: normal; }
.rag-sources mark, .rag-viewer mark { background: #ffcd3c; color: inherit; }  /* the PDF pages' highlight (rag.pages) */
.rag-also { font-size: 0.9em; opacity: 0.8; margin-bottom: 0.3em; }
.rag-viewer-title { margin: 0.5em 0; }
.rag-viewer .rag-page-frame { max-height: 640px; overflow-y: auto; border: 1px solid var(--border-color-primary); }
.rag-viewer .rag-page-sheet { position: relative; }
.rag-viewer img.rag-page { display: block; width: 100%; margin: 0; }
.rag-viewer .rag-page-spot { position: absolute; left: 0; right: 0; pointer-events: none; }
.rag-viewer .rag-heading { font-weight: bold; margin-bottom: 0.4em; }
.rag-viewer .rag-section { white-space: pre-wrap; max-height: 480px; overflow-y: auto; padding: 0.5em;
  border: 1px solid var(--border-color-primary); border-radius: 0.4em; }
"""


def build_app(assistant: Assistant) -> gr.Blocks:
    """The Gradio Blocks app over `assistant`; launch it with `.launch()`.

    The question model is loaded (and run once) here, before the app can accept a question.
    The named endpoint `/ask` takes a question and returns `Answer.to_dict()`.
    """
    assistant.warm_up()
    holder = AssistantHolder(assistant)
    sessions = ChatSessions()

    def send(question: str, number: float, request: gr.Request):
        """Add a question to its session's chat at once (not through the queue), in the place the
        page numbered it: answered next, or after the questions sent before it."""
        session = sessions.get(request.session_hash)
        number = int(number) if number and math.isfinite(number) else 0  # unnumbered: answered at once
        session.receive(number, (question or "").strip())
        return session.snapshot()

    def answer_waiting(request: gr.Request):
        """A generator: answers the session's waiting questions one after the other, yielding the
        chat as each answer's words are revealed, then each final message with its sources. A
        second worker for the same session finds it answered and leaves at once."""
        session = sessions.get(request.session_hash)
        with session.lock:  # never held across a yield: Gradio may resume a generator in another thread
            answered_elsewhere = session.answering or not session.waiting
            if not answered_elsewhere:
                session.answering = True
        if answered_elsewhere:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        try:
            while (next_question := session.next_question()) is not None:
                epoch, turn = next_question
                with session.lock:
                    if session.conversation is None or session.assistant is not holder.assistant:
                        # First question, or the index changed since.
                        session.assistant, session.conversation = holder.assistant, holder.assistant.chat()
                    conversation, current = session.conversation, session.assistant
                yield from _answer_one(session, conversation, current, epoch, turn)
        except BaseException:  # the page was closed (GeneratorExit) or answering failed
            with session.lock:
                session.answering = False
            raise

    def _answer_one(session: ChatSession, conversation: Conversation, current: Assistant, epoch: int, turn: Turn):
        question = turn.question
        if not session.set_reply(epoch, turn, PENDING):
            return
        yield session.snapshot(), gr.skip(), gr.skip()
        try:
            if current.generator is None:
                answer = conversation.ask(question)
            else:
                # The model's words as it writes them, marked as still arriving; then the checked answer.
                for update in ask_streaming(conversation, question):
                    if isinstance(update, Answer):
                        answer = update
                    elif session.set_reply(epoch, turn, f"{_text(update)} {PENDING}"):
                        yield session.snapshot(), gr.skip(), gr.skip()
        except RagError as error:
            if session.set_reply(epoch, turn, f"{WARNING_BADGE} {_text(str(error))}"):
                yield session.snapshot(), render_sources(None), gr.skip()
            return
        if answer.grounded and current.generator is None:
            for partial in stream_steps(answer.text)[:-1]:
                if not session.set_reply(epoch, turn, f"{_text(partial)} {PENDING}"):
                    return
                yield session.snapshot(), gr.skip(), gr.skip()
                time.sleep(STREAM_DELAY)
        if session.set_reply(epoch, turn, render_answer(question, answer)):
            # New sources: the viewer's document was one of the last answer's, so it is closed.
            yield session.snapshot(), render_sources(answer, current, panel=session.show(answer, current)), VIEWER_HINT

    def forget(request: gr.Request):
        sessions.drop(request.session_hash)  # the page was closed

    def new_conversation(request: gr.Request):
        session = sessions.get(request.session_hash)
        with session.lock:
            session.epoch += 1  # what is still being answered is not written into the new chat
            session.turns = []
            session.next_number = max([session.next_number, *(number + 1 for number in session.waiting)])
            session.waiting.clear()
            session.conversation = session.assistant = None
            session.shown = None
        return [], render_sources(None), VIEWER_HINT

    def open_source(request_text: str, request: gr.Request) -> str:
        """The viewer for the citation a sources panel's button names (see ChatSession.shown_citation)."""
        found = sessions.get(request.session_hash).shown_citation(request_text)
        if found is None:
            return '<div class="rag-viewer"><p><em>These sources were replaced by a newer answer: open one of those shown.</em></p></div>'
        return render_viewer(*found)

    def upload(file, progress=gr.Progress()):
        if not file:
            return gr.skip(), render_status(holder.assistant), None
        try:
            message = add_upload(holder, file, progress=progress)
        except RagError as error:
            message = f"{WARNING_BADGE} {_text(str(error))}"
        except OSError as error:
            message = f"{WARNING_BADGE} could not read the upload: {_text(error.strerror or str(error))}"
        return message, render_status(holder.assistant), None

    def ask(question: str) -> dict:
        """Answer one question from the indexed documents: {"answer", "grounded", "citations", "query", "confidence"}."""
        try:
            return holder.assistant.ask(question).to_dict()
        except RagError as error:
            raise gr.Error(str(error)) from None

    with gr.Blocks(title="rag: ask your documents") as app:
        gr.Markdown("## Ask your documents\nEvery answer cites verbatim sentences; when the documents don't say, it says so.")
        status = gr.Markdown(render_status(assistant), elem_id="rag-status")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", elem_id="rag-chat", height=420)
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask a question…", show_label=False, scale=5, elem_id="rag-question", max_lines=3
                    )
                    ask_button = gr.Button("Ask", variant="primary", scale=1, elem_id="rag-ask")
                    sent_number = gr.Number(visible=False)  # set by CLEAR_QUESTION_JS
                gr.Examples(EXAMPLES, inputs=[question], label="Examples")
                reset = gr.Button("New conversation", elem_id="rag-new")
                viewer = gr.HTML(VIEWER_HINT, elem_id="rag-viewer", js_on_load=SHOW_PLACE_JS)
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(render_sources(None), elem_id="rag-sources", js_on_load=OPEN_SOURCE_JS)
                open_request = gr.Textbox(visible="hidden")  # set by OPEN_SOURCE_JS
                with gr.Accordion("Add a document", open=False):
                    file = gr.File(
                        label="A text, Markdown, PDF, HTML or Word file (at most 5 MB)",
                        file_types=list(UPLOAD_EXTENSIONS),
                        type="filepath",
                        elem_id="rag-upload",
                    )
                    upload_message = gr.Markdown(elem_id="rag-upload-message")

        # Every question sent is taken ("multiple": Gradio's default drops a question sent while the
        # previous one is pending), shown at once outside the queue, then answered in order.
        gr.on(
            triggers=[ask_button.click, question.submit],
            fn=send,
            inputs=[question, sent_number],
            outputs=[chatbot],
            js=CLEAR_QUESTION_JS,
            queue=False,
            trigger_mode="multiple",
            api_visibility="private",
        ).then(answer_waiting, None, [chatbot, sources, viewer], trigger_mode="multiple", api_visibility="private")
        reset.click(new_conversation, None, [chatbot, sources, viewer], api_visibility="private")
        # A source's button: the viewer opens it (the last one clicked, when several are).
        sources.click(
            open_source, [open_request], [viewer], js="() => window.ragOpen || ''", trigger_mode="always_last",
            api_visibility="private",
        )
        app.unload(forget)
        file.upload(upload, [file], [upload_message, status, file], api_visibility="private")
        gr.api(ask, api_name="ask")
    return app


def main(index: str | None = None, host: str = "127.0.0.1", port: int = 7860, generator=None) -> int:
    """Open the index (or the bundled sample) and serve the app until interrupted.

    With `generator` (see rag.generation), a model writes each answer, streamed as it writes.
    """
    assistant = Assistant.open(index) if index else Assistant.default(progress=True)
    assistant = assistant.with_generator(generator)
    app = build_app(assistant)  # loads the question model: the first question waits for nothing
    print(f"Serving {assistant.index_dir} on http://{host}:{port} (Ctrl+C stops)", flush=True)
    launch(app, host=host, port=port)
    return 0


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Serve `app` behind a bounded queue (QUEUE_CONCURRENCY, QUEUE_MAX_SIZE), on this machine
    only unless `host` says otherwise. With `block=False` it returns at once (tests)."""
    app.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    app.launch(server_name=host, server_port=port, show_error=False, quiet=True, prevent_thread_lock=not block, css=APP_CSS)
    return app
