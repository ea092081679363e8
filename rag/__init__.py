"""A question-answering assistant over your documents that cites verbatim excerpts.

    >>> from rag import Assistant
    >>> answer = Assistant.default().ask("When was the Brest peace treaty signed?")
    >>> answer.text.startswith("March 1918")
    True
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import RagError  # noqa: E402
from .types import Answer, Citation  # noqa: E402


def __getattr__(name: str):
    # Assistant pulls in numpy; importing `rag` for its types or version stays instant.
    if name == "Assistant":
        from .assistant import Assistant

        return Assistant
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


__all__ = ["Answer", "Assistant", "Citation", "RagError", "__version__"]
