"""What the model is shown: numbered verbatim excerpts, the question, and the extractive answer's lead.

Small models follow worked examples better than instructions alone (the survey in
../shared/notes/local-models.md (beside the repository) got 5 of 7 right from the 1.5B Qwen only with a two-example
prompt), so the prompt shows two exchanges on a made-up text before the real one. The
extractive answer's direct part ("March 1918") is given with the excerpts it was read from:
the model's job is to write it as a sentence, not to find it again. Asked to answer freely
from six excerpts, the 0.5B model answered "February 1918" for the flagship question; asked to
rewrite the found answer, it writes "The Brest Peace Treaty was signed in March 1918 [1][2]."
"""
from __future__ import annotations

from typing import Sequence

from ..copies import sentence_key
from ..types import Answer, Citation, Hit

# Excerpts shown to the model: the extractive answer's citations (at most 3) and the best other
# retrieved sentences. Four keep the whole prompt, two worked examples included, near 500 tokens
# (measured with Qwen2.5's tokenizer on the sample's questions): prompt reading dominates the
# time of a short answer on a CPU.
MAX_EXCERPTS = 4

SYSTEM = (
    "You turn answers found in documents into one or two short, fluent sentences. "
    "Use only facts from the numbered excerpts. "
    "End every sentence with the numbers of the excerpts it comes from, in square brackets, like [1]. "
    "Copy names, dates and numbers exactly as the excerpts write them."
)

# Two worked examples on a made-up text: one where the extractive reader found a short answer,
# one where the answer is a whole sentence.
_EXAMPLE_EXCERPTS = [
    "The bridge was opened to traffic on September 14, 1893.",
    "The Varnholt Bridge crosses the river Elsmere between the towns of Kestrel and Dunmore.",
    "In 1951 a flood damaged the northern tower, and repairs took three years.",
]
_EXAMPLES = [
    ("When did the Varnholt Bridge open?", "September 14, 1893 [1]",
     "The Varnholt Bridge was opened to traffic on September 14, 1893 [1]."),
    ("What happened to the bridge in 1951?", "",
     "In 1951 a flood damaged the bridge's northern tower [3]. The repairs took three years [3]."),
]


def excerpts_for(answer: Answer, hits: Sequence[Hit], *, limit: int = MAX_EXCERPTS) -> list[Citation]:
    """The excerpts the model writes from: the answer's citations first, then other retrieved sentences.

    Every excerpt is a verbatim `Citation` (source_text[start:end] == text), so whichever the
    generated answer cites is a valid citation as it is.
    """
    excerpts = list(answer.citations[:limit])
    # Each sentence once, as the answer cites it: a copy from another file (a document saved in
    # several formats) would let the written answer cite one sentence twice.
    seen = {sentence_key(c.text) for c in excerpts}
    for hit in hits:
        if len(excerpts) >= limit:
            break
        passage = hit.passage
        if sentence_key(passage.text) in seen:
            continue
        seen.add(sentence_key(passage.text))
        excerpts.append(
            Citation(
                text=passage.text,
                source=passage.source,
                start=passage.start,
                end=passage.end,
                score=round(float(hit.score), 4),
                location=passage.location,
            )
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
        lines.append(f"Answer found: {lead}")
        lines.append("Write this answer as a full sentence, keeping the excerpt numbers.")
    else:
        lines.append("Answer from excerpt [1] in one or two sentences, each ending with its excerpt numbers.")
    return "\n".join(lines)


def messages(question: str, answer: Answer, excerpts: Sequence[Citation]) -> list[dict]:
    """The chat messages for one question: instructions, the worked example, then the real one."""
    chat = [{"role": "system", "content": SYSTEM}]
    for example_question, example_lead, example_answer in _EXAMPLES:
        chat.append({"role": "user", "content": _user_message(example_question, _EXAMPLE_EXCERPTS, example_lead)})
        chat.append({"role": "assistant", "content": example_answer})
    chat.append({"role": "user", "content": _user_message(question, [e.text for e in excerpts], hint(answer, excerpts))})
    return chat
