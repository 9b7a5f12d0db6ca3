"""Quantization-aware training: fake-quantize the flat model, fine-tune briefly, convert to int8.

A fresh ``quantize_model`` starts every activation range at [-6, 6] and moves it by an EMA with decay
0.999, so after a short fine-tune most ranges are still far off (the model's outputs are wrong before
training even starts). melkit first sets every range from the float model's observed activations on
training images (as post-training calibration would), then fine-tunes at a low learning rate with the
run's class weights and augmentation, BatchNorm frozen.
"""

from __future__ import annotations

import numpy as np

from melkit.convert.graph import single_consumer
from melkit.convert.probe import layer_batches
from melkit.core.run import predict_outputs
from melkit.data.augment import AugmentParams, build_augmenter
from melkit.data.pipeline import class_weights, make_dataset
from melkit.util.errors import BadInputError
from melkit.util.progress import keras_verbose


def equalize_depthwise(model) -> int:
    """Give every depthwise kernel the same per-channel range, moving the scale into the next BatchNorm.

    tensorflow-model-optimization quantizes depthwise kernels per tensor. When one channel's weights are
    far larger than the others' (the shared ImageNet backbone has BatchNorm folded into its kernels:
    ``expanded_conv_depthwise`` spans +-56 while most channels span a few units), the small channels
    round to almost nothing and QAT starts broken. For kernel channel c scaled by 1/s, BatchNorm with
    ``mean/s`` and ``gamma*s`` gives exactly the same output, so the float model is unchanged.
    Returns the number of layers equalised.
    """
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    n = 0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.DepthwiseConv2D) or layer.use_bias:
            continue
        bn = single_consumer(layer)
        if not isinstance(bn, keras.layers.BatchNormalization) or not bn.scale or not bn.center:
            continue
        (kernel,) = layer.get_weights()
        gamma, beta, mean, var = bn.get_weights()
        ch_max = np.abs(kernel).max(axis=(0, 1, 3))  # (channels,)
        target = np.median(ch_max[ch_max > 0]) if (ch_max > 0).any() else 1.0
        scale = np.where(ch_max > 0, ch_max / target, 1.0).astype(np.float32)
        layer.set_weights([kernel / scale[None, None, :, None]])
        bn.set_weights([gamma * scale, beta, mean / scale, var])
        n += 1
    return n


def _observed_ranges(model, images_q) -> dict:
    """layer name -> (min, max) of its output over the calibration images (float model)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    lo = {l.name: np.inf for l in layers}
    hi = {l.name: -np.inf for l in layers}
    for outs in layer_batches(model, layers, images_q, desc="QAT ranges"):
        for layer, y in zip(layers, outs):
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
            if not (vname.endswith("_min") or vname.endswith("_max")):
                continue
            if "kernel" in vname:
                # Weight quantizers only record their range in a training step; until then they quantize
                # with [-6, 6]. Start them at the weights' own (per-channel) range.
                n += _init_weight_range(layer, vname, var)
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


def _mean_abs_diff(a, b, images_q) -> float:

    return float(np.mean(np.abs(predict_outputs(a, images_q)[:, 1] - predict_outputs(b, images_q)[:, 1])))


def _init_weight_range(layer, vname, var) -> int:
    # The wrapped layer's .kernel is the fake-quantized tensor after build: take the variable itself.
    kernel_name = "depthwise_kernel" if "depthwise" in vname else "kernel"
    kernels = [v for v in layer.weights if v.name.split("/")[-1].split(":")[0] == kernel_name]
    if not kernels:
        return 0
    w = np.abs(kernels[0].numpy())
    size = int(np.prod(var.shape)) if var.shape.rank else 1
    if size == 1:
        m = np.full(var.shape, w.max(), np.float32)
    else:
        axis = [i for i, d in enumerate(w.shape) if d == size][-1]
        m = w.max(axis=tuple(i for i in range(w.ndim) if i != axis)).reshape(var.shape)
    var.assign(-m if vname.endswith("_min") else m)
    return 1


def quantization_aware_model(float_model, train_q, train_labels, images_q, *, epochs: int, learning_rate: float,
                             batch_size: int, augment: AugmentParams, seed: int, use_class_weights: bool,
                             target: str, student=None, echo=print):
    """Return the fine-tuned QAT Keras model (image -> [P(nv), P(mel)]).

    ``target="teacher"`` (default) fits the float model's own scores on each augmented training batch
    (distillation): what melkit's gate measures is agreement with that model, and fitting the labels
    instead lets the quantized model drift to a decision boundary of its own. ``target="labels"`` fits
    the labels. Either way the run's class weights weight the samples. ``student`` (default: a copy of
    ``float_model``) is where the quantized model starts, e.g. the range-equalised model, which computes the
    same function.
    """
    import tensorflow_model_optimization as tfmot  # TFMOT imports TensorFlow: imported when first needed

    from melkit.util.tf import keras, tf  # TensorFlow: imported when first needed

    if target not in ("teacher", "labels"):
        raise BadInputError("QAT target must be teacher or labels")
    # Seeded and deterministic kernels: the same run and options give the same QAT model.
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    # The caller's model stays untouched (it is the teacher, and convert writes other variants from it);
    # the student is a copy that gets equalised and quantized.
    teacher = float_model
    source = student if student is not None else float_model
    student = keras.models.clone_model(source)
    student.set_weights(source.get_weights())
    for layer in student.layers:  # BatchNorm keeps ImageNet+run statistics (inference mode)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    equalized = equalize_depthwise(student)
    try:
        qmodel = tfmot.quantization.keras.quantize_model(student)
    except (ValueError, RuntimeError, TypeError) as e:
        raise BadInputError(f"tensorflow-model-optimization cannot quantize this model: {e}") from None
    n = init_ranges(qmodel, _observed_ranges(student, images_q))  # ranges of the equalised model
    echo(f"qat: {equalized} depthwise kernels equalised; {n} quantizer ranges initialised from {len(images_q)} "
         f"training images; "
         f"mean |dP| vs float before fine-tuning {_mean_abs_diff(qmodel, teacher, images_q):.4f}")
    qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.CategoricalCrossentropy())
    augmenter = build_augmenter(augment, seed)
    ds = make_dataset(train_q, train_labels, batch_size, training=True, augmenter=augmenter, seed=seed)
    weights = class_weights(train_labels) if use_class_weights else {0: 1.0, 1: 1.0}
    w = tf.constant([weights[0], weights[1]], tf.float32)

    def targets(x, y):
        label = tf.cast(y[:, 0], tf.int32)
        soft = teacher(x, training=False) if target == "teacher" else tf.one_hot(label, 2)
        return x, soft, tf.gather(w, label)

    qmodel.fit(ds.map(targets), epochs=epochs, verbose=keras_verbose())
    echo(f"qat: mean |dP| vs float after fine-tuning {_mean_abs_diff(qmodel, teacher, images_q):.4f}")
    return qmodel
