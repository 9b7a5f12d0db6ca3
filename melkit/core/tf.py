"""The one place that imports TensorFlow and Keras.

melkit uses Keras 2 (``tf_keras``) because tensorflow-model-optimization (QAT) does not support
Keras 3. ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported, so every melkit
module imports ``tf`` and ``keras`` from here and never ``import tensorflow`` directly.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ info spam; warnings and errors still show

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
