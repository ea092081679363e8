"""Reading SQuAD-format files into documents and questions, and splitting them by document.

Each `title` is one document (its paragraphs joined by blank lines, as `rag eval squad` writes
them); a question's gold answers are offsets into that document's text. Questions are split by
document, never one by one: a document's questions all train, or all are held out, so nothing
learned from a document's sentences is scored on that document.

- SQuAD dev part A (`load_dev_part_a`): as the first shipped reader split it: 4 of the 18 titles
  SQuAD v2.0 covers to fit the fusion and threshold on, 4 to validate on, the rest to train.
- Every other source (`load_source`): its titles in a seeded order; the first ones make the `fit`
  slice, the next the `validation` slice (each of whole documents until it holds
  `held_out_questions` questions and `held_out_min_titles` documents); the rest train, up to the
  source's cap (documents with unanswerable questions first, so a cap keeps them all).
  Unanswerable questions stay with their document, in whichever part it falls.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .settings import Settings, SourceChoice
from .sources import DEV_PART_A, source_files

PARTS = ("train", "fit", "validation")


@dataclass(frozen=True)
class Gold:
    start: int  # offsets into the document's text
    end: int
    text: str


@dataclass(frozen=True)
class Question:
    id: str  # unique across sources (the sources' own ids, prefixed by the source's name but for dev part A's)
    title: str  # the document it was asked of
    text: str
    answers: tuple[Gold, ...]  # empty: unanswerable
    source: str = DEV_PART_A


@dataclass(frozen=True)
class Corpus:
    """One source's documents and questions, and which part each document is in.

    Only the documents in use are here: a source's cap leaves out the training documents beyond it.
    """

    name: str
    documents: dict[str, tuple[str, ...]]  # title → paragraphs
    questions: tuple[Question, ...]
    split: dict[str, str]  # title → "train", "fit" or "validation"

    def part(self, part: str) -> list[Question]:
        return [q for q in self.questions if self.split[q.title] == part]

    def file_name(self, title: str) -> str:
        """The name of the document's text file in the source's index (unique within it)."""
        name = _safe(title)
        if self.name == DEV_PART_A:
            return name + ".txt"  # as the first shipped reader's work folder named them
        # Two titles may differ only in characters the name drops: a digest tells them apart.
        return f"{name[:60]}-{hashlib.sha1(title.encode('utf-8')).hexdigest()[:8]}.txt"

    def digest(self) -> str:
        """Names the documents in use: a mining cache is valid for exactly these."""
        listed = json.dumps(sorted(self.documents), ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(listed).hexdigest()[:12]


def _safe(title: str) -> str:
    return re.sub(r"[^\w.-]+", "_", title).strip("._") or "article"


def load_dev_part_a(seed: int, fit_titles: int, validation_titles: int) -> Corpus:
    """SQuAD v1.1 dev part A (24 articles, all answerable) with SQuAD v2.0 dev part A's
    unanswerable questions (v2.0's answerable ones are v1.1's again), split as the first shipped
    reader was: `fit` and `validation` titles drawn, seeded, from the 18 titles v2.0 covers (so
    both hold unanswerable questions)."""
    v1_path, v2_path = source_files(DEV_PART_A)
    documents, questions = read_squad_files(
        DEV_PART_A, (v1_path, v2_path), prefix_ids=False, keep=lambda path, qa: path == v1_path or bool(qa.get("is_impossible")))
    v2_titles = sorted(a["title"] for a in json.loads(v2_path.read_text(encoding="utf-8"))["data"])
    random.Random(seed).shuffle(v2_titles)
    split = {title: "train" for title in documents}
    for title in v2_titles[:fit_titles]:
        split[title] = "fit"
    for title in v2_titles[fit_titles : fit_titles + validation_titles]:
        split[title] = "validation"
    return Corpus(DEV_PART_A, documents, tuple(questions), split)


def read_squad_files(
    name: str, paths: tuple[Path, ...], *, prefix_ids: bool = True, keep: Callable[[Path, dict], bool] | None = None,
) -> tuple[dict[str, tuple[str, ...]], list[Question]]:
    """The documents (title → paragraphs) and questions of SQuAD-format files, as one source.

    A title in two files is one document; a paragraph it holds twice is kept once (the answers
    of both copies point into the first). A question whose `is_impossible` is true, or that has
    no answers, is unanswerable. Question ids are prefixed by `name` (and made unique) unless
    `prefix_ids` is false; `keep(path, qa)` may leave questions out.
    """
    documents: dict[str, list[str]] = {}
    questions: list[Question] = []
    seen_ids: set[str] = set()
    for path in paths:
        for entry in json.loads(path.read_text(encoding="utf-8"))["data"]:
            paragraphs = documents.setdefault(entry["title"], [])
            for paragraph in entry["paragraphs"]:
                if paragraph["context"] not in paragraphs:
                    paragraphs.append(paragraph["context"])
            offsets = np.cumsum([0] + [len(p) + 2 for p in paragraphs]).tolist()  # joined by "\n\n"
            for paragraph in entry["paragraphs"]:
                base = offsets[paragraphs.index(paragraph["context"])]
                for qa in paragraph["qas"]:
                    if keep is not None and not keep(path, qa):
                        continue
                    answers = () if qa.get("is_impossible") else tuple(
                        Gold(base + a["answer_start"], base + a["answer_start"] + len(a["text"]), a["text"])
                        for a in qa["answers"]
                    )
                    qid = f"{name}/{qa['id']}" if prefix_ids else qa["id"]
                    while qid in seen_ids:
                        qid += "+"
                    seen_ids.add(qid)
                    questions.append(Question(qid, entry["title"], qa["question"], answers, name))
    return {t: tuple(p) for t, p in documents.items()}, questions


def split_by_title(name: str, questions: list[Question], settings: Settings, choice: SourceChoice) -> dict[str, str]:
    """Each title in use → its part: the held-out slices first, then training titles up to the
    cap, those with unanswerable questions first.

    The order is the titles sorted, then shuffled with a seed made of `settings.seed` and the
    source's name (so adding a source moves no other source's documents)."""
    count: dict[str, int] = {}
    for q in questions:
        count[q.title] = count.get(q.title, 0) + 1
    titles = sorted(count)
    random.Random(f"{settings.seed}:{name}").shuffle(titles)
    split: dict[str, str] = {}
    rest = iter(titles)
    for part in ("fit", "validation"):
        held, chosen = 0, 0
        for title in rest:
            split[title] = part
            held, chosen = held + count[title], chosen + 1
            if held >= settings.held_out_questions and chosen >= settings.held_out_min_titles:
                break
    # Documents with unanswerable questions train first: they are few (659 of 52,535 questions)
    # and all of them are wanted for the no-answer score, whatever the cap.
    unanswerable = {q.title for q in questions if not q.answers}
    trained = 0
    for title in sorted(rest, key=lambda title: title not in unanswerable):  # stable: the seeded order otherwise
        if choice.cap is not None and trained >= choice.cap:
            break
        split[title] = "train"
        trained += count[title]
    return split


def load_source(choice: SourceChoice, settings: Settings) -> Corpus:
    """One source of ../shared/data/train/, its documents in use and their split."""
    documents, questions = read_squad_files(choice.name, source_files(choice.name))
    split = split_by_title(choice.name, questions, settings, choice)
    return Corpus(choice.name, {t: p for t, p in documents.items() if t in split},
                  tuple(q for q in questions if q.title in split), split)


def load_corpora(settings: Settings) -> list[Corpus]:
    """Every source of the settings, in their order."""
    return [load_dev_part_a(settings.seed, settings.fit_titles, settings.validation_titles) if choice.name == DEV_PART_A
            else load_source(choice, settings) for choice in settings.sources]
