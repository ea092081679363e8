"""Fit the abstention model on labelled questions and write rag/calibration.json.

    python -m eval.calibrate [--squad FILE] [--articles N] [--per-article N]

Labelled data: the project's own question set (answerable questions whose would-be answer
matches `expect` are positives; unanswerable ones are negatives) and SQuAD v2.0 articles
(a question is positive when the gold answer is inside a would-be citation, negative when it is
unanswerable or retrieval missed). "Would-be" means asked with abstention off.

The model is a logistic regression over the answerer's features (see rag.answering), fitted by
Newton's method with a small L2 penalty. The threshold maximises the balanced accuracy of the
answer/abstain decision, with the two data sets weighted so that a large SQuAD sample
does not drown the sample document's questions (which weigh OWN_WEIGHT times as much).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rag import Assistant
from rag.answering import CALIBRATION_FILE
from rag.settings import SAMPLE_DOCUMENT

from .questions import DEFAULT_QUESTIONS, load_questions
from .squad import load_articles, squad_normalize, write_documents

FEATURES = ("dense", "coverage", "unknown", "unknown_words", "typed")
# The sample document's questions weigh twice as much as SQuAD's in total: they are the kind users
# ask (about things outside the documents), while SQuAD v2.0's unanswerable questions are
# adversarial rewrites of a paragraph's own sentences, a harder and rarer case.
OWN_WEIGHT = 2.0
DEFAULT_SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v2.0-dev-part-a.json"
L2 = 0.01  # ridge on the weights (not the bias): keeps them finite on separable data


def own_examples(assistant: Assistant, questions: Path) -> list[tuple[dict, int]]:
    examples = []
    for q in load_questions(questions).questions:
        features = assistant.answer_features(q.question)
        if features is None:
            continue
        label = 0
        if q.answerable:
            answer = assistant.ask(q.question, min_confidence=0.0)
            label = int(q.matches(answer.text))
        examples.append((features, label))
    return examples


def squad_examples(path: Path, articles: int, per_article: int) -> list[tuple[dict, int]]:
    selected, _ = load_articles(path, articles=articles, questions=None)
    folder = Path(tempfile.mkdtemp(prefix="rag-calibrate-"))
    write_documents(selected, folder / "docs")
    assistant = Assistant.build([folder / "docs"], index_dir=folder / "index")
    examples = []
    for article in selected:
        step = max(1, len(article.questions) // per_article)
        for q in article.questions[::step][:per_article]:
            features = assistant.answer_features(q.text)
            if features is None:
                continue
            label = 0
            if q.answerable:
                answer = assistant.ask(q.text, min_confidence=0.0)
                cited = " ".join(squad_normalize(c.text) for c in answer.citations)
                label = int(any(squad_normalize(g) in cited for g in q.gold))
            examples.append((features, label))
    return examples


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted logistic regression by Newton's method; returns [bias, weights...]."""
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [L2] * x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        gradient = design.T @ (w * (p - y)) + penalty @ beta
        hessian = design.T @ (design * (w * p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def choose_threshold(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """The threshold with the best weighted balanced accuracy, and that accuracy."""
    best = (0.5, -1.0)
    for threshold in np.linspace(0.05, 0.95, 91):
        answered = p >= threshold
        tpr = (w * (answered & (y == 1))).sum() / max(1e-9, (w * (y == 1)).sum())
        tnr = (w * (~answered & (y == 0))).sum() / max(1e-9, (w * (y == 0)).sum())
        score = (tpr + tnr) / 2
        if score > best[1] + 1e-9:
            best = (float(threshold), float(score))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    parser.add_argument("--articles", type=int, default=6)
    parser.add_argument("--per-article", type=int, default=60)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="rag-calibrate-"))
    own = own_examples(Assistant.build([SAMPLE_DOCUMENT], index_dir=folder / "sample"), args.questions)
    squad = squad_examples(args.squad, args.articles, args.per_article) if args.squad.is_file() else []
    if not squad:
        print(f"calibrate: {args.squad} not found; fitting on the project's questions alone", file=sys.stderr)
    examples = own + squad
    x = np.array([[f[name] for name in FEATURES] for f, _ in examples])
    y = np.array([label for _, label in examples])
    w = np.array([OWN_WEIGHT / len(own)] * len(own) + ([1.0 / len(squad)] * len(squad) if squad else []))
    w = w / w.mean()
    beta = fit(x, y, w)
    p = 1 / (1 + np.exp(-np.hstack([np.ones((len(x), 1)), x]) @ beta))
    threshold, balanced = choose_threshold(p, y, w)
    calibration = {
        "weights": {name: round(float(b), 4) for name, b in zip(FEATURES, beta[1:])},
        "bias": round(float(beta[0]), 4),
        "threshold": round(threshold, 3),
        "source": (
            f"eval/calibrate.py: {len(own)} questions of {args.questions.name} "
            f"({int(sum(l for _, l in own))} positive) + {len(squad)} SQuAD v2.0 questions from "
            f"{args.articles} articles of {args.squad.name} ({int(sum(l for _, l in squad))} positive); "
            f"weighted balanced accuracy {balanced:.3f}"
        ),
    }
    args.out.write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(calibration, indent=1))
    for name, data in (("own", own), ("squad", squad)):
        if not data:
            continue
        xs = np.array([[f[n] for n in FEATURES] for f, _ in data])
        ys = np.array([l for _, l in data])
        ps = 1 / (1 + np.exp(-np.hstack([np.ones((len(xs), 1)), xs]) @ beta))
        answered = ps >= threshold
        print(f"{name}: answered {answered.mean():.2f}; of positives answered {answered[ys == 1].mean():.2f}; "
              f"of negatives abstained {(~answered[ys == 0]).mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
