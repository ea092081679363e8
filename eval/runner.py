"""`rag eval`: run a question set against an index and report how well the answers are grounded.

Writes report.md, report.json and PNG plots. Every number in the report is computed here from
the answers the public API returned, so anyone can re-score report.json independently.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag import FORMATS, OWN_TEXT_FORMATS, Answer, Assistant, RagError

from .questions import DEFAULT_QUESTIONS, Question, QuestionSet, load_questions
from .squad import direct_answer


@dataclass(frozen=True)
class Outcome:
    """One question asked and scored."""

    id: str
    question: str
    answerable: bool
    answer: Answer
    seconds: float
    correct: bool  # answerable: grounded and every expect regex matches; unanswerable: abstained
    direct_correct: bool  # stricter: the expect regexes match the direct answer, before the quote
    evidence_cited: bool | None  # answerable only
    faithful: tuple[bool, ...] = ()  # one per citation
    conversation: str | None = None
    turn: int = 0
    would_be: Answer | None = None  # the answer given with abstention off (for the coverage curve)
    would_be_correct: bool = False

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "question": self.question,
            "answerable": self.answerable,
            "conversation": self.conversation,
            "turn": self.turn,
            **self.answer.to_dict(),
            "seconds": round(self.seconds, 4),
            "correct": self.correct,
            "direct_correct": self.direct_correct,
            "evidence_cited": self.evidence_cited,
            "citations_faithful": list(self.faithful),
        }


def run_eval(
    *, questions: Path | None, index: Path | None, out: Path, floors: Path | None = None, generator=None, limit: int | None = None
) -> int:
    """Run the question set, write the report, and check floors if given. Returns the exit code.

    With `generator`, every question is also asked with the model writing the answer, and the two
    runs are reported side by side (generated.md, and "generated" in report.json).
    `limit` keeps the first N single questions and drops the conversations.
    """
    question_set = load_questions(questions or DEFAULT_QUESTIONS)
    if limit is not None:
        if limit < 1:
            raise RagError(f"--limit must be at least 1, not {limit}")
        question_set = QuestionSet(questions=question_set.questions[:limit], conversations=[])
    if not question_set.questions and not question_set.conversations:
        raise RagError(f"{questions}: the question set is empty")
    assistant, build = _assistant(index)
    sources = _SourceCache(extracted=assistant.source_text)
    outcomes = [_ask(assistant, q, sources) for q in question_set.questions]
    for conversation in question_set.conversations:
        chat = assistant.chat()
        for turn, q in enumerate(conversation.turns):
            outcomes.append(_ask(chat, q, sources, conversation=conversation.id, turn=turn))
    report = _report(outcomes, build, assistant, questions or DEFAULT_QUESTIONS)
    if generator is not None:
        written = _run_generated(assistant.with_generator(generator), question_set, sources)
        report["generated"] = _side_by_side(outcomes, written, assistant, generator)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    _plots(outcomes, report["coverage_curve"], out)
    print(_summary_table(report))
    print(f"\nreport: {out / 'report.md'} ({len(report['failures'])} failures listed)")
    if generator is not None:
        (out / "generated.md").write_text(_generated_markdown(report["generated"]), encoding="utf-8")
        print("\nextractive vs generated (" + report["generated"]["generator"] + "):")
        print(_side_by_side_table(report["generated"]))
        print(f"\nreport: {out / 'generated.md'}")
    if floors:
        return _check_floors(report["metrics"], json.loads(floors.read_text(encoding="utf-8")))
    return 0


def _assistant(index: Path | None) -> tuple[Assistant, dict]:
    """The index to evaluate, and how long building (or opening) it took."""
    started = time.perf_counter()
    if index is not None:
        assistant = Assistant.open(index)
        return assistant, {"kind": "opened existing index", "seconds": time.perf_counter() - started}
    # Build the bundled sample afresh so the build time is a real one (model load excluded).
    from rag import SAMPLE_DOCUMENT, Embedder

    embedder = Embedder()
    embedder.encode(["warm up"])
    embedder.warm_up()  # and the question model, exported first if it is not cached yet
    folder = Path(tempfile.mkdtemp(prefix="rag-eval-"))
    started = time.perf_counter()
    assistant = Assistant.build([SAMPLE_DOCUMENT], index_dir=folder / "index")
    return assistant, {"kind": "built from scratch (model loaded beforehand)", "seconds": time.perf_counter() - started}


class _SourceCache:
    """Source texts read straight from disk, to check citations independently of the index.

    A PDF, HTML or Word source has no text of its own to compare with: its citations refer to
    the text the library extracted (kept in the index), which `extracted` gives. The pages and
    headings of that extraction are checked apart, against pypdf, in tests/test_formats.py.
    """

    def __init__(self, extracted=None):
        self._texts: dict[str, str] = {}
        self._extracted = extracted

    def text(self, source: str) -> str | None:
        extracted = FORMATS.get(Path(source).suffix.lower()) not in (*OWN_TEXT_FORMATS, None)
        if source not in self._texts and self._extracted and extracted:
            self._texts[source] = self._extracted(source)
        if source not in self._texts:
            try:
                raw = Path(source).read_bytes()
            except OSError:
                return None
            try:
                self._texts[source] = raw.decode("utf-8")
            except UnicodeDecodeError:
                from charset_normalizer import from_bytes

                best = from_bytes(raw).best()
                self._texts[source] = str(best) if best else ""
        return self._texts[source]

    def verbatim(self, citation) -> bool:
        text = self.text(citation.source)
        return text is not None and text[citation.start : citation.end] == citation.text


def _ask(
    asker, q: Question, sources: _SourceCache, *, conversation: str | None = None, turn: int = 0, coverage: bool = True
) -> Outcome:
    started = time.perf_counter()
    answer = asker.ask(q.question)
    seconds = time.perf_counter() - started
    if q.answerable:
        correct = answer.grounded and q.matches(answer.text)
        direct_correct = answer.grounded and q.matches(direct_answer(answer))
        evidence = any(q.evidence in c.text for c in answer.citations) if q.evidence else None
    else:
        correct = direct_correct = not answer.grounded
        evidence = None
    faithful = tuple(sources.verbatim(c) for c in answer.citations)
    would_be = None
    if conversation is None and coverage:
        # What would have been answered with abstention off: the coverage/precision curve.
        would_be = answer if answer.grounded else _ask_without_abstention(asker, q.question)
    return Outcome(
        id=q.id, question=q.question, answerable=q.answerable, answer=answer, seconds=seconds,
        correct=correct, direct_correct=direct_correct, evidence_cited=evidence, faithful=faithful,
        conversation=conversation, turn=turn, would_be=would_be,
        would_be_correct=would_be is not None and q.answerable and q.matches(would_be.text),
    )


def _ask_without_abstention(asker, question: str) -> Answer:
    return asker.ask(question, min_confidence=0.0)


def _share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


# Decimals each figure is shown with (report.json, report.md, the printed tables); the figures
# themselves are computed once, unrounded, by `_metrics`.
SHARE_DIGITS = 4
LATENCY_DIGITS = 2  # milliseconds, in report.json and report.md
SIDE_BY_SIDE_LATENCY_DIGITS = 1  # milliseconds, in generated.md (generated answers take seconds)
BUILD_DIGITS = 3  # seconds


def _shown(value: float | None, digits: int = SHARE_DIGITS) -> float | None:
    return None if value is None else round(value, digits)


def _metrics(outcomes: list[Outcome]) -> dict[str, float | None]:
    """Every metric of one run of the question set, unrounded (None when nothing to count)."""
    singles = [o for o in outcomes if o.conversation is None]
    answerable = [o for o in singles if o.answerable]
    unanswerable = [o for o in singles if not o.answerable]
    abstained = [o for o in singles if not o.answer.grounded]
    followups = [o for o in outcomes if o.conversation is not None and o.turn > 0]
    first_turns = [o for o in outcomes if o.conversation is not None and o.turn == 0]
    citations = [f for o in outcomes for f in o.faithful]
    latencies = sorted(o.seconds * 1000 for o in outcomes)
    return {
        "answer_accuracy": _share(sum(o.correct for o in answerable), len(answerable)),
        "direct_answer_accuracy": _share(sum(o.direct_correct for o in answerable), len(answerable)),
        "evidence_recall": _share(sum(bool(o.evidence_cited) for o in answerable if o.evidence_cited is not None),
                                  sum(o.evidence_cited is not None for o in answerable)),
        "citation_faithfulness": _share(sum(citations), len(citations)),
        "abstention_precision": _share(sum(not o.answerable for o in abstained), len(abstained)),
        "abstention_recall": _share(sum(not o.answer.grounded for o in unanswerable), len(unanswerable)),
        "followup_accuracy": _share(sum(o.correct for o in followups), len(followups)),
        "followup_evidence_recall": _share(
            sum(bool(o.evidence_cited) for o in followups if o.evidence_cited is not None),
            sum(o.evidence_cited is not None for o in followups),
        ),
        "first_turn_accuracy": _share(sum(o.correct for o in first_turns), len(first_turns)),
        "latency_ms_p50": statistics.median(latencies) if latencies else None,
        "latency_ms_p95": _percentile(latencies, 95) if latencies else None,
    }


def _shown_metrics(
    metrics: dict[str, float | None], *, latency_digits: int = LATENCY_DIGITS
) -> dict[str, float | None]:
    """`metrics` as the report shows them: shares to SHARE_DIGITS decimals, latencies to `latency_digits`."""
    return {name: _shown(value, latency_digits if name.startswith("latency_ms") else SHARE_DIGITS)
            for name, value in metrics.items()}


def _report(outcomes: list[Outcome], build: dict, assistant: Assistant, questions: Path) -> dict:
    singles = [o for o in outcomes if o.conversation is None]
    answerable = [o for o in singles if o.answerable]
    followups = [o for o in outcomes if o.conversation is not None and o.turn > 0]
    return {
        "questions_file": str(questions),
        "index": str(assistant.index_dir),
        "index_build": build["kind"],
        "counts": {
            "questions": len(singles), "answerable": len(answerable), "unanswerable": len(singles) - len(answerable),
            "conversations": len({o.conversation for o in outcomes if o.conversation}),
            "followups": len(followups), "citations": sum(len(o.faithful) for o in outcomes),
        },
        "definitions": {
            "answer_accuracy": "answerable single questions that are grounded and match every expect regex (case-insensitive)",
            "direct_answer_accuracy": (
                "as answer_accuracy, but the regexes must match the direct answer alone "
                "(the text before the quoted statement; the whole text when the answer is the statement itself)"
            ),
            "evidence_recall": "answerable single questions whose evidence string is inside one cited excerpt",
            "citation_faithfulness": "citations (all questions and turns) whose text equals the source file's text at [start:end]",
            "abstention_precision": "abstained single questions that are unanswerable / all abstained single questions",
            "abstention_recall": "unanswerable single questions that were abstained / all unanswerable",
            "followup_accuracy": "conversation turns after the first that are grounded and match every expect regex",
        },
        "metrics": {**_shown_metrics(_metrics(outcomes)), "index_build_seconds": _shown(build["seconds"], BUILD_DIGITS)},
        "coverage_curve": _coverage_curve(singles),
        "failures": [_failure(o) for o in outcomes if not o.correct or o.evidence_cited is False or not all(o.faithful)],
        "results": [o.to_dict() for o in outcomes],
    }


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def _coverage_curve(singles: list[Outcome]) -> list[dict]:
    """Answered precision against coverage as the abstention threshold moves."""
    points = []
    thresholds = sorted({round(o.would_be.confidence, 4) for o in singles if o.would_be} | {0.0, 1.01})
    for threshold in thresholds:
        answered = [o for o in singles if o.would_be and o.would_be.confidence >= threshold]
        points.append({
            "threshold": threshold,
            "coverage": _shown(_share(len(answered), len(singles))),
            "answered_precision": _shown(_share(sum(o.would_be_correct for o in answered), len(answered))),
        })
    return points


def _failure(o: Outcome) -> dict:
    reasons = []
    if not o.correct:
        reasons.append("answered an unanswerable question" if not o.answerable
                       else ("abstained" if not o.answer.grounded else "answer does not match expect"))
    if o.evidence_cited is False:
        reasons.append("evidence not cited")
    if not all(o.faithful):
        reasons.append("citation not verbatim")
    return {
        "id": o.id, "question": o.question, "why": "; ".join(reasons), "answer": o.answer.text,
        "grounded": o.answer.grounded, "query": o.answer.query, "confidence": round(o.answer.confidence, 4),
        "citations": [c.to_dict() for c in o.answer.citations],
    }


def _summary_table(report: dict) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for name, value in report["metrics"].items():
        lines.append(f"| {name} | {value if value is not None else 'n/a'} |")
    return "\n".join(lines)


def _path_shown(path: str) -> str:
    """A path as report.md shows it: relative to the current folder when it lies inside it (the
    report may be committed, and this machine's folders mean nothing elsewhere), else its name."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name


def _markdown(report: dict) -> str:
    counts = report["counts"]
    parts = [
        "# Evaluation report",
        "",
        f"Questions: `{_path_shown(report['questions_file'])}` ({counts['questions']} single, {counts['answerable']} answerable, "
        f"{counts['unanswerable']} unanswerable; {counts['conversations']} conversations with {counts['followups']} follow-ups). "
        f"Index: `{_path_shown(report['index'])}` ({report['index_build']}).",
        "",
        _summary_table(report),
        "",
        "Definitions:",
        *[f"- **{k}**: {v}" for k, v in report["definitions"].items()],
        "",
        "![answered precision against coverage](coverage.png)",
        "",
        f"## Failures ({len(report['failures'])})",
    ]
    for failure in report["failures"]:
        parts += ["", f"### {failure['id']}: {failure['question']}", f"- why: {failure['why']}"]
        if failure["query"] != failure["question"]:
            parts.append(f"- searched as: {failure['query']}")
        parts.append(f"- answered (grounded={failure['grounded']}, confidence={failure['confidence']}): {failure['answer']}")
        for number, c in enumerate(failure["citations"], 1):
            parts.append(f"  - [{number}] {Path(c['source']).name} {c['start']}–{c['end']}: “{c['text']}”")
    return "\n".join(parts) + "\n"


def _plots(outcomes: list[Outcome], curve: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(p["coverage"], p["answered_precision"]) for p in curve if p["answered_precision"] is not None]
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.plot([c for c, _ in points], [p for _, p in points], marker=".")
    axes.set_xlabel("coverage (share of questions answered)")
    axes.set_ylabel("answered precision")
    axes.set_title("Abstention threshold sweep")
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "coverage.png", dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(5, 3))
    axes.hist([o.seconds * 1000 for o in outcomes], bins=20)
    axes.set_xlabel("latency per question (ms)")
    axes.set_ylabel("questions")
    figure.tight_layout()
    figure.savefig(out / "latency.png", dpi=100)
    plt.close(figure)


