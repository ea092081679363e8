"""Fit the abstention model on labelled questions and write rag/calibration.json.

    python -m eval.calibrate [--squad-v2 FILE] [--squad-v1 FILE] [--articles N] [--per-article N]

Labelled data, each question asked with abstention off ("would-be" answers):
- the project's own question set: answerable questions whose would-be answer matches `expect`
  are positives; unanswerable ones, and answerable ones answered wrongly, are negatives;
- SQuAD v2.0 articles: positive when the gold answer is inside a would-be citation, negative
  when the question is unanswerable or retrieval missed;
- SQuAD v1.1 articles (all answerable), labelled the same way: they tell how often abstention
  would withhold an answer that the citations hold.

The model is a logistic regression over the answerer's features (see rag.answering), fitted by
Newton's method with a small L2 penalty; each data set weighs a fixed share in total (WEIGHTS).
The threshold is the highest one that still answers TARGET_ANSWERED of the positives of SQuAD
v1.1 (all answerable: what users ask of a general collection): a wrongly
withheld answer costs the user as much as a wrong one, and SQuAD v2.0's unanswerable questions
(adversarial rewrites of a paragraph's own sentences) cannot be told apart by these features
without withholding many right answers.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from rag import SAMPLE_DOCUMENT, Answer, Assistant, ConfigError

from .internals import CALIBRATION_FILE, Calibration
from .paths import shared_data
from .questions import DEFAULT_QUESTIONS, load_questions
from .squad import load_articles, squad_normalize, write_documents

FEATURES = ("dense", "coverage", "unknown", "unknown_words", "predicate", "typed", "margin")
# Total weight of each data set in the fit. The sample document's questions weigh most: they are
# the kind users ask (about things outside the documents); SQuAD v2.0's unanswerable questions
# are adversarial rewrites of a paragraph, a harder and rarer case, so they weigh least.
WEIGHTS = {"own": 2.0, "squad-v2": 0.5, "squad-v1": 1.0}
# Share of positives (questions whose answer the citations hold) that must still be answered,
# measured on THRESHOLD_SET (on all positives when it is missing).
TARGET_ANSWERED = 0.95
THRESHOLD_SET = "squad-v1"
L2 = 0.01  # ridge on the weights (not the bias): keeps them finite on separable data


def example(assistant: Assistant, question: str, correct: Callable[[Answer], bool] | None) -> tuple[dict, int] | None:
    """The question's features and label: 1 when its would-be answer is `correct` (None: unanswerable)."""
    features = assistant.answer_features(question)
    if features is None:
        return None
    label = int(correct is not None and correct(assistant.ask(question, min_confidence=0.0)))
    return features, label


def own_examples(assistant: Assistant, questions: Path) -> list[tuple[dict, int]]:
    found = [
        example(assistant, q.question, (lambda answer, q=q: q.matches(answer.text)) if q.answerable else None)
        for q in load_questions(questions).questions
    ]
    return [e for e in found if e is not None]


def _cites_gold(gold: tuple[str, ...]) -> Callable[[Answer], bool]:
    def check(answer: Answer) -> bool:
        cited = " ".join(squad_normalize(c.text) for c in answer.citations)
        return any(squad_normalize(g) in cited for g in gold)

    return check


