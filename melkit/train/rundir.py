"""The run directory: built in ``OUT.partial/``, renamed to ``OUT`` only when complete.

OUT/
  model.keras      the trained float32 Keras model
  config.json      everything needed to reproduce: data, preprocessing contract, recipe, seed, versions
                   (its data directories, like metrics.json's external sets', relative to the run folder)
  split.csv        image_id,lesion_id,label,split
  history.csv      one row per epoch and stage
  curves.png       train/val loss and AUC per epoch
  metrics.json     val and test metrics at the threshold chosen on val
  predictions.csv  P(mel) of every val/test image (what bench and parity start from)
  fingerprint.json what defines the run, hashed where large: ``--resume`` must match it key for key
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from dataclasses import replace
from pathlib import Path

import numpy
import sklearn

from melkit import __version__
from melkit.core.model import build_model
from melkit.core.run import RunConfig
from melkit.data.records import LABELS
from melkit.train.curves import plot_curves
from melkit.util.errors import BadInputError
from melkit.util.files import atomic_path, atomic_writer, read_json, sweep_temps, writable_dir, write_json
from melkit.util.spreadsheet import SpreadsheetWriter

RUN_FILES = ("model.keras", "config.json", "split.csv", "history.csv", "curves.png", "metrics.json", "predictions.csv",
             "fingerprint.json")


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def claim(out, resume: bool) -> Path:
    """Check the output paths and return the partial dir to build in. Nothing is ever overwritten."""
    out = Path(out)
    partial = partial_dir(out)
    for path in (out, partial):
        if path.exists() and not path.is_dir():
            raise BadInputError(f"{path} is a file, not a folder: --out names the run folder to create; choose "
                                "another --out")
    if out.exists() and any(out.iterdir()):
        what = "a melkit run" if (out / "config.json").exists() else "files"
        raise BadInputError(f"{out} already holds {what}; choose another --out or remove it")
    if partial.exists() and not resume:
        raise BadInputError(f"{partial} holds an unfinished run: continue it with --resume, or remove it")
    if resume and not partial.exists():
        raise BadInputError(f"--resume: no unfinished run at {partial}")
    if resume:  # under the run's lock: temp files in it are a killed earlier run's, never to be published
        sweep_temps(partial)
        sweep_temps(partial / "checkpoints")
        sweep_tf_temps(partial)
        (partial / ".model.tmp.keras").unlink(missing_ok=True)  # the fixed temp name earlier versions used
    return writable_dir(partial)


def worth_resuming(run: Path) -> bool:
    """Whether an unfinished run holds training to continue: an epoch logged (its checkpoint came first), a
    finished stage, or the trained model."""
    return any((run / p).exists() for p in ("history.csv", "checkpoints/state.json", "model.keras"))


def sweep_tf_temps(run: Path) -> None:
    """Remove the ``<checkpoint>_temp`` folders TensorFlow writes a checkpoint in before it renames the files
    into place: one is left when a disk fills or a kill comes mid-save, and it is never a checkpoint to load."""
    ckpts = run / "checkpoints"
    if ckpts.is_dir():
        for d in sorted(ckpts.rglob("*_temp"), reverse=True):
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)


def versions() -> dict:

    from melkit.util.tf import keras, tf  # TensorFlow: imported when first needed

    return {
        "melkit": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def make_config(opts, recipe, data_summary, policy, strategy, folder=None) -> RunConfig:
    """The run's config; ``folder``: the run folder it will be published as (its data dirs read from there)."""
    return RunConfig(
        data=data_summary,
        preprocessing=recipe.contract,
        labels=tuple(LABELS),
        recipe=recipe,
        model={
            "architecture": "MobileNetV2 + GlobalAveragePooling + Dropout + Dense(1) logit",
            "alpha": recipe.alpha,
            "image_size": recipe.image_size,
            "weights": None if opts.weights in (None, "none") else str(opts.weights),
            "output": "logit (P(mel) = sigmoid)",
        },
        seed=opts.seed,
        training={
            "strategy": opts.strategy,
            "replicas": int(strategy.num_replicas_in_sync),
            "precision_policy": policy,
            "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        },
        versions=versions(),
        folder=folder,
    )


def _digest(lines) -> str:
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def _weights_id(weights) -> str:
    """A local weights file by content (a file swapped under the same name is another run), else its name."""
    if weights in (None, "none", "imagenet"):
        return str(weights)
    path = Path(weights)
    if not path.is_file():
        return f"missing:{weights}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(opts, recipe, records, splits, config: RunConfig) -> dict:
    """Everything that defines a run, each key compared on ``--resume``: the image listing (id, label,
    source, lesion, file size), the split actually used and how it was made, the weights file's sha256,
    the recipe (with image size), the preprocessing contract, the seed and the package versions."""
    def size(path):
        try:
            return os.path.getsize(path)
        except OSError:
            return -1

    return {
        "data": _digest(f"{r.image_id}\t{r.label}\t{r.source}\t{r.lesion_id}\t{size(r.path)}" for r in records),
        "split": _digest(f"{r.image_id}\t{s}" for r, s in zip(records, splits)),
        "split_mode": "csv" if opts.split_csv else opts.split,
        "augment_before_split": bool(opts.augment_before_split),
        "weights": _weights_id(opts.weights),
        "recipe": _digest([json.dumps(recipe.to_dict(), sort_keys=True)]),
        "image_size": recipe.image_size,
        "preprocessing": _digest([json.dumps(config.preprocessing.to_json(), sort_keys=True)]),
        "seed": opts.seed,
        "versions": config.versions,
    }


def check_resume(run: Path, config: RunConfig, resume: bool, fp: dict | None = None):
    """A resumed run must be the same run. With a saved fingerprint every key is compared and all that differ
    are named; runs started before fingerprints compare recipe, seed, contract and data directory."""
    saved_fp = run / "fingerprint.json"
    if fp is not None:
        if resume and saved_fp.exists():
            old = read_json(saved_fp)
            differ = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
            if differ:
                raise BadInputError(f"--resume: {', '.join(differ)} differ(s) from the unfinished run's; "
                                    f"start a new run instead (or remove {run})")
        write_json(saved_fp, fp)
    saved = run / "config.json"
    if not resume or not saved.exists():
        return
    old, new = read_json(saved), config.to_json()
    for key in ("recipe", "seed", "preprocessing"):
        if old.get(key) != new.get(key):
            raise BadInputError(f"--resume: the {key} differs from the unfinished run's; start a new run instead")
    # Where each directory is, not how it was written (relative to the run folder; absolute in older runs).
    was = [Path(d).resolve() for d in replace(config, data=old["data"], folder=run).data_dirs]
    if was != [Path(d).resolve() for d in config.data_dirs]:
        raise BadInputError("--resume: the data directory differs from the unfinished run's")


def float32_copy(model, recipe):
    """Rebuild the model in float32 and copy the weights (after mixed-precision training)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    keras.mixed_precision.set_global_policy("float32")
    copy = build_model(recipe.alpha, recipe.image_size, None, recipe.dropout, recipe.bn_momentum)
    copy.set_weights(model.get_weights())
    return copy


def finish(run: Path, out: Path, model, config: RunConfig, metrics, parts, probs):

    with atomic_path(run / "model.keras") as tmp:
        model.save(tmp)
    write_json(run / "metrics.json", metrics)
    with atomic_writer(run / "predictions.csv") as f:
        w = SpreadsheetWriter(f)
        w.writerow(["image_id", "lesion_id", "split", "label", "p_mel"])
        for name in ("val", "test"):
            for r, p in zip(parts[name].records, probs[name]):
                w.writerow([r.image_id, r.lesion_id, name, r.dx, f"{p:.6f}"])
    if (run / "history.csv").exists():
        plot_curves(run / "history.csv", run / "curves.png")
    write_json(run / "config.json", config.with_status("complete").to_json())
    # One rename takes the checkpoints out of use before they are removed: a kill in the middle of the removal
    # must not leave state.json naming a stage whose weights are gone (--resume then failed for good).
    trash = run / ".checkpoints.removing"
    shutil.rmtree(trash, ignore_errors=True)  # a killed earlier finish's
    if (run / "checkpoints").exists():
        os.replace(run / "checkpoints", trash)
    shutil.rmtree(trash, ignore_errors=True)
    if out.exists():  # an empty dir the user created
        out.rmdir()
    os.replace(run, out)
