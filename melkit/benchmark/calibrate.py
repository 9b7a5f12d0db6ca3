"""``melkit calibrate``: re-fit a .tflite's decision threshold on a user's own labelled images.

A model's threshold was chosen on the validation split of its training data. Another dermatoscope, other
light or another population shift P(mel), and the threshold no longer gives the sensitivity and
specificity the card states. With a small labelled set of their own (at least MIN_PER_CLASS melanomas and
as many nevi) a user re-chooses it with the policies train uses (youden, sensitivity:X, specificity:X,
fixed:X), on exactly what the app computes: the card's preprocessing contract, the .tflite, one invoke per
image. The model itself is never changed: OUT gets a byte copy (same sha256) and a new card.

What the new card says:

* ``threshold``: the policy's choice on the set. A quantized output (uint8 or int8) can only answer
  ``scale * (k - zero_point)``; the threshold is then moved to lie exactly halfway between the two output
  values around it (the highest value the policy calls nevus and the lowest it calls melanoma). No answer
  can then equal the threshold, so no float rounding of the comparison, on the phone or here, can flip a
  decision (convert/decision_grid.py explains why an int8 threshold must lie between two answers). The
  move is at most half an output step and changes no decision on the set, whose answers all lie on that
  grid. convert gets the same guarantee for the first threshold by aligning the scores' grid to it; that
  changes the model, which calibrate never does, so the guarantee here is on the output grid alone.
* ``calibration.temperature`` (unless ``--no-temperature``): a temperature T fitted on the set by
  minimizing the negative log-likelihood of ``sigmoid(logit(P(mel)) / T)`` (a bounded 1-D search on log T),
  kept only if it lowers the NLL on the set both as fitted and out of sample (lesion-grouped 5-fold
  cross-validation: fitted on the set, any T lowers its NLL a little), else null; the ECE before and after
  is reported (on a hundred images it is too noisy to decide). It maps only the
  probability shown to a person, ``P_shown = sigmoid(logit(P(mel)) / T)``: the decision stays ``P(mel) >=
  threshold`` on the model's raw output, what the app compares, so a temperature never changes a decision
  (it is monotone); ``calibration.threshold_shown`` is the threshold on the shown scale.
* ``validation``: the set's metrics at the new threshold (as train writes it: the metrics where the
  threshold was chosen); the previous threshold, policy and validation are kept in
  ``calibration.previous``, the before/after numbers with bootstrap CIs in ``calibration.set``.

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

import math
import os
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.model_selection import StratifiedGroupKFold

from melkit import __version__
from melkit.benchmark import evaluate
from melkit.benchmark.inputs import ImageSource, ModelRef, open_tflite, select_records
from melkit.core import likelihood
from melkit.core.card import ModelCard, sha256, write_card
from melkit.core.errors import BadInputError, QualityGateError
from melkit.core.files import (
    atomic_writer,
    check_out_apart,
    check_replaceable,
    exclusive,
    mark_output,
    staging,
    write_json,
)
from melkit.core.metrics import (
    N_BOOT,
    binary_report,
    bootstrap_decision_cis,
    choose_threshold,
    expected_calibration_error,
    parse_threshold_policy,
)
from melkit.core.options import SEED, check, opt
from melkit.core.probability import fold_logit, logit_band, logit_clip, tempered, unfold
from melkit.core.spreadsheet import SpreadsheetWriter
from melkit.data.pipeline import load_images
from melkit.data.split import SPLITS, read_split_csv

MIN_PER_CLASS = 20  # fewer melanomas or nevi than this: the threshold would be chosen on noise
TEMPERATURE_BOUNDS = (0.05, 20.0)
CV_FOLDS = 5  # folds of the out-of-sample check of a temperature
RATES = ("sensitivity", "specificity", "balanced_accuracy")
TRAINED_ON = ("train", "val")  # splits of the model's split.csv it has seen (learned on, chose its threshold on)
CALIB_SET, EVAL_SET = "the calibration set (--data)", "the evaluation set (--eval-data)"
NOTE = "Research model, not a medical device: it gives no diagnosis."


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


# --------------------------------------------------------------------------- images


@dataclass
class LabelledSet:
    name: str  # short, for the threshold policy: "isic2017-nv-mel val"
    description: str  # where the images came from
    records: list
    p: np.ndarray  # the model's raw P(mel): decisions
    calibrated: np.ndarray  # unfolded (melkit.core.probability): what the temperature and calibration act on

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], int)

    @property
    def lesions(self) -> list:
        return [r.lesion_id for r in self.records]

    def counts(self) -> dict:
        y = self.labels
        return {"n": len(y), "n_mel": int(y.sum()), "n_nv": int(len(y) - y.sum()), "lesions": len(set(self.lesions))}


def _records(dirs: list, split_csv, split, default_split: str, flags: str) -> tuple[ImageSource, str]:
    """The records of ``dirs`` (a split of them, or all), and a short name of the set."""
    name = "+".join(Path(d).name for d in dirs)
    if split_csv:
        split = split or default_split
        return select_records(None, None, split, dirs, split_csv), f"{name} {split}"
    source = select_records(None, None, default_split, dirs)  # every image of dirs
    if not split:
        return source, name
    if not any(r.fixed_split for r in source.records):
        raise BadInputError(f"{flags}: --split {split} needs a split file (--split-csv) or a split column in the "
                            f"data's metadata")
    records = [r for r in source.records if r.fixed_split == split]
    if not records:
        raise BadInputError(f"{flags}: split {split} of {' + '.join(map(str, dirs))} is empty")
    return (ImageSource(records, f"split {split} (metadata) of {' + '.join(map(str, dirs))}", source.skipped,
                        source.other_dx), f"{name} {split}")


def select_set(dirs: list, split_csv, split, default_split: str, flags: str) -> tuple[ImageSource, str]:
    """The records of a set and its short name, with enough of each class (no image decoded yet)."""
    source, name = _records(dirs, split_csv, split, default_split, flags)
    source.refuse_skipped(f"fix or remove them from {flags} (calibrate leaves no image out)")
    _check_counts(source, flags)  # before minutes of decoding
    return source, name


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


def _check_counts(source: ImageSource, flags: str) -> None:
    n_mel = sum(r.label == 1 for r in source.records)
    c = {"n": len(source.records), "n_mel": n_mel, "n_nv": len(source.records) - n_mel}
    if c["n_mel"] == 0 or c["n_nv"] == 0:
        only = "nevi" if c["n_mel"] == 0 else "melanomas"
        raise BadInputError(f"{flags} has only {only} ({c['n']} images of {source.description}): a threshold needs "
                            f"both classes, at least {MIN_PER_CLASS} of each")
    if min(c["n_mel"], c["n_nv"]) < MIN_PER_CLASS:
        raise BadInputError(f"{flags} has {c['n_mel']} melanomas and {c['n_nv']} nevi ({source.description}): "
                            f"at least {MIN_PER_CLASS} of each are needed (with fewer, sensitivity and specificity "
                            f"are mostly chance)")


# --------------------------------------------------------------------------- threshold on the output grid


def output_levels(card: ModelCard) -> np.ndarray | None:
    """Every P(mel) a quantized output can give, as melkit reads it (dequantized, clipped to [0, 1]),
    ascending and distinct; None for a float output."""
    q = card.output.quantization
    if q is None or card.output.dtype not in ("uint8", "int8"):
        return None
    info = np.iinfo(card.output.dtype)
    k = np.arange(info.min, info.max + 1, dtype=np.float64)
    # As litert.predict_p_mel dequantizes and evaluate.tflite_probs clips.
    return np.unique(np.clip((k - q.zero_point) * float(q.scale), 0.0, 1.0))


def snap_to_grid(threshold: float, levels: np.ndarray | None, step: float | None = None) -> tuple[float, dict | None]:
    """(threshold, record): ``threshold`` moved halfway between the output value below it and the lowest one
    at or above it, which decides every output value as ``threshold`` does. None record for a float output."""
    if levels is None:
        return float(threshold), None
    above = levels[levels >= threshold]
    below = levels[levels < threshold]
    if len(below) == 0:  # everyone is melanoma: there is no answer below to stay above
        new = float(threshold)
        halfway = False
        lo, hi = None, float(above[0])
    else:
        lo = float(below[-1])
        hi = float(above[0]) if len(above) else min(1.0, lo + (step or 0.0))  # nobody: past the top answer
        new = (lo + hi) / 2
        halfway = hi > lo
    return new, {
        "chosen": float(threshold),
        "threshold": new,
        "moved": new - float(threshold),
        "below": lo,
        "above": hi,
        "output_step": step,
        "halfway": halfway,
    }


# --------------------------------------------------------------------------- temperature


def _logit(p: np.ndarray, eps: float) -> np.ndarray:
    q = np.clip(np.asarray(p, float), eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def _nll(y: np.ndarray, z: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``sigmoid(z / t)``, computed stably."""
    s = z / t
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def shown(p, temperature: float | None, eps: float) -> np.ndarray:
    """The probability shown to a person for a calibrated (unfolded) ``p``: ``sigmoid(logit(p) / T)``; p itself
    without a temperature (melkit.core.probability.tempered)."""
    return tempered(p, temperature, eps)


