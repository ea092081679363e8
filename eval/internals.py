"""White-box access for the benchmarks: the ONE module of `eval/` and `ui/` that imports modules
inside the `rag` package (everything else uses what `rag/__init__.py` exports).

Why they are needed: some figures are of a part, not of the whole, and the public API rightly
has no entry point for a part:

- the search-at-scale table times dense search (`vectors`), BM25 alone (`Retriever`'s lexical
  search) and exact search on synthetic indexes written with `store.write` from synthetic
  passages (`passage_id`, `SourceRecord`, `terms`), without embedding millions of sentences;
- the ANN sweep builds flat and IVF indexes of synthetic vectors (`vectors`) and searches them as
  deep as retrieval does (`CANDIDATES`);
- the bare encodes every speed is compared with use the pipeline's batch size (`BATCH_SIZE`);
- `rag bench --cold` times the torch question path that the ONNX export replaced
  (`torch_question_assistant`);
- `rag bench --ray` times the cluster's parts (`embed_on_ray`, the Serve app, passages split as
  an index splits them);
- eval/pdf_extractors.py measures what rag's PDF reader removes (`pdf`, `pdftext`, `clean_pdf_text`);
- `rag eval squad --held-out` reads which articles the learned reader was validated on
  (`READER_METADATA`).

Keep it to imports and small adapters: a benchmark's logic stays in its own module.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag import pdftext, store, vectors
from rag.documents import collect
from rag.embedding import BATCH_SIZE
from rag.formats import _clean as clean_pdf_text
from rag.formats import pdf
from rag.reader import METADATA_FILE as READER_METADATA
from rag.retrieval import CANDIDATES, Retriever
from rag.splitting import passage_id, split_document
from rag.store import SourceRecord
from rag.text import terms

if TYPE_CHECKING:
    from rag import Assistant

__all__ = [
    "BATCH_SIZE", "CANDIDATES", "READER_METADATA", "Retriever", "SourceRecord", "clean_pdf_text", "collect",
    "embed_on_ray", "pdf", "pdftext", "passage_id", "serve_app", "split_document", "store", "terms",
    "torch_question_assistant", "vectors",
]


def torch_question_assistant(index_dir: Path) -> "Assistant":
    """The index at `index_dir` opened as `rag ask` opened it before the ONNX question model:
    questions embedded by torch. Built without `Assistant.open`, which would also load the ONNX
    question model in the background."""
    from rag import Assistant, Embedder

    data = store.load(index_dir)
    return Assistant(index_dir, data, Embedder(data.manifest["model"], onnx_questions=False))


def embed_on_ray(texts: list[str], *, model: str, workers: int):
    """Embed `texts` with Ray Data on the connected cluster (rag.cluster.ingest; the `cluster` extra)."""
    from rag.cluster.ingest import embed_on_ray as embed

    return embed(texts, model=model, workers=workers)


def serve_app(index_dir: str):
    """The Ray Serve application of `rag serve` for `index_dir`, and the name it is run under."""
    from rag.cluster.serve import APP_NAME, build_app

    return build_app(index_dir), APP_NAME
