"""``melkit calibrate``: re-fit a .tflite's decision threshold on a user's own labelled images.

A model's threshold was chosen on the validation split of its training data. Another dermatoscope, other
light or another population shift P(mel), and the threshold no longer gives the sensitivity and
specificity the card states. With a small labelled set of their own (at least MIN_PER_CLASS melanomas and
as many nevi) a user re-chooses it with the policies train uses (youden, sensitivity:X, specificity:X,
fixed:X), on exactly what the app computes: the card's preprocessing contract, the .tflite, one invoke per
image. The model itself is never changed: OUT gets a byte copy (same sha256) and a new card.

The new card (melkit/release/calibrate_card.py says what each record means) has the policy's threshold on
the set, moved halfway between two output values for a quantized output (so no float rounding can flip a
decision), and, unless ``--no-temperature``, a temperature for the probability shown to a person, kept only
if it lowers the NLL out of sample (melkit/core/temperature.py); the decision stays ``P(mel) >= threshold`` on
the model's raw output. Its ``validation`` is the set's metrics at the new threshold; the previous threshold,
policy and validation are kept in ``calibration.previous``.

A model whose threshold convert folded into it (the card's ``threshold_fold``): the new threshold applies to
its raw output like any other, and the temperature to its unfolded, calibrated P(mel)
(melkit.core.probability); a generic client's top category then no longer equals melkit's decision unless
the new threshold is 0.5's grid neighbour, which calibrate says.

Numbers on the calibration set are optimistic: the threshold was chosen on them. ``--eval-data`` measures
before and after on a separate set.

Images the model has already seen are refused (exit 2, saying how many), before any is decoded: calibration
images the model's ``split.csv`` lists as train or val (the model learned on train and chose its threshold
and stopping point on val, so its answers there are better than on new images and the threshold would move
for that alone), and evaluation images that are also calibration images (same id or same file) or in that
train/val split. The split travels with the model: ``split.csv`` beside it (a release, tflite_models/) or, for
a run's own conversions in RUN/tflite/, RUN/split.csv; it is taken for the model's only when its counts per
split are the card's (``training_data.split.counts``). Without one, calibrate says it could not check.
``--allow-overlap`` goes on anyway: each overlap is a warning and is recorded in the card
(``calibration.overlap``). Every image must be readable: a photo that cannot be decoded, or one the metadata
lists that no file holds, is bad input (exit 2), as in predict, never silently left out of a set this small.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from melkit.bench import evaluate
from melkit.bench.inputs import ImageSource, ModelRef, open_tflite
from melkit.core.card import ModelCard, sha256, write_card
from melkit.core.metrics import N_BOOT
from melkit.core.probability import fold_logit, logit_clip, tempered, unfold
from melkit.core.temperature import fit_temperature
from melkit.core.threshold_policy import choose_threshold, parse_threshold_policy
from melkit.data.pipeline import load_images
from melkit.data.split import SPLITS, read_split_csv
from melkit.release.calibrate_card import bands_at, new_card, output_levels, snap_to_grid
from melkit.release.calibrate_sets import CALIB_SET, EVAL_SET, LabelledSet, measure, select_set
from melkit.release.calibrate_summary import NOTE, text
from melkit.util.errors import BadInputError, QualityGateError
from melkit.util.files import (
    atomic_writer,
    check_out_apart,
    check_replaceable,
    exclusive,
    mark_output,
    staging,
    write_json,
)
from melkit.util.options import SEED, check, opt
from melkit.util.spreadsheet import SpreadsheetWriter

__all__ = ["CalibrateOptions", "CalibrateResult", "run_calibrate", "check_overlap", "training_split"]

TRAINED_ON = ("train", "val")  # splits of the model's split.csv it has seen (learned on, chose its threshold on)


@dataclass
class CalibrateOptions:
    model: str = opt(argument=True, type=click.Path())
    out: str = opt(type=click.Path(file_okay=False),
                   help="New folder for the model's copy, its new card and the report (never the model's own).")
    # One directory per source (repeatable, as for melkit train); a str is taken as one directory.
    data: list = opt(default_factory=list, type=click.Path(), multiple=True,
                     help="Your labelled images: a HAM10000-style or class-folder (nv/, mel/) directory; "
                          "repeat for several.")
    split_csv: str | None = opt(None, type=click.Path(dir_okay=False),
                                help="image_id,...,split over --data: calibrate on one split of it.")
    split: str | None = opt(None, choices=SPLITS,
                            help="That split (default val with --split-csv; without it, the split column of "
                                 "the data's metadata). Neither: every image of --data.")
    policy: str = opt("youden", help="How to choose the threshold: youden, sensitivity:X, specificity:X or "
                                     "fixed:X (X in (0, 1)).")
    temperature: bool = opt(True, flag="--no-temperature",
                            help="Re-fit the threshold only: no temperature for the displayed probability.")
    force: bool = opt(False, help="Replace OUT if it exists (only a folder melkit wrote).")
    eval_data: list = opt(default_factory=list, type=click.Path(), multiple=True,
                          help="A separate labelled set to measure before/after on (not used for fitting).")
    eval_split_csv: str | None = opt(None, type=click.Path(dir_okay=False), help="As --split-csv, for --eval-data.")
    eval_split: str | None = opt(None, choices=SPLITS,
                                 help="As --split, for --eval-data (default test with --eval-split-csv).")
    allow_overlap: bool = opt(False, help="Go on although images are in the model's train/val split, or in both "
                                          "--data and --eval-data (warned, and recorded in the new card).")
    n_boot: int = opt(N_BOOT, flag="--bootstrap", min=1, max=100000,
                      help="Bootstrap resamples (lesions) for the 95 % CIs.")
    seed: int = opt(SEED, help="Seed of the bootstrap resamples.")

    def __post_init__(self):
        self.data = [self.data] if isinstance(self.data, (str, Path)) else list(self.data or [])
        self.eval_data = [self.eval_data] if isinstance(self.eval_data, (str, Path)) else list(self.eval_data or [])

    def validate(self):
        check(self)
        parse_threshold_policy(self.policy)
        if not self.data:
            raise BadInputError("no calibration images: give --data DIR (your labelled nv and mel images)")
        if (self.eval_split_csv or self.eval_split) and not self.eval_data:
            raise BadInputError("--eval-split-csv and --eval-split need --eval-data")
        return self


@dataclass
class CalibrateResult:
    report: dict
    card: ModelCard
    out_dir: Path
    text: str
    written: list = field(default_factory=list)


# --------------------------------------------------------------------------- images through the model


def load_set(model: ModelRef, dirs: list, split_csv, split, default_split: str, flags: str,
             selected: tuple[ImageSource, str] | None = None) -> LabelledSet:
    """P(mel) of every image of the set through the card's contract; BadInputError if one is unreadable.
    ``selected``: the set's :func:`select_set`, when the caller already has it."""
    source, name = selected or select_set(dirs, split_csv, split, default_split, flags)
    arr = load_images(source.records, model.contract, desc=f"images {model.image_size}px")
    if arr.skipped:
        image_id, reason = arr.skipped[0]
        raise BadInputError(f"unreadable image {image_id} ({reason}); {len(arr.skipped)} of {len(source.records)} "
                            f"unreadable in {flags}: fix or remove them (calibrate leaves no image out)")
    p = evaluate.tflite_probs(model, arr.images)
    return LabelledSet(name, source.description, arr.records, p, unfold(p, fold_logit(model.card)))


