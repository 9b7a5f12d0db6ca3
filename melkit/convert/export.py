"""The model every TFLite variant is converted from: the run's Keras model, rebuilt in float32, with a
two-score output ``[P(nv), P(mel)]`` so standard image-classifier runtimes read it with ``labels.txt``.

The two scores are ``softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)]`` for the trained logit z: the
trained Dense(1) is folded into one Dense(2) with weights ``W * [-1/2, 1/2]`` (exact in floating point:
halving only changes the exponent) and a Softmax, plain TFLite builtins that quantize cleanly and that
tensorflow-model-optimization can annotate for QAT, unlike a Lambda computing ``1 - p``. One layer rather
than Dense(1) then a fixed Dense(2): the int8 model rounds the scores once, on one grid, which
``decision_grid`` can then place around the threshold.
"""

from __future__ import annotations

import numpy as np

OUTPUT_NAME = "probabilities"


def with_two_scores(logit_model):
    """Flat model: image -> [P(nv), P(mel)], the logit layer folded into the two-score layer."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    logit = logit_model.get_layer("logit")
    weights, bias = logit.get_weights()  # (features, 1), (1,)
    half = np.array([[-0.5, 0.5]], np.float32)
    two = keras.layers.Dense(2, name="two_class")
    scores = two(logit.input)
    two.set_weights([weights @ half, bias @ half])
    probs = keras.layers.Softmax(name=OUTPUT_NAME)(scores)
    return keras.Model(logit_model.input, probs, name=logit_model.name)