def _check_floors(metrics: dict, floors: dict) -> int:
    """1 if a metric, as the report shows it, is below its floor (the floors were set from reports)."""
    below = [f"{name} {metrics.get(name)} < floor {floor}" for name, floor in floors.items()
             if metrics.get(name) is None or metrics[name] < floor]
    for line in below:
        print(f"rag eval: below floor: {line}", file=sys.stderr)
    return 1 if below else 0


# -- generated answers, side by side with the extractive ones -------------------------------------

# The metrics compared side by side (a subset of `_metrics`, in this order).
SIDE_BY_SIDE = ("answer_accuracy", "evidence_recall", "citation_faithfulness", "abstention_recall",
                "followup_accuracy", "latency_ms_p50", "latency_ms_p95")


def _run_generated(assistant: Assistant, question_set: QuestionSet, sources: _SourceCache) -> list[Outcome]:
    """The same questions and conversations, with the model writing each grounded answer."""
    outcomes = [_ask(assistant, q, sources, coverage=False) for q in question_set.questions]
    for conversation in question_set.conversations:
        chat = assistant.chat()
        for turn, q in enumerate(conversation.turns):
            outcomes.append(_ask(chat, q, sources, conversation=conversation.id, turn=turn))
    return outcomes


def _side_by_side(plain: list[Outcome], written: list[Outcome], assistant: Assistant, generator) -> dict:
    """The metrics of both runs, and for the generated one how its sentences fared.

    "sentences_supported" re-checks each generated answer as a reader could: its text is split
    into sentences again and each is checked against the answer's own citations (so a marker
    renumbered wrongly would count against it); it must be 1.0. "sentences_kept" is the share of
    everything the model wrote that survived the check.
    """
    from rag import verify

    rechecked = [verify(o.answer.text, o.answer.citations, assistant.embedder) for o in written if o.answer.generated]
    final_sentences = [s.supported for r in rechecked for s in r.sentences]
    all_sentences = [s for o in written for s in o.answer.sentences]
    grounded = [o for o in written if o.answer.grounded]
    columns = {}
    for name, outcomes in (("extractive", plain), ("generated", written)):
        metrics = _shown_metrics(_metrics(outcomes), latency_digits=SIDE_BY_SIDE_LATENCY_DIGITS)
        columns[name] = {metric: metrics[metric] for metric in SIDE_BY_SIDE}
    columns["extractive"].update({"answers_generated": None, "sentences_kept": None, "sentences_supported": None})
    columns["generated"].update({
        "answers_generated": _shown(_share(sum(o.answer.generated for o in grounded), len(grounded))),
        "sentences_kept": _shown(_share(sum(s.supported for s in all_sentences), len(all_sentences))),
        "sentences_supported": _shown(_share(sum(final_sentences), len(final_sentences))),
    })
    return {
        "generator": getattr(generator, "name", type(generator).__name__),
        "questions": len([o for o in written if o.conversation is None]),
        "turns": len([o for o in written if o.conversation is not None]),
        "definitions": {
            "answers_generated": "grounded answers whose text the model wrote (the rest fell back to the extractive answer)",
            "sentences_kept": "sentences the model wrote that the check kept / all it wrote",
            "sentences_supported": (
                "sentences of the final generated answers supported by the citations they mark, re-checked from the answer alone"
            ),
            "latency_ms": "per question, retrieval + extractive answer (+ writing and checking when generated)",
        },
        "metrics": columns,
        "answers": [
            {
                "id": o.id, "question": o.question, "answerable": o.answerable, "correct": o.correct,
                "generated": o.answer.generated, "answer": o.answer.text, "seconds": round(o.seconds, 3),
                "sentences": [s.to_dict() for s in o.answer.sentences],
                "extractive_answer": p.answer.text,
            }
            for p, o in zip(plain, written)
        ],
    }