def _best_temperature(y: np.ndarray, z: np.ndarray) -> float:
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    best = minimize_scalar(lambda lt: _nll(y, z, math.exp(lt)), bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-5})
    return float(math.exp(best.x))


def fit_temperature(y, p, eps: float, groups=None, folds: int = CV_FOLDS, seed: int = SEED) -> dict:
    """T minimizing the NLL of ``sigmoid(logit(p) / T)`` on (y, p), and whether to keep it.

    Fitted on the set itself, T always lowers the set's NLL a little, so that alone proves nothing on a
    small set. T is kept only if it also lowers the NLL out of sample: in a ``folds``-fold cross-validation
    over lesions (stratified by class), each fold's images scored with the T fitted on the other folds. The
    ECE is reported, not a gate: with 10 bins on a hundred images it moves by a few points by chance.
    """
    y = np.asarray(y, float)
    z = _logit(p, eps)
    t = _best_temperature(y, z)
    nll_before, nll_after = _nll(y, z, 1.0), _nll(y, z, t)
    lesions = np.arange(len(y)) if groups is None else np.asarray(groups)
    folds = min(folds, len(np.unique(lesions)))
    cv_raw = cv_t = math.nan
    if folds >= 2:
        cv_raw, cv_t = 0.0, 0.0
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the least populated class has fewer members than n_splits"
            splits = list(splitter.split(z, y.astype(int), lesions))
        for train, held in splits:
            t_fold = _best_temperature(y[train], z[train])
            cv_raw += _nll(y[held], z[held], 1.0) * len(held)
            cv_t += _nll(y[held], z[held], t_fold) * len(held)
        cv_raw, cv_t = cv_raw / len(y), cv_t / len(y)
    kept = bool(nll_after < nll_before and cv_t < cv_raw)  # False when there was no cross-validation (NaN)
    reason = ("lowers the NLL on the set and out of sample (cross-validated)" if kept else
              "does not lower the NLL on the set" if nll_after >= nll_before else
              "too few lesions to check it out of sample" if folds < 2 else
              "does not lower the cross-validated NLL (it would fit this set's noise)")
    return {"fitted": t, "kept": kept, "reason": reason, "bounds": list(TEMPERATURE_BOUNDS), "logit_clip": eps,
            "nll_before": nll_before, "nll_after": nll_after,
            "cv_folds": folds, "cv_nll_before": None if folds < 2 else cv_raw,
            "cv_nll_after": None if folds < 2 else cv_t,
            "ece_before": expected_calibration_error(y.astype(int), np.asarray(p, float)),
            "ece_after": expected_calibration_error(y.astype(int), shown(p, t, eps))}


