"""`python -m eval.train_reader`: the command line of the reader's training (see docs/training.md)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from eval.internals import reader as R
from eval.paths import REPOSITORY, shared_data

from . import stages
from .checkpoints import MismatchedCheckpoint
from .data import load_corpora
from .settings import LEGACY_SOURCES, Settings, parse_sources
from .sources import DEV_PART_A, source_files

WORK = REPOSITORY / "artifacts" / "reader"
STAGES = ("all", "estimate", "mine", "train", "export", "fusion", "bounds")


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings the options ask for (`--legacy`: the first shipped reader's)."""
    base = Settings(sources=LEGACY_SOURCES, epochs=3, out_of_scope_share=0.0, bf16=False) if args.legacy else Settings()
    changes: dict = {}
    if args.sources is not None:
        changes["sources"] = parse_sources(args.sources)
    for option in ("epochs", "max_steps", "held_out_questions", "out_of_scope_share", "negatives_unanswerable",
                   "checkpoint_every", "eval_every",
                   "curve_questions", "curve_questions_per_source", "batch_size", "bf16"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    settings = replace(base, **changes)
    if DEV_PART_A not in settings.source_names:
        raise ValueError(f"the sources must include {DEV_PART_A} (the validation articles the headline figures and "
                         f"`rag eval squad --held-out` use); give it weight 0 to train without it: {DEV_PART_A}::0")
    return settings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.train_reader", description=(
        "Train the learned reader (rag.reader) from ../shared/data, export it to int8 ONNX, fit its fusion "
        "with retrieval, and write OUT/model.onnx and OUT/reader.json.\n\nSteps:\n" + stages.__doc__.split("\n\n")[1]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=STAGES, default="all", help="run one step alone (default: all, in order)")
    p.add_argument("--work", type=Path, default=WORK, help="intermediate files (default artifacts/reader)")
    p.add_argument("--out", type=Path, default=R.MODEL_DIR, help="where the shipped model goes (default rag/models/reader)")
    p.add_argument("--legacy", action="store_true",
                   help="the first shipped reader's settings: SQuAD dev part A alone, 3 epochs, fp32, no out-of-scope pairs")
    p.add_argument("--sources", help="name[:cap[:weight]],... (e.g. squad-dev-a,policyqa:2000,molweni::2); "
                                     "default: settings.DEFAULT_SOURCES")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop training after N steps (a pilot)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--held-out-questions", type=int, help="questions in each source's fit and validation slice")
    p.add_argument("--out-of-scope-share", type=float, help="share of answerable training questions also read out of scope")
    p.add_argument("--negatives-unanswerable", type=int, help="training pairs per unanswerable question (its top-ranked sentences)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast while training")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, help="steps between validation points")
    p.add_argument("--curve-questions", type=int, help="SQuAD dev part A validation questions on the curve")
    p.add_argument("--curve-questions-per-source", type=int)
    p.add_argument("--questions", type=int, default=None, help="fit and report on N questions per part and source (a pilot)")
    p.add_argument("--fresh", action="store_true", help="delete the training checkpoint and start training over")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in settings.source_names:
        for path in source_files(name):
            if not path.is_file():
                print(f"error: {path} not found; the training data lies in {shared_data()} "
                      "(../shared/data beside the repository, or $RAG_SHARED_DATA)", file=sys.stderr)
                return 1
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        (work / "training-state.pt").unlink(missing_ok=True)
        shutil.rmtree(work / "checkpoint", ignore_errors=True)
    print(f"settings: {json.dumps(settings.training_dict())}", file=sys.stderr, flush=True)
    run = stages.Run(settings, work, args.out, args.questions)
    corpora = load_corpora(settings)
    for corpus in corpora:
        counts = {part: len(corpus.part(part)) for part in ("train", "fit", "validation")}
        print(f"{corpus.name}: {len(corpus.documents)} documents, questions {counts}, "
              f"unanswerable {sum(not q.answers for q in corpus.questions)}", file=sys.stderr, flush=True)
    if args.stage == "estimate":
        from .estimate import estimate

        print(json.dumps(estimate(corpora, settings), indent=1))
        return 0
    candidates = stages.mine_all(corpora, work)
    if args.stage == "mine":
        return 0
    if args.stage == "bounds":
        from .bounds import bounds

        print(json.dumps(bounds(next(c for c in corpora if c.name == DEV_PART_A), candidates, work), indent=1))
        return 0
    try:
        if args.stage in ("all", "train"):
            stages.train_stage(run, corpora, candidates)
    except MismatchedCheckpoint as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.stage == "export":
        stages.export_stage(run, corpora, candidates)
    elif args.stage in ("all", "fusion"):
        stages.fusion_stage(run, corpora, candidates)
    return 0