def _side_by_side_table(comparison: dict) -> str:
    plain, written = comparison["metrics"]["extractive"], comparison["metrics"]["generated"]
    lines = ["| metric | extractive | generated |", "|---|---|---|"]
    for name in plain:
        shown = ["n/a" if value is None else str(value) for value in (plain[name], written[name])]
        lines.append(f"| {name} | {shown[0]} | {shown[1]} |")
    return "\n".join(lines)


def _generated_markdown(comparison: dict) -> str:
    parts = [
        "# Extractive and generated answers, side by side",
        "",
        f"Generator: `{comparison['generator']}`; {comparison['questions']} single questions, {comparison['turns']} conversation turns.",
        "",
        _side_by_side_table(comparison),
        "",
        "Definitions:",
        *[f"- **{k}**: {v}" for k, v in comparison["definitions"].items()],
        "",
        "## Answers",
    ]
    for a in comparison["answers"]:
        if not a["sentences"]:
            continue  # abstained: the model was not asked
        parts += ["", f"### {a['id']}: {a['question']}", f"- extractive: {a['extractive_answer']}",
                  f"- {'generated' if a['generated'] else 'fell back'} ({a['seconds']} s, correct={a['correct']}): {a['answer']}"]
        for s in a["sentences"]:
            if not s["supported"]:
                parts.append(f"  - removed: “{s['text']}” ({s['reason']})")
    return "\n".join(parts) + "\n"
