"""ReLU6-aware activation range equalisation before int8 conversion.

TFLite quantizes each activation tensor with one scale for all its channels. In MobileNetV2 the ReLU6
outputs of the expand and depthwise convolutions share the range [0, 6], but on dermoscopy images many
channels only ever reach a small fraction of it: those channels keep a few int8 levels, and their rounding
noise, amplified by the next convolution, flips decisions.

For a channel c whose largest observed value is m_c, multiplying the BatchNorm before the ReLU6 by
s_c = 6 / (margin * m_c) and dividing the next layer's input channel c by s_c leaves the float function the
same wherever s_c * value stays under 6 (ReLU6 commutes with a positive scale below its cap), while the
channel now spans most of the int8 range. ``margin`` keeps room above the calibration maximum for unseen
images; beyond it the scaled channel is clipped a little earlier than the original. The next layer must be
linear per input channel: a 1x1/kxk Conv2D or a DepthwiseConv2D, possibly behind a ZeroPadding2D (zero
padding commutes with scaling). The float reference model is never changed: this works on a copy.

Most of what this buys is in the *weights*, not the activations (``benchmarks/int8_error_sources.py``
simulates int8 weights alone, with float activations): a ReLU6 channel with small activations tends to meet
large weights in the next 1x1 convolution, which then set that layer's per-channel weight scale and leave
every other input channel a few int8 steps; dividing them by s_c balances the weights as well as the
activations (the effect cross-layer equalisation is known for). What weight error is left is taken on by
``rounding.py``.
"""

from __future__ import annotations

import numpy as np

from melkit.convert.graph import producer, single_consumer
from melkit.convert.probe import layer_batches

RELU6_CAP = 6.0
MAX_SCALE = 64.0  # channels that are (almost) always zero are left alone beyond this


def PASS_THROUGH(L):  # noqa: N802 - a tuple of classes, built lazily (TensorFlow imports late)
    return (L.ZeroPadding2D, L.GlobalAveragePooling2D, L.Dropout)


def equalizable_pairs(model) -> list:
    """(BatchNorm, ReLU6, consumer conv) triples that can be rescaled without changing the float model."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    L = keras.layers
    pairs = []
    for relu in model.layers:
        if not isinstance(relu, L.ReLU) or relu.max_value is None or float(relu.max_value) != RELU6_CAP:
            continue
        if relu.negative_slope != 0 or relu.threshold != 0:
            continue
        bn = producer(relu)
        if not isinstance(bn, L.BatchNormalization) or not (bn.scale and bn.center) or len(bn._outbound_nodes) != 1:
            continue
        nxt = single_consumer(relu)
        # Layers that commute with a positive per-channel scale may sit in between (padding, pooling, dropout).
        while isinstance(nxt, PASS_THROUGH(L)) and len(nxt._outbound_nodes) == 1:
            nxt = single_consumer(nxt)
        linear_per_channel = (isinstance(nxt, (L.DepthwiseConv2D, L.Dense))
                              or (isinstance(nxt, L.Conv2D) and nxt.groups == 1))
        if linear_per_channel:
            pairs.append((bn, relu, nxt))
    return pairs


def _channel_max(model, relus, images_q) -> list:
    highs = [np.zeros(r.output.shape[-1], np.float64) for r in relus]
    for outs in layer_batches(model, relus, images_q, desc="range equalisation"):
        for i, y in enumerate(outs):
            highs[i] = np.maximum(highs[i], y.reshape(-1, y.shape[-1]).max(axis=0))
    return highs


def equalize_activation_ranges(model, images_q, margin: float):
    """A copy of ``model`` with its ReLU6 channel ranges equalised on ``images_q``; returns (copy, n_layers)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    if margin < 1.0:
        raise ValueError("margin must be >= 1 (below 1 the float model would clip on the calibration images)")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    pairs = equalizable_pairs(copy)
    if not pairs:
        return copy, 0
    highs = _channel_max(copy, [relu for _, relu, _ in pairs], images_q)
    for (bn, _, conv), high in zip(pairs, highs):
        # Only scale up: channels already near the cap stay as they are.
        s = np.clip(RELU6_CAP / (np.maximum(high, 1e-12) * margin), 1.0, MAX_SCALE).astype(np.float32)
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * s, beta * s, mean, var])
        weights = conv.get_weights()
        if weights[0].ndim == 2:  # Dense (cin, cout), behind the global average pool
            weights[0] = weights[0] / s[:, None]
        else:  # Conv2D (kh,kw,cin,cout); depthwise (kh,kw,c,mult)
            weights[0] = weights[0] / s[None, None, :, None]
        conv.set_weights(weights)
    return copy, len(pairs)