# --------------------------------------------------------------------------- metrics


def _at(report: dict, cis: dict) -> dict:
    return {"threshold": report["threshold"],
            **{k: report[k] for k in RATES},
            **{f"{k}_ci": cis[k] for k in RATES},
            "confusion": report["confusion"]}


def measure(s: LabelledSet, before: float, after: float, temperature: float | None, eps: float,
            n_boot: int, seed: int) -> dict:
    """Before/after of one set: the rates at each threshold with lesion-bootstrap CIs, their paired change,
    the threshold-free AUC, and how well calibrated the raw and the shown probabilities are."""
    y, groups = s.labels, s.lesions
    r_before = binary_report(y, s.p, before, groups=groups, n_boot=n_boot, seed=seed)
    r_after = binary_report(y, s.p, after, groups=groups, n_boot=n_boot, seed=seed)
    ci_before, ci_after = bootstrap_decision_cis(y, s.p, [before, after], groups=groups, n_boot=n_boot, seed=seed)
    z = _logit(s.calibrated, eps)

    def calibration(p, t):
        return {"nll": _nll(y, z, t), "ece": expected_calibration_error(y, p),
                "brier": float(np.mean((p - y) ** 2))}

    return {
        "description": s.description,
        **s.counts(),
        "auc": r_before["auc"],
        "auc_ci": r_before["auc_ci"],
        "before": _at(r_before, ci_before),
        "after": _at(r_after, ci_after),
        "change": {**{k: r_after[k] - r_before[k] for k in RATES},
                   **{f"{k}_ci": ci_after["change"][k] for k in RATES}},
        "decisions_changed": int(np.sum((s.p >= before) != (s.p >= after))),
        "probability": {"raw": calibration(s.calibrated, 1.0),
                        "shown": None if temperature is None else calibration(shown(s.calibrated, temperature, eps),
                                                                             temperature)},
    }


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


