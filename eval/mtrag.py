"""`python -m eval.mtrag`: follow-up questions of MTRAG's human conversations, asked three ways.

MTRAG (IBM, Apache-2.0) is a benchmark of multi-turn retrieval-augmented conversations; its
human-evaluated subset has 20 conversations, 159 user turns and 350 passages, and every turn
lists the passages the annotators found relevant to it (its reference passages; a few
unanswerable turns list none). Each passage becomes one .txt file named by its id, and each
conversation's user questions are replayed in order three ways:

- standalone: every question asked on its own (`Assistant.ask`);
- conversation: the questions asked in one `Assistant.chat()`, so follow-ups are rewritten from
  the previous turns and searched with their words;
- concatenated: every question prefixed by all the previous user questions (a naive baseline).

Per turn with at least one reference passage, first turns and follow-ups (every later turn)
apart:

- cited hit: some citation of the answer lies in a reference passage;
- top-1 hit: the first citation does;
- answered: the answer is grounded at the fitted threshold (the assistant would not abstain);
- answered hit: answered and a cited hit, what a user would see as a right answer.

Hits are measured on the answer given with `min_confidence=0` (never abstaining), so an
abstention is not a miss; the conversation itself runs with the fitted threshold, as a
user's would, and a turn it abstains on is asked again with the same history and
`min_confidence=0` to score its citations. "Random sentence" is the top-1 hit rate of a sentence
drawn at random from the pool: what the passage pool alone gives.

Two pools (`--pool`): "conversation" indexes only the passages of that conversation (5 to 31 of
them, one domain: easy, since every passage is on the topic of the conversation); "all" indexes
all 350 passages of the four domains together, so a follow-up that loses its topic can land in
another conversation's passages.

Writes `OUT/mtrag.md` (the tables and a few follow-ups the conversation gets wrong) and
`OUT/mtrag.json` (every turn's questions, queries and citations); keeps the passages and indexes
in `OUT/mtrag-docs` and `OUT/mtrag-index`, so a rerun reuses them (each pool is about 5,400
sentences to embed on the first run; a rerun only asks: 159 turns, 3 to 5 questions each, a pool).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rag import MAX_QUESTION_CHARS, Answer, Assistant, RagError, __version__

from .paths import shared_data

DEFAULT_DATA = shared_data("mtrag", "reference_subset_with_human_evaluations.json")
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
METHODS = ("standalone", "conversation", "concatenated")
GROUPS = ("first turn", "follow-up")
POOLS = ("conversation", "all")
# How many follow-ups of each kind (conversation lost / conversation won) the report shows.
EXAMPLES = 6


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    number: int  # 1 for the first question of the conversation
    question: str  # the user's question, as typed
    references: tuple[str, ...]  # ids of the passages annotated as relevant to this turn
    kind: str  # MTRAG's multi-turn label: "Follow-up", "Clarification", or "" (first turn)
    answerability: str  # ANSWERABLE, PARTIAL, UNANSWERABLE or CONVERSATIONAL


@dataclass(frozen=True)
class Dialogue:
    id: str
    collection: str  # MTRAG's corpus: clapnq (Wikipedia), cloud docs, fiqa (finance), govt
    turns: tuple[Turn, ...]

    @property
    def passages(self) -> list[str]:
        """Every passage any of its turns refers to, in order of first mention."""
        return list(dict.fromkeys(p for turn in self.turns for p in turn.references))


def load(path: Path) -> tuple[list[Dialogue], dict[str, str]]:
    """The conversations (turns in order) and the passage texts by id.

    Raises:
        RagError: the file is missing or not MTRAG's human-evaluation JSON.
    """
    if not path.is_file():
        raise RagError(
            f"{path}: no such file; MTRAG's reference_subset_with_human_evaluations.json is at "
            "github.com/IBM/mt-rag-benchmark (human/evaluations/); pass its path with --data"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        texts = {d["document_id"]: d["text"] for d in raw["documents"]}
        by_dialogue: dict[str, list[tuple[int, Turn, str]]] = {}
        for task in raw["tasks"]:
            dialogue, _, number = task["task_id"].partition("<::>")
            asked = task["input"][-1]
            if asked["speaker"] != "user":
                raise TypeError(f"task {task['task_id']} ends with a {asked['speaker']} turn, not a user question")
            turn = Turn(
                number=int(number),
                question=asked["text"].strip(),
                references=tuple(c["document_id"] for c in task["contexts"]),
                kind=(task.get("Multi-Turn") or [""])[0],
                answerability=(task.get("Answerability") or [""])[0],
            )
            by_dialogue.setdefault(dialogue, []).append((turn.number, turn, task.get("Collection", "")))
    except (ValueError, KeyError, TypeError) as error:
        raise RagError(f"{path}: not MTRAG human-evaluation JSON ({type(error).__name__}: {error})") from None
    dialogues = []
    for dialogue_id, turns in by_dialogue.items():
        turns.sort(key=lambda t: t[0])
        numbers = [n for n, _, _ in turns]
        if numbers != list(range(1, len(turns) + 1)):
            raise RagError(f"{path}: conversation {dialogue_id} has turns {numbers}; a replay needs all of them")
        collection = re.sub(r"^mt-rag-|-elser.*$", "", turns[0][2])
        dialogues.append(Dialogue(dialogue_id, collection, tuple(t for _, t, _ in turns)))
    missing = {p for d in dialogues for p in d.passages} - texts.keys()
    if missing:
        raise RagError(f"{path}: {len(missing)} reference passages have no text, e.g. {min(missing)}")
    return dialogues, texts


def write_passages(ids: list[str], texts: dict[str, str], folder: Path) -> None:
    """One UTF-8 file `<id>.txt` per passage; unchanged files are left as they are (so the index
    is reused) and files of passages no longer wanted are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {file_name(i): texts[i] + "\n" for i in ids}
    for stale in folder.glob("*.txt"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        target, data = folder / name, text.encode("utf-8")
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)