def squad_examples(path: Path, articles: int, per_article: int) -> list[tuple[dict, int]]:
    # The last articles of the file: `rag eval squad` reports on the first ones, so the two
    # never share an article.
    total = len(json.loads(path.read_text(encoding="utf-8"))["data"])
    selected, _ = load_articles(path, articles=articles, questions=None, skip=max(0, total - articles))
    folder = Path(tempfile.mkdtemp(prefix="rag-calibrate-"))
    write_documents(selected, folder / "docs")
    assistant = Assistant.build([folder / "docs"], index_dir=folder / "index")
    found = []
    for article in selected:
        step = max(1, len(article.questions) // per_article)
        for q in article.questions[::step][:per_article]:
            found.append(example(assistant, q.text, _cites_gold(q.gold) if q.answerable else None))
    return [e for e in found if e is not None]


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


def choose_threshold(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The highest threshold that answers TARGET_ANSWERED of the (weighted) positives."""
    order = np.argsort(p[y == 1])
    probabilities, weights = p[y == 1][order], w[y == 1][order]
    withheld = np.cumsum(weights) / weights.sum()  # share withheld if the threshold is just above each
    allowed = probabilities[withheld <= 1 - TARGET_ANSWERED]
    return float(allowed[-1]) if len(allowed) else float(probabilities[0])


def _ensure_usable_calibration() -> None:
    """Asking questions needs a calibration that matches the answerer's features; when the
    shipped one does not (a feature was added or removed), start from a neutral one."""
    try:
        Calibration.load().probability({name: 0.0 for name in FEATURES})
        return
    except ConfigError:
        pass
    neutral = {"weights": {name: 0.0 for name in FEATURES}, "bias": 0.0, "threshold": 0.5, "source": "neutral placeholder"}
    CALIBRATION_FILE.write_text(json.dumps(neutral, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--squad-v2", type=Path, default=shared_data("squad-v2.0-dev-part-a.json"))
    parser.add_argument("--squad-v1", type=Path, default=shared_data("squad-v1.1-dev-part-a.json"))
    parser.add_argument("--articles", type=int, default=6, help="SQuAD articles per file")
    parser.add_argument("--per-article", type=int, default=50, help="questions per article, spread evenly")
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    args = parser.parse_args(argv)

    _ensure_usable_calibration()
    folder = Path(tempfile.mkdtemp(prefix="rag-calibrate-"))
    sets = {"own": own_examples(Assistant.build([SAMPLE_DOCUMENT], index_dir=folder / "sample"), args.questions)}
    for name, path in (("squad-v2", args.squad_v2), ("squad-v1", args.squad_v1)):
        if path.is_file():
            sets[name] = squad_examples(path, args.articles, args.per_article)
        else:
            print(f"calibrate: {path} not found; fitting without {name}", file=sys.stderr)
    x = np.array([[f[n] for n in FEATURES] for examples in sets.values() for f, _ in examples])
    y = np.array([label for examples in sets.values() for _, label in examples])
    w = np.concatenate([np.full(len(examples), WEIGHTS[name] / len(examples)) for name, examples in sets.items()])
    w = w / w.mean()
    beta = fit(x, y, w)
    p = 1 / (1 + np.exp(-np.hstack([np.ones((len(x), 1)), x]) @ beta))
    # The target is set on SQuAD v1.1, whose questions all have an answer in the documents:
    # they stand for what users ask of a general document collection.
    names = [name for name, examples in sets.items() for _ in examples]
    reference = np.array([n == THRESHOLD_SET for n in names]) if THRESHOLD_SET in sets else np.ones(len(y), bool)
    threshold = choose_threshold(p[reference], y[reference], w[reference])
    counts = ", ".join(f"{name}: {len(e)} questions, {sum(label for _, label in e)} positive" for name, e in sets.items())
    calibration = {
        "weights": {name: round(float(b), 4) for name, b in zip(FEATURES, beta[1:])},
        "bias": round(float(beta[0]), 4),
        "threshold": round(threshold, 4),
        "source": f"eval/calibrate.py on {counts}; threshold answers {TARGET_ANSWERED:.0%} of {THRESHOLD_SET}'s positives",
    }
    args.out.write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(calibration, indent=1))
    start = 0
    for name, examples in sets.items():
        ps, ys = p[start : start + len(examples)], y[start : start + len(examples)]
        start += len(examples)
        answered = ps >= threshold
        print(f"{name}: positives answered {answered[ys == 1].mean():.2f}, negatives abstained {(~answered[ys == 0]).mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
