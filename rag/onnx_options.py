"""Session options every ONNX model of the assistant runs with (the reader, the question encoder)."""
from __future__ import annotations


def session_options():
    """`onnxruntime.SessionOptions` whose thread pool sleeps when idle.

    By default onnxruntime's intra-op threads spin for a while after each run, waiting for more
    work. On a 2-core machine that spinning takes the CPU from whatever runs next: the HTTP
    proxy and the shard searchers of `rag serve`, or the next stage of an ask. Measured with
    `rag serve` over a 4-shard index on a 1-CPU Ray node: the front's time outside its own stages
    fell from 15-35 ms to ~10 ms a question, and an in-process ask's p50 from 132 to 116 ms
    (20 SQuAD questions each way, one run).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
