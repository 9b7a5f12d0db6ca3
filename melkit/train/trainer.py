"""Training a run: data -> split -> stages -> threshold -> metrics, in a resumable ``OUT.partial``.

``run_train(TrainOptions(...))`` is the whole of ``melkit train``; the CLI only parses options into it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import click
import numpy as np

from melkit.core.metrics import N_BOOT, binary_report
from melkit.core.model import build_model, resolve_weights
from melkit.core.recipe import PRESETS, Recipe, load_recipe
from melkit.core.run import RunConfig, predict_proba
from melkit.core.threshold_policy import choose_threshold, parse_threshold_policy
from melkit.data import split as splitting
from melkit.data.pipeline import ImageArray, class_weights, load_images
from melkit.data.readers import read_dataset, read_sources
from melkit.data.records import LABELS, refuse_unusable
from melkit.train import distribute, rundir
from melkit.util.errors import BadInputError, QualityGateError
from melkit.util.files import check_out_apart, exclusive, read_json, write_json
from melkit.util.options import SEED, Epochs, opt
from melkit.util.paths import stored_path

log = logging.getLogger("melkit.train")


@dataclass
class TrainOptions:
    # One directory per source (repeatable): each record keeps its source, the split is stratified by it.
    data: list = opt(type=click.Path(), multiple=True,
                     help="HAM10000-style or class-folder directory; repeat for several sources.")
    out: str = opt("runs/melkit", type=click.Path(), help="Run directory to create.")
    # A Recipe, or the name of one (a preset or a .json file); the overrides below then apply to it.
    recipe: Recipe | str = opt("default", help=f"{', '.join(PRESETS)}, or a recipe .json file.")
    # "auto": the recipe's (imagenet, or none for recipes that train from random init, like scratch)
    weights: str | None = opt("auto",  # or None
                              help="auto (the recipe's: imagenet, or none for scratch), imagenet (downloads), none, "
                                   "or a local MobileNetV2 no-top .h5 (offline).")
    # Recipe overrides: each one given replaces the recipe's field of the same name (epochs: its stages').
    alpha: float | None = opt(None, type=float, help="MobileNetV2 width multiplier (recipe's if omitted).")
    image_size: int | None = opt(None, type=int, min=32, max=1024, help="Input size in pixels (recipe's if omitted).")
    batch_size: int | None = opt(None, type=int, min=1, max=4096)
    epochs: list | None = opt(None, type=Epochs(), help="Epochs per stage, comma-separated (e.g. 15,10).")
    threshold_policy: str | None = opt(None, help="youden, sensitivity:0.90, sensitivity-every-source:0.90 (each "
                                                  "source's validation melanomas), specificity:0.90 or fixed:0.5.")
    oversample: bool | None = opt(None, is_flag=True,
                                  help="Balance classes by oversampling instead of class weights.")
    source_balance: bool | None = opt(None, is_flag=True,
                                      help="Draw training batches equally from each source (several --data).")
    color_constancy: bool | None = opt(None, is_flag=True,
                                       help="Shades of Gray colour constancy as a contract step (the card says so).")
    split: str = opt("lesion", choices=("lesion", "image"),
                     help="lesion: honest grouped split; image: the paper's leaky split (measurement only).")
    augment_before_split: bool = opt(False, help="The paper's pre-split melanoma augmentation (measurement only).")
    split_csv: str | None = opt(None, type=click.Path(dir_okay=False), help="Reuse an existing split.csv.")
    seed: int = opt(SEED)
    strategy: str = opt("auto", choices=distribute.STRATEGIES)
    mixed_precision: str = opt("auto", choices=distribute.PRECISIONS, help="auto: mixed float16 on a GPU only.")
    resume: bool = opt(False, help="Continue the unfinished run in OUT.partial.")
    external: list = opt(default_factory=list, type=click.Path(), multiple=True,
                         help="An external test set (repeatable): never trained on, evaluated once after "
                              "training at the run's threshold.")
    skip_unreadable: bool = opt(False, help="Leave out images the metadata lists but no file holds (and files in "
                                            "nv/, mel/ that are not images), counted in config.json, instead of "
                                            "exiting 2. Undecodable images are always left out and counted.")
    n_boot: int = N_BOOT

    RECIPE_OVERRIDES: ClassVar[tuple] = ("alpha", "image_size", "batch_size", "threshold_policy", "oversample",
                                         "source_balance", "color_constancy")

    def __post_init__(self):
        self.data = [self.data] if isinstance(self.data, (str, Path)) else list(self.data)
        self.external = [self.external] if isinstance(self.external, (str, Path)) else list(self.external)
        recipe = load_recipe(self.recipe) if isinstance(self.recipe, str) else self.recipe
        recipe = replace(recipe, **{k: getattr(self, k) for k in self.RECIPE_OVERRIDES if getattr(self, k) is not None})
        self.recipe = recipe.with_epochs(self.epochs) if self.epochs else recipe
        if self.weights == "auto":
            self.weights = "imagenet" if self.recipe.pretrained else "none"


@dataclass
class TrainResult:
    out_dir: Path
    metrics: dict
    config: RunConfig


@dataclass
class PreparedData:
    """The training data of a run, read, decoded and split before anything trains (bad input fails here)."""

    loaded: ImageArray  # every readable image of the training data, in record order
    splits: np.ndarray  # the split ("train", "val", "test") of each loaded image
    parts: dict  # {split: ImageArray of that split's images}
    summary: dict  # config.json's "data": folders, counts, what was left out, how the split was made
    external: list  # the --external sets, read (not decoded): evaluated once after training


def _prepare_data(opts: TrainOptions, recipe: Recipe, run: Path, echo) -> PreparedData:
    """Read every source and external set, decode the images and split them (the saved split on --resume)."""
    dataset = read_sources(opts.data)
    _refuse_skipped(opts, dataset)
    external = _read_external(opts, dataset)
    records = dataset.records
    if opts.augment_before_split:
        warnings.warn("--augment-before-split reproduces the paper's leak: use it only to measure the leak")
        records = splitting.augment_before_split(records, opts.seed)
    counts = dataset.counts()
    echo(f"data: {counts['images']} images ({counts['nv']} nv, {counts['mel']} mel, {counts['lesions']} lesions)"
         + (f"; left out other diagnoses {dataset.other_dx}" if dataset.other_dx else ""))
    arr = load_images(records, recipe.contract)
    skipped = dataset.skipped + arr.skipped
    if skipped:
        echo(f"skipped {len(skipped)} unreadable or missing image(s), e.g. {skipped[0][0]}: {skipped[0][1]}")
    labels = arr.labels
    for c, name in enumerate(LABELS):
        if not (labels == c).any():
            raise BadInputError(f"{dataset.root}: no readable {name} images: cannot train a nevus-vs-melanoma "
                                "classifier")

    splits = np.array(_split(opts, recipe, dataset, arr, run))
    parts = {name: arr.subset(splits == name) for name in splitting.SPLITS}
    for name, part in parts.items():
        if len(set(part.labels.tolist())) < 2:
            raise BadInputError(f"the {name} split lacks a class; use a larger data set or another split file")
    # Relative to OUT (and so to OUT.partial beside it): the run and its data can move together.
    dirs = [stored_path(d, opts.out) for d in opts.data]
    summary = {
        "dir": " + ".join(dirs),
        **({"dirs": dirs} if len(dirs) > 1 else {}),
        "layout": dataset.layout,
        "counts": counts,
        **({"counts_by_source": dataset.counts_by_source()} if len(dataset.sources) > 1 else {}),
        "other_dx_left_out": dataset.other_dx,
        "skipped": [{"image_id": i, "reason": r} for i, r in skipped],
        "split": {
            # Honest: a "lesion" split of images without lesion ids is an image split.
            "mode": "csv" if opts.split_csv else ("image" if dataset.without_lesion_id == len(dataset.records)
                                                  else opts.split),
            "images_without_lesion_id": dataset.without_lesion_id,
            "split_csv": opts.split_csv,
            "augment_before_split": opts.augment_before_split,
            "seed": opts.seed,
            "counts": splitting.split_counts(arr.records, splits),
        },
    }
    return PreparedData(arr, splits, parts, summary, external)


def _split(opts: TrainOptions, recipe: Recipe, dataset, arr: ImageArray, run: Path) -> list:
    """Each loaded image's split: --split-csv's, the split a resumed run saved, or a new one by image or lesion."""
    saved_split = run / "split.csv"
    if opts.split_csv:
        splits = splitting.apply_split_csv(arr.records, splitting.read_split_csv(opts.split_csv),
                                           allow_leak=opts.split == "image")
    elif opts.resume and saved_split.exists():
        splits = splitting.apply_split_csv(arr.records, splitting.read_split_csv(saved_split),
                                           allow_leak=opts.split == "image")
    elif opts.split == "image":
        warnings.warn("--split image puts images of one lesion in train and test (the paper's leak)")
        splits = splitting.split_by_image(arr.records, recipe.val_fraction, recipe.test_fraction, opts.seed)
    elif opts.split == "lesion":
        if dataset.without_lesion_id:
            warnings.warn(f"{dataset.without_lesion_id} of {len(dataset.records)} images have no lesion_id: each "
                          "counts as its own lesion, so images of one lesion can land in two splits")
        splits = splitting.split_by_lesion(arr.records, recipe.val_fraction, recipe.test_fraction, opts.seed,
                                           strict_sources=len(opts.data) > 1)
    else:
        raise BadInputError(f"unknown split {opts.split!r}: lesion or image")
    return splits


def _refuse_skipped(opts: TrainOptions, dataset) -> None:
    """No row of the data is left out in silence: an image the metadata lists and no file holds is bad input
    (a wrong folder, an unfinished download) unless --skip-unreadable says to leave such images out."""
    if not opts.skip_unreadable:
        refuse_unusable(dataset.skipped, dataset.root, "fix the data, or train without them with --skip-unreadable")


def _read_external(opts: TrainOptions, training) -> list:
    """The external test sets, read before training so a bad one fails in seconds, not after the run."""
    sets = [read_dataset(d) for d in opts.external]
    for ds in sets:
        _refuse_skipped(opts, ds)
    seen = {r.image_id: training.root for r in training.records}
    for ds in sets:
        shared = [r.image_id for r in ds.records if r.image_id in seen]
        if shared:
            raise BadInputError(f"external set {ds.root} shares {len(shared)} image id(s) with the training data, "
                                f"e.g. {shared[0]}: an external set must be unseen")
        seen.update({r.image_id: ds.root for r in ds.records})
    return sets


def _source_name(ds) -> str:
    sources = sorted({r.source for r in ds.records})
    return sources[0] if len(sources) == 1 and sources[0] else Path(ds.root).name


def _report(part, probs, threshold, opts) -> dict:
    return binary_report(part.labels, probs, threshold, groups=[r.lesion_id for r in part.records],
                         n_boot=opts.n_boot, seed=opts.seed)


def _by_source(parts, probs, threshold, opts) -> dict:
    """Each source's val and test metrics, when the run has more than one source."""
    sources = sorted({r.source for p in parts.values() for r in p.records})
    if len(sources) < 2:
        return {}
    out = {}
    for source in sources:
        out[source] = {}
        for name in ("val", "test"):
            mask = np.array([r.source == source for r in parts[name].records], bool)
            if mask.any():
                out[source][name] = _report(parts[name].subset(mask), probs[name][mask], threshold, opts)
    return {"sources": out}


