"""Fold the decision threshold into the model: its top category is then melkit's decision.

Generic image-classifier clients (MediaPipe Tasks, the TFLite Task Library) read the labels from the
metadata and report the top category, the argmax of ``[P(nv), P(mel)]``: "mel" when P(mel) > 0.5. melkit
decides "mel" when P(mel) >= the card's threshold, so the two disagree on every image whose P(mel) lies
between 0.5 and the threshold. Shifting the two scores the softmax reads by the threshold's logit zt (mel
by -zt/2, nv by +zt/2) makes the model answer ``P'(mel) = sigmoid(z - zt)``: 0.5 is then the threshold,
the card's threshold becomes 0.5, and its ``threshold_fold`` record keeps zt, so the calibrated
``P(mel) = sigmoid(logit(P') + zt)`` is recovered exactly (melkit.core.probability).

The shift goes into the bias of the FULLY_CONNECTED that writes the scores (export.with_two_scores), in
place in the flatbuffer:

* int8/uint8 scores on a grid aligned to the threshold (decision_grid.py): zt = n s for an odd n = 2m+1
  and the scores' step s, and the unfolded model answers z = 2 s k. The mel score moves down by m+1 whole
  steps and the nv score up by m (in the int32 bias: a step of channel c is s / (s_in * s_w[c])), so
  ``q_mel - q_nv = 2k - 2m - 1``: always odd, never a tie, folded logit exactly ``z - zt``, and "mel" iff
  k >= m+1, the unfolded decision. The two output probabilities are then at least one scores step apart
  and never round to the same level, so argmax equals ``P'(mel) >= 0.5``. The int32 shift is rounded to
  the accumulator's unit (about 1/600 of a step for the release model): only an image whose accumulator
  lies within that of a switching point can change. The shifted scores reach the int8 limits a few steps
  earlier on one side, so only probabilities already within about 0.003 of 0 or 1 change.
* float scores (float32, fp16, dynamic): the float bias moves by -zt/2 and +zt/2 (fp16: rounded to fp16;
  the record keeps the logit actually folded).
* anything else (no aligned grid: --no-align-threshold, a grid QAT left off-centre; other heads) is left
  unfolded, with the reason: a fold that does not reproduce melkit's decision would be worse than none.
"""

from __future__ import annotations

import math

import numpy as np

from melkit.convert.decision_grid import _softmax_io, threshold_logit
from melkit.data.records import LABELS

GRID_TOLERANCE = 1e-4  # |zt / s - n|: an aligned grid's threshold_in_steps is odd up to float32 rounding


def _op_writing(model, graph, tensor: int):
    """(builtin code, operator) of the operator that writes ``tensor``; (None, None) for a constant or input."""
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if tensor in [int(t) for t in op.OutputsAsNumpy()]:
            code = model.OperatorCodes(op.OpcodeIndex())
            return max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), op
    return None, None


def _tensor_index(graph, tensor) -> int:
    name = tensor.Name()
    return next(i for i in range(graph.TensorsLength()) if graph.Tensors(i).Name() == name)


def _constant(model, graph, index: int, dtypes: dict):
    """(writable numpy view of a constant tensor's data, its tensor) following one DEQUANTIZE (fp16
    weights); (None, reason) when it is not a constant of one of ``dtypes`` (TensorType -> numpy dtype)
    held in its own buffer."""
    from tensorflow.lite.python import schema_py_generated as schema  # TensorFlow: imported when first needed

    tensor = graph.Tensors(index)
    kind, op = _op_writing(model, graph, index)
    if kind == schema.BuiltinOperator.DEQUANTIZE:
        index = int(op.Inputs(0))
        tensor = graph.Tensors(index)
    if tensor.Type() not in dtypes:
        return None, f"bias type {tensor.Type()} not handled"
    sharing = [i for i in range(graph.TensorsLength()) if graph.Tensors(i).Buffer() == tensor.Buffer()]
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if len(sharing) != 1 or not isinstance(data, np.ndarray) or data.size == 0:
        return None, "the bias is not a constant in its own buffer"
    return data.view(dtypes[tensor.Type()]), tensor