def file_name(passage: str) -> str:
    """`<id>.txt`; MTRAG's ids are letters, digits, "-" and "_", so the name keeps the id as it is."""
    return re.sub(r"[^\w.-]+", "_", passage) + ".txt"


def passage_of(source: str) -> str:
    """The passage id a cited file stands for (the file is named by it)."""
    return Path(source).stem


# -- replaying ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One method's answer to one turn."""

    answer: Answer  # the never-abstaining answer (min_confidence=0): what hits are measured on
    answered: bool  # grounded at the fitted threshold

    def hit(self, references: tuple[str, ...]) -> bool:
        return any(passage_of(c.source) in references for c in self.answer.citations)

    def top1(self, references: tuple[str, ...]) -> bool:
        return bool(self.answer.citations) and passage_of(self.answer.citations[0].source) in references


def _ask(assistant: Assistant, question: str) -> Outcome:
    answer = assistant.ask(question)
    if answer.grounded:  # the threshold only decides whether to answer, never which answer
        return Outcome(answer, True)
    return Outcome(assistant.ask(question, min_confidence=0), False)


def concatenated(previous: list[str], question: str) -> str:
    """The question after all previous questions, oldest dropped first until it fits."""
    previous = list(previous)
    while True:
        text = " ".join([*previous, question])
        if len(text) <= MAX_QUESTION_CHARS or not previous:
            return text[-MAX_QUESTION_CHARS:]
        previous.pop(0)


def replay(assistant: Assistant, dialogue: Dialogue) -> list[dict[str, Outcome]]:
    """Each turn's outcome per method, turns in order."""
    conversation = assistant.chat()
    results = []
    for i, turn in enumerate(dialogue.turns):
        before = list(conversation.history)
        answer = conversation.ask(turn.question)  # the fitted threshold, as a user's chat runs
        if answer.grounded:
            chatted = Outcome(answer, True)
        else:  # the same turn with the same history, never abstaining, to score its citations
            shadow = assistant.chat()
            shadow.history.extend(before)
            chatted = Outcome(shadow.ask(turn.question, min_confidence=0), False)
        previous = [t.question for t in dialogue.turns[:i]]
        results.append(
            {
                "standalone": _ask(assistant, turn.question),
                "conversation": chatted,
                "concatenated": _ask(assistant, concatenated(previous, turn.question)),
            }
        )
    return results


@dataclass
class PoolRun:
    """Every scored turn of one pool, and what was built to ask them."""

    pool: str
    turns: list[tuple[Dialogue, Turn, dict[str, Outcome], float]] = field(default_factory=list)  # float: chance
    passages: int = 0  # passages in the index(es)
    sentences: int = 0  # indexed sentences (retrieval units)
    embedded: int = 0  # sentences embedded by this run (0 when the indexes were reused)
    build_seconds: float = 0.0
    ask_seconds: float = 0.0


