"""Where the int8 model's error comes from: weights or activations, and which layers.

For a train run, on its validation split, against the float Keras model at the run's threshold:

- "weights only": the Keras model with int8 weights and float activations. Each conv kernel is folded with
  its BatchNorm the way the TFLite converter folds it, rounded to int8 per output channel (symmetric,
  max |w| / 127) and unfolded again, so this is the converter's weight rounding without any activation
  rounding. Also per layer kind (1x1 project, 1x1 expand, depthwise, first conv) to see which carries it.
- "int8 TFLite": the real full-integer conversion, run with the LiteRT interpreter.

Each for: no range equalisation / equalisation, nearest / compensated weight rounding (what ``melkit
convert`` does by default is equalisation + compensated). Usage: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("CI", "true")  # one line per step, no progress redraws

import numpy as np  # noqa: E402

from melkit.convert.equalize import equalize_activation_ranges  # noqa: E402
from melkit.convert.export import with_two_scores  # noqa: E402
from melkit.convert.representative import representative_images  # noqa: E402
from melkit.convert.rounding import INT8_MAX, fold_factor, round_pointwise_weights  # noqa: E402
from melkit.convert.variants import convert  # noqa: E402
from melkit.core.litert import load_interpreter, predict_p_mel  # noqa: E402
from melkit.core.metrics import roc_auc  # noqa: E402
from melkit.core.run import load_trained_model, predict_outputs, split_records  # noqa: E402
from melkit.data.pipeline import load_images  # noqa: E402
from melkit.util.tf import keras  # noqa: E402  (sets TF_USE_LEGACY_KERAS=1 first)

KINDS = {
    "all": lambda name: True,
    "1x1 project": lambda name: name.endswith("_project"),
    "1x1 expand + Conv_1": lambda name: name.endswith("_expand") or name == "Conv_1",
    "depthwise": lambda name: name.endswith("_depthwise"),
    "first conv": lambda name: name == "Conv1",
}


def int8_weights_only(model, keep=lambda name: True):
    """A copy of ``model`` whose conv kernels (selected by name) are rounded as the converter rounds them."""
    layers = keras.layers
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if not isinstance(layer, layers.Conv2D) or not keep(layer.name):
            continue
        weights = layer.get_weights()
        depthwise = isinstance(layer, layers.DepthwiseConv2D)
        fold = fold_factor(layer)  # the BatchNorm scale the converter folds into the kernel, per channel
        if fold is None:
            fold = np.ones(weights[0].shape[2] if depthwise else weights[0].shape[3])
        shape = (1, 1, -1, 1) if depthwise else (1, 1, 1, -1)
        axes = (0, 1, 3) if depthwise else (0, 1, 2)
        folded = weights[0] * fold.reshape(shape)
        step = np.maximum(np.abs(folded).max(axis=axes, keepdims=True), 1e-30) / INT8_MAX
        weights[0] = (np.round(folded / step) * step / fold.reshape(shape)).astype(np.float32)
        layer.set_weights(weights)
    return copy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a melkit train run directory")
    ap.add_argument("--calibration-images", type=int, default=1000)
    ap.add_argument("--margin", type=float, default=1.5)
    args = ap.parse_args()

    model, config = load_trained_model(args.run)
    threshold = json.loads((Path(args.run) / "metrics.json").read_text())["threshold"]
    export = with_two_scores(model)
    val = load_images(split_records(args.run, config, "val"), config.preprocessing, desc="val images")
    p_ref = predict_outputs(export, val.images)[:, 1]
    rep = representative_images(args.run, config, args.calibration_images, 0)
    print(f"run {args.run}: {len(val.images)} validation images, threshold {threshold:.3f}, "
          f"{len(rep)} calibration images, float AUC {roc_auc(val.labels, p_ref):.4f}\n")
    print(f"{'model':<40} {'layers':<22} {'agreement':>9} {'flips':>5} {'mean|dP|':>8} {'AUC':>6}")

    def row(name, kind, p):
        flips = int(np.sum((p >= threshold) != (p_ref >= threshold)))
        print(f"{name:<40} {kind:<22} {1 - flips / len(p):>9.2%} {flips:>5} {np.mean(np.abs(p - p_ref)):>8.4f} "
              f"{roc_auc(val.labels, p):>6.4f}", flush=True)

    equalised, _ = equalize_activation_ranges(export, rep, args.margin)
    sources = {"no equalisation, nearest": export, "equalised, nearest": equalised}
    t = time.time()
    sources["equalised, compensated (melkit default)"], _ = round_pointwise_weights(equalised, rep, seed=0)
    print(f"(compensated rounding took {time.time() - t:.0f} s)")
    for name, source in sources.items():
        kinds = KINDS if name == "equalised, nearest" else {"all": KINDS["all"]}
        for kind, keep in kinds.items():
            row(name, f"int8 weights: {kind}", predict_outputs(int8_weights_only(source, keep), val.images)[:, 1])
        row(name, "int8 TFLite", predict_p_mel(load_interpreter(convert(source, "int8", rep)), val.images))


if __name__ == "__main__":
    main()
