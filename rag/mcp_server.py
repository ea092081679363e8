"""`rag mcp`: the assistant as a Model Context Protocol server over stdio, for Claude Desktop,
editors and agent frameworks.

Three read-only tools, built on the official SDK's `MCPServer` (the `mcp` package):

- `ask(question, conversation_id=None)`: the answer, whether the documents support it, how the
  question was understood and the verbatim citations; follow-ups sharing a `conversation_id`
  are understood from the turns before them (one `Assistant.chat()` conversation per id);
- `search(query, k=5)`: the passages retrieval finds, with their offsets and scores;
- `sources()`: the indexed documents.

Each result is given twice, as MCP asks of tools with an output schema: as structured content
(the same JSON `rag ask --json` prints, `Answer.to_dict()`) and as text a person or a model
reads. stdout carries the protocol alone: the SDK points file descriptor 1 at stderr while it
serves, and loading the index happens with Python's stdout sent to stderr too.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

# pydantic reads a TypedDict's fields only from typing_extensions' before Python 3.12.
from typing_extensions import NotRequired, TypedDict

from .assistant import Assistant
from .conversation import Conversation
from .errors import RagError
from .questions import MAX_QUESTION_CHARS
from .types import Answer, Hit
from .version import __version__

# Conversations kept, least recently used dropped first: a client opens one per chat, and a
# conversation holds its answers (a few kB each), so a few hundred bound memory while outlasting
# any one session's chats. A dropped id starts afresh, as a new conversation would.
MAX_CONVERSATIONS = 256
# An id longer than this is not an id a client makes (they are UUIDs or short names).
MAX_CONVERSATION_ID_CHARS = 200
# Passages `search` may return: past 50 the answer is a document dump, not a search result.
MAX_SEARCH_K = 50

INSTRUCTIONS = (
    "Answers questions from the user's indexed documents. Every answer quotes the documents verbatim, "
    "with the file and character offsets of each excerpt; when the documents don't hold the answer it "
    "says so (grounded: false) rather than guess. Use `ask` for questions (pass the same conversation_id "
    "for follow-ups such as 'What happened to him later?'), `search` to see the passages on a topic, "
    "`sources` to list the documents."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


# -- what each tool returns as structured content (its published output schema) -----------------


class CitationResult(TypedDict):
    text: str  # verbatim: the source's text[start:end]
    source: str  # the file's absolute path
    start: int
    end: int
    score: float
    location: str | None  # "p. 3", "§ Heading, ¶ 2", "line 15"
    # Other places holding the same text, when the answer gives them; any shape `Citation.to_dict()` gives.
    also_in: NotRequired[Any]


class AskResult(TypedDict):
    """`Answer.to_dict()`: what `rag ask --json` prints."""

    answer: str
    grounded: bool  # False: the documents don't say, and `answer` says so
    citations: list[CitationResult]
    query: str  # the standalone question that was searched (a follow-up rewritten)
    confidence: float
    direct: str  # the short answer, verbatim in the first citation ("" when not grounded)
    direct_start: int | None
    direct_end: int | None
    generated: bool
    sentences: list[dict[str, Any]]


class PassageResult(TypedDict):
    source: str
    location: str | None
    start: int
    end: int
    text: str  # verbatim: the source's text[start:end]
    score: float  # the fused rank score (higher is better)
    dense_score: float  # cosine similarity between query and passage
    lexical_score: float  # BM25 (0 when no query word matches)


class SearchResult(TypedDict):
    passages: list[PassageResult]


class SourceResult(TypedDict):
    """`IndexedSource.to_dict()`: what `rag status --json` lists."""

    name: str
    path: str
    format: str
    passages: int
    bytes: int
    indexed_at: str | None


class SourcesResult(TypedDict):
    sources: list[SourceResult]


# -- the server ----------------------------------------------------------------------------------


class Conversations:
    """One conversation per client-chosen id, the least recently used forgotten past `limit`."""

    def __init__(self, assistant: Assistant, limit: int = MAX_CONVERSATIONS):
        self._assistant = assistant
        self._limit = limit
        self._by_id: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()  # the SDK runs each tool call on a worker thread

    def get(self, conversation_id: str) -> Conversation:
        with self._lock:
            conversation = self._by_id.pop(conversation_id, None) or self._assistant.chat()
            self._by_id[conversation_id] = conversation  # now the most recently used
            while len(self._by_id) > self._limit:
                self._by_id.popitem(last=False)
            return conversation


class _Server(MCPServer):
    """MCPServer, with arguments that fail the input schema reported in one short line per
    field ("k: Input should be less than or equal to 50") rather than pydantic's full report."""

    async def call_tool(self, name, arguments, context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if not isinstance(error.__cause__, ValidationError):
                raise
            problems = "; ".join(_problem(detail) for detail in error.__cause__.errors())
            raise ToolError(f"Error executing tool {name}: bad arguments: {problems}") from error.__cause__


def _problem(detail: Any) -> str:
    field = ".".join(str(part) for part in detail["loc"]) or "arguments"
    return f"{field} is required" if detail["type"] == "missing" else f"{field}: {detail['msg']}"


def build_server(assistant: Assistant) -> MCPServer:
    """The MCP server answering from `assistant`: its tools `ask`, `search` and `sources`.

    Errors a caller can cause (an empty question, a `k` out of range, a missing argument)
    come back as tool errors (`isError`) with a one-line message; the server goes on serving.
    """
    server = _Server(name="rag", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    conversations = Conversations(assistant)

    @server.tool(annotations=READ_ONLY)
    def ask(
        question: Annotated[str, Field(description=f"The question, in plain words (at most {MAX_QUESTION_CHARS} characters).")],
        conversation_id: Annotated[
            str | None,
            Field(description="Any id you choose for a conversation: questions sharing it are read as follow-ups "
                  "of the earlier ones ('What happened to him later?'). Omit it for a question that stands alone.",
                  max_length=MAX_CONVERSATION_ID_CHARS),
        ] = None,
    ) -> Annotated[CallToolResult, AskResult]:
        """Answer a question from the indexed documents, quoting them verbatim.

        Returns the answer, `grounded` (false when the documents don't hold the answer: the
        answer then says so), `direct` (the short answer), `query` (how the question was
        understood) and the citations: each excerpt's file, location, character offsets and
        exact text.
        """
        try:
            if conversation_id is None:
                answer = assistant.ask(question)
            else:
                answer = conversations.get(conversation_id).ask(question)
        except RagError as error:
            raise ToolError(str(error)) from error
        return CallToolResult(content=[_text(_answer_text(question, answer))], structured_content=answer.to_dict())

    @server.tool(annotations=READ_ONLY)
    def search(
        query: Annotated[str, Field(description="Words or a question to find passages for.")],
        k: Annotated[int, Field(description="How many passages, best first.", ge=1, le=MAX_SEARCH_K)] = 5,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Find the passages of the indexed documents most relevant to `query`, best first, each
        with its file, location, character offsets, exact text and scores. It does not answer:
        use `ask` for an answer."""
        try:
            hits = assistant.search(query, k=k)
        except RagError as error:
            raise ToolError(str(error)) from error
        passages = [_passage(hit) for hit in hits]
        return CallToolResult(content=[_text(_search_text(passages))], structured_content={"passages": passages})

    @server.tool(annotations=READ_ONLY)
    def sources() -> Annotated[CallToolResult, SourcesResult]:
        """List the indexed documents: name, path, format, passages, size in bytes and when indexed."""
        listed = [source.to_dict() for source in assistant.sources]
        return CallToolResult(content=[_text(_sources_text(listed))], structured_content={"sources": listed})

    return server


def serve_mcp(load: Callable[[], Assistant]) -> None:
    """Serve MCP over stdin and stdout until the client closes stdin.

    Args:
        load: opens the index (e.g. `lambda: Assistant.open("index")`); called, and the
            question model warmed up, before the first message is read, with anything printed
            sent to stderr. Its errors (no index there, a stale one) propagate before serving.
    """
    with contextlib.redirect_stdout(sys.stderr):
        assistant = load().warm_up()
    build_server(assistant).run("stdio")


# -- readable text -------------------------------------------------------------------------------


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


def _answer_text(question: str, answer: Answer) -> str:
    """The answer, how it was understood if that differs, then the numbered citations."""
    lines = [answer.text]
    if answer.query and answer.query != question.strip():
        lines.append(f"(understood as: {answer.query})")
    citations = [citation.to_dict() for citation in answer.citations]
    if citations:
        lines.append("")
        lines.append("Citations:")
    for number, citation in enumerate(citations, 1):
        lines.append(f"[{number}] {_where(citation)}: “{citation['text']}”")
        if citation.get("also_in"):
            places = citation["also_in"]
            listed = map(_place, places) if isinstance(places, (list, tuple)) else [_place(places)]
            lines.append(f"    also in: {', '.join(listed)}")
    return "\n".join(lines)


def _search_text(passages: list[dict]) -> str:
    if not passages:
        return "No passages found."
    return "\n".join(f"[{n}] {_where(p)} (score {p['score']:.3f}): “{p['text']}”" for n, p in enumerate(passages, 1))


def _sources_text(sources: list[dict]) -> str:
    if not sources:
        return "No documents are indexed."
    return "\n".join(
        f"{s['name']} ({s['format']}, {s['passages']} passages, indexed {s['indexed_at'] or 'at an unknown time'}): {s['path']}"
        for s in sources
    )


def _where(excerpt: dict) -> str:
    """"stalin-brest.txt, line 15, chars 1110–1382": the file, where in it, the offsets."""
    location = f"{excerpt['location']}, " if excerpt.get("location") else ""
    return f"{Path(excerpt['source']).name}, {location}chars {excerpt['start']}–{excerpt['end']}"


def _place(place: Any) -> str:
    """One of a citation's `also_in` places: an excerpt like a citation's, or its own words."""
    if isinstance(place, dict) and {"source", "start", "end"} <= place.keys():
        return _where(place)
    return str(place)


def _passage(hit: Hit) -> dict:
    passage = hit.passage
    # Retrieval's scores may be numpy floats, which JSON does not take.
    return {
        "source": passage.source, "location": passage.location, "start": passage.start, "end": passage.end,
        "text": passage.text, "score": float(hit.score), "dense_score": float(hit.dense_score),
        "lexical_score": float(hit.lexical_score),
    }
