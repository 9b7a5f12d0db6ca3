"""Error-compensating int8 rounding of the 1x1 convolutions' weights, before int8 conversion.

Why: after range equalisation most of the int8 model's remaining error is *weight* rounding, not activation
rounding (``benchmarks/int8_error_sources.py`` separates the two), and the 1x1 "project" convolutions carry
nearly all of it: their 96-960 inputs share one scale per output channel.

TFLite rounds each weight to the nearest step of its output channel's scale (max |w| / 127). That is not the
best rounding for what the layer computes. Here each 1x1 convolution is rounded one input channel at a time
and the rounding error of that channel is pushed onto the channels not yet rounded, weighted by the inverse
of the input's second moments H = X^T X on the calibration images (optimal brain quantization, as in GPTQ,
Frantar et al. 2022). That keeps X @ W, the layer's output, close to float instead of each weight.

The rounded weights are written back as float weights that lie exactly on TFLite's int8 grid after the
BatchNorm folding the converter does (w * gamma / sqrt(var + eps)), and every output channel's largest weight
stays at +-127 steps, so the converter picks the same scales and its nearest rounding reproduces them. The
model it works on is a copy; the float reference is never changed.
"""

from __future__ import annotations

import numpy as np

from melkit.convert.graph import producer, single_consumer
from melkit.convert.probe import layer_batches

INT8_MAX = 127


def fold_factor(conv):
    """Per output channel factor the converter multiplies the kernel by when it folds the next BatchNorm
    (None when no BatchNorm follows)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    nxt = single_consumer(conv)
    if isinstance(nxt, keras.layers.BatchNormalization) and nxt.scale:
        gamma, _, _, var = nxt.get_weights()
        f = gamma / np.sqrt(var + nxt.epsilon)
        return np.where(np.abs(f) < 1e-12, 1e-12, f)
    return None


def pointwise_convs(model) -> list:
    """(conv, fold factor) for every 1x1, stride-1, ungrouped Conv2D with one input, followed by a BatchNorm."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    out = []
    for layer in model.layers:
        if (type(layer) is keras.layers.Conv2D and layer.kernel_size == (1, 1) and layer.groups == 1
                and layer.strides == (1, 1) and producer(layer) is not None):
            f = fold_factor(layer)
            if f is not None:
                out.append((layer, f))
    return out


def input_second_moments(model, convs, images_q, seed: int, max_rows: int = 4000) -> list:
    """H = X^T X of each conv's input over the calibration images (pixels subsampled per batch)."""
    rng = np.random.default_rng(seed)
    hs = [np.zeros((c.input_shape[-1],) * 2, np.float64) for c in convs]
    for outs in layer_batches(model, [producer(c) for c in convs], images_q, desc="weight rounding"):
        for i, y in enumerate(outs):
            x = y.reshape(-1, y.shape[-1])
            if len(x) > max_rows:
                x = x[rng.choice(len(x), max_rows, replace=False)]
            x = x.astype(np.float64)
            hs[i] += x.T @ x
    return hs


def compensated_rounding(w: np.ndarray, h: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """Round w (in, out) to int8 steps of max |w[:, o]| / 127 per output column, minimising ||X w - X q||.

    Input rows are rounded in order; each row's rounding error, scaled by the Cholesky factor of H^-1, is
    subtracted from the rows still to come. ``damp`` (a fraction of H's mean diagonal) keeps H invertible when
    inputs are (almost) constant or dead. Returns float values on the grid with each column's largest |w|
    kept at +-127 steps.
    """
    w = np.asarray(w, np.float64)
    top = np.abs(w).max(axis=0)
    step = np.maximum(top, 1e-30) / INT8_MAX
    h = np.array(h, np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h += damp * np.mean(np.diag(h)) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper triangular: the order rows are rounded in
    work = w.copy()
    q = np.zeros_like(w)
    for r in range(w.shape[0]):
        q[r] = np.clip(np.round(work[r] / step), -INT8_MAX, INT8_MAX) * step
        err = (work[r] - q[r]) / u[r, r]
        work[r + 1:] -= np.outer(u[r, r + 1:], err)
    # The converter takes each column's scale from its largest |weight|: pin that weight at +-127 steps.
    cols = np.arange(w.shape[1])
    rows = np.argmax(np.abs(w), axis=0)
    q[rows, cols] = np.sign(w[rows, cols]) * top
    return q


def round_pointwise_weights(model, images_q, seed: int, damp: float = 0.01):
    """A copy of ``model`` whose 1x1 convolutions hold compensated int8-grid weights; returns (copy, n_layers)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    convs = pointwise_convs(copy)
    if not convs:
        return copy, 0
    hs = input_second_moments(copy, [c for c, _ in convs], images_q, seed)
    for (conv, f), h in zip(convs, hs):
        weights = conv.get_weights()
        folded = weights[0][0, 0].astype(np.float64) * f[None, :]
        q = compensated_rounding(folded, h, damp)
        weights[0] = (q / f[None, :]).astype(np.float32)[None, None]
        conv.set_weights(weights)
    return copy, len(convs)
