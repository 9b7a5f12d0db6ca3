"""Quantization-aware training: fake-quantize the flat model, fine-tune briefly, convert to int8.

A fresh ``quantize_model`` starts every activation range at [-6, 6] and moves it by an EMA with decay
0.999, so after a short fine-tune most ranges are still far off (the model's outputs are wrong before
training even starts). melkit first sets every range from the float model's observed activations on
training images (as post-training calibration would), then fine-tunes at a low learning rate with the
run's class weights and augmentation, BatchNorm frozen.
"""

from __future__ import annotations

import numpy as np

from melkit.data.augment import AugmentParams, build_augmenter
from melkit.data.pipeline import class_weights, make_dataset
from melkit.data.preprocess import normalize
from melkit.errors import BadInputError


def _observed_ranges(model, images_q, batch_size=32) -> dict:
    """layer name -> (min, max) of its output over the calibration images (float model)."""
    from melkit._tf import keras

    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    probe = keras.Model(model.input, [l.output for l in layers])
    lo = {l.name: np.inf for l in layers}
    hi = {l.name: -np.inf for l in layers}
    for start in range(0, len(images_q), batch_size):
        outs = probe(normalize(images_q[start:start + batch_size]), training=False)
        for layer, y in zip(layers, outs):
            y = y.numpy()
            lo[layer.name] = min(lo[layer.name], float(y.min()))
            hi[layer.name] = max(hi[layer.name], float(y.max()))
    return {k: (lo[k], hi[k]) for k in lo}


def init_ranges(qmodel, ranges: dict, input_range=(-1.0, 127.0 / 128.0)) -> int:
    """Set activation quantizer min/max variables from observed ranges; returns how many were set."""
    n = 0
    for layer in qmodel.layers:
        inner = getattr(layer, "layer", None)
        name = inner.name if inner is not None else layer.name
        for var in layer.weights:
            vname = var.name.split("/")[-1].split(":")[0]
            if not (vname.endswith("_min") or vname.endswith("_max")) or "kernel" in vname or "depthwise" in vname:
                continue
            if layer.name.startswith("quantize_layer"):
                lo, hi = input_range
            elif name in ranges:
                lo, hi = ranges[name]
            else:
                continue
            # TFLite needs 0 inside every range.
            var.assign(min(lo, 0.0) if vname.endswith("_min") else max(hi, 0.0))
            n += 1
    return n


def quantization_aware_model(float_model, train_q, train_labels, images_q, epochs=1, learning_rate=1e-5,
                             batch_size=32, augment: AugmentParams | None = None, seed=0, use_class_weights=True,
                             echo=print):
    """Return the fine-tuned QAT Keras model (image -> [P(nv), P(mel)])."""
    import tensorflow_model_optimization as tfmot

    from melkit._tf import keras
    from melkit.progress import keras_verbose

    for layer in float_model.layers:  # BatchNorm keeps ImageNet+run statistics (inference mode)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    try:
        qmodel = tfmot.quantization.keras.quantize_model(float_model)
    except (ValueError, RuntimeError, TypeError) as e:
        raise BadInputError(f"tensorflow-model-optimization cannot quantize this model: {e}") from None
    n = init_ranges(qmodel, _observed_ranges(float_model, images_q))
    echo(f"qat: {n} activation ranges initialised from {len(images_q)} training images")
    qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   loss=keras.losses.SparseCategoricalCrossentropy())
    augmenter = build_augmenter(augment or AugmentParams(), seed)
    ds = make_dataset(train_q, train_labels, batch_size, training=True, augmenter=augmenter, seed=seed)
    ds = ds.map(lambda x, y: (x, keras.backend.cast(y[:, 0], "int32")))
    cw = class_weights(train_labels) if use_class_weights else None
    qmodel.fit(ds, epochs=epochs, class_weight=cw, verbose=keras_verbose())
    return qmodel
