"""Validation measures the artifact at the batch it is deployed at (issue 20): a dynamically
quantized model computes its activation scales over the whole batch, so its outputs at batch 64
are not the ones a device running batch 1 gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.backends.onnxruntime.validate import validate
from edgeopt.data.npz import read_npz
from edgeopt.models.spec import InputSpec

REPO = Path(__file__).resolve().parents[3]


def test_a_dynamic_int8_models_reported_accuracy_is_its_batch_1_accuracy(example_build, tmp_path):
    fp32 = Path(example_build["artifacts"]["onnx_fp32"])
    # 128 of the 500 samples: two batches of 64, each sample also run alone (the check is the batch, not the size)
    evaluation = read_npz(REPO / "calibration" / "digits_eval.npz",
                          [InputSpec(name="image", shape=(1, 1, 32, 32))]).subset(128)
    int8 = tmp_path / "dynamic.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)

    session = runtime.session(int8, threads=1)
    at_1 = np.concatenate([session.run(None, evaluation.batch(i, i + 1))[0] for i in range(len(evaluation))])
    at_64 = runtime.run_all(session, evaluation, 64)[0]
    assert np.abs(at_64 - at_1).max() > 1e-4  # the batch changes the computation: the check below can fail

    result = validate(fp32, int8, evaluation, "classification", latency_on_host=False, threads=1)
    assert result.batch == 1
    assert result.int8.accuracy == float((at_1.argmax(axis=1) == evaluation.labels).mean())
    reference = runtime.run_all(runtime.session(fp32, threads=1), evaluation)[0]
    assert result.int8.agreement == float((at_1.argmax(axis=1) == reference.argmax(axis=1)).mean())