def _evaluate_external(model, sets, recipe, threshold, opts, echo) -> dict:
    """Every external set once, at the run's threshold, each with its lesion-bootstrap CI."""
    out = {}
    for ds in sets:
        name = _source_name(ds)
        arr = load_images(ds.records, recipe.contract, desc=f"external {name}")
        if arr.skipped:
            echo(f"external {name}: skipped {len(arr.skipped)} unreadable image(s), e.g. {arr.skipped[0][0]}")
        if not arr.records:  # after training, a set without images is reported, never fatal to the run
            out[name] = {"dir": stored_path(ds.root, opts.out), "n": 0}
            continue
        probs = predict_proba(model, arr.images, recipe.batch_size)
        out[name] = {"dir": stored_path(ds.root, opts.out), **_report(arr, probs, threshold, opts)}
    return {"external": out} if out else {}


def run_train(opts: TrainOptions, echo=print) -> TrainResult:
    recipe = opts.recipe.validate()
    parse_threshold_policy(recipe.threshold_policy)
    resolve_weights(opts.weights)  # a missing or 0-byte --weights file: refused before OUT.partial exists
    out = Path(opts.out)
    weights = opts.weights if opts.weights and Path(opts.weights).is_file() else None
    # OUT inside a data folder: its plots would be read as images by the next run (counted as melanomas)
    check_out_apart(out, read=[("the split file", opts.split_csv), ("the weights file", weights)],
                    data=[("the data folder", d) for d in opts.data]
                    + [("the external test set", d) for d in opts.external])
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before other TensorFlow work.
    strategy, is_chief = distribute.make_strategy(opts.strategy)
    # Only the chief writes the run; other workers of a multi-worker job write to a scratch directory.
    # A second `train --out OUT` (or --resume) while this one runs exits 2 instead of sharing OUT.partial.
    with exclusive(out) if is_chief else contextlib.nullcontext():
        return _train(opts, recipe, out, strategy, is_chief, echo)


