"""Put the decision threshold halfway between two values the int8 model can output.

The int8 model's scores ``[-z/2, z/2]`` (the tensor the softmax reads) are rounded to multiples of a scale s
that the converter takes from the calibration range, so the model can only answer logits ``z = 2 s k``, and
an image's answer switches at the odd multiples of s. Where the threshold's logit falls on that grid is
chance. If it falls next to a grid value, every image whose logit is up to s below the threshold (or above)
is rounded across it: a shift of the decision boundary, not noise.

``align_to_threshold`` sets that scale so that the threshold's logit is an odd multiple of it: a switching
point. The int8 decision is then exactly the decision of the integer accumulator before rounding. It also
spends the 256 levels where they matter: the uint8 P(mel) output cannot tell logits beyond about +-6.2
apart (they all read 0 or 1 at its step of 1/256), so any wider calibration range wastes levels. The new
scale is the finest aligned one whose range still reaches the output's saturation (or the calibrated range,
if that is narrower), so the answers near the threshold are also finer.

This relies on the two scores being exact negatives of each other in the integers, which the folded
two-score layer (``export.with_two_scores``: per-channel weights ``-W/2`` and ``W/2``) guarantees after
post-training quantization; QAT may let them drift apart a little, and the grid is then centred only
approximately. Only that tensor's scale and zero point change, in place in the flatbuffer: the
fully-connected layer that writes it and the softmax that reads it derive their integer multipliers from
them when the interpreter prepares the model, so both follow.
"""

from __future__ import annotations

import math

import numpy as np

from melkit.util.errors import BadInputError


def _softmax_io(model):
    """(input, output) tensors (flatbuffer views) of the SOFTMAX that writes the model's first output (the
    probabilities; a domain-guard model has a second one), directly or through a QUANTIZE to the output type;
    the last SOFTMAX when none does; (None, None) without one."""
    from tensorflow.lite.python import schema_py_generated as schema  # TensorFlow: imported when first needed

    graph = model.Subgraphs(0)
    softmaxes, writer = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        for t in op.OutputsAsNumpy():
            writer[int(t)] = (kind, op)
        if kind == schema.BuiltinOperator.SOFTMAX:
            softmaxes.append(op)
    if not softmaxes:
        return None, None
    chosen = softmaxes[-1]
    if graph.OutputsLength():
        kind, op = writer.get(int(graph.Outputs(0)), (None, None))
        if kind == schema.BuiltinOperator.QUANTIZE:
            kind, op = writer.get(int(op.Inputs(0)), (None, None))
        if kind == schema.BuiltinOperator.SOFTMAX:
            chosen = op
    return graph.Tensors(chosen.Inputs(0)), graph.Tensors(chosen.Outputs(0))


def threshold_logit(threshold: float) -> float:
    if not 0 < threshold < 1:
        raise BadInputError(f"threshold {threshold} must be strictly between 0 and 1")
    return math.log(threshold / (1 - threshold))


def saturating_logit(output_scale: float) -> float:
    """The largest |logit| a softmax output quantized with this step still tells apart from its limit."""
    return threshold_logit(1 - output_scale / 2)


def aligned_scale(scale: float, z_threshold: float) -> float | None:
    """The smallest scale >= ``scale`` with ``|z_threshold|`` an odd multiple of it.

    None when the threshold's logit is within one step of 0 (P(mel) = 0.5 +- a few thousandths): no odd
    multiple of a scale that wide reaches it.
    """
    a = abs(z_threshold)
    return a / (2 * math.floor((a / scale - 1) / 2) + 1) if a >= scale else None


def align_to_threshold(data: bytes, threshold: float) -> tuple[bytes, dict | None]:
    """(model bytes, what was changed) with the scores' grid narrowed and aligned to the threshold.

    Models whose softmax does not read a per-tensor int8/uint8 pair of scores and write a quantized output
    (float models, other heads) come back unchanged with None.
    """
    from tensorflow.lite.python import schema_py_generated as schema  # TensorFlow: imported when first needed

    buf = bytearray(data)
    scores, probs = _softmax_io(schema.Model.GetRootAs(buf, 0))
    int8, uint8 = schema.TensorType.INT8, schema.TensorType.UINT8
    if scores is None or scores.Type() not in (int8, uint8) or scores.ShapeAsNumpy()[-1] != 2:
        return data, None
    q_in, q_out = scores.Quantization(), probs.Quantization()
    if q_in is None or q_out is None or q_in.ScaleLength() != 1 or q_out.ScaleLength() != 1:
        return data, None
    scales, zeros = q_in.ScaleAsNumpy(), q_in.ZeroPointAsNumpy()  # views into buf: writing edits the model
    before, zero_before = float(scales[0]), int(zeros[0])
    levels = 127  # each score is +-z/2 around a centred zero point: 127 steps either way
    out_step = float(q_out.ScaleAsNumpy()[0])
    z = threshold_logit(threshold)
    # The scores are +-z/2, so the range reaches |z| = 2 * levels * scale.
    wanted = min(before, saturating_logit(out_step) / (2 * levels))
    # The two answers either side of the threshold must also stay apart after the output's own rounding:
    # at least one output step from it (the softmax's lookup table is not exact to the last bit).
    if 0 < threshold - out_step and threshold + out_step < 1:
        wanted = max(wanted, threshold_logit(threshold + out_step) - z, z - threshold_logit(threshold - out_step))
    after = aligned_scale(wanted, z)
    if after is None:
        return data, None
    scales[0] = np.float32(after)
    zeros[0] = 0 if scores.Type() == int8 else 128  # symmetric: -z/2 and z/2 reach equally far
    after = float(scales[0])
    return bytes(buf), {
        "tensor": scores.Name().decode(),
        "scale_before": before,
        "zero_point_before": zero_before,
        "scale_after": after,
        "logit_range": 2 * levels * after,
        "threshold_logit": z,
        "threshold_in_steps": abs(z) / after,  # an odd integer (up to float32 rounding): a switching point
    }