# --------------------------------------------------------------------------- images the model has seen


def training_split(model_path: Path, card: ModelCard) -> tuple[Path | None, dict | None]:
    """(split.csv, image_id -> split) of the split the model was trained with, or (None, None) when there is
    none beside it (see the module docstring: beside the model, or RUN/split.csv for RUN/tflite/) whose counts
    per split are the card's."""
    candidates = [model_path.parent / "split.csv"]
    if model_path.parent.name == "tflite":
        candidates.append(model_path.parent.parent / "split.csv")
    counts = (card.training_data.get("split") or {}).get("counts") or {}
    want = {s: c.get("images") for s, c in counts.items() if s in SPLITS and isinstance(c, dict)}
    for path in candidates:
        if path.is_file():
            mapping = read_split_csv(path)
            have = Counter(mapping.values())
            if all(have.get(s, 0) == n for s, n in want.items()):
                return path, mapping
    return None, None


def _shared(a: list, b: list) -> int:
    """How many records of ``b`` are also in ``a``: the same image id, or the same file."""
    ids, files = {r.image_id for r in a}, {os.path.realpath(r.path) for r in a}
    return sum(r.image_id in ids or os.path.realpath(r.path) in files for r in b)


def check_overlap(model_path: Path, card: ModelCard, calib: list, evaluation: list | None, allow: bool,
                  echo=print) -> dict:
    """The record of which images the model (or the calibration) has already seen; BadInputError naming how
    many when any has, unless ``allow`` (then one warning each, and ``allowed`` is True)."""
    split_path, mapping = training_split(model_path, card)
    record = {"split_csv": None if split_path is None else split_path.name, "allowed": False}
    found = []
    if mapping is None:
        echo(f"note: no split.csv of the model's training beside {model_path.name} (or in its run): calibrate "
             f"cannot check that these images are new to the model")
    for key, records, flags in (("calibration_set", calib, CALIB_SET), ("evaluation_set", evaluation, EVAL_SET)):
        if mapping is None or records is None:
            continue
        seen = Counter(mapping.get(r.image_id) for r in records)
        seen = {s: seen[s] for s in TRAINED_ON if seen[s]}
        if seen:
            record[key] = {"images": len(records), "in_training_split": sum(seen.values()), **seen}
            found.append(f"{sum(seen.values())} of {len(records)} images of {flags} are in the model's training "
                         f"split ({', '.join(f'{n} {s}' for s, n in seen.items())} in {split_path})")
    if evaluation is not None:
        both = _shared(calib, evaluation)
        if both:
            record["evaluation_in_calibration_set"] = both
            found.append(f"{both} of {len(evaluation)} images of {EVAL_SET} are also in {CALIB_SET}")
    if found and not allow:
        raise BadInputError("; ".join(found) + ": numbers on images the model or the threshold was fitted on are "
                            "optimistic; use images it has not seen, or --allow-overlap to go on (warned, and "
                            "recorded in the card)")
    for line in found:
        warnings.warn(f"{line} (--allow-overlap: recorded in the card's calibration.overlap)", stacklevel=2)
    record["allowed"] = bool(found)
    return record