def _train(opts, recipe, out, strategy, is_chief, echo) -> TrainResult:
    """The run in OUT.partial, step by step: data and split, config, the stages, the threshold on validation,
    metrics, and the finished run moved to OUT. Bad input removes a fresh OUT.partial; Ctrl-C or a full disk
    keeps it for --resume (:func:`_keep_for_resume`)."""
    from melkit.util.tf import keras, tf  # TensorFlow: imported when first needed

    run = rundir.claim(out, opts.resume) if is_chief else Path(tempfile.mkdtemp(prefix="melkit-worker-"))
    keras.utils.set_random_seed(opts.seed)
    tf.config.experimental.enable_op_determinism()
    policy = distribute.set_precision(opts.mixed_precision)
    fresh = not opts.resume
    try:
        data = _prepare_data(opts, recipe, run, echo)
        config = _start_run(opts, recipe, run, data, policy, strategy)
        cw = class_weights(data.parts["train"].labels) if recipe.class_weights else None
        with strategy.scope():
            model = build_model(recipe.alpha, recipe.image_size, opts.weights, recipe.dropout, recipe.bn_momentum)
        config = replace(config, model={**config.model, "parameters": int(model.count_params())})
        _run_stages(model, opts, recipe, run, data.parts, cw, strategy, echo)
        # Evaluate the float32 model that export will rebuild, not the mixed-precision one.
        export = rundir.float32_copy(model, recipe) if policy != "float32" else model
        probs = {name: predict_proba(export, data.parts[name].images, recipe.batch_size)
                 for name in ("val", "test")}
        threshold = _threshold_on_val(recipe, data.parts["val"], probs["val"], run)
        metrics = _evaluate(export, data, probs, threshold, recipe, opts, echo)
        # Every worker saves (saving reads synced variables collectively); non-chiefs into their scratch dir.
        final = out if is_chief else run.with_name(run.name + "-final")
        rundir.finish(run, final, export, config, metrics, data.parts, probs)
        if not is_chief:
            shutil.rmtree(final, ignore_errors=True)
            return TrainResult(out, metrics, config)
    except BadInputError:
        # Bad input is found before any training: leave nothing behind that would ask for --resume.
        if fresh and is_chief:
            shutil.rmtree(run, ignore_errors=True)
        raise
    except (OSError, KeyboardInterrupt) as e:
        if is_chief:
            _keep_for_resume(run, e, fresh)
        raise
    finally:
        if not is_chief:
            shutil.rmtree(run, ignore_errors=True)
    return TrainResult(out, metrics, config)


