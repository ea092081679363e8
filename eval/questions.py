"""Reading question sets: one JSON object per line, a question or a conversation of turns."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from rag import RagError

DEFAULT_QUESTIONS = Path(__file__).parent / "questions" / "sample.jsonl"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answerable: bool
    expect: tuple[str, ...] = ()  # case-insensitive regexes that must all match the answer text
    evidence: str | None = None  # verbatim substring of the source that a citation must contain

    def matches(self, text: str) -> bool:
        return all(re.search(pattern, text, re.IGNORECASE) for pattern in self.expect)


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[Question, ...]


@dataclass
class QuestionSet:
    questions: list[Question] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)


def load_questions(path: Path) -> QuestionSet:
    """Parse a JSONL question set.

    Raises:
        RagError: the file is missing or a line is malformed (the message names the line).
    """
    if not path.is_file():
        raise RagError(f"{path}: no such question file")
    result = QuestionSet()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if "turns" in record:
                turns = tuple(_question(turn, answerable=turn.get("answerable", True)) for turn in record["turns"])
                result.conversations.append(Conversation(id=str(record["id"]), turns=turns))
            else:
                result.questions.append(_question(record, answerable=record.get("answerable", True)))
        except (ValueError, KeyError, TypeError, re.error) as error:
            raise RagError(f"{path}:{number}: malformed question ({type(error).__name__}: {error})") from None
    return result


def _question(record: dict, *, answerable: bool) -> Question:
    expect = tuple(record.get("expect", ()))
    for pattern in expect:
        re.compile(pattern)
    return Question(
        id=str(record["id"]),
        question=str(record["question"]),
        answerable=bool(answerable),
        expect=expect,
        evidence=record.get("evidence"),
    )
