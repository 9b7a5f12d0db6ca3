"""The run API: what every stage after training needs from a finished train run directory.

A run (see ``melkit/train/rundir.py`` for its files) is read here, never by reaching into ``train/``: its
config, its threshold, the records of one of its splits, its trained Keras model rebuilt in float32, and
batched P(mel) through the preprocessing contract.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from melkit.core.errors import BadInputError
from melkit.core.files import read_json
from melkit.core.recipe import Recipe
from melkit.data.preprocess import normalize
from melkit.data.readers import read_dataset
from melkit.core.model import build_model  # TensorFlow: loaded only when a model is needed


def load_run(path) -> dict:
    """Validate a finished run dir and return its config (used by convert, bench, predict)."""
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"run directory not found: {path}")
    if not (path / "config.json").is_file() or not (path / "model.keras").is_file():
        raise BadInputError(f"{path} is not a finished melkit run (needs config.json and model.keras)")
    try:
        return read_json(path / "config.json")
    except ValueError as e:
        raise BadInputError(f"{path / 'config.json'}: not valid JSON ({e})") from None


def load_trained_model(run_dir):
    """(float32 flat logit model, config) rebuilt from config.json with the run's weights."""
    from melkit.core.tf import keras  # TensorFlow: loaded only when a model is needed

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


def split_records(run_dir, config, split: str, data_dir=None):
    """Records of one split of a run, read from its data dir and split.csv (lesion ids kept)."""
    data_dir = data_dir or config["data"]["dir"]
    with open(Path(run_dir) / "split.csv", newline="") as f:
        wanted = {r["image_id"] for r in csv.DictReader(f) if r["split"] == split}
    dataset = read_dataset(data_dir)
    records = [r for r in dataset.records if r.image_id in wanted]
    # --augment-before-split copies are not files; they are not needed for calibration or checks.
    if not records:
        raise BadInputError(f"no {split} images of run {run_dir} found in {data_dir}")
    return records


def predict_outputs(model, images, batch_size=64, progress=None) -> np.ndarray:
    """The model's raw outputs for uint8 contract images, normalized batch by batch (never all at once).

    ``progress(n)`` is called after each batch of n images.
    """
    outs = []
    for start in range(0, len(images), batch_size):
        chunk = normalize(images[start:start + batch_size])
        outs.append(np.asarray(model.predict_on_batch(chunk)))
        if progress is not None:
            progress(len(chunk))
    if not outs:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    return np.concatenate(outs)


def predict_proba(model, images, batch_size=64, progress=None) -> np.ndarray:
    """P(melanoma) per image: sigmoid of the model's logit, through the contract."""
    logits = predict_outputs(model, images, batch_size, progress).reshape(-1).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-logits))
