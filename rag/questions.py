"""The checks every question passes before anything is searched: text, not empty, not too long."""
from __future__ import annotations

from .errors import QuestionError

# Longer questions are refused: no real question is this long, and embedding cost grows with it.
MAX_QUESTION_CHARS = 2000


def clean_question(question: object) -> str:
    """Validate a question and strip control characters.

    >>> clean_question("  When was the treaty signed?\\x07 ")
    'When was the treaty signed?'

    Raises:
        QuestionError: not a string, empty, or longer than MAX_QUESTION_CHARS.
    """
    if not isinstance(question, str):
        raise QuestionError(f"a question must be text, not {type(question).__name__}")
    cleaned = "".join(ch if ch.isprintable() else " " for ch in question).strip()
    if not cleaned:
        raise QuestionError("the question is empty; type a question")
    if len(cleaned) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"the question is {len(cleaned):,} characters long; ask in at most {MAX_QUESTION_CHARS:,}"
        )
    return cleaned
