"""The measures a training run reports (on the fit parts while fitting, on the validation parts
after), deciding and citing as rag.answering does; per source, and the reference readings."""
from __future__ import annotations

import numpy as np

from eval.internals import reader as R

from .fitting import Item, answer_probability, token_f1

# The shares of the best candidate's probability a further citation must reach that are measured
# (rag.answering.EXTRA_CITATION_RATIO is chosen from them on the fit articles).
CITATION_RATIOS = (0.0, 0.05, 0.1, 0.15, 0.25, 0.4)


def citation_ratios(items: list[Item], fusion: R.Fusion, abstention: R.Abstention) -> dict:
    """Per share in CITATION_RATIOS: the answers found among the citations, and citations an answer has."""
    measured = {}
    for ratio in CITATION_RATIOS:
        found = figures(items, fusion, abstention, citation_ratio=ratio)
        measured[str(ratio)] = {key: found[key] for key in ("answer_in_top3_citations", "citations_per_answer")}
    return measured


def figures(items: list[Item], fusion: R.Fusion, abstention: R.Abstention, span_choice: R.SpanChoice | None = None,
            citation_ratio: float | None = None) -> dict:
    """The issue's measures on these questions, deciding and citing as rag.answering does (with
    the model's best span when no span choice is given; with another share of the best's
    probability a further citation must reach when `citation_ratio` is given)."""
    from eval.internals import EXTRA_CITATION_RATIO, cited

    ratio = EXTRA_CITATION_RATIO if citation_ratio is None else citation_ratio
    top3, f1s, decisions, citations = [], [], [], []
    for item in items:
        question, cands = item.question, item.candidates
        if not cands:
            decisions.append((item.answerable, False))
            if item.answerable:
                top3.append(False)
                f1s.append(0.0)
            continue
        probs = fusion.probabilities(item.features())
        answered = answer_probability(item, fusion, abstention) >= abstention.threshold
        decisions.append((item.answerable, answered))
        chosen = cited(probs, ratio)
        if answered:
            citations.append(len(chosen))
        if item.answerable:
            top3.append(answered and any(cands[i].positive for i in chosen))
            best = chosen[0]
            reading = item.readings[best]
            start, end = span_choice.choose(question.text, cands[best].text, reading) if span_choice else (reading.start, reading.end)
            text = cands[best].text[start:end]
            f1s.append(max(token_f1(text, g.text) for g in question.answers) if answered else 0.0)
    answerable = [a for y, a in decisions if y]
    abstained_right = sum(1 for y, a in decisions if not y and not a)
    abstained = sum(1 for _, a in decisions if not a)
    unanswerable = sum(1 for y, _ in decisions if not y)
    return {
        "questions": len(decisions),
        "answerable": len(answerable),
        "unanswerable": unanswerable,
        "answer_in_top3_citations": round(float(np.mean(top3)), 4) if top3 else None,
        "citations_per_answer": round(float(np.mean(citations)), 2) if citations else None,
        "direct_f1": round(float(np.mean(f1s)), 4) if f1s else None,
        "answerable_answered": round(float(np.mean(answerable)), 4) if answerable else None,
        "abstention_recall": round(abstained_right / unanswerable, 4) if unanswerable else None,
        "abstention_precision": round(abstained_right / abstained, 4) if abstained else None,
    }


def source_figures(items: list[Item], outside: list[Item], fusion: R.Fusion, abstention: R.Abstention,
                   span_choice: R.SpanChoice) -> dict:
    """One source's validation slice: the answers (`figures`), the out-of-scope questions
    abstained on, and the abstention's precision and recall over both kinds of question that
    should be abstained on (the source's unanswerable ones and the out-of-scope ones) together."""
    answered = figures(items, fusion, abstention, span_choice)
    scope = figures(outside, fusion, abstention)
    both = figures(items + outside, fusion, abstention)
    return {**answered,
            "out_of_scope": {"questions": scope["questions"], "abstained": scope["abstention_recall"]},
            "abstention": {"should_abstain": both["unanswerable"], "precision": both["abstention_precision"],
                           "recall": both["abstention_recall"]}}


# Readings recorded with the shipped model, which tests/test_reader.py checks it still gives.
# Made-up sentences (no data file is needed to check them).
REFERENCE = (
    ("When was the treaty signed?", "In February 1918, the army attacked.",
     "In March of the same year they signed a peace treaty in Brest.", "The treaty was later annulled."),
    ("Who designed the bridge?", "The Varnholt Bridge crosses the river Elsmere.",
     "The bridge was designed by the engineer Miriam Okonkwo-Hale.", "Construction began in 1887."),
    ("Why do the lights flicker?", "The lights in the hall flicker every evening.",
     "There are two reasons for this.", "The wiring is old, and the generator is too small."),
    ("How many cables hold the span?", "", "The main span hangs from 212 steel cables.", ""),
)


def reference(read) -> list[dict]:
    cases = []
    for question, previous, sentence, following in REFERENCE:
        (r,) = read(question, [R.window(previous, sentence, following)])
        cases.append({"question": question, "previous": previous, "sentence": sentence, "following": following,
                      "span": sentence[r.start : r.end], "has_answer": round(r.has_answer, 4)})
    return cases