# --------------------------------------------------------------------------- the command


def _out_dir(opts: CalibrateOptions, model_path: Path, card: ModelCard) -> Path:
    """OUT, checked before anything is written: apart from every input (the model's own folder, a data folder
    or one holding it would be replaced whole), and with --force only a folder melkit wrote (its marker)."""
    out = Path(opts.out)
    read = [("the input model", model_path), ("the input model's card", model_path.with_suffix(".json")),
            ("the split file", opts.split_csv), ("the split file", opts.eval_split_csv)]
    if card.labels_file:
        read.append(("the input model's labels", model_path.parent / card.labels_file))
    check_out_apart(out, read=read, data=[("the data folder", d) for d in opts.data + opts.eval_data])
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a folder")
    if out.exists() and not opts.force:
        raise BadInputError(f"--out {out} exists: choose a new folder, or --force to replace it")
    check_replaceable(out)
    return out


def _write_predictions(path: Path, s: LabelledSet, before: float, after: float, temperature, eps) -> None:
    with atomic_writer(path) as f:
        w = SpreadsheetWriter(f)
        w.writerow(["image_id", "lesion_id", "label", "p_mel", "p_shown", "decision_before", "decision_after"])
        for r, p, ps in zip(s.records, s.p, tempered(s.calibrated, temperature, eps)):
            w.writerow([r.image_id, r.lesion_id, r.dx, f"{p:.6f}", f"{ps:.6f}",
                        "mel" if p >= before else "nv", "mel" if p >= after else "nv"])


