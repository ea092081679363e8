"""`rag eval squad FILE`: our hybrid retrieval against BM25-only and dense-only baselines on SQuAD.

Each of the first N articles of a SQuAD-format file (or, with `--held-out`, the articles the
learned reader was validated on and never trained on: rag/models/reader/reader.json) becomes one UTF-8 text document (its
paragraphs joined by blank lines); all of them go into one index, and every question of those
articles is asked once per retrieval mode. Per mode the report gives:

- recall@1/3/5 and MRR of the gold answer, over the cited excerpts of the answer ("cited") and
  over the top 5 retrieved passages ("retrieved", the fair retrieval-only comparison);
- answer accuracy: a gold answer inside the grounded answer's text (SQuAD normalisation);
- exact match and token F1 of the direct answer (`Answer.direct`: SQuAD's gold answers are verbatim spans);
- on SQuAD v2.0, abstention precision and recall on the unanswerable questions;
- median latency of `Assistant.ask`.

Answer-based metrics (recall, MRR, accuracy, EM, F1) are over answerable questions only. SQuAD
questions are written against one paragraph and may be ambiguous across a whole article: read
the scores as relative (modes against each other, run against run), not absolute.

Writes `OUT/squad-report.json` (numbers and every question's answers), `OUT/squad-report.md`
(the table) and keeps the documents and index in `OUT/squad-docs` and `OUT/squad-index`, so a
rerun on the same articles reuses the index.
"""
from __future__ import annotations

import json
import re
import string
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from rag import Answer, Assistant, Mode, RagError, __version__

MODES: tuple[Mode, ...] = ("hybrid", "bm25", "dense")
DEFAULT_ARTICLES = 3
RECALL_AT = (1, 3, 5)
RETRIEVED_K = max(RECALL_AT)
# How many citation texts each question keeps in the JSON report.
REPORT_CITATIONS = 3


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    article: str
    text: str
    gold: tuple[str, ...]  # the gold answers; empty for an unanswerable (SQuAD v2.0) question

    @property
    def answerable(self) -> bool:
        return bool(self.gold)


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]
    questions: tuple[Question, ...]


