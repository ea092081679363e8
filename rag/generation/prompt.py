"""What the model is shown: numbered verbatim excerpts, the question, and the extractive answer's lead.

Small models follow a worked example far better than instructions alone (on the survey's 10
questions the 1.5B Qwen went from 3 to 5 correct with a two-example prompt), so the prompt shows
one exchange on a made-up text before the real one. The extractive answer's direct part
("March 1918") is given as a hint with the excerpts it was read from: the model's job is to
write it as a sentence, not to find it again.
"""
from __future__ import annotations

from typing import Sequence

from ..types import Answer, Citation, Hit

# Excerpts shown to the model: the extractive answer's citations (at most 3) and the best other
# retrieved sentences. Six keep the prompt near 1,000 tokens: ~4 s of prompt reading for the
# 0.5B model on 2 cores; more excerpts made the answer slower and no more often right.
MAX_EXCERPTS = 6

SYSTEM = (
    "You answer questions using only the numbered excerpts you are given. "
    "Answer in one to three short sentences. "
    "End every sentence with the number of the excerpt it comes from, in square brackets, like [1]. "
    "Copy names, dates and numbers exactly as the excerpts write them. "
    "Never add facts that are not in the excerpts."
)

_EXAMPLE_EXCERPTS = [
    "The Varnholt Bridge crosses the river Elsmere between the towns of Kestrel and Dunmore.",
    "The bridge was designed by the engineer Miriam Okonkwo-Hale.",
    "Construction began in 1887.",
    "The bridge was opened to traffic on September 14, 1893.",
]
_EXAMPLE_QUESTION = "When did the Varnholt Bridge open?"
_EXAMPLE_HINT = "September 14, 1893 [4]"
_EXAMPLE_ANSWER = (
    "The Varnholt Bridge was opened to traffic on September 14, 1893 [4]. "
    "Its construction had begun in 1887 [3]."
)


def excerpts_for(answer: Answer, hits: Sequence[Hit], *, limit: int = MAX_EXCERPTS) -> list[Citation]:
    """The excerpts the model writes from: the answer's citations first, then other retrieved sentences.

    Every excerpt is a verbatim `Citation` (source_text[start:end] == text), so whichever the
    generated answer cites is a valid citation as it is.
    """
    excerpts = list(answer.citations[:limit])
    seen = {(c.source, c.start, c.end) for c in excerpts}
    for hit in hits:
        if len(excerpts) >= limit:
            break
        passage = hit.passage
        if (passage.source, passage.start, passage.end) in seen:
            continue
        seen.add((passage.source, passage.start, passage.end))
        excerpts.append(
            Citation(text=passage.text, source=passage.source, start=passage.start, end=passage.end, score=round(float(hit.score), 4))
        )
    return excerpts


def direct_part(answer: Answer) -> str:
    """The extractive answer's lead before its quoted statement ("March 1918"); "" when it is all quote."""
    lead = answer.text.split("“", 1)[0].strip().rstrip(".").strip()
    return lead


def hint(answer: Answer, excerpts: Sequence[Citation]) -> str:
    """The direct answer with the excerpts it was read from: those the extractive answer quotes."""
    lead = direct_part(answer)
    if not lead:
        return ""
    quoted = [n for n, e in enumerate(excerpts, 1) if e.text in answer.text] or [1]
    return f"{lead} {''.join(f'[{n}]' for n in quoted)}"


def _user_message(question: str, excerpts: Sequence[str], lead: str) -> str:
    lines = ["Excerpts:"]
    lines += [f"[{n}] {' '.join(text.split())}" for n, text in enumerate(excerpts, 1)]
    lines += ["", f"Question: {question}"]
    if lead:
        lines.append(f"Short answer found in the excerpts: {lead}")
    lines.append("Answer in full sentences, each ending with its excerpt number in brackets:")
    return "\n".join(lines)


def messages(question: str, answer: Answer, excerpts: Sequence[Citation]) -> list[dict]:
    """The chat messages for one question: instructions, the worked example, then the real one."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": _user_message(_EXAMPLE_QUESTION, _EXAMPLE_EXCERPTS, _EXAMPLE_HINT)},
        {"role": "assistant", "content": _EXAMPLE_ANSWER},
        {"role": "user", "content": _user_message(question, [e.text for e in excerpts], hint(answer, excerpts))},
    ]
