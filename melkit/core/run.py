"""The run API: what every stage after training needs from a finished train run directory.

A run (see ``melkit/train/rundir.py`` for its files) is read here, never by reaching into ``train/``: its
config, its threshold, the records of one of its splits, its trained Keras model rebuilt in float32, and
batched P(mel) through the preprocessing contract. The data directories a config names are stored relative
to the run folder (:mod:`melkit.util.paths`), so a run moved together with its data still finds its images.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from melkit.core.model import build_model  # TensorFlow: loaded only when a model is needed
from melkit.core.recipe import Recipe
from melkit.data.contract import Contract, normalize
from melkit.data.readers import read_sources
from melkit.util.errors import BadInputError
from melkit.util.files import read_json
from melkit.util.paths import read_path

RUN_CONFIG_VERSION = 1


@dataclass(frozen=True)
class RunConfig:
    """A run's ``config.json``: everything that defines it (data, contract, recipe, model, seed, versions).

    ``data``, ``model``, ``training`` and ``versions`` are records written for people and reports; what
    code depends on is typed (``preprocessing``, ``recipe``, ``labels``, ``seed``) or a property.
    ``folder`` is the run folder that holds (or will hold) the file, never written into it: the data
    directories stored relative to it read from there.
    """

    data: dict
    preprocessing: Contract
    labels: tuple
    recipe: Recipe
    model: dict
    seed: int
    training: dict
    versions: dict
    status: str | None = None  # "training" while in OUT.partial, "complete" once published
    version: int = RUN_CONFIG_VERSION
    folder: Path | None = field(default=None, compare=False)

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def data_dir(self) -> str:
        """Where the images were, as one line (several sources' directories joined by " + ")."""
        return " + ".join(self.data_dirs)

    @property
    def data_dirs(self) -> list:
        """One directory per source, usable from any working directory: each stored path read relative to
        ``folder`` (an older run's absolute one as it is); as stored where ``folder`` is unknown."""
        stored = self.data.get("dirs") or [self.data["dir"]]
        return list(stored) if self.folder is None else [read_path(d, self.folder) for d in stored]

    @property
    def alpha(self) -> float:
        return self.model["alpha"]

    def with_status(self, status: str) -> "RunConfig":
        return replace(self, status=status)

    def to_json(self) -> dict:
        d = {"melkit_run": self.version, "data": self.data, "preprocessing": self.preprocessing.to_json(),
             "labels": list(self.labels), "recipe": self.recipe.to_dict(), "model": self.model, "seed": self.seed,
             "training": self.training, "versions": self.versions}
        if self.status is not None:
            d["status"] = self.status
        return d

    @classmethod
    def from_json(cls, d: dict, where="config.json", folder=None) -> "RunConfig":
        """The config in ``d`` (``where``: its file, for messages; ``folder``: the run folder holding it)."""
        if not isinstance(d, dict) or d.get("melkit_run") != RUN_CONFIG_VERSION:
            found = d.get("melkit_run") if isinstance(d, dict) else None
            raise BadInputError(f"{where}: not a melkit run config (version {found}, expected {RUN_CONFIG_VERSION})")
        missing = [k for k in ("data", "preprocessing", "labels", "recipe", "model", "seed", "training", "versions")
                   if k not in d]
        if missing:
            raise BadInputError(f"{where}: missing {', '.join(missing)}")
        try:
            return cls(data=d["data"], preprocessing=Contract.from_json(d["preprocessing"]), labels=tuple(d["labels"]),
                       recipe=Recipe.from_dict(d["recipe"]), model=d["model"], seed=d["seed"],
                       training=d["training"], versions=d["versions"], status=d.get("status"),
                       folder=None if folder is None else Path(folder))
        except (TypeError, ValueError, KeyError) as e:
            raise BadInputError(f"{where}: {e}") from None


def load_run(path) -> RunConfig:
    """Validate a finished run dir and return its config (used by convert, bench, predict)."""
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"run directory not found: {path}")
    if not (path / "config.json").is_file() or not (path / "model.keras").is_file():
        raise BadInputError(f"{path} is not a finished melkit run (needs config.json and model.keras)")
    try:
        return RunConfig.from_json(read_json(path / "config.json"), str(path / "config.json"), folder=path)
    except ValueError as e:
        raise BadInputError(f"{path / 'config.json'}: not valid JSON ({e})") from None


def load_trained_model(run_dir):
    """(float32 flat logit model, config) rebuilt from config.json with the run's weights."""
    from melkit.util.tf import keras  # TensorFlow: loaded only when a model is needed

    config = load_run(run_dir)
    recipe = config.recipe
    keras.mixed_precision.set_global_policy("float32")
    model = build_model(recipe.alpha, recipe.image_size, None, recipe.dropout, recipe.bn_momentum)
    try:
        trained = keras.models.load_model(Path(run_dir) / "model.keras", compile=False)
        model.set_weights(trained.get_weights())
    except (OSError, ValueError) as e:
        raise BadInputError(f"cannot load {Path(run_dir) / 'model.keras'}: {e}") from None
    return model, config


def split_records(run_dir, config: RunConfig, split: str, data_dir=None):
    """Records of one split of a run, read from its data dirs and split.csv (lesion ids kept).

    ``data_dir`` replaces the run's own (one source) if the images moved."""
    data_dirs = [data_dir] if data_dir else config.data_dirs
    with open(Path(run_dir) / "split.csv", newline="") as f:
        wanted = {r["image_id"] for r in csv.DictReader(f) if r["split"] == split}
    dataset = read_sources(data_dirs)
    records = [r for r in dataset.records if r.image_id in wanted]
    # --augment-before-split copies are not files; they are not needed for calibration or checks.
    if not records:
        raise BadInputError(f"no {split} images of run {run_dir} found in {' + '.join(map(str, data_dirs))}")
    missing = sorted(wanted - {r.image_id for r in records} - {i for i in wanted if re.search(r"_aug\d+$", i)})
    if missing:
        # A check on a fraction of the split would report numbers for a set nobody chose (n=8 of 73).
        raise BadInputError(f"{len(missing)} of {len(wanted)} {split} images of run {run_dir} are not in "
                            f"{' + '.join(map(str, data_dirs))} (e.g. {missing[0]}): give the run's data directory")
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
