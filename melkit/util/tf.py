"""The one place that imports TensorFlow and Keras.

melkit uses Keras 2 (``tf_keras``) because tensorflow-model-optimization (QAT) does not support
Keras 3. ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported, so every melkit
module imports ``tf`` and ``keras`` from here and never ``import tensorflow`` directly.
"""

import contextlib
import os

from melkit.util.files import WRITE_ERRNOS
from melkit.util.native_logs import DEFAULT_LEVEL, quiet

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ lines on stderr (CUDA probing on a CPU machine, info): hidden, unless the user's own
# TF_CPP_MIN_LOG_LEVEL asks for them. The filter reads the user's setting, so it comes first.
quiet()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(DEFAULT_LEVEL))

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "writing"]


@contextlib.contextmanager
def writing(path):
    """Where TensorFlow writes under ``path`` (checkpoints): a full, read-only or over-quota disk is raised as
    the OSError it is, naming ``path``. TensorFlow raises its own error instead (a ResourceExhaustedError whose
    message ends with the C library's "No space left on device"), which is no OSError: the CLI's boundary would
    print it as a traceback with exit 1, not one line with exit 2."""
    try:
        yield
    except tf.errors.OpError as e:
        code = next((c for c in sorted(WRITE_ERRNOS) if os.strerror(c) in str(e.message)), None)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from e
