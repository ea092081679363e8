"""The reader's quantization: integer products that cannot saturate on any CPU.

`quantize_dynamic` (onnxruntime) writes `MatMulInteger` nodes: activations quantized to uint8 at
run time (0..255), multiplied by int8 weights in integers. How the CPU multiplies them differs.
With AVX-512 VNNI (or AVX-VNNI) each product is accumulated in 32 bits, exactly. With AVX2 alone
(many laptops, AMD EPYC before Zen 4) onnxruntime's u8 × s8 kernels add each pair of products in
16 bits with saturation (`vpmaddubsw`): 2 · 255 · 127 = 64,770 does not fit in 32,767, so a pair
of large activations times large weights is clipped. The int8 reader clipped 4,880 of the 207
million pair sums of one window and read "March of the same year" on such a CPU, where VNNI reads
"March of the same year they signed a peace treaty" (`avx2_evaluator` replays both on any CPU).

The shipped format requantizes the weights to ±64 (`REDUCED_RANGE`, onnxruntime's `reduce_range`
for int8), per output column as before. A pair sum is then at most 2 · 255 · 64 = 32,640, inside
16 bits, so every kernel (VNNI, AVX2, AVX-512BW, SSE, ARM) computes the same exact integers. The
file stays 23 MB and as fast as the int8 model; `largest_pair_sum` checks the bound on a graph as
shipped and as onnxruntime optimizes it on this CPU (its fusions change per CPU, the weights not).

What stays CPU-dependent is the float arithmetic around the products (sums in another order):
a last-bit difference can move an activation across a quantization step. The alternative,
`to_float`, removes activation quantization altogether (8-bit weights dequantized in the graph,
float32 products, the same on every CPU to ~1e-5), at 2.3 times the reader's CPU time: measured
in docs/reader-arithmetic.md, with the commands.

    python -m eval.reader_quantization --convert rag/models/reader/model.onnx

converts the shipped int8 model in place and re-records the model's sha256, size and reference
readings in reader.json beside it. `quantize_reader` is what training calls on a fresh fp32 export.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

# Operators that multiply or add quantized integers, whose kernels differ between CPUs (standard
# ONNX and onnxruntime's contrib ops, as written by its quantizer or by its graph optimizer).
INTEGER_ARITHMETIC = frozenset({
    "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    "QGemm", "QAttention", "QEmbedLayerNormalization", "DynamicQuantizeLSTM", "MatMulNBits", "MatMulBnb4", "QOrderedMatMul",
    "QOrderedAttention", "QOrderedGelu", "QOrderedLayerNormalization", "QOrderedLongformerAttention",
})
# Operators that quantize activations at run time: an integer product is what they are for.
ACTIVATION_QUANTIZATION = frozenset({"DynamicQuantizeLinear", "QuantizeLinear"})


def portability_problems(model) -> list[str]:
    """The nodes of `model` (an `onnx.ModelProto`) whose arithmetic depends on the CPU: integer
    matrix products, and quantization of activations. Empty for a model that computes in floats.

    >>> import onnx
    >>> from onnx import helper
    >>> node = helper.make_node("MatMulInteger", ["a", "b"], ["c"], name="mm")
    >>> graph = helper.make_graph([node], "g", [], [])
    >>> portability_problems(helper.make_model(graph))
    ['mm (MatMulInteger)']
    """
    return [f"{node.name} ({node.op_type})" for node in model.graph.node
            if node.op_type in INTEGER_ARITHMETIC or node.op_type in ACTIVATION_QUANTIZATION
            or node.op_type.startswith("QLinear")]


def to_float(int8_onnx: Path, out: Path) -> None:
    """Rewrite a `quantize_dynamic` model (`MatMulInteger` with per-tensor or per-channel int8
    weights) into the float alternative: the same 8-bit weights, dequantized in the graph and
    multiplied in floats, no activation quantization. The embedding tables' `Gather →
    DequantizeLinear` stay as they are (elementwise arithmetic).

    The form matters: `DequantizeLinear → MatMul` is what onnxruntime's optimizer fuses into
    `MatMulNBits`, which (at its default accuracy level) quantizes the activations to int8 again;
    `Cast(int8 → float) · scale` is folded into a float32 weight when the model loads.

    Raises ValueError when the graph holds a `MatMulInteger` that is not `quantize_dynamic`'s
    pattern, or when integer arithmetic is left after the rewrite."""
    import onnx

    model = onnx.load(str(int8_onnx))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    replaced: dict[int, list] = {}  # id of a node → the nodes that take its place
    for node in graph.node:
        if node.op_type == "MatMulInteger":
            replaced[id(node)], rescale = _float_matmul(node, initializers, producer, consumers)
            replaced[id(rescale)] = []  # the float product takes its output's name
    rewritten = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(_without_unused(rewritten, {o.name for o in graph.output}))
    read = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)

    problems = portability_problems(model)
    if problems:
        raise ValueError(f"{int8_onnx}: integer arithmetic left after the conversion: {', '.join(problems[:5])}")
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))


def _without_unused(nodes: list, outputs: set[str]) -> list:
    """`nodes` less those whose outputs nothing reads (the activations' quantization and the
    rescaling that the float products replace), repeated until none is left."""
    while True:
        read = {name for node in nodes for name in node.input} | outputs
        kept = [node for node in nodes if any(o in read for o in node.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def _float_matmul(node, initializers, producer, consumers) -> tuple[list, object]:
    """The nodes replacing one `quantize_dynamic` product, and the node whose output they write
    instead (the rescaled product: what read it reads the float product).

    quantize_dynamic writes, for y = x · W:
        x_q, x_scale, x_zero = DynamicQuantizeLinear(x)
        y_int = MatMulInteger(x_q, W_q, x_zero, W_zero);  y_float = Cast(y_int)
        y = Mul(y_float, Mul(x_scale, W_scale))
    which becomes y = MatMul(x, Mul(Cast(W_q - W_zero), W_scale)); the weight's subgraph is made of
    initializers only, so onnxruntime folds it into one float32 weight at load."""
    from onnx import TensorProto, helper, numpy_helper

    def fail(why: str) -> ValueError:
        return ValueError(f"{node.name}: not quantize_dynamic's MatMulInteger pattern ({why})")

    x_q, w_q, _x_zero, w_zero = (list(node.input) + ["", ""])[:4]
    quantizer = producer.get(x_q)
    if quantizer is None or quantizer.op_type != "DynamicQuantizeLinear":
        raise fail("its activation is not quantized by DynamicQuantizeLinear")
    if w_q not in initializers:
        raise fail("its weight is not an initializer")
    (cast,) = consumers[node.output[0]]
    if cast.op_type != "Cast":
        raise fail("its product is not cast to float")
    (rescale,) = consumers[cast.output[0]]
    w_scale = _weight_scale(node, initializers, producer, consumers)

    weight = node.name + "_weight"
    nodes = []
    if w_zero and np.any(numpy_helper.to_array(initializers[w_zero])):
        # Asymmetric weights (not what the reader's per-channel int8 has): subtract the zero point
        # in floats, which is exact for 8-bit values.
        nodes.append(helper.make_node("Cast", [w_zero], [weight + "_zero"], to=TensorProto.FLOAT, name=weight + "_zero"))
        nodes.append(helper.make_node("Cast", [w_q], [weight + "_q"], to=TensorProto.FLOAT, name=weight + "_cast"))
        nodes.append(helper.make_node("Sub", [weight + "_q", weight + "_zero"], [weight + "_centred"], name=weight + "_centre"))
        source = weight + "_centred"
    else:
        nodes.append(helper.make_node("Cast", [w_q], [weight + "_centred"], to=TensorProto.FLOAT, name=weight + "_cast"))
        source = weight + "_centred"
    # Per-channel scales (one per output column) broadcast along the rows of W (K × N).
    nodes.append(helper.make_node("Mul", [source, w_scale], [weight], name=weight + "_scale"))
    nodes.append(helper.make_node("MatMul", [quantizer.input[0], weight], list(rescale.output), name=node.name.removesuffix("_quant")))
    return nodes, rescale


# Weights within ±64 (onnxruntime's `reduce_range` for int8): a pair of u8 × s8 products is then
# at most 2 · 255 · 64 = 32,640, which the 16-bit sum of `vpmaddubsw` holds (32,767).
REDUCED_RANGE = 64
INT16_MAX = 32767


def largest_pair_sum(model) -> int | None:
    """The largest |a·b + a'·b'| any integer product of `model` can form from uint8 activations
    (≤ 255) and its int8 weights: what an AVX2 kernel adds in 16 bits. None when an integer
    product's weight is not an initializer with zero point 0 (the bound is then unknown)."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    largest = 0
    for node in model.graph.node:
        if node.op_type not in INTEGER_ARITHMETIC:
            continue
        weights = [numpy_helper.to_array(initializers[name]) for name in node.input if name in initializers]
        quantized = [w for w in weights if w.dtype == np.int8 and w.ndim == 2]
        zeros = [w for w in weights if w.dtype == np.int8 and w.ndim < 2]
        if len(quantized) != 1 or any(np.any(z) for z in zeros):
            return None
        largest = max(largest, 2 * 255 * int(np.abs(quantized[0].astype(np.int32)).max()))
    return largest


def cannot_saturate(model) -> bool:
    """No pair of integer products in `model` can overflow a 16-bit sum (true of a model with no
    integer products at all)."""
    bound = largest_pair_sum(model)
    return bound is not None and bound <= INT16_MAX


def reduce_range(int8_onnx: Path, out: Path) -> None:
    """Requantize a `quantize_dynamic` model's symmetric int8 weights to ±REDUCED_RANGE (7 bits),
    per column as they were quantized: the integer products stay, and can no longer saturate."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(int8_onnx))
    initializers = {i.name: i for i in model.graph.initializer}
    producer = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        _, w_name, _, zero_name = (list(node.input) + ["", ""])[:4]
        scale_name = _weight_scale(node, initializers, producer, consumers)
        weights = numpy_helper.to_array(initializers[w_name]).astype(np.float64)
        if zero_name and np.any(numpy_helper.to_array(initializers[zero_name])):
            raise ValueError(f"{node.name}: asymmetric weights (a zero point other than 0); requantize from fp32 instead")
        scale = numpy_helper.to_array(initializers[scale_name]).astype(np.float64)
        largest = np.abs(weights).max(axis=0) if scale.ndim else np.abs(weights).max()
        factor = np.where(largest > 0, REDUCED_RANGE / np.maximum(largest, 1), 1.0)
        reduced = np.clip(np.round(weights * factor), -REDUCED_RANGE, REDUCED_RANGE).astype(np.int8)
        initializers[w_name].CopyFrom(numpy_helper.from_array(reduced, w_name))
        initializers[scale_name].CopyFrom(numpy_helper.from_array((scale / factor).astype(np.float32), scale_name))
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    _check_bound(out)


def _weight_scale(node, initializers, producer, consumers) -> str:
    """The initializer holding the scale(s) of a `quantize_dynamic` MatMulInteger's weight: the
    product is cast to float and multiplied by (activation scale × weight scale)."""
    (cast,) = consumers[node.output[0]]
    (rescale,) = consumers[cast.output[0]]
    scales = producer.get(next((i for i in rescale.input if i != cast.output[0]), ""))
    w_scale = next((i for i in scales.input if i in initializers), None) if scales is not None else None
    if cast.op_type != "Cast" or rescale.op_type != "Mul" or scales is None or scales.op_type != "Mul" or w_scale is None:
        raise ValueError(f"{node.name}: not quantize_dynamic's MatMulInteger pattern (its product is not rescaled "
                         "by activation scale × weight scale)")
    return w_scale


def quantize_reader(fp32_onnx: Path, out: Path) -> None:
    """What training calls on a fresh fp32 export: onnxruntime's dynamic quantization with
    per-channel scales (as the reader was always quantized) and weights within ±REDUCED_RANGE,
    so that no pair of products can saturate a 16-bit sum on any CPU."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel scales: with one scale per weight matrix, the int8 model's has-answer margin
    # was 0.81 from the fp32 model's on average and its top candidate the same for 68% of 40
    # validation questions; per channel, 0.33 and 80% (same span: 98% against 75%).
    quantize_dynamic(str(fp32_onnx), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    _check_bound(out)


def _check_bound(model_path: Path) -> None:
    import onnx

    model = onnx.load(str(model_path))
    if not cannot_saturate(model):
        bound = largest_pair_sum(model)
        raise ValueError(f"{model_path}: a pair of u8 × s8 products can reach {bound}, over the {INT16_MAX} of a 16-bit sum")


def optimized_graph(model_path: Path):
    """The graph onnxruntime runs for `model_path` on this CPU, after its optimizations (its
    fusions are chosen per CPU, so this is what to check, beside the file itself)."""
    import onnx
    import onnxruntime

    from .internals import reader as R

    with tempfile.TemporaryDirectory(prefix="reader-optimized-") as temporary:
        options = R.session_options()
        options.optimized_model_filepath = str(Path(temporary) / "optimized.onnx")
        # The warning that the optimized file is meant for this machine only is the point here.
        options.log_severity_level = 3
        onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


# -- the arithmetic of two CPUs, replayed on any -------------------------------------------------


def _raise_opset_for_reference(model) -> None:
    """onnx's reference evaluator implements `DequantizeLinear` (the embedding tables) from opset
    19 on; the reader's opset 17 is raised to 19 for it, which changes nothing the graph uses
    (opset 19 added float8 types)."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 19:
            opset.version = 19


def avx2_evaluator(model_path: Path, *, saturating: bool):
    """onnx's reference evaluator on the graph at `model_path`, its `MatMulInteger` computed as
    onnxruntime's AVX2 kernels do when `saturating` (each pair of u8 × s8 products added in 16
    bits with saturation, `vpmaddubsw`, then summed in 32 bits) or exactly (AVX-512 VNNI) when not.
    The same graph on two CPUs, evaluated on any: equal outputs show that no pair saturates."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class MatMulInteger(OpRun):
        def _run(self, a, b, a_zero_point=None, b_zero_point=None):  # type: ignore[override]
            k = a.shape[-1]
            rows = a.reshape(-1, k).astype(np.int64)
            w = b.astype(np.int64)
            if k % 2:  # the kernels pad K to pairs with zeros
                rows = np.concatenate([rows, np.zeros((len(rows), 1), np.int64)], axis=1)
                w = np.concatenate([w, np.zeros((1, w.shape[1]), np.int64)], axis=0)
            if saturating:
                product = np.empty((len(rows), w.shape[1]), np.int64)
                for start in range(0, len(rows), 16):  # 16 rows at a time: a row's pairs are K/2 × N
                    x = rows[start:start + 16]
                    pairs = x[:, 0::2, None] * w[None, 0::2] + x[:, 1::2, None] * w[None, 1::2]
                    product[start:start + 16] = np.clip(pairs, -INT16_MAX - 1, INT16_MAX).sum(axis=1)
            else:
                product = rows @ w
            product = product.reshape(a.shape[:-1] + (w.shape[1],))
            # Zero points enter as sums of the raw operands (exact, 32-bit), as the kernels apply them.
            za = np.int64(a_zero_point) if a_zero_point is not None else np.int64(0)
            zb = b_zero_point.astype(np.int64) if b_zero_point is not None else np.int64(0)
            product = product - za * b.astype(np.int64).sum(axis=0) - zb * a.astype(np.int64).sum(axis=-1, keepdims=True) + k * za * zb
            return (product.astype(np.int32),)

    model = onnx.load(str(model_path))
    _raise_opset_for_reference(model)
    return ReferenceEvaluator(model, new_ops=[MatMulInteger])


# -- reader.json ---------------------------------------------------------------------------------


def rerecord(model_path: Path, metadata_path: Path) -> list[str]:
    """Record `model_path`'s sha256, size and reference readings in `metadata_path` (the readings
    the test suite checks the shipped model against). Returns what changed in the readings."""
    from .internals import reader as R

    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    metadata["model_sha256"] = R.sha256(model_path)
    metadata["model_bytes"] = model_path.stat().st_size
    metadata["reference"], changes = reference_readings(model_path, metadata["reference"])
    metadata_path.write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changes


def reference_readings(model_path: Path, cases: Iterable[dict]) -> tuple[list[dict], list[str]]:
    """`cases` (reader.json's reference readings) read again by the model at `model_path`, and
    a line for each reading that changed."""
    from .internals import reader as R

    session = R._session(str(model_path))
    readings, changes = [], []
    for case in cases:
        window = R.window(case["previous"], case["sentence"], case["following"])
        encoded = R.encode(case["question"], [window])
        start, end = session.run(["start_logits", "end_logits"], {
            "input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask,
            "token_type_ids": encoded.token_type_ids})
        (reading,) = R.decode(start, end, encoded, [window])
        new = {**case, "span": case["sentence"][reading.start:reading.end], "has_answer": round(reading.has_answer, 4)}
        if (new["span"], new["has_answer"]) != (case["span"], case["has_answer"]):
            changes.append(f"{case['question']!r}: {case['span']!r} ({case['has_answer']}) → {new['span']!r} ({new['has_answer']})")
        readings.append(new)
    return readings, changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.reader_quantization", description=__doc__.split("\n\n")[0])
    parser.add_argument("--convert", type=Path, required=True, metavar="MODEL",
                        help="an int8 model from quantize_dynamic (e.g. rag/models/reader/model.onnx)")
    parser.add_argument("--float", action="store_true", help="the float alternative (to_float) instead of 7-bit weights")
    parser.add_argument("--out", type=Path, help="where to write the converted model (default: in place, and "
                        "reader.json beside it re-records the model's sha256, size and reference readings)")
    args = parser.parse_args(argv)
    if not args.convert.is_file():
        print(f"reader_quantization: error: {args.convert} does not exist", file=sys.stderr)
        return 2
    import onnx

    model = onnx.load(str(args.convert))
    if cannot_saturate(model) and not (args.float and portability_problems(model)):
        print(f"reader_quantization: {args.convert} is converted already; nothing to do", file=sys.stderr)
        return 0
    out = args.out or args.convert
    try:
        (to_float if args.float else reduce_range)(args.convert, out)
    except ValueError as error:
        print(f"reader_quantization: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    # onnxruntime chooses its fusions per CPU: check what it runs here too.
    optimized = optimized_graph(out)
    if not cannot_saturate(optimized) or (args.float and portability_problems(optimized)):
        print(f"reader_quantization: error: onnxruntime on this CPU runs {out} with integer products that may saturate "
              f"or with quantized activations: {', '.join(portability_problems(optimized)[:5])}", file=sys.stderr)
        return 1
    metadata = out.with_name("reader.json")
    if args.out is None and metadata.is_file():
        changes = rerecord(out, metadata)
        print(f"re-recorded {metadata}: sha256, size and {len(changes)} changed reference reading(s)", file=sys.stderr)
        for change in changes:
            print(f"  {change}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
