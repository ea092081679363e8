"""The two answer writers: a local model on the CPU (llama-cpp-python) and any OpenAI-compatible server.

Both stream: `stream(messages)` yields pieces of text as the model produces them. Both are
deterministic where the backend allows it (temperature 0), so an answer can be reproduced.
"""
from __future__ import annotations

import atexit
import json
import os
import threading
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Protocol

from ..errors import ConfigError, RagError

# Tokens a generated answer may take. "The Brest Peace Treaty was signed in March 1918 [1][2]."
# is 20; two sentences copied from long excerpts can take 100. The cap bounds the time a
# sentence that never ends can take.
MAX_TOKENS = 160
# Context window: the prompt (instructions, two worked examples, 4 excerpts and the question)
# is about 500 tokens; 2,048 leaves room for long excerpts and the answer.
CONTEXT_TOKENS = 2048
# Where a model that keeps writing after its answer starts a new exchange: stop there.
STOP = ["\nQuestion:", "\nExcerpts:", "<|im_end|>", "<|endoftext|>"]
# Seconds an HTTP server may take to send the next piece before the answer is given up.
HTTP_TIMEOUT = 120


class Generator(Protocol):
    """What `Assistant.with_generator` accepts: anything that streams an answer to chat messages."""

    name: str  # shown in reports: "llama-cpp:qwen2.5-coder-0.5b-instruct-q4.gguf", "http://…"

    def stream(self, messages: list[dict], *, max_tokens: int = MAX_TOKENS, excerpts: int | None = None) -> Iterator[str]:
        """Yield the answer's text piece by piece.

        `excerpts` is how many numbered excerpts the prompt holds; a backend that can constrain
        its output uses it to allow only markers [1]..[excerpts].
        """
        ...


class LlamaCppGenerator:
    """A GGUF model run on the CPU by llama-cpp-python; by default the Qwen2.5-Coder-0.5B from PyPI.

    The model loads on first use (about 1 s for 469 MiB) and is shared by every generator of the
    same file in the process. One answer is written at a time: llama.cpp's context is not
    thread-safe, so concurrent callers wait their turn.

    Raises:
        ConfigError: llama-cpp-python or the model packages are not installed.
    """

    def __init__(self, model_path: str | Path | None = None, *, threads: int | None = None, seed: int = 0):
        _require_llama_cpp()
        if model_path is None:
            from .model import model_path as default_model_path

            model_path = default_model_path()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ConfigError(f"no GGUF model at {self.model_path}; give the path of a .gguf file")
        self.threads = threads or default_threads()
        self.seed = seed
        self.name = f"llama-cpp:{self.model_path.name}"

    def warm_up(self) -> None:
        """Load the model now rather than at the first answer."""
        _llama(str(self.model_path), self.threads)

    def stream(self, messages: list[dict], *, max_tokens: int = MAX_TOKENS, excerpts: int | None = None) -> Iterator[str]:
        llm = _llama(str(self.model_path), self.threads)
        grammar = _answer_grammar(excerpts) if excerpts else None
        with _LOCKS[str(self.model_path)]:
            chunks = llm.create_chat_completion(
                messages=messages, stream=True, temperature=0.0, max_tokens=max_tokens, stop=STOP, seed=self.seed,
                grammar=grammar,
            )
            for chunk in chunks:
                piece = chunk["choices"][0].get("delta", {}).get("content")
                if piece:
                    yield piece


def default_threads() -> int:
    """Threads for llama.cpp: every core, unless the machine is already busy, then one.

    llama.cpp's threads wait for each other by spinning: when other processes hold the cores,
    each step waits for the slowest thread. Measured on 2 cores at load average 12, 48 tokens
    took 14.7 s with 1 thread and 73.0 s with 2.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:  # no load average on this platform
        busy = False
    return 1 if busy else cores


@lru_cache(maxsize=8)
def _answer_grammar(excerpts: int):
    """A GBNF grammar for one to three sentences, each ending in markers [1]..[excerpts] and a stop.

    The small model often copies an excerpt and forgets its marker, which the checker must then
    remove; constrained decoding makes every sentence it writes carry a real marker. A sentence
    may not contain "[", "]", a line break or an inner full stop (so no "3.5"; rare in answers).
    """
    from llama_cpp import LlamaGrammar

    numbers = " | ".join(f'"{n}"' for n in range(1, excerpts + 1))
    return LlamaGrammar.from_string(
        "\n".join([
            'root ::= sentence (" " sentence)?',
            'sentence ::= [A-Z0-9"“] [^\\[\\]\\n.!?]+ " " marker marker? "."',
            f"marker ::= \"[\" ({numbers}) \"]\"",
        ]),
        verbose=False,
    )


class _Locks(dict):
    def __missing__(self, key):
        self[key] = threading.Lock()
        return self[key]


_LOCKS = _Locks()


def _require_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise ConfigError(
            "writing answers with a local model needs llama-cpp-python; install it with "
            "pip install 'rag-assistant[generate]' (builds from source in ~10 min), or use --generate-url"
        ) from None


@lru_cache(maxsize=2)
def _llama(path: str, threads: int):
    from llama_cpp import Llama

    model = Llama(model_path=path, n_ctx=CONTEXT_TOKENS, n_threads=threads, seed=0, verbose=False)
    # Freed while the interpreter still works: left to Llama.__del__ at exit, it finds its
    # library half torn down and prints a traceback after every run.
    atexit.register(model.close)
    return model


class HttpGenerator:
    """Any server with an OpenAI-compatible `/v1/chat/completions`: llama.cpp's, vLLM, Ollama, ….

    Args:
        url: the API base, e.g. "http://127.0.0.1:8080/v1" (a URL ending in /chat/completions is
            taken as it is).
        model: the model name the server expects (many local servers ignore it).
        timeout: seconds to wait for the next piece of the answer.

    Raises:
        ConfigError: the URL is not http(s).
    """

    def __init__(self, url: str, *, model: str = "local", timeout: float = HTTP_TIMEOUT):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"--generate-url must be an http(s) URL such as http://127.0.0.1:8080/v1, not {url!r}")
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.name = base

    def stream(self, messages: list[dict], *, max_tokens: int = MAX_TOKENS, excerpts: int | None = None) -> Iterator[str]:
        # `excerpts` is not sent: constrained decoding is not part of the OpenAI API.
        body = {
            "model": self.model, "messages": messages, "stream": True,
            "temperature": 0.0, "max_tokens": max_tokens, "stop": STOP, "seed": 0,
        }
        request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            method="POST",
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            detail = error.read(300).decode("utf-8", "replace").strip()
            raise RagError(f"the generator at {self.endpoint} answered HTTP {error.code}: {detail or error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RagError(f"cannot reach the generator at {self.endpoint} ({reason}); start it or check --generate-url") from None
        with response:
            if "text/event-stream" not in response.headers.get("Content-Type", ""):
                # A server that ignores "stream": one JSON answer.
                data = json.loads(response.read().decode("utf-8"))
                yield data["choices"][0]["message"]["content"] or ""
                return
            # Server-sent events: "data: {json}" lines, blank lines between events, "data: [DONE]" at the end.
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[len("data:"):].strip()
                if payload == "[DONE]":
                    return
                choices = json.loads(payload).get("choices") or [{}]
                piece = (choices[0].get("delta") or {}).get("content")
                if piece:
                    yield piece


def make_generator(*, url: str | None = None, model_path: str | Path | None = None) -> Generator:
    """The generator the CLI and UI options ask for: a server at `url`, else the local model."""
    if url:
        return HttpGenerator(url)
    return LlamaCppGenerator(model_path)
