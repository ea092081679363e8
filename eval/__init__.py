"""Evaluation and benchmarks of the assistant (`rag eval`, `rag bench`)."""