def run_pool(pool: str, dialogues: list[Dialogue], texts: dict[str, str], out: Path) -> PoolRun:
    """Build the pool's index(es) and replay every conversation against them."""
    run = PoolRun(pool)
    if pool == "all":
        ids = list(dict.fromkeys(p for d in dialogues for p in d.passages))
        plan = [("all", ids, dialogues)]
    else:
        plan = [(d.id, d.passages, [d]) for d in dialogues]
    for name, ids, asked in plan:
        docs, index = out / "mtrag-docs" / pool / name, out / "mtrag-index" / pool / name
        write_passages(ids, texts, docs)
        started = time.perf_counter()
        assistant = Assistant.build([docs], index_dir=index, progress=sys.stderr.isatty())
        run.build_seconds += time.perf_counter() - started
        run.passages += len(ids)
        run.sentences += len(assistant.passages)
        run.embedded += assistant.last_build.embedded
        per_passage = Counter(passage_of(p.source) for p in assistant.passages)
        started = time.perf_counter()
        for dialogue in asked:
            for turn, outcomes in zip(dialogue.turns, replay(assistant, dialogue)):
                chance = sum(per_passage[r] for r in turn.references) / len(assistant.passages)
                run.turns.append((dialogue, turn, outcomes, chance))
            print(f"  {pool} pool: conversation {dialogue.id[:8]} ({len(dialogue.turns)} turns) done",
                  file=sys.stderr)
        run.ask_seconds += time.perf_counter() - started
    return run


# -- the report ---------------------------------------------------------------------------------


