"""The reader gives the same answers on every CPU: no pair of its integer products can overflow the
16-bit sums of onnxruntime's AVX2 kernels, so the integers are exact everywhere, shown both by the
bound on its weights and by replaying the AVX2 and the VNNI arithmetic on the same windows. See
docs/reader-arithmetic.md."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag import reader

onnx = pytest.importorskip("onnx")

from eval import reader_quantization as quantization  # noqa: E402  (needs onnx)

shipped = pytest.mark.skipif(not reader.MODEL_FILE.is_file(), reason="no trained reader in rag/models/reader/ "
                             "(run `python -m eval.train_reader`)")


@shipped
def test_no_pair_of_the_shipped_readers_products_can_saturate_as_shipped_or_as_onnxruntime_runs_it():
    # uint8 activations (≤ 255) times weights within ±64: 2 · 255 · 64 = 32,640 ≤ 32,767. The int8
    # reader this replaced reached 2 · 255 · 127 = 64,770.
    assert quantization.largest_pair_sum(onnx.load(str(reader.MODEL_FILE))) == 32640
    # onnxruntime fuses per CPU (here into DynamicQuantizeMatMul and MatMulIntegerToFloat): what
    # it runs on this CPU reads the same weights.
    assert quantization.largest_pair_sum(quantization.optimized_graph(reader.MODEL_FILE)) == 32640


@shipped
def test_avx2_and_vnni_arithmetic_read_the_same_logits():
    """The same graph evaluated as an AVX2 CPU computes it (pairs of products saturated to 16
    bits) and as an AVX-512 VNNI CPU does (exact): identical to the last bit. The int8 reader read
    "March of the same year" the first way and "… they signed a peace treaty" the second."""
    case = json.loads(reader.METADATA_FILE.read_text(encoding="utf-8"))["reference"][0]
    windows = [reader.window(case["previous"], case["sentence"], case["following"])]
    encoded = reader.encode(case["question"], windows)
    feeds = {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask, "token_type_ids": encoded.token_type_ids}
    avx2 = quantization.avx2_evaluator(reader.MODEL_FILE, saturating=True).run(None, feeds)
    vnni = quantization.avx2_evaluator(reader.MODEL_FILE, saturating=False).run(None, feeds)
    for a, b in zip(avx2, vnni):
        np.testing.assert_array_equal(a, b)
    (reading,) = reader.decode(*avx2, encoded, windows)
    assert case["sentence"][reading.start:reading.end] == case["span"]


def _linear_model(path, weights: np.ndarray, bias: np.ndarray) -> None:
    """y = x · W + b in float32, the shape of every product in the reader."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xW"]), helper.make_node("Add", ["xW", "b"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _run(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_quantize_reader_writes_weights_whose_products_cannot_saturate(tmp_path):
    """What training calls on a fresh fp32 export: 8-bit per-channel weights within ±64, close
    to the fp32 model."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 48)).astype(np.float32)
    x = (rng.normal(size=(5, 64)) * 4).astype(np.float32)
    _linear_model(tmp_path / "fp32.onnx", weights, np.zeros(48, np.float32))
    quantization.quantize_reader(tmp_path / "fp32.onnx", tmp_path / "reader.onnx")

    model = onnx.load(str(tmp_path / "reader.onnx"))
    assert quantization.largest_pair_sum(model) <= quantization.INT16_MAX
    assert "W" not in {i.name for i in model.graph.initializer}  # no float copy of the weights on disk
    y = _run(tmp_path / "reader.onnx", x)
    assert np.abs(y - x @ weights).max() < 0.05 * np.abs(x @ weights).max()


def test_converting_an_int8_model_bounds_its_products_or_removes_them(tmp_path):
    """`python -m eval.reader_quantization --convert`: a quantize_dynamic int8 model in; 7-bit
    weights out (or, with --float, the same 8-bit weights multiplied in floats); a converted
    model is left alone."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(1)
    _linear_model(tmp_path / "fp32.onnx", rng.normal(size=(32, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32))
    quantize_dynamic(str(tmp_path / "fp32.onnx"), str(tmp_path / "int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    assert not quantization.cannot_saturate(onnx.load(str(tmp_path / "int8.onnx")))  # 2 · 255 · 127
    x = rng.normal(size=(3, 32)).astype(np.float32)
    int8 = _run(tmp_path / "int8.onnx", x)

    assert quantization.main(["--convert", str(tmp_path / "int8.onnx"), "--out", str(tmp_path / "7bit.onnx")]) == 0
    assert quantization.cannot_saturate(onnx.load(str(tmp_path / "7bit.onnx")))
    assert np.abs(_run(tmp_path / "7bit.onnx", x) - int8).max() < 0.05 * np.abs(int8).max()
    assert quantization.main(["--convert", str(tmp_path / "7bit.onnx")]) == 0  # nothing to do

    assert quantization.main(["--convert", str(tmp_path / "int8.onnx"), "--float", "--out", str(tmp_path / "float.onnx")]) == 0
    assert quantization.portability_problems(onnx.load(str(tmp_path / "float.onnx"))) == []
    # The same 8-bit weights, multiplied without quantizing the activations.
    np.testing.assert_allclose(_run(tmp_path / "float.onnx", x), int8, atol=0.05 * np.abs(int8).max())

    assert quantization.main(["--convert", str(tmp_path / "absent.onnx")]) == 2
