"""Where training runs: one device, several GPUs (mirrored), or several workers (TF_CONFIG)."""

from __future__ import annotations

import json
import os

from melkit.util.errors import BadInputError

STRATEGIES = ("auto", "mirrored", "multiworker")
PRECISIONS = ("auto", "on", "off")


def make_strategy(name: str):
    """Return (strategy, is_chief). Only the chief writes the run directory."""
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    if name == "auto":
        return tf.distribute.get_strategy(), True
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL needs GPUs; on CPU devices (tests, 2 logical CPUs) reduce with plain copies.
        ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops), True
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise BadInputError("--strategy multiworker needs TF_CONFIG (cluster spec and this task) in the environment")
        try:
            cfg = json.loads(os.environ["TF_CONFIG"])
            task = cfg["task"]
            cluster = cfg["cluster"]
        except (ValueError, KeyError) as e:
            raise BadInputError(f"TF_CONFIG is not valid: {e}") from None
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        is_chief = task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0 and "chief" not in cluster)
        return strategy, is_chief
    raise BadInputError(f"unknown strategy {name!r}: {', '.join(STRATEGIES)}")


def gpu_available() -> bool:
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    return bool(tf.config.list_physical_devices("GPU"))


def set_precision(mode: str) -> str:
    """'auto': mixed float16 on a GPU, float32 on a CPU (where float16 is slower). Returns the policy."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    if mode not in PRECISIONS:
        raise BadInputError("--mixed-precision must be auto, on or off")
    policy = "mixed_float16" if mode == "on" or (mode == "auto" and gpu_available()) else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy
