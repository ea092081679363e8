"""White-box access for the benchmarks: the ONE module of `eval/` and `ui/` that imports modules
inside the `rag` package (everything else uses what `rag/__init__.py` exports).

Why they are needed: some figures are of a part, not of the whole, and the public API rightly
has no entry point for a part:

- the search-at-scale table times dense search (`vectors`), BM25 alone (`Retriever`'s lexical
  search) and exact search on synthetic indexes written with `store.write` from synthetic
  passages (`passage_id`, `SourceRecord`, `terms`), without embedding millions of sentences, and
  updates one synthetic document as `rag index` would (`columns`, `Carried`);
- the ANN sweep builds flat and IVF indexes of synthetic vectors (`vectors`) and searches them as
  deep as retrieval does (`CANDIDATES`);
- the bare encodes every speed is compared with use the pipeline's batch size (`BATCH_SIZE`);
- `rag bench --cold` times the torch question path that the ONNX export replaced
  (`torch_question_assistant`);
- `rag bench --ray` times the cluster's parts (`embed_on_ray`, the Serve app deployed as `rag serve`
  deploys it, `deploy_serve`, on a cluster set up as `rag serve` sets one up, `RAY_SYSTEM_CONFIG`;
  documents dealt one to a shard, `shard_of`; passages split as an index splits them);
- eval/pdf_extractors.py measures what rag's PDF reader removes (`pdf`, `pdftext`, `clean_pdf_text`);
- eval/ocr_compare.py gives each OCR engine the page pictures rag renders for OCR and reads them
  with rag's Tesseract call (`ocr`);
- `rag eval squad --held-out` reads which articles the learned reader was validated on
  (`READER_METADATA`);
- training the learned reader (eval/train_reader.py) encodes and decodes as `reader` does and
  mines the candidates the answerer reads (`ANSWER_CANDIDATES`), cites as it does (`cited`), and fits the
  fusion on the evidence the `Answerer` computes (`question_evidence`, also against a `Vocabulary`
  without the question's own article);
- the reader's quantization (eval/reader_quantization.py) runs and re-records the shipped reader
  as `reader` loads it (`reader`).

Keep it to imports and small adapters: a benchmark's logic stays in its own module.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag import columns, ocr, pdftext, reader, store, vectors
from rag.answering import CANDIDATES as ANSWER_CANDIDATES
from rag.answering import EXTRA_CITATION_RATIO, Answerer, cited, question_evidence
from rag.cluster import SYSTEM_CONFIG as RAY_SYSTEM_CONFIG
from rag.cluster.serve import deploy as deploy_serve
from rag.documents import collect
from rag.embedding import BATCH_SIZE
from rag.formats import _clean as clean_pdf_text
from rag.formats import pdf
from rag.reader import METADATA_FILE as READER_METADATA
from rag.retrieval import CANDIDATES, Retriever
from rag.splitting import passage_id, split_document
from rag.store import Carried, SourceRecord
from rag.text import Vocabulary, terms

if TYPE_CHECKING:
    from rag import Assistant

__all__ = [
    "ANSWER_CANDIDATES", "Answerer", "EXTRA_CITATION_RATIO", "cited", "Vocabulary", "question_evidence", "reader",
    "BATCH_SIZE", "CANDIDATES", "RAY_SYSTEM_CONFIG", "READER_METADATA", "Carried", "Retriever", "SourceRecord",
    "clean_pdf_text", "collect", "columns", "embed_on_ray", "ocr", "pdf", "pdftext", "deploy_serve", "passage_id", "shard_of",
    "split_document", "store", "terms", "torch_question_assistant", "vectors",
]


def torch_question_assistant(index_dir: Path) -> "Assistant":
    """The index at `index_dir` opened as `rag ask` opened it before the ONNX question model:
    questions embedded by torch. Built without `Assistant.open`, which would also load the ONNX
    question model in the background."""
    from rag import Assistant, Embedder

    data = store.load(index_dir)
    return Assistant(index_dir, data, Embedder(data.manifest["model"], onnx_questions=False))


def embed_on_ray(texts: list[str], *, model: str, workers: int, progress=False):
    """Embed `texts` with Ray Data on the connected cluster (rag.cluster.ingest; the `cluster` extra)."""
    from rag.cluster.ingest import embed_on_ray as embed

    return embed(texts, model=model, workers=workers, progress=progress)


def shard_of(source: str, shards: int) -> int:
    """The shard a source goes to (rag.shards): the bench deals one document to each shard."""
    from rag.shards import shard_of as place

    return place(source, shards)