def run_calibrate(opts: CalibrateOptions, echo=print) -> CalibrateResult:
    opts.validate()
    model_path = Path(opts.model)
    if model_path.is_dir():
        raise BadInputError(f"{model_path} is a folder: calibrate takes a .tflite with its card (<model>.json)")
    model = open_tflite(model_path)  # card present, matching (sha256) and checked against the interpreter
    card = model.card
    out = _out_dir(opts, model_path, card)

    calib_pick = select_set(opts.data, opts.split_csv, opts.split, "val", CALIB_SET)
    eval_pick = (select_set(opts.eval_data, opts.eval_split_csv, opts.eval_split, "test", EVAL_SET)
                 if opts.eval_data else None)
    overlap = check_overlap(model_path, card, calib_pick[0].records, eval_pick and eval_pick[0].records,
                            opts.allow_overlap, echo)  # before any image is decoded
    calib_set = load_set(model, opts.data, opts.split_csv, opts.split, "val", CALIB_SET, selected=calib_pick)
    c = calib_set.counts()
    echo(f"{c['n']} images ({c['n_mel']} mel, {c['n_nv']} nv, {c['lesions']} lesions) from {calib_set.description}")

    levels = output_levels(card)
    step = float(card.output.quantization.scale) if levels is not None else None
    eps = logit_clip(card)  # a quantized 0 means "below half a step"
    chosen = choose_threshold(calib_set.labels, calib_set.p, opts.policy)
    threshold, grid = snap_to_grid(chosen, levels, step)
    if grid is not None and not grid["halfway"]:
        echo(f"note: the policy calls every image melanoma (threshold {chosen:.4f}); there is no output value "
             f"below it to place the threshold above")
    if not 0.0 < threshold < 1.0:  # every image one class: no reader takes such a card (ModelCard.from_json)
        raise QualityGateError(f"the {opts.policy} threshold on {calib_set.description} is {threshold:g}: it calls "
                               f"every image one class (the model does not separate the classes there); no card "
                               f"written")
    temp = (fit_temperature(calib_set.labels, calib_set.calibrated, eps, calib_set.lesions, seed=opts.seed)
            if opts.temperature else None)
    temperature = temp["fitted"] if temp and temp["kept"] else None
    if card.threshold_fold is not None and threshold != card.threshold:
        echo(f"note: the threshold is folded into this model (its top category decides at {card.threshold:g}); "
             f"at the new threshold {threshold:.4f} generic clients' top category (MediaPipe, TFLite Task "
             "Library) no longer equals melkit's decision")

    old = float(card.threshold)
    calib = measure(calib_set, old, threshold, temperature, eps, opts.n_boot, opts.seed)
    evaluation = None
    if opts.eval_data:
        eval_set = load_set(model, opts.eval_data, opts.eval_split_csv, opts.eval_split, "test", EVAL_SET,
                            selected=eval_pick)
        evaluation = measure(eval_set, old, threshold, temperature, eps, opts.n_boot, opts.seed)
    calibrated = new_card(card, calib_set.name, opts.policy, threshold, grid, temp, calib, evaluation, eps)
    if overlap["allowed"]:  # --allow-overlap went on past an overlap: the card says so
        calibrated = replace(calibrated, calibration={**calibrated.calibration, "overlap": overlap})
    calibrated = bands_at(calibrated, card, calib_set, threshold)

    report = {
        "model": str(model_path),
        "variant": card.variant,
        "sha256": card.sha256,
        "policy": opts.policy,
        "threshold": {"before": old, "chosen": chosen, "after": threshold, "grid": grid},
        "temperature": temp,
        "calibration_set": calib,
        "evaluation_set": evaluation,
        "overlap": overlap,
        "n_boot": opts.n_boot,
        "seed": opts.seed,
        "note": NOTE,
    }
    written = _write(out, model_path, card, calibrated, report, calib_set, old, threshold, temperature, eps,
                     data=model.data)
    return CalibrateResult(report, calibrated, out, text(report, calibrated), written)


def _write(out: Path, model_path: Path, card: ModelCard, calibrated: ModelCard, report: dict,
           calib_set: LabelledSet, old: float, threshold: float, temperature, eps, data: bytes) -> list:
    """Everything into a staging folder, checked there, then swapped in as OUT (never half written). ``data``:
    the model's bytes as checked and measured (ModelRef.data), copied as they are (never the path again)."""
    names = [model_path.name, model_path.with_suffix(".json").name]
    labels = model_path.parent / card.labels_file if card.labels_file else None
    # Under OUT's lock (as convert and bench): a second calibrate into OUT exits 2 instead of removing this
    # one's staging folder, and what a killed earlier one left there is this one's to remove.
    with exclusive(out), staging(out) as staged:
        (staged / names[0]).write_bytes(data)
        if sha256((staged / names[0]).read_bytes()) != card.sha256:
            raise BadInputError(f"the copy of {model_path} does not read back as the model checked and measured")
        write_card(staged / names[1], calibrated)
        mark_output(staged, "calibrate")  # melkit's: a later calibrate --force may replace it
        if labels is not None and labels.is_file():
            shutil.copyfile(labels, staged / labels.name)
            names.append(labels.name)
        write_json(staged / "calibration.json", report)
        _write_predictions(staged / "predictions.csv", calib_set, old, threshold, temperature, eps)
        names += ["calibration.json", "predictions.csv"]
        copy = open_tflite(staged / names[0])  # the new card loads, matches the copy and fits the interpreter
        if copy.card != calibrated:
            raise ValueError("the written card does not read back as the card calibrate made")
    return [out / n for n in names]