def fold_threshold(data: bytes, threshold: float, grid: dict | None) -> tuple[bytes, dict]:
    """(model bytes, record). ``record["folded"]`` says whether the threshold was folded; when it was, the
    record is the card's ``threshold_fold``, else ``reason`` says why not and the bytes are unchanged."""
    from tensorflow.lite.python import schema_py_generated as schema  # TensorFlow: imported when first needed

    T = schema.TensorType
    buf = bytearray(data)
    model = schema.Model.GetRootAs(buf, 0)
    graph = model.Subgraphs(0)
    scores, _ = _softmax_io(model)
    if scores is None or scores.ShapeAsNumpy()[-1] != 2:
        return data, {"folded": False, "reason": "no two-score softmax"}
    kind, fc = _op_writing(model, graph, _tensor_index(graph, scores))
    if kind != schema.BuiltinOperator.FULLY_CONNECTED or fc.InputsLength() < 3 or fc.Inputs(2) < 0:
        return data, {"folded": False, "reason": "the scores are not written by a fully-connected layer with bias"}
    mel, nv = LABELS.index("mel"), LABELS.index("nv")
    zt = threshold_logit(threshold)
    if scores.Type() == T.FLOAT32:
        bias, tensor = _constant(model, graph, int(fc.Inputs(2)), {T.FLOAT32: np.float32, T.FLOAT16: np.float16})
        if bias is None:
            return data, {"folded": False, "reason": tensor}
        before = bias.astype(np.float64)
        bias[mel] = before[mel] - zt / 2
        bias[nv] = before[nv] + zt / 2
        after = bias.astype(np.float64)
        folded = (before[mel] - after[mel]) + (after[nv] - before[nv])  # the logit actually subtracted
        return bytes(buf), {"folded": True, "threshold": float(threshold), "logit": float(folded),
                            "method": f"{np.dtype(bias.dtype).name} bias of the two-score layer shifted by "
                                      "-logit/2 (mel) and +logit/2 (nv)"}
    if scores.Type() not in (T.INT8, T.UINT8):
        return data, {"folded": False, "reason": "scores neither float nor int8/uint8"}
    if not grid:
        return data, {"folded": False, "reason": "int8 scores without a grid aligned to the threshold "
                                                 "(--no-align-threshold): a fold would not be exact"}
    s = float(scores.Quantization().ScaleAsNumpy()[0])
    n = zt / s
    odd = round(n)
    if odd % 2 == 0 or abs(n - odd) > GRID_TOLERANCE:
        return data, {"folded": False, "reason": f"the threshold is {n:.4f} scores steps, not an odd whole number"}
    bias, tensor = _constant(model, graph, int(fc.Inputs(2)), {T.INT32: np.int32})
    if bias is None:
        return data, {"folded": False, "reason": tensor}
    q = tensor.Quantization()
    bias_scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
    if bias_scale is None or len(bias_scale) not in (1, 2):
        return data, {"folded": False, "reason": "the int32 bias has no per-tensor or per-channel scale"}
    weights, _ = _constant(model, graph, int(fc.Inputs(1)), {T.INT8: np.int8})
    weights = None if weights is None else weights.reshape(2, -1).astype(np.int32)
    if weights is None or (weights[mel] != -weights[nv]).any() or int(bias[mel]) != -int(bias[nv]) or \
            len(set(bias_scale.tolist())) != 1:
        # The proof needs q_nv = -q_mel: the folded two-score layer guarantees it after post-training
        # quantization; QAT can let the two rows drift apart.
        return data, {"folded": False, "reason": "the int8 scores are not exact negatives of each other (QAT?): "
                                                 "a fold could tie or flip decisions"}
    steps = {mel: -math.ceil(odd / 2), nv: -math.ceil(odd / 2) + odd}  # mel -(m+1), nv +m: they add up to -n
    units = {c: float(bias_scale[c if len(bias_scale) == 2 else 0]) for c in (mel, nv)}
    shift = {c: int(round(steps[c] * s / units[c])) for c in (mel, nv)}
    new = {c: int(bias[c]) + shift[c] for c in (mel, nv)}
    if any(not -2**31 <= v < 2**31 for v in new.values()):
        return data, {"folded": False, "reason": "the shifted int32 bias would overflow"}
    for c in (mel, nv):
        bias[c] = new[c]
    return bytes(buf), {"folded": True, "threshold": float(threshold), "logit": float(odd * s),
                        "method": "int32 bias of the two-score layer shifted by whole steps of the int8 scores",
                        "scores_scale": s, "steps": {"mel": steps[mel], "nv": steps[nv]},
                        "rounding": max(abs(shift[c] - steps[c] * s / units[c]) * units[c] / s for c in (mel, nv))}