def load_articles(
    path: Path, *, articles: int, questions: int | None, skip: int = 0, titles: list[str] | None = None
) -> tuple[list[Article], bool]:
    """`articles` articles after the first `skip` (or those with the given titles), each with at
    most `questions` questions; and whether the file is v2.

    Raises:
        RagError: the file is missing or not SQuAD JSON.
    """
    if not path.is_file():
        raise RagError(f"{path}: no such SQuAD file; give the path of a SQuAD v1.1 or v2.0 JSON file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = [e for e in raw["data"] if e["title"] in titles] if titles is not None else raw["data"][skip : skip + articles]
        selected = [_article(entry, questions) for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise RagError(f"{path}: not a SQuAD JSON file ({type(error).__name__}: {error})") from None
    if not selected:
        raise RagError(f"{path}: holds no articles")
    is_v2 = str(raw.get("version", "")).lstrip("v").startswith("2") or any(
        not q.answerable for a in selected for q in a.questions
    )
    return selected, is_v2


def _article(entry: dict, limit: int | None) -> Article:
    title = entry["title"]
    questions = [
        Question(
            id=qa["id"],
            article=title,
            text=qa["question"],
            gold=() if qa.get("is_impossible") else tuple(a["text"] for a in qa["answers"]),
        )
        for paragraph in entry["paragraphs"]
        for qa in paragraph["qas"]
    ]
    return Article(
        title=title,
        paragraphs=tuple(p["context"] for p in entry["paragraphs"]),
        questions=tuple(questions[:limit] if limit is not None else questions),
    )


def write_documents(articles: list[Article], folder: Path) -> None:
    """One UTF-8 .txt file per article. Unchanged files are left untouched (so the index is reused),
    and files of articles no longer selected are removed (so the index holds exactly these)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for article in articles:
        name = re.sub(r"[^\w.-]+", "_", article.title).strip("._") or "article"
        wanted[f"{name}.txt"] = "\n\n".join(article.paragraphs) + "\n"
    for stale in folder.glob("*.txt"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        target = folder / name
        data = text.encode("utf-8")
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)


# -- scoring ------------------------------------------------------------------------------------


def squad_normalize(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _loose(text: str) -> str:
    """Case- and whitespace-insensitive form, for finding a gold answer inside an excerpt."""
    return " ".join(text.lower().split())


def first_match(texts: list[str], gold: tuple[str, ...]) -> int | None:
    """1-based rank of the first text containing a gold answer, or None."""
    needles = [_loose(g) for g in gold if g.strip()]
    for rank, text in enumerate(texts, 1):
        haystack = _loose(text)
        if any(n in haystack for n in needles):
            return rank
    return None


def direct_answer(answer: Answer) -> str:
    """The answer before its first quoted excerpt ("1918. “…”" → "1918"); all of it when the
    answer is the quoted statement itself, or nothing is quoted. (The text, not `Answer.direct`:
    the text resolves a relative date, "March 1918", that `direct` keeps verbatim.)"""
    head = answer.text.partition("“")[0].strip().removesuffix(".").strip()
    return head or answer.text.strip()


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Outcome:
    """How one mode did on one question."""

    answer: Answer
    seconds: float
    cited_rank: int | None
    retrieved_rank: int | None
    correct: bool  # grounded and a gold answer is inside the answer text
    exact: bool  # the direct answer equals a gold answer (normalised)
    f1: float


def score(question: Question, answer: Answer, retrieved: list[str], seconds: float) -> Outcome:
    cited = [c.text for c in answer.citations]
    if not question.answerable:
        return Outcome(answer, seconds, None, None, False, False, 0.0)
    text = squad_normalize(answer.text)
    # `direct` is verbatim, as SQuAD's gold answers are (the text may say "March 1918" for it).
    direct = (answer.direct or direct_answer(answer)) if answer.grounded else ""
    return Outcome(
        answer=answer,
        seconds=seconds,
        cited_rank=first_match(cited, question.gold),
        retrieved_rank=first_match(retrieved, question.gold),
        correct=answer.grounded and any(squad_normalize(g) in text for g in question.gold),
        exact=answer.grounded and any(squad_normalize(direct) == squad_normalize(g) for g in question.gold),
        f1=max((token_f1(direct, g) for g in question.gold), default=0.0) if answer.grounded else 0.0,
    )


@dataclass
class ModeStats:
    """The aggregate of one mode's outcomes."""

    outcomes: list[tuple[Question, Outcome]] = field(default_factory=list)

    def summary(self, *, is_v2: bool) -> dict[str, float | None]:
        answerable = [o for q, o in self.outcomes if q.answerable]
        result: dict[str, float | None] = {}
        for kind in ("cited", "retrieved"):
            ranks = [getattr(o, f"{kind}_rank") for o in answerable]
            for k in RECALL_AT:
                result[f"{kind}_recall@{k}"] = _mean([r is not None and r <= k for r in ranks])
            result[f"{kind}_mrr"] = _mean([1.0 / r if r else 0.0 for r in ranks])
        result["accuracy"] = _mean([o.correct for o in answerable])
        result["exact_match"] = _mean([o.exact for o in answerable])
        result["f1"] = _mean([o.f1 for o in answerable])
        result["answered"] = _mean([o.answer.grounded for _, o in self.outcomes])
        if is_v2:
            abstained = [q for q, o in self.outcomes if not o.answer.grounded]
            unanswerable = [q for q, _ in self.outcomes if not q.answerable]
            right = sum(not q.answerable for q in abstained)
            result["abstention_precision"] = right / len(abstained) if abstained else None
            result["abstention_recall"] = right / len(unanswerable) if unanswerable else None
        result["latency_p50_ms"] = 1000 * median(o.seconds for _, o in self.outcomes) if self.outcomes else None
        return result


def _mean(values: list[float | bool]) -> float | None:
    return sum(values) / len(values) if values else None


# -- running ------------------------------------------------------------------------------------


def ask_all(assistant: Assistant, questions: list[Question]) -> dict[str, ModeStats]:
    """Ask every question in every mode; one warm-up call per mode keeps model loading out of latency."""
    from tqdm import tqdm

    stats: dict[str, ModeStats] = {mode: ModeStats() for mode in MODES}
    for mode in MODES:
        assistant.ask(questions[0].text, mode=mode)
    for question in tqdm(questions, desc="squad", unit="q", file=sys.stderr, disable=not sys.stderr.isatty()):
        for mode in MODES:
            started = time.perf_counter()
            answer = assistant.ask(question.text, mode=mode)
            seconds = time.perf_counter() - started
            retrieved = [hit.passage.text for hit in assistant.search(question.text, k=RETRIEVED_K, mode=mode)]
            stats[mode].outcomes.append((question, score(question, answer, retrieved, seconds)))
    return stats


def held_out_titles() -> list[str]:
    """The articles the shipped reader was validated on and never trained or fitted on."""
    from .internals import READER_METADATA

    return json.loads(READER_METADATA.read_text(encoding="utf-8"))["titles"]["validation"]


def run_squad(path: Path, *, articles: int | None, questions: int | None, out: Path, held_out: bool = False) -> int:
    """Index the first `articles` articles of a SQuAD file (with `held_out`, the reader's
    validation articles instead), ask their questions in every mode, report.

    Returns the exit code (0). Raises RagError on a missing or malformed file.
    """
    if articles is not None and articles < 1 or questions is not None and questions < 1:
        raise RagError("--articles and --questions must be at least 1")
    titles = held_out_titles() if held_out else None
    selected, is_v2 = load_articles(path, articles=articles or DEFAULT_ARTICLES, questions=questions, titles=titles)
    all_questions = [q for article in selected for q in article.questions]
    if not all_questions:
        raise RagError(f"{path}: the selected articles hold no questions")
    out.mkdir(parents=True, exist_ok=True)
    write_documents(selected, out / "squad-docs")
    assistant = Assistant.build([out / "squad-docs"], index_dir=out / "squad-index", progress=sys.stderr.isatty())
    build = assistant.last_build
    assert build is not None  # Assistant.build always records its report

    started = time.perf_counter()
    stats = ask_all(assistant, all_questions)
    run = {
        "file": str(path),
        "version": "2.0" if is_v2 else "1.1",
        "rag_version": __version__,
        "articles": [a.title for a in selected],
        "questions": len(all_questions),
        "answerable": sum(q.answerable for q in all_questions),
        "unanswerable": sum(not q.answerable for q in all_questions),
        "passages": build.passages,
        "build_seconds": round(build.seconds, 2),
        "embedded": build.embedded,
        "ask_seconds": round(time.perf_counter() - started, 1),
    }
    summaries: dict[str, dict[str, float | None]] = {mode: stats[mode].summary(is_v2=is_v2) for mode in MODES}
    table = render_table(run, summaries)
    print(table)
    (out / "squad-report.md").write_text(table + "\n", encoding="utf-8")
    report = {"run": run, "modes": summaries, "questions": _per_question(all_questions, stats)}
    (out / "squad-report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nwrote {out / 'squad-report.md'} and {out / 'squad-report.json'}", file=sys.stderr)
    return 0


def _per_question(questions: list[Question], stats: dict[str, ModeStats]) -> list[dict]:
    rows = []
    for i, question in enumerate(questions):
        modes = {}
        for mode in MODES:
            _, outcome = stats[mode].outcomes[i]
            modes[mode] = {
                "answer": outcome.answer.text,
                "grounded": outcome.answer.grounded,
                "citations": [c.text for c in outcome.answer.citations[:REPORT_CITATIONS]],
                "cited_rank": outcome.cited_rank,
                "retrieved_rank": outcome.retrieved_rank,
                "f1": round(outcome.f1, 4),
            }
        rows.append({"id": question.id, "article": question.article, "question": question.text,
                     "gold": list(question.gold), "answerable": question.answerable, "modes": modes})
    return rows


# -- the table ----------------------------------------------------------------------------------

ROWS = [
    *[(f"cited_recall@{k}", f"recall@{k}, cited excerpts") for k in RECALL_AT],
    ("cited_mrr", "MRR, cited excerpts"),
    *[(f"retrieved_recall@{k}", f"recall@{k}, retrieved passages") for k in RECALL_AT],
    ("retrieved_mrr", f"MRR, retrieved passages (top {RETRIEVED_K})"),
    ("accuracy", "answer accuracy (gold in answer)"),
    ("exact_match", "exact match, direct answer"),
    ("f1", "token F1, direct answer"),
    ("answered", "answered (grounded), all questions"),
    ("abstention_precision", "abstention precision"),
    ("abstention_recall", "abstention recall"),
    ("latency_p50_ms", "latency p50 (ms)"),
]


def render_table(run: dict, summaries: dict[str, dict[str, float | None]]) -> str:
    """A markdown table, one row per metric and one column per mode, under a one-line summary."""
    counts = f"{run['questions']} questions ({run['answerable']} answerable"
    counts += f", {run['unanswerable']} unanswerable)" if run["version"] == "2.0" else ")"
    lines = [
        f"SQuAD v{run['version']} {Path(run['file']).name}: {len(run['articles'])} articles, {counts}; "
        f"{run['passages']} passages, index built in {run['build_seconds']:.1f} s "
        f"({run['embedded']} embedded); questions asked in {run['ask_seconds']:.0f} s",
        "",
        "| metric | " + " | ".join(MODES) + " |",
        "|---|" + "---:|" * len(MODES),
    ]
    first = summaries[MODES[0]]
    for key, label in ROWS:
        if key not in first:
            continue
        cells = [_cell(summaries[mode][key], key) for mode in MODES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Percentages except MRR and latency. Recall, MRR, accuracy, EM and F1 are over answerable "
        "questions; an abstention counts as a miss."
    )
    return "\n".join(lines)


def _cell(value: float | None, key: str) -> str:
    """Percentages, except MRR (a fraction) and latency (milliseconds)."""
    if value is None:
        return "–"
    if key.endswith("mrr"):
        return f"{value:.3f}"
    return f"{value:.0f}" if key == "latency_p50_ms" else f"{100 * value:.1f}"