def summarise(run: PoolRun) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Per method, then per group: n, cited hit, top-1 hit, answered, answered hit (fractions)."""
    rows: dict[str, dict[str, dict]] = {}
    for method in (*METHODS, "random sentence"):
        rows[method] = {}
        for group in GROUPS:
            scored = [
                (turn, outcomes, chance)
                for _, turn, outcomes, chance in run.turns
                if turn.references and (turn.number == 1) == (group == "first turn")
            ]
            if method == "random sentence":
                chances = [chance for _, _, chance in scored]
                rows[method][group] = {"n": len(scored), "top1": _mean(chances)}
                continue
            outcomes = [(turn, o[method]) for turn, o, _ in scored]
            rows[method][group] = {
                "n": len(outcomes),
                "hit": _mean([o.hit(t.references) for t, o in outcomes]),
                "top1": _mean([o.top1(t.references) for t, o in outcomes]),
                "answered": _mean([o.answered for _, o in outcomes]),
                "answered_hit": _mean([o.answered and o.hit(t.references) for t, o in outcomes]),
            }
    return rows


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


COLUMNS = [("hit", "cited hit %"), ("top1", "top-1 hit %"), ("answered", "answered %"),
           ("answered_hit", "answered & hit %")]


def render_table(run: PoolRun, rows: dict) -> str:
    pool = "each conversation's own passages" if run.pool == "conversation" else "all passages together"
    lines = [
        (
            f"### Pool: {run.pool} ({pool}): {run.passages} passages, {run.sentences} sentences; "
            f"built in {run.build_seconds:.0f} s ({run.embedded} embedded), asked in {run.ask_seconds:.0f} s"
        ),
        "",
        "| method | turns | n | " + " | ".join(label for _, label in COLUMNS) + " |",
        "|---|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for method, groups in rows.items():
        for group, cells in groups.items():
            values = [_percent(cells.get(key)) for key, _ in COLUMNS]
            lines.append(f"| {method} | {group} | {cells['n']} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def examples(run: PoolRun) -> str:
    """Follow-ups the conversation gets wrong that standalone gets right, and the reverse."""
    lost: list[tuple[Dialogue, Turn, dict[str, Outcome]]] = []
    won: list[tuple[Dialogue, Turn, dict[str, Outcome]]] = []
    for dialogue, turn, outcomes, _ in run.turns:
        if turn.number == 1 or not turn.references:
            continue
        chat, alone = outcomes["conversation"].top1(turn.references), outcomes["standalone"].top1(turn.references)
        if chat != alone:
            (won if chat else lost).append((dialogue, turn, outcomes))
    parts = []
    for title, cases in (("conversation misses, standalone hits (top-1)", lost),
                         ("conversation hits, standalone misses (top-1)", won)):
        parts.append(f"#### {run.pool} pool: {title}: {len(cases)}")
        parts.append("")
        for dialogue, turn, outcomes in random.Random(0).sample(cases, min(EXAMPLES, len(cases))):
            answer = outcomes["conversation"].answer
            cited = passage_of(answer.citations[0].source) if answer.citations else "nothing"
            previous = dialogue.turns[turn.number - 2].question
            parts.append(
                f"- {dialogue.collection} {dialogue.id[:8]} turn {turn.number} ({turn.kind or 'first'}): "
                f"after “{_short(previous)}”, asked “{_short(turn.question)}”, understood as "
                f"“{_short(answer.query)}”; cited {cited} (“{_short(answer.citations[0].text if answer.citations else '')}”); "
                f"references {', '.join(turn.references)}"
            )
        parts.append("")
    return "\n".join(parts)


def _short(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _per_turn(run: PoolRun) -> list[dict]:
    rows = []
    for dialogue, turn, outcomes, chance in run.turns:
        rows.append({
            "conversation": dialogue.id, "collection": dialogue.collection, "turn": turn.number,
            "kind": turn.kind, "answerability": turn.answerability, "question": turn.question,
            "references": list(turn.references), "random_sentence_top1": round(chance, 4),
            "methods": {
                method: {
                    "query": o.answer.query, "answered": o.answered,
                    "hit": o.hit(turn.references), "top1": o.top1(turn.references),
                    "confidence": round(o.answer.confidence, 4),
                    "cited": [passage_of(c.source) for c in o.answer.citations],
                    "answer": o.answer.text,
                }
                for method, o in outcomes.items()
            },
        })
    return rows


# -- running ------------------------------------------------------------------------------------


def run_mtrag(data: Path, *, pools: tuple[str, ...], limit: int | None, out: Path) -> int:
    """Replay the conversations against each pool and write the report. Returns the exit code."""
    if limit is not None and limit < 1:
        raise RagError(f"--limit must be at least 1, not {limit}")
    dialogues, texts = load(data)
    dialogues = dialogues[:limit] if limit else dialogues
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = [run_pool(pool, dialogues, texts, out) for pool in pools]
    turns = sum(len(d.turns) for d in dialogues)
    scored = sum(1 for d in dialogues for t in d.turns if t.references)
    header = (
        f"MTRAG human-evaluated subset ({data.name}): {len(dialogues)} conversations, {turns} turns "
        f"({scored} with reference passages: the scored ones); rag {__version__}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    summaries = {run.pool: summarise(run) for run in runs}
    tables = "\n\n".join(render_table(run, summaries[run.pool]) for run in runs)
    note = (
        "Hits are over the answer that never abstains (min_confidence=0); answered is at the "
        "fitted threshold. A hit: a citation lies in one of the turn's reference passages. "
        "Random sentence: the top-1 hit of a sentence drawn at random from the pool."
    )
    report = f"{header}\n\n{tables}\n\n{note}\n"
    print(report)
    stem = "mtrag"
    (out / f"{stem}.md").write_text(report + "\n" + "\n".join(examples(run) for run in runs), encoding="utf-8")
    details = {
        "data": str(data), "rag_version": __version__,
        "summary": summaries, "turns": {run.pool: _per_turn(run) for run in runs},
    }
    (out / f"{stem}.json").write_text(json.dumps(details, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.mtrag",
        description="Follow-up handling on MTRAG's human conversations: standalone, conversation "
        "and concatenated questions, scored by whether the citations lie in the reference passages.",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"MTRAG's reference_subset_with_human_evaluations.json (default: {DEFAULT_DATA})")
    parser.add_argument("--pool", choices=(*POOLS, "both"), default="both",
                        help="index each conversation's passages apart, all passages together, or both (default)")
    parser.add_argument("--limit", type=int, help="only the first N conversations")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: no MTRAG data at {args.data}; pass --data PATH "
              "(github.com/IBM/mt-rag-benchmark, human/evaluations/)", file=sys.stderr)
        return 0
    pools = POOLS if args.pool == "both" else (args.pool,)
    try:
        return run_mtrag(args.data, pools=pools, limit=args.limit, out=args.out)
    except RagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