def _start_run(opts, recipe, run: Path, data: PreparedData, policy, strategy) -> RunConfig:
    """The run's config, checked against the unfinished run it resumes; split.csv and config.json ("training")
    written before the first epoch."""
    config = rundir.make_config(opts, recipe, data.summary, policy, strategy, folder=Path(opts.out))
    rundir.check_resume(run, config, opts.resume,
                        fp=rundir.fingerprint(opts, recipe, data.loaded.records, data.splits, config))
    splitting.write_split_csv(run / "split.csv", data.loaded.records, list(data.splits))
    write_json(run / "config.json", config.with_status("training").to_json())
    return config


def _run_stages(model, opts, recipe, run: Path, parts, cw, strategy, echo) -> None:
    """Train the recipe's stages in order; a stage a resumed run finished is restored from its checkpoint."""
    from melkit.train import stages  # imports TensorFlow at its top: imported when training starts
    from melkit.util.tf import writing  # TensorFlow: imported when training starts

    state_path = run / "checkpoints" / "state.json"
    state = read_json(state_path) if state_path.exists() else {"done": []}
    offset = 0
    for stage in recipe.stages:
        ckpt = run / "checkpoints" / stage.name
        if stage.name in state["done"]:
            model.load_weights(str(ckpt / "final.ckpt"))
            echo(f"stage {stage.name}: done before, weights restored")
        else:
            echo(f"stage {stage.name}: {stage.trainable}, {stage.epochs} epochs, lr {stage.learning_rate:g}"
                 + (", augmented" if stage.augment else ""))
            with writing(ckpt):  # TensorFlow's own error for a full disk: the OSError it is, naming ckpt
                stages.run_stage(model, stage, recipe=recipe, parts=parts, class_weight=cw, ckpt=ckpt,
                                 history_path=run / "history.csv", epoch_offset=offset, strategy=strategy,
                                 distributed=opts.strategy != "auto", seed=opts.seed)
                model.save_weights(str(ckpt / "final.ckpt"))
            state["done"].append(stage.name)
            write_json(state_path, state)
        offset += stage.epochs


