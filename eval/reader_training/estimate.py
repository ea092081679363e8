"""`--stage estimate`: how long a run of these settings takes on an idle 2-core machine, before
running it: the passages to embed (the project's own splitter, no model), the questions, the
training pairs, the windows read to fit and report, each at a rate measured on this project.

The rates are an idle 2-core machine's wall-clock rates. Those measured while other work loaded
the machine are CPU time (all threads) per unit, scaled by 1.7 for two cores (85% of two full
cores: the intra-op threads don't scale perfectly; an assumption, not a measurement):
"""
from __future__ import annotations

import math

from .data import Corpus
from .settings import Settings
from .sources import DEV_PART_A

# Sentences embedded per second: 29.4 per CPU-second for SQuAD dev part A's sentences (152
# characters on average), 50.9 for FriendsQA's dialogue lines (43); the data's mean is ~123.
PASSAGES_PER_SECOND = 29.4 * 1.7
# Questions embedded per second: 59-62 per CPU-second.
QUESTIONS_PER_SECOND = 60 * 1.7
# Hybrid searches per second: 312 per CPU-second on a 5,000-sentence index; halved for the
# larger indexes (20,000-40,000 sentences) of the biggest sources.
SEARCHES_PER_SECOND = 312 * 1.7 / 2
# Training pairs per second with bf16 autocast: the first shipped reader trained 32,535 pairs
# (3 epochs of SQuAD dev part A) in 3,211 s idle with fp32, curve points included (reader.json's
# "training"); bf16 steps measured 1.4x faster. The other sources' windows are no longer than
# SQuAD dev part A's (95 tokens on average) but Molweni's (118).
PAIRS_PER_SECOND = 32535 / 3211 * 1.4
# Windows the int8 reader reads per second, the question evidence included: ~50 per CPU-second
# (45 for Molweni's long windows, 128 for FriendsQA's short ones).
WINDOWS_PER_SECOND = 50 * 1.7
CANDIDATES = 8


def estimate(corpora: list[Corpus], settings: Settings) -> dict:
    """The run's size per source and its minutes per step."""
    from eval.internals import split_document

    from .training import out_of_scope_questions

    sizes, totals = {}, dict.fromkeys(("passages", "questions", "embedded_questions", "pairs", "windows"), 0.0)
    for corpus in corpora:
        passages = sum(len(split_document(_document("\n\n".join(paragraphs) + "\n"))) for paragraphs in corpus.documents.values())
        train = corpus.part("train")
        answerable = sum(bool(q.answers) for q in train)
        out_of_scope = len(out_of_scope_questions(corpus, settings))
        # One positive per answerable question (a few have two), `negatives` negatives, the
        # out-of-scope pairs, the unanswerable questions' negatives; times the source's weight.
        pairs = settings.source(corpus.name).weight * (
            answerable * (1 + settings.negatives) + out_of_scope + (len(train) - answerable) * settings.negatives_unanswerable)
        held = [q for q in corpus.questions if corpus.split[q.title] != "train"]
        held_answerable = sum(bool(q.answers) for q in held)
        sizes[corpus.name] = {"documents": len(corpus.documents), "passages": passages, "questions": len(corpus.questions),
                              "training_pairs": round(pairs)}
        totals["passages"] += passages
        totals["questions"] += len(corpus.questions)
        totals["embedded_questions"] += len(corpus.questions) + out_of_scope + held_answerable
        totals["pairs"] += pairs
        totals["windows"] += CANDIDATES * (len(held) + held_answerable)
    steps = math.ceil(totals["pairs"] / settings.batch_size) * settings.epochs
    if settings.max_steps is not None:
        steps = min(steps, settings.max_steps)
    curve_windows = CANDIDATES * (settings.curve_questions + settings.curve_questions_per_source * (len(corpora) - 1))
    minutes = {
        "mining": (totals["passages"] / PASSAGES_PER_SECOND + totals["embedded_questions"] / QUESTIONS_PER_SECOND
                   + totals["embedded_questions"] / SEARCHES_PER_SECOND) / 60,
        "training": steps * settings.batch_size / PAIRS_PER_SECOND / 60,
        # The curve reads with the torch model in fp32: about half the int8 model's rate.
        "curve": (steps // settings.eval_every + 1) * curve_windows / (WINDOWS_PER_SECOND / 2) / 60,
        "fitting_and_report": totals["windows"] / WINDOWS_PER_SECOND / 60,
    }
    minutes["total"] = sum(minutes.values())
    return {"sources": sizes, "steps": steps, **{k: round(v) for k, v in totals.items()},
            "minutes_on_an_idle_2_core_machine": {k: round(v) for k, v in minutes.items()},
            "note": f"{DEV_PART_A} counts fully; rates in eval/reader_training/estimate.py"}


def _document(text: str):
    from rag import Document

    return Document(source="/estimate/document.txt", text=text, sha256="", size=len(text), encoding="utf-8")
