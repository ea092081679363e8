"""A question-answering assistant over your documents that cites verbatim excerpts.

    >>> from rag import Assistant
    >>> answer = Assistant.default().ask("When was the Brest peace treaty signed?")
    >>> answer.text.startswith("March 1918")
    True

This module is the one door into the library: the CLI, the browser UI and the evaluation use
only what it exports. Every type the API hands out or raises is here. Names whose modules load
numpy, faiss or a model (`Assistant`, `Embedder`, the answer writers, ...) are imported on first
use, so `import rag` and `rag --help` stay instant.
"""
from __future__ import annotations

import importlib

from .errors import (
    ClusterError,
    ConfigError,
    DocumentError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStaleError,
    NotPdfError,
    QuestionError,
    RagError,
)
from .questions import MAX_QUESTION_CHARS, clean_question
from .settings import (
    DEFAULT_MODEL,
    ENV_INDEX_DIR,
    ENV_MODEL,
    ENV_PAUSE_EMBEDDING,
    FORMAT_NAMES,
    FORMATS,
    MAX_FILE_BYTES,
    OWN_TEXT_FORMATS,
    SAMPLE_DOCUMENT,
    SUPPORTED_EXTENSIONS,
    ChunkSettings,
    default_index_dir,
    default_model,
)
from .types import Answer, Citation, Document, Hit, IndexedSource, Passage, SentenceSupport, Timings
from .version import __version__

# Not `typing.TYPE_CHECKING`: importing typing would be most of what `import rag` costs. Type
# checkers read the name alike.
TYPE_CHECKING = False

# The heavier names, by the module that defines them: imported when first asked for.
_LAZY = {
    "Assistant": "assistant",
    "BuildReport": "indexing",
    "Mode": "retrieval",  # the retrieval modes `Assistant.ask` and `search` take
    "Conversation": "conversation",
    "Turn": "conversation",
    "Embedder": "embedding",
    "QuestionEncoding": "embedding",  # what `Assistant.embedder` is: an Embedder, or a server's
    "read_document": "documents",
    "RemoteAssistant": "remote",
    # Fluent answers (the `generate` extra for the local model; see rag.generation).
    "Event": "generation",
    "Generator": "generation",
    "HttpGenerator": "generation",
    "LlamaCppGenerator": "generation",
    "make_generator": "generation",
    "streaming": "generation",
    "verify": "generation.verify",
    "Verified": "generation.verify",
    # Serving an index on Ray (the `cluster` extra; see rag.cluster).
    "serve_index": "cluster.serve",
    # Serving an index to MCP clients over stdio (`rag mcp`; see rag.mcp_server).
    "serve_mcp": "mcp_server",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers
    from .assistant import Assistant
    from .cluster.serve import serve_index
    from .conversation import Conversation, Turn
    from .documents import read_document
    from .embedding import Embedder, QuestionEncoding
    from .generation import Event, Generator, HttpGenerator, LlamaCppGenerator, make_generator, streaming
    from .generation.verify import Verified, verify
    from .indexing import BuildReport
    from .mcp_server import serve_mcp
    from .remote import RemoteAssistant
    from .retrieval import Mode


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: the next use is a plain attribute
    return value


__all__ = [
    "Answer", "Assistant", "BuildReport", "ChunkSettings", "Citation", "ClusterError", "ConfigError", "Conversation",
    "DEFAULT_MODEL", "Document", "DocumentError", "ENV_INDEX_DIR", "ENV_MODEL", "ENV_PAUSE_EMBEDDING", "Embedder", "Event",
    "FORMATS", "FORMAT_NAMES", "Generator", "Hit", "HttpGenerator", "IndexCorruptError", "IndexLockedError",
    "IndexNotFoundError", "IndexStaleError", "IndexedSource", "LlamaCppGenerator", "MAX_FILE_BYTES", "MAX_QUESTION_CHARS",
    "Mode", "NotPdfError", "OWN_TEXT_FORMATS", "Passage", "QuestionEncoding", "QuestionError", "RagError", "RemoteAssistant",
    "SAMPLE_DOCUMENT",
    "SUPPORTED_EXTENSIONS", "SentenceSupport", "Timings", "Turn", "Verified", "__version__", "clean_question",
    "default_index_dir", "default_model", "make_generator", "read_document", "serve_index", "serve_mcp", "streaming", "verify",
]
