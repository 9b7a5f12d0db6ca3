"""The model: a flat functional MobileNetV2 with a one-logit head.

Flat (no nested base model, no Rescaling layer: inputs are already scaled by the preprocessing
contract) because tensorflow-model-optimization's ``quantize_model`` can only annotate flat models, and
because the converter then sees one clean graph. The head is GlobalAveragePooling -> Dropout(0.2) ->
Dense(1): a logit, so the loss is numerically stable and the exported models add the sigmoid.
"""

from __future__ import annotations

from pathlib import Path

from melkit.util.errors import BadInputError

HEAD_LAYERS = ("pool", "dropout", "logit")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def resolve_weights(weights):
    """'imagenet' (download), 'none'/None (random init) or a local .h5 file (offline ImageNet)."""
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise BadInputError(f"weights file not found: {path} (use imagenet, none or a MobileNetV2 no-top .h5)")
    with open(path, "rb") as f:
        if f.read(8) != HDF5_SIGNATURE:  # a 0-byte or truncated download, another format
            raise BadInputError(f"{path} is not a Keras .h5 weights file ({path.stat().st_size} bytes, no HDF5 "
                                f"signature): use a MobileNetV2 no-top .h5 (../shared/weights), imagenet or none")
    return str(path)


def build_model(alpha=1.0, image_size=224, weights=None, dropout=0.2, bn_momentum=None):
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    weights = resolve_weights(weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    try:
        base = keras.applications.MobileNetV2(
            input_tensor=inputs, include_top=False, weights=weights, alpha=alpha, pooling=None
        )
    except ValueError as e:
        # Keras raises ValueError for an alpha without ImageNet weights and for a file of another alpha.
        raise BadInputError(f"cannot build MobileNetV2(alpha={alpha}) with weights {weights}: {e}") from None
    except Exception as e:  # keras.utils.get_file wraps a failed download in a bare Exception
        if weights != "imagenet" or not ("URL fetch failure" in str(e) or isinstance(e, OSError)):
            raise
        raise BadInputError("cannot download the ImageNet weights (offline?): give a local file with --weights "
                            "FILE.h5 (e.g. ../shared/weights/), or --weights none") from None
    if bn_momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 logit even under mixed precision: the loss and the exported sigmoid need it.
    logit = keras.layers.Dense(1, name="logit", dtype="float32")(x)
    return keras.Model(inputs, logit, name=f"melkit_mobilenetv2_{alpha:g}_{image_size}")


def base_layers(model):
    return [l for l in model.layers if l.name not in HEAD_LAYERS and not l.name == "image"]


def set_trainable(model, trainable: str, bn_inference: bool = True):
    """Choose what trains in a stage.

    ``head``: only the head; ``all``: everything; ``from:LAYER``: the base from LAYER on (e.g.
    ``from:block_13_expand``) plus the head. With ``bn_inference`` BatchNorm layers are frozen, which in
    Keras 2 also runs them in inference mode: fine-tuning on a few thousand images must not overwrite
    ImageNet's batch statistics.
    """
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    layers = base_layers(model)
    if trainable == "head":
        start = len(layers)
    elif trainable == "all":
        start = 0
    elif trainable.startswith("from:"):
        name = trainable[5:]
        names = [l.name for l in layers]
        if name not in names:
            raise BadInputError(f"no layer {name!r} in the base model to fine-tune from")
        start = names.index(name)
    else:
        raise BadInputError(f"unknown trainable spec {trainable!r} (head, all or from:LAYER)")
    model.trainable = True
    for i, layer in enumerate(layers):
        layer.trainable = i >= start and not (bn_inference and isinstance(layer, keras.layers.BatchNormalization))
    for name in HEAD_LAYERS:
        model.get_layer(name).trainable = True


def feature_extractor(model):
    """The frozen base + pooling, for caching features when only the head trains."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    return keras.Model(model.input, model.get_layer("pool").output, name="features")


def head_model(model):
    """Dropout + Dense on cached features, sharing the full model's head layers (weights included)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    feats = keras.Input(model.get_layer("pool").output_shape[1:], name="features")
    x = model.get_layer("dropout")(feats)
    return keras.Model(feats, model.get_layer("logit")(x), name="head")
