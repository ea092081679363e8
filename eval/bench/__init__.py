"""`rag bench`: the pipeline's speed and size as ratios against bare baselines, in one run.

Every row compares what we do with the unavoidable cost of doing it at all, measured on this
machine in the same run:

- indexing throughput of `Assistant.build` against a bare `SentenceTransformer.encode` of the
  very same passage texts (same model object, batch size and normalisation): our overhead;
- warm question latency p50/p95 of `Assistant.ask` against a bare encode of the question, and
  the share of an ask spent embedding, searching and extracting the answer;
- cold start of `rag ask` on an existing index against `python -c "import sentence_transformers"`;
- re-opening an unchanged index (`Assistant.build` again, and `Assistant.open`) against building
  it; the rebuild must embed nothing;
- peak memory while writing and opening an index, and its size on disk, per 10,000 passages
  against the raw float32 vectors. The memory rows use synthetic unit vectors and synthetic
  sentences written with `rag.store.write` in a fresh subprocess each, so the peaks are clean
  and no 10,000 passages need embedding.

Timings are only comparable on an otherwise idle machine: the report measures how much CPU other
processes took while each row was measured and marks a row with "!" when it was over 10%.

The corpus is the bundled sample document plus, when the shared SQuAD file exists, the contexts
of its first articles (one text file each); the report says which. Results are printed as a
table and written as JSON.

One module per job:

- `measure`: the run (`run_bench`) and the pipeline's rows: indexing, reopening, warm asks, cold start;
- `corpus`: the documents and questions indexed and asked;
- `scaling`: synthetic indexes of growing size, written and searched in fresh processes;
- `synthetic`: the synthetic vectors, questions and passages they are made of;
- `protocol`: the task a fresh process is handed (a `StoreTask`, as JSON) and its JSON reply;
- `ann_sweep`: `rag bench --ann-sweep`, exact against IVF search by size;
- `process`: CPU taken by other processes meanwhile, memory, the machine (psutil);
- `timing`: the timer, percentiles and the bare encodes;
- `report`: the rows and the printed tables.
"""
from __future__ import annotations

from .ann_sweep import run_ann_sweep
from .measure import run_bench
from .process import Watch
from .report import Row, print_report
from .synthetic import clustered_vectors, nearby_queries

__all__ = ["Row", "Watch", "clustered_vectors", "nearby_queries", "print_report", "run_ann_sweep", "run_bench"]
