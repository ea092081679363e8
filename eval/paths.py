"""Where the shared evaluation data lives: `../shared/data/` beside the repository, wherever it is cloned.

The data (SQuAD dev parts, MTRAG) is public but not ours to copy into the repository; every machine
that runs the benchmarks has it one level above the clone. `$RAG_SHARED_DATA` points elsewhere, and
each command that reads it also takes an option naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_SHARED_DATA = "RAG_SHARED_DATA"
REPOSITORY = Path(__file__).resolve().parent.parent


def shared_data(*parts: str) -> Path:
    """A path inside the shared data folder: `$RAG_SHARED_DATA`, else `../shared/data` of the repository.

    >>> shared_data("squad-v1.1-dev-part-a.json").name
    'squad-v1.1-dev-part-a.json'
    """
    root = Path(os.environ[ENV_SHARED_DATA]) if os.environ.get(ENV_SHARED_DATA) else REPOSITORY.parent / "shared" / "data"
    return root.joinpath(*parts)
