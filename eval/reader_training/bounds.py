"""`--stage bounds`: what bounds the shipped reader's figures on SQuAD dev part A's validation
articles: how often the first k sentences of today's hybrid search hold a gold answer at all (by
its offsets), what the shipped reader answers when it reads more of them than the 8 it was
trained and fitted on, and what abstention the shipped fusion and abstention model buy when only
their threshold is moved."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from eval.internals import reader as R

from .data import Corpus, Question
from .figures import figures
from .fitting import answering_threshold, cached_reader, read_all
from .mining import Candidate, _Places, index

# The depths at which retrieval's ceiling is counted, and the shares of the fit articles'
# answerable questions answered at which the abstention trade-off is read.
CEILING_DEPTHS = (3, 8, 12, 16, 24)
ANSWERED_SHARES = (0.95, 0.9, 0.85, 0.8)
# The numbers of retrieved sentences the shipped reader is measured reading (rag.answering reads
# CANDIDATES, 8): each question's first k, read in one batch as the answerer reads them, fused,
# abstained on and cited with the shipped models unchanged.
READ_DEPTHS = (8, 12, 16)


def bounds(corpus: Corpus, candidates: dict[str, list[Candidate]], work: Path) -> dict:
    """The ceiling and trade-off on `corpus` (SQuAD dev part A) with the shipped reader."""
    from eval.internals import Answerer

    from .export import onnx_reader

    assistant = index(corpus, work)
    places = _Places(assistant)
    validation = corpus.part("validation")
    asked = [q for q in validation if q.answers]
    vectors = assistant._embedder.encode([q.text for q in validation])  # as mining embeds them
    found = dict.fromkeys(CEILING_DEPTHS, 0)
    # Each validation question's candidates at each depth, as mining makes them. A search for k
    # results is not the first k of a deeper one: each retriever's first RETRIEVER_TOP stay among
    # the k whatever k is (rag.retrieval).
    retrieved: dict[int, dict[str, list[Candidate]]] = {depth: {} for depth in READ_DEPTHS}
    for question, vector in zip(validation, vectors):
        own = corpus.file_name(question.title)
        for depth in sorted(set(CEILING_DEPTHS) | set(READ_DEPTHS)):
            hits = assistant._retriever.search(question.text, vector, k=depth)
            ranked = places.ranked(hits, question, own)
            if depth in READ_DEPTHS:
                retrieved[depth][question.id] = ranked
            if depth in CEILING_DEPTHS and question.answers:
                found[depth] += any(candidate.positive for candidate in ranked)

    shipped = R.shipped()
    model = R.MODEL_DIR / "model.onnx"
    read = cached_reader(onnx_reader(model), work / f"readings-{R.sha256(model)[:16]}.json")
    answerer = Answerer(assistant._data)

    def evidence(question: Question):
        return answerer.evidence(question.text)

    items = {part: read_all(read, [(q, candidates[q.id]) for q in corpus.part(part)], evidence) for part in ("fit", "validation")}
    read_deeper = {}
    for depth in READ_DEPTHS:
        deeper = read_all(read, [(q, retrieved[depth][q.id]) for q in validation], evidence)
        read_deeper[str(depth)] = figures(deeper, shipped.fusion, shipped.abstention, shipped.span_choice)
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
        "validation_figures_by_sentences_read": read_deeper,
        "abstention_by_fit_share_answered": trade_off,
    }