def _card(card: ModelCard, set_name: str, opts: CalibrateOptions, threshold: float, grid: dict | None,
          temp: dict | None, calib: dict, evaluation: dict | None, eps: float) -> ModelCard:
    temperature = temp["fitted"] if temp and temp["kept"] else None
    record = {
        "fitted_on": calib["description"],
        "n": calib["n"],
        "n_mel": calib["n_mel"],
        "n_nv": calib["n_nv"],
        "policy": opts.policy,
        "threshold": threshold,
        "grid": grid,
        "temperature": temperature,
        "temperature_fit": temp,
        "applies_to": "temperature: the displayed probability only, P_shown = sigmoid(logit(P(mel)) / temperature) "
                      f"with P(mel) clipped to [{eps:g}, 1 - {eps:g}]; the decision compares the raw P(mel) "
                      "with threshold"
                      + ("; P(mel) is first unfolded (threshold_fold)" if card.threshold_fold else ""),
        "threshold_shown": (None if temperature is None else
                            float(shown(unfold([threshold], fold_logit(card)), temperature, eps)[0])),
        "previous": {"threshold": card.threshold, "threshold_policy": card.threshold_policy,
                     "validation": card.validation, "calibration": card.calibration},
        "set": {k: calib[k] for k in ("auc", "auc_ci", "before", "after", "change", "probability")},
        **({"evaluation": evaluation} if evaluation else {}),
        "melkit": __version__,
    }
    after = calib["after"]
    validation = {"n": calib["n"], "auc": calib["auc"], "auc_ci": calib["auc_ci"],
                  "balanced_accuracy": after["balanced_accuracy"], "sensitivity": after["sensitivity"],
                  "specificity": after["specificity"], "set": calib["description"], "by": "melkit calibrate"}
    return replace(card, threshold=threshold, threshold_policy=f"{opts.policy} on {set_name}",
                   validation=validation, calibration=record)


def _bands_at(new_card: ModelCard, card: ModelCard, s: LabelledSet, threshold: float) -> ModelCard:
    """The card's threshold-centred records, moved to the new threshold: the borderline band keeps its logit
    half-width (the quantization noise does not depend on where the threshold is) around it, and the risk
    bands' likelihood ratios are measured again on this set, the user's own device."""
    changes = {}
    if card.borderline is not None:
        low, high = logit_band(threshold, float(card.borderline.get("logit_half_width", 0.0)))
        changes["borderline"] = {**card.borderline, "low": low, "high": high,
                                 "recentred": "melkit calibrate: the same logit half-width around its threshold"}
    if card.likelihood_ratios is not None:
        changes["likelihood_ratios"] = {**likelihood.measure(s.p, s.labels, threshold), "measured_on": s.description,
                                        "by": "melkit calibrate"}
    return replace(new_card, **changes) if changes else new_card


def _write_predictions(path: Path, s: LabelledSet, before: float, after: float, temperature, eps) -> None:
    with atomic_writer(path) as f:
        w = SpreadsheetWriter(f)
        w.writerow(["image_id", "lesion_id", "label", "p_mel", "p_shown", "decision_before", "decision_after"])
        for r, p, ps in zip(s.records, s.p, shown(s.calibrated, temperature, eps)):
            w.writerow([r.image_id, r.lesion_id, r.dx, f"{p:.6f}", f"{ps:.6f}",
                        "mel" if p >= before else "nv", "mel" if p >= after else "nv"])