def _threshold_on_val(recipe, val, p_val, run: Path) -> float:
    """The recipe's policy applied to validation; QualityGateError for a threshold that calls every image one
    class (unless the policy fixed it)."""
    threshold = choose_threshold(val.labels, p_val, recipe.threshold_policy, groups=[r.source for r in val.records])
    if not 0.0 < threshold < 1.0 and not recipe.threshold_policy.startswith("fixed:"):
        # A threshold at 0 or 1 calls every image one class: convert would refuse it minutes later.
        raise QualityGateError(
            f"the {recipe.threshold_policy} threshold on validation is {threshold:g}: the model does not "
            f"separate the classes there (saturated or constant scores); the run is kept unfinished in {run}")
    return threshold


def _evaluate(model, data: PreparedData, probs, threshold, recipe, opts, echo) -> dict:
    """metrics.json: val and test at the threshold, each source's with several, each external set's."""
    metrics = {
        "threshold": threshold,
        "threshold_policy": recipe.threshold_policy,
        "threshold_chosen_on": "val",
    }
    for name in ("val", "test"):
        metrics[name] = _report(data.parts[name], probs[name], threshold, opts)
    metrics.update(_by_source(data.parts, probs, threshold, opts))
    metrics.update(_evaluate_external(model, data.external, recipe, threshold, opts, echo))
    return metrics


def _keep_for_resume(run: Path, e: BaseException, fresh: bool) -> None:
    """Ctrl-C or SIGTERM: the run is kept for --resume, as after a kill. A full or read-only disk: a run with a
    trained epoch is kept too; one without holds nothing worth resuming and is removed like bad input. A kept
    run's writes are atomic, so nothing in it is torn, and what TensorFlow left of a checkpoint it was writing is
    removed. The CLI names the kept run (``unfinished``) with the command that continues it."""
    if fresh and isinstance(e, OSError) and not rundir.worth_resuming(run):
        shutil.rmtree(run, ignore_errors=True)
    else:
        rundir.sweep_tf_temps(run)
        e.unfinished = run
