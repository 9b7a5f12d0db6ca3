"""The labelled sets ``melkit calibrate`` fits and measures on: which images (a split of the data folders, or
all of them), with enough of each class, and what the old and the new threshold (and a temperature) do on a
set. (calibrate.load_set reads a set's images through the model.)

A set this small is taken whole or not at all: an image that cannot be read, or one the metadata lists that
no file holds, is bad input (exit 2), never silently left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melkit.bench.inputs import ImageSource, select_records
from melkit.core.metrics import binary_report, bootstrap_decision_cis, expected_calibration_error
from melkit.core.probability import tempered
from melkit.core.temperature import logit, nll
from melkit.util.errors import BadInputError

__all__ = ["MIN_PER_CLASS", "RATES", "CALIB_SET", "EVAL_SET", "LabelledSet", "select_set", "measure"]

MIN_PER_CLASS = 20  # fewer melanomas or nevi than this: the threshold would be chosen on noise
RATES = ("sensitivity", "specificity", "balanced_accuracy")
CALIB_SET, EVAL_SET = "the calibration set (--data)", "the evaluation set (--eval-data)"


@dataclass
class LabelledSet:
    """One labelled set as the model answers it: its images, the raw P(mel) the decisions use and the unfolded
    one the temperature and the calibration metrics act on."""

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


def _at(report: dict, cis: dict) -> dict:
    """One threshold's rates with their CIs and its confusion matrix."""
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
    z = logit(s.calibrated, eps)

    def calibration(p, t):
        return {"nll": nll(y, z, t), "ece": expected_calibration_error(y, p),
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
                        "shown": None if temperature is None else
                        calibration(tempered(s.calibrated, temperature, eps), temperature)},
    }

