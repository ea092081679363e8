"""`rag mcp`: the Model Context Protocol server, driven as Claude Desktop drives it.

One real `rag mcp --index <the sample's index>` process for the module, spoken to by the
official SDK's stdio client (`mcp.ClientSession` over `stdio_client`). The client runs on an
event loop in a thread (anyio's blocking portal), so each test stays a plain function.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager

import pytest
from anyio.from_thread import start_blocking_portal
from conftest import assert_one_line_error, run_rag
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

FLAGSHIP = "When was the Brest peace treaty signed?"


class Client:
    """The SDK's client session, called from synchronous tests through the portal's loop."""

    def __init__(self, portal, session: ClientSession):
        self._portal = portal
        self._session = session
        self.stream_errors: list[Exception] = []  # lines on the server's stdout that were not protocol

    def tools(self):
        return self._portal.call(self._session.list_tools).tools

    def call(self, tool: str, arguments: dict) -> CallToolResult:
        result = self._portal.call(self._session.call_tool, tool, arguments)
        assert isinstance(result, CallToolResult)
        return result


@asynccontextmanager
async def _connected(params: StdioServerParameters, errlog, client: list[Client], portal):
    async def on_message(message) -> None:
        if isinstance(message, Exception):
            client[0].stream_errors.append(message)

    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            client.append(Client(portal, session))
            yield client[0]


@pytest.fixture(scope="module")
def server(sample, tmp_path_factory):
    """A `rag mcp` process over the sample's index, and the server's stderr (a file)."""
    stderr = tmp_path_factory.mktemp("mcp") / "stderr.txt"
    # The test process's environment: its private caches and the worktree first on the path.
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "rag.cli", "mcp", "--index", str(sample.index_dir)], env={**os.environ}
    )
    with open(stderr, "w", encoding="utf-8") as errlog, start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(_connected(params, errlog, [], portal)) as client:
            yield client, stderr


def _text(result: CallToolResult) -> str:
    assert len(result.content) == 1
    return result.content[0].text


def _ask(server, question: str, conversation_id: str | None = None) -> tuple[dict, str]:
    client, _ = server
    arguments = {"question": question} if conversation_id is None else {"question": question, "conversation_id": conversation_id}
    result = client.call("ask", arguments)
    assert not result.is_error, _text(result)
    return result.structured_content, _text(result)


def test_the_tools_are_listed_with_their_input_and_output_schemas(server):
    client, _ = server
    tools = {tool.name: tool for tool in client.tools()}
    assert set(tools) == {"ask", "search", "sources"}

    ask = tools["ask"].input_schema
    assert ask["required"] == ["question"]
    assert ask["properties"]["question"]["type"] == "string"
    assert {"type": "string", "maxLength": 200} in ask["properties"]["conversation_id"]["anyOf"]
    search = tools["search"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["k"] == {**search["properties"]["k"], "type": "integer", "minimum": 1, "maximum": 50, "default": 5}
    assert tools["sources"].input_schema["properties"] == {}

    assert {"answer", "grounded", "direct", "query", "citations"} <= set(tools["ask"].output_schema["required"])
    assert tools["search"].output_schema["required"] == ["passages"]
    assert tools["sources"].output_schema["required"] == ["sources"]
    for tool in tools.values():
        assert tool.description and tool.annotations.read_only_hint


def test_ask_answers_with_citations_verbatim_at_their_offsets(server, sample):
    answer, text = _ask(server, FLAGSHIP)

    assert answer["grounded"] is True
    assert "March 1918" in answer["answer"]
    assert answer["query"] == FLAGSHIP
    assert answer["citations"]
    for citation in answer["citations"]:
        assert sample.source_text(citation["source"])[citation["start"] : citation["end"]] == citation["text"]
    first = answer["citations"][0]
    assert sample.source_text(first["source"])[answer["direct_start"] : answer["direct_end"]] == answer["direct"]
    assert answer["direct"] and first["start"] <= answer["direct_start"] < answer["direct_end"] <= first["end"]

    # The text a person reads: the answer, then each citation numbered with its file, place and offsets.
    assert text.startswith(answer["answer"])
    for number, citation in enumerate(answer["citations"], 1):
        where = f"{citation['location']}, chars {citation['start']}–{citation['end']}"
        assert f"[{number}] stalin-brest.txt, {where}: “{citation['text']}”" in text


def test_a_follow_up_is_understood_within_its_conversation_only(server):
    conversation = str(uuid.uuid4())
    first, _ = _ask(server, "Who was the German ambassador?", conversation)
    assert "Schulenburg" in first["direct"]

    follow_up, text = _ask(server, "What happened to him later?", conversation)
    assert "Schulenburg" in follow_up["query"]
    assert f"(understood as: {follow_up['query']})" in text
    assert follow_up["grounded"] and any("Schulenburg" in c["text"] for c in follow_up["citations"])

    # Without the id, or in another conversation, the same words stand alone.
    alone, _ = _ask(server, "What happened to him later?")
    assert alone["query"] == "What happened to him later?"
    elsewhere, _ = _ask(server, "What happened to him later?", str(uuid.uuid4()))
    assert elsewhere["query"] == "What happened to him later?"


def test_a_question_the_documents_do_not_answer_abstains(server):
    answer, text = _ask(server, "What is the boiling point of mercury?")
    assert answer["grounded"] is False
    assert answer["citations"] == [] and answer["direct"] == ""
    assert "don't say" in text


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("ask", {}, "question is required"),
        ("ask", {"question": 3}, "question: Input should be a valid string"),
        ("ask", {"question": "   "}, "the question is empty"),
        ("ask", {"question": "x" * 2001}, "ask in at most 2,000"),
        ("ask", {"question": FLAGSHIP, "conversation_id": 7}, "conversation_id"),
        ("search", {}, "query is required"),
        ("search", {"query": "treaty", "k": 0}, "k: Input should be greater than or equal to 1"),
        ("search", {"query": "treaty", "k": 51}, "k: Input should be less than or equal to 50"),
        ("search", {"query": "treaty", "k": "many"}, "k: Input should be a valid integer"),
    ],
)
def test_bad_arguments_are_tool_errors_and_the_server_goes_on(server, tool, arguments, message):
    client, _ = server
    result = client.call(tool, arguments)
    assert result.is_error
    assert result.structured_content is None
    error = _text(result)
    assert message in error and "\n" not in error and "Traceback" not in error

    assert "March 1918" in _ask(server, FLAGSHIP)[0]["answer"]  # the next call is answered


def test_search_returns_passages_verbatim_best_first(server, sample):
    client, _ = server
    result = client.call("search", {"query": "Brest peace treaty", "k": 3})
    assert not result.is_error
    passages = result.structured_content["passages"]
    assert len(passages) == 3
    for passage in passages:
        assert set(passage) == {"source", "location", "start", "end", "text", "score", "dense_score", "lexical_score"}
        assert sample.source_text(passage["source"])[passage["start"] : passage["end"]] == passage["text"]
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert any("Brest" in p["text"] for p in passages)
    text = _text(result)
    assert [line.split("]")[0] for line in text.splitlines()] == ["[1", "[2", "[3"]
    assert f"chars {passages[0]['start']}–{passages[0]['end']}" in text

    default = client.call("search", {"query": "Brest peace treaty"}).structured_content["passages"]
    assert len(default) == 5


def test_sources_lists_the_indexed_documents(server, sample):
    client, _ = server
    result = client.call("sources", {})
    assert not result.is_error
    (source,) = result.structured_content["sources"]
    (indexed,) = sample.sources
    assert source == indexed.to_dict()
    assert source["name"] == "stalin-brest.txt" and source["format"] == "text" and source["passages"] > 0
    assert source["indexed_at"]
    assert _text(result).startswith(f"stalin-brest.txt (text, {source['passages']} passages, indexed ")


def test_stdout_carried_only_the_protocol_and_stderr_no_traceback(server):
    # Last in the module: it checks what every call above left behind.
    client, stderr = server
    assert client.stream_errors == []
    assert "Traceback" not in stderr.read_text(encoding="utf-8")


def test_conversations_are_kept_per_id_and_the_least_recently_used_is_forgotten(sample):
    from rag.mcp_server import Conversations

    conversations = Conversations(sample, limit=2)
    first, second = conversations.get("a"), conversations.get("b")
    assert first is not second
    assert conversations.get("a") is first  # "a" is now the most recently used
    conversations.get("c")  # a third id: "b", the least recently used, is forgotten
    assert conversations.get("a") is first
    assert conversations.get("b") is not second  # starts afresh


def test_an_index_that_is_not_there_is_one_line_on_stderr(tmp_path):
    result = run_rag("mcp", "--index", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert_one_line_error(result, "no index at", "nowhere")


def test_import_rag_and_help_do_not_load_the_sdk(tmp_path):
    code = "import sys, rag, rag.cli\nrag.cli._parser().format_help()\nprint('mcp' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert result.stdout.strip() == "False", result.stderr
