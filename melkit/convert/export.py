"""The model every TFLite variant is converted from: the run's Keras model, rebuilt in float32, with a
two-score output ``[P(nv), P(mel)]`` so standard image-classifier runtimes read it with ``labels.txt``.

The two scores are ``softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)]`` for the trained logit z: a fixed
Dense(2) and a Softmax, both plain TFLite builtins that quantize cleanly (and that
tensorflow-model-optimization can annotate for QAT), unlike a Lambda computing ``1 - p``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melkit.errors import BadInputError
from melkit.train.recipe import Recipe
from melkit.train.rundir import load_run

OUTPUT_NAME = "probabilities"


def load_trained_model(run_dir):
    """(float32 flat logit model, config) rebuilt from config.json with the run's weights."""
    from melkit._tf import keras
    from melkit.train.model import build_model

    config = load_run(run_dir)
    recipe = Recipe.from_dict(config["recipe"])
    keras.mixed_precision.set_global_policy("float32")
    model = build_model(recipe.alpha, recipe.image_size, None, recipe.dropout, recipe.bn_momentum)
    try:
        trained = keras.models.load_model(Path(run_dir) / "model.keras", compile=False)
        model.set_weights(trained.get_weights())
    except (OSError, ValueError) as e:
        raise BadInputError(f"cannot load {Path(run_dir) / 'model.keras'}: {e}") from None
    return model, config


def with_two_scores(logit_model):
    """Flat model: image -> [P(nv), P(mel)]."""
    from melkit._tf import keras

    two = keras.layers.Dense(2, use_bias=False, trainable=False, name="two_class")
    half = two(logit_model.output)
    two.set_weights([np.array([[-0.5, 0.5]], np.float32)])
    probs = keras.layers.Softmax(name=OUTPUT_NAME)(half)
    return keras.Model(logit_model.input, probs, name=logit_model.name)
