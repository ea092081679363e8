"""Everything that decides the trained weights, recorded in reader.json and beside the checkpoint."""
from __future__ import annotations

from dataclasses import dataclass

from .sources import DEV_PART_A, TRAIN_SOURCES


@dataclass(frozen=True)
class SourceChoice:
    """One source in the training mix."""

    name: str  # a key of sources.TRAIN_SOURCES, or sources.DEV_PART_A
    # At most this many training questions (whole documents, in the seeded order; the document
    # that crosses the cap is kept whole): None trains on every training document.
    cap: int | None = None
    # How often each of its training pairs is seen per epoch: 2.0 twice, 0.5 a seeded half of them.
    weight: float = 1.0

    def label(self) -> str:
        return f"{self.name}:{'all' if self.cap is None else self.cap}:{self.weight:g}"


def parse_sources(text: str) -> tuple[SourceChoice, ...]:
    """`name[:cap[:weight]]`, comma-separated; cap `all` is no cap.

    >>> parse_sources("policyqa:2000,molweni::2")
    (SourceChoice(name='policyqa', cap=2000, weight=1.0), SourceChoice(name='molweni', cap=None, weight=2.0))

    Raises:
        ValueError: an unknown source, or a cap or weight that is not a number.
    """
    known = [DEV_PART_A, *TRAIN_SOURCES]
    chosen = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, cap, weight = (part.split(":") + ["", ""])[:3]
        if name not in known:
            raise ValueError(f"unknown source {name!r}; choose among {', '.join(known)}")
        try:
            chosen.append(SourceChoice(name, None if cap in ("", "all") else int(cap), float(weight) if weight else 1.0))
        except ValueError:
            raise ValueError(f"{part!r}: write a source as name[:cap[:weight]], e.g. policyqa:2000:0.5") from None
    return tuple(chosen)


# The mix proposed for a run of 120 minutes on an idle 2-core machine: every source, the large ones
# capped so that users' kinds of text (policies, reviews, dialogue, stories) weigh about as much as
# Wikipedia. `--stage estimate` puts it at 104 minutes (mining 22, training 60 on 50,714 pairs,
# curve 7, fitting and report 17); every source whole would take 229 minutes (docs/training.md).
# Natural Questions and FairytaleQA are capped lower: they cost 5 sentences to embed a question.
DEFAULT_SOURCES = (
    SourceChoice(DEV_PART_A),
    SourceChoice("squad-train", cap=2500),
    SourceChoice("squadshifts-new-wiki", cap=2500),
    SourceChoice("squadshifts-amazon", cap=2500),
    SourceChoice("natural-questions", cap=1500),
    SourceChoice("policyqa", cap=2500),
    SourceChoice("molweni"),
    SourceChoice("friendsqa"),
    SourceChoice("fairytaleqa", cap=1000),
)
# The first shipped reader's data: SQuAD dev part A alone (`--sources squad-dev-a`).
LEGACY_SOURCES = (SourceChoice(DEV_PART_A),)


@dataclass(frozen=True)
class Settings:
    """Everything that decides the shipped weights; recorded in reader.json."""

    seed: int = 13
    sources: tuple[SourceChoice, ...] = DEFAULT_SOURCES
    # SQuAD dev part A's articles held out from training: 4 to fit the fusion and threshold, 4 to
    # report on (of 18 SQuAD v2.0 titles; each holds ~150-300 questions).
    fit_titles: int = 4
    validation_titles: int = 4
    # Every other source holds out two slices of its documents (seeded, by title): `fit` and
    # `validation`, each of whole documents until it holds this many questions and at least
    # `held_out_min_titles` documents. 150 questions give a share near 80% to ±6.5 points (95%);
    # reading them and their out-of-scope versions costs ~16 windows a question.
    held_out_questions: int = 150
    held_out_min_titles: int = 2
    # Negatives per question: the retriever's top-ranked sentences that don't hold the answer.
    # 1 per answerable question and 2 per unanswerable one made one epoch of SQuAD dev part A
    # ~10,000 pairs. A first run with 2 and 3 (16,202 pairs, 5e-5) had learned to say "no answer"
    # but not where answers are after 500 steps.
    negatives: int = 1
    negatives_unanswerable: int = 2
    # Out-of-scope pairs: this share of the answerable training questions is also read with the
    # best sentence retrieved from the source's other documents, labelled "no answer" (the case of
    # a user asking documents that never speak of the subject; unanswerable questions are few in
    # the data: 659 of 52,535).
    out_of_scope_share: float = 0.25
    # 3 epochs on SQuAD dev part A alone (its curve still rose after 1); with the new sources one
    # epoch is ~10 times as many pairs, and 1 epoch is what 120 minutes hold.
    epochs: int = 1
    batch_size: int = 16
    # 1e-4 with 10% warm-up: twice the usual BERT rate (Devlin et al., 2019), as the span head
    # starts from scratch.
    learning_rate: float = 1e-4
    warmup: float = 0.1
    max_steps: int | None = None  # a pilot's cap; None trains every pair `epochs` times
    freeze_word_embeddings: bool = True
    # bf16 autocast on the CPU: steps measured 1.4x faster on this machine; the ONNX export is fp32.
    bf16: bool = True
    # Validation curve: this many SQuAD dev part A validation questions, and this many of each
    # other source's validation slice, scored every `eval_every` steps.
    curve_questions: int = 100
    curve_questions_per_source: int = 20
    eval_every: int = 400
    # A checkpoint (model, optimizer, schedule, random states) every this many steps, written
    # atomically: an interrupted run loses at most this many steps (~5 minutes at 16 pairs/s).
    checkpoint_every: int = 300

    def __post_init__(self) -> None:
        if len(set(self.source_names)) != len(self.source_names):
            raise ValueError(f"a source is named twice in {list(self.source_names)}")

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    def source(self, name: str) -> SourceChoice:
        return next(s for s in self.sources if s.name == name)

    def training_dict(self) -> dict:
        """What decides the trained weights (a resumed run must match it); not the curve's size
        nor the checkpoint interval."""
        from dataclasses import asdict

        recorded = asdict(self)
        for key in ("curve_questions", "curve_questions_per_source", "eval_every", "checkpoint_every"):
            recorded.pop(key)
        return recorded
