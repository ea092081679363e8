"""`python -m eval.train_reader`: train the learned reader (rag.reader) and write rag/models/reader/.

The work is done by the eval/reader_training package (one module per step; docs/training.md says
how to run it): this module is its entry point, and names what other code imports from it.
"""
from __future__ import annotations

import sys

from .reader_training.cli import main
from .reader_training.export import export, export_reader, onnx_reader
from .reader_training.figures import citation_ratios
from .reader_training.fitting import ANSWERED_SHARE, answering_threshold
from .reader_training.training import torch_reader

__all__ = ["ANSWERED_SHARE", "answering_threshold", "citation_ratios", "export", "export_reader", "main", "onnx_reader",
           "torch_reader"]

if __name__ == "__main__":
    sys.exit(main())
