"""Asking a `rag serve` server over HTTP: the same `Answer` as a local `Assistant.ask`.

The server (rag.cluster.serve) answers `GET {url}/ask?question=...` (and `POST {url}/ask` with
`{"question": "..."}`) by the JSON of `Answer.to_dict()`, the shape `rag ask --json` prints. Only the standard library is used:
asking a server needs neither Ray nor the model on the asking side.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from .errors import ClusterError, QuestionError
from .types import Answer, Citation, SentenceSupport

# How long one question may take on the server, queueing included, before the client gives up.
# Answers take well under a second; a cold server loads the model and every shard first.
TIMEOUT_SECONDS = 120


def answer_from_dict(data: dict) -> Answer:
    """The `Answer` whose `to_dict()` is `data` (the inverse of `Answer.to_dict`)."""
    return Answer(
        text=data["answer"],
        grounded=data["grounded"],
        citations=tuple(Citation(**c) for c in data["citations"]),
        query=data.get("query", ""),
        confidence=data.get("confidence", 0.0),
        generated=data.get("generated", False),
        sentences=tuple(SentenceSupport(**{**s, "cites": tuple(s.get("cites", ()))}) for s in data.get("sentences", ())),
        direct=data.get("direct", ""),
        direct_start=data.get("direct_start"),
        direct_end=data.get("direct_end"),
    )


@dataclass(frozen=True)
class RemoteAssistant:
    """Asks the `rag serve` server at `url` (e.g. "http://127.0.0.1:8000")."""

    url: str

    def ask(self, question: str) -> Answer:
        """Answer one question on the server.

        Raises:
            QuestionError: the server refused the question (empty, too long).
            ClusterError: the server cannot be reached or failed.
        """
        return answer_from_dict(self.ask_json(question))

    def ask_json(self, question: str) -> dict:
        """The server's JSON for `question`, as it sent it."""
        # GET: the server then has no request body to fetch from Ray Serve's proxy (rag.cluster.serve).
        request = urllib.request.Request(self.url.rstrip("/") + "/ask?" + urllib.parse.urlencode({"question": question}))
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read().decode("utf-8")).get("error", "")
            except ValueError:
                message = ""
            if error.code == 400:
                raise QuestionError(message or "the server refused the question") from None
            raise ClusterError(f"the server at {self.url} failed ({error.code}{': ' + message if message else ''})") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ClusterError(f"cannot ask the server at {self.url} ({reason}); start it with `rag serve --index DIR`") from None