def calibrate(opts: CalibrateOptions, echo=print) -> CalibrateResult:
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
    new_card = _card(card, calib_set.name, opts, threshold, grid, temp, calib, evaluation, eps)
    if overlap["allowed"]:  # --allow-overlap went on past an overlap: the card says so
        new_card = replace(new_card, calibration={**new_card.calibration, "overlap": overlap})
    new_card = _bands_at(new_card, card, calib_set, threshold)

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
    written = _write(out, model_path, card, new_card, report, calib_set, old, threshold, temperature, eps,
                     data=model.data)
    return CalibrateResult(report, new_card, out, text(report, new_card), written)


def _write(out: Path, model_path: Path, card: ModelCard, new_card: ModelCard, report: dict,
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
        write_card(staged / names[1], new_card)
        mark_output(staged, "calibrate")  # melkit's: a later calibrate --force may replace it
        if labels is not None and labels.is_file():
            shutil.copyfile(labels, staged / labels.name)
            names.append(labels.name)
        write_json(staged / "calibration.json", report)
        _write_predictions(staged / "predictions.csv", calib_set, old, threshold, temperature, eps)
        names += ["calibration.json", "predictions.csv"]
        copy = open_tflite(staged / names[0])  # the new card loads, matches the copy and fits the interpreter
        if copy.card != new_card:
            raise ValueError("the written card does not read back as the card calibrate made")
    return [out / n for n in names]


# --------------------------------------------------------------------------- text


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _ci(ci) -> str:
    return "[n/a]" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _delta_ci(ci) -> str:
    return "[n/a]" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def set_table(title: str, m: dict) -> list[str]:
    b, a, ch = m["before"], m["after"], m["change"]
    auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}" + (
        "" if m["auc_ci"] is None else f" [{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]")
    lines = [f"{title}: {m['n']} images ({m['n_mel']} mel, {m['n_nv']} nv) from {m['description']}",
             f"  {'(%, 95 % CI)':<19}{'before (' + format(b['threshold'], '.4f') + ')':<24}"
             f"{'after (' + format(a['threshold'], '.4f') + ')':<24}change (paired CI)"]
    for k, label in zip(RATES, ("sensitivity", "specificity", "balanced accuracy")):
        before, after = f"{_pct(b[k])} {_ci(b[k + '_ci'])}", f"{_pct(a[k])} {_ci(a[k + '_ci'])}"
        lines.append(f"  {label:<19}{before:<24}{after:<24}{100 * ch[k]:+.1f} {_delta_ci(ch[k + '_ci'])}")
    raw, sh = m["probability"]["raw"], m["probability"]["shown"]
    lines.append(f"  AUC {auc} (any threshold); {m['decisions_changed']} decision(s) change")
    lines.append(f"  probability: NLL {raw['nll']:.4f}, ECE {raw['ece']:.4f}"
                 + ("" if sh is None else f"; shown (temperature): NLL {sh['nll']:.4f}, ECE {sh['ece']:.4f}"))
    return lines


def text(report: dict, card: ModelCard) -> str:
    th, grid, temp = report["threshold"], report["threshold"]["grid"], report["temperature"]
    lines = [f"{report['model']} ({report['variant']}): threshold {th['before']:.4f} -> {th['after']:.4f} "
             f"({card.threshold_policy})"]
    if grid is not None and grid["halfway"]:
        lines.append(f"  the policy chose {th['chosen']:.4f}; moved {grid['moved']:+.4f} to halfway between the "
                     f"outputs {grid['below']:.4f} and {grid['above']:.4f} (output step {grid['output_step']:.6g})")
    elif grid is None:
        lines.append("  float output: the threshold is the policy's choice as is")
    if temp is None:
        lines.append("  temperature: not fitted (--no-temperature)")
    else:
        verdict = (f"kept, the shown P(mel) is sigmoid(logit(P) / {temp['fitted']:.3f}); decisions use the raw P"
                   if temp["kept"] else f"not kept ({temp['reason']})")
        lines.append(f"  temperature {temp['fitted']:.3f}: NLL {temp['nll_before']:.4f} -> {temp['nll_after']:.4f}, "
                     f"ECE {temp['ece_before']:.4f} -> {temp['ece_after']:.4f}: {verdict}")
    lines.append("")
    lines += set_table("calibration set (the threshold was chosen on it: optimistic)", report["calibration_set"])
    if report["evaluation_set"]:
        lines.append("")
        lines += set_table("evaluation set", report["evaluation_set"])
    lines.append(NOTE)
    return "\n".join(lines)
