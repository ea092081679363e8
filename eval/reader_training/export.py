"""The trained model as the package ships it: ONNX (fp32), then the 8-bit file rag.reader runs.

`export_reader` is the one place the shipped format is decided: eval/reader_quantization.py's
`quantize_reader` (7-bit weights, whose integer products no CPU can saturate).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.internals import reader as R
from eval.reader_quantization import quantize_reader


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
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Wrapped(model), inputs, str(path), input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["start_logits", "end_logits"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "start_logits": axes, "end_logits": axes},
        opset_version=17, dynamo=False,
    )


def export_reader(fp32_onnx: Path, out: Path) -> None:
    """The shipped reader at `out`, from the fp32 export, in the format whose integer products no
    CPU can saturate (eval/reader_quantization.py, docs/reader-arithmetic.md)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_reader(fp32_onnx, out)


def onnx_reader(path: Path):
    """A function question, windows → readings, running the ONNX file at `path` as rag.reader does."""
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
        if not windows:
            continue
        a, b = fp32_read(question.text, windows), int8_read(question.text, windows)
        diffs += [abs(x.has_answer - y.has_answer) for x, y in zip(a, b)]
        top_a = int(np.argmax([x.has_answer for x in a]))
        top_b = int(np.argmax([y.has_answer for y in b]))
        same_top.append(top_a == top_b)
        same_span.append((a[top_a].start, a[top_a].end) == (b[top_a].start, b[top_a].end))
    return {"questions": len(same_top), "has_answer_mean_abs_diff": round(float(np.mean(diffs)), 4),
            "same_top_candidate": round(float(np.mean(same_top)), 4), "same_span": round(float(np.mean(same_span)), 4)}
