"""Train/val/test splits, written as ``split.csv`` (image_id,lesion_id,label,split).

melkit splits by lesion: HAM10000 holds several images of one lesion, and putting them on both sides of
a split lets the model recognise the lesion rather than the disease. The paper's leaky image-level split
and its pre-split melanoma augmentation exist only to measure how much they inflate the numbers.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from melkit.core.errors import BadInputError
from melkit.core.files import atomic_writer
from melkit.data.records import LABELS, MEL, Record

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ("image_id", "lesion_id", "label", "split")
# The 7 non-identity flips/rotations of a square image (dihedral group), for --augment-before-split.
N_TRANSFORMS = 8


def _one_grouped_fold(labels, groups, fraction, seed):
    """Indices (rest, held) where ``held`` is one fold of a stratified group k-fold, k = 1/fraction."""
    k = max(2, int(round(1.0 / fraction)))
    n_groups = len(set(groups))
    if n_groups < k:
        raise BadInputError(f"too few lesions ({n_groups}) for a {fraction:.0%} lesion-grouped split")
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer members than n_splits"
        rest, held = next(sgkf.split(np.zeros(len(labels)), labels, groups))
    return rest, held


def split_by_lesion(records, val_fraction=0.15, test_fraction=0.15, seed=0) -> list:
    """Stratified, lesion-grouped split: no lesion is in two splits. Returns one split name per record."""
    labels = np.array([r.label for r in records])
    groups = np.array([r.lesion_id for r in records])
    splits = np.array(["train"] * len(records), dtype=object)
    rest, test = _one_grouped_fold(labels, groups, test_fraction, seed)
    splits[test] = "test"
    # val_fraction is of the whole set, so relative to what is left after test.
    _, val = _one_grouped_fold(labels[rest], groups[rest], val_fraction / (1.0 - test_fraction), seed + 1)
    splits[rest[val]] = "val"
    _check_split(records, list(splits), grouped=True)
    return list(splits)


def split_by_image(records, val_fraction=0.15, test_fraction=0.15, seed=0) -> list:
    """The paper's split: stratified by label, ignoring lesions (leaky; for measurement only)."""
    idx = np.arange(len(records))
    labels = np.array([r.label for r in records])
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1.0 - test_fraction), stratify=labels[rest], random_state=seed + 1
    )
    splits = np.array(["train"] * len(records), dtype=object)
    splits[test], splits[val] = "test", "val"
    _check_split(records, list(splits), grouped=False)
    return list(splits)


def augment_before_split(records, seed=0) -> list:
    """The paper's mistake, reproduced on purpose: copy melanoma images with fixed flips/rotations
    *before* splitting, until the classes are roughly balanced. Copies of one image then land in train
    and test alike."""
    n_mel = sum(r.label == MEL for r in records)
    n_nv = len(records) - n_mel
    copies = int(min(N_TRANSFORMS - 1, max(0, n_nv // max(n_mel, 1) - 1)))
    rng = np.random.default_rng(seed)
    out = list(records)
    for r in records:
        if r.label != MEL:
            continue
        for t in rng.permutation(np.arange(1, N_TRANSFORMS))[:copies]:
            out.append(Record(f"{r.image_id}_aug{t}", r.lesion_id, r.label, r.path, r.meta, int(t)))
    return out


def _check_split(records, splits, grouped):
    for name in SPLITS:
        labels = {r.label for r, s in zip(records, splits) if s == name}
        if labels != {0, 1}:
            raise BadInputError(
                f"the {name} split has no {' or '.join(LABELS[i] for i in {0, 1} - labels)} images: "
                "the data set is too small or too unbalanced for a train/val/test split"
            )
    if grouped:
        where = {}
        for r, s in zip(records, splits):
            if where.setdefault(r.lesion_id, s) != s:  # pragma: no cover - a bug, not bad input
                raise AssertionError(f"lesion {r.lesion_id} in two splits")


def split_counts(records, splits) -> dict:
    out = {}
    for name in SPLITS:
        rs = [r for r, s in zip(records, splits) if s == name]
        c = Counter(r.label for r in rs)
        out[name] = {"images": len(rs), "nv": c[0], "mel": c[1], "lesions": len({r.lesion_id for r in rs})}
    return out


def write_split_csv(path, records, splits) -> None:
    with atomic_writer(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SPLIT_COLUMNS)
        for r, s in zip(records, splits):
            w.writerow([r.image_id, r.lesion_id, r.dx, s])


def read_split_csv(path) -> dict:
    """image_id -> split name, validated."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"image_id", "split"} <= set(reader.fieldnames):
                raise BadInputError(f"{path}: a split file needs columns image_id and split")
            out = {}
            for row in reader:
                if row["split"] not in SPLITS:
                    raise BadInputError(f"{path}: unknown split {row['split']!r} for {row['image_id']}")
                if row["image_id"] in out:
                    raise BadInputError(f"{path}: duplicate image_id {row['image_id']}")
                out[row["image_id"]] = row["split"]
    except OSError as e:
        raise BadInputError(f"cannot read split file {path}: {e}") from None
    return out


def apply_split_csv(records, mapping: dict) -> list:
    missing = [r.image_id for r in records if r.image_id not in mapping]
    if missing:
        raise BadInputError(
            f"{len(missing)} image(s) of the data set are not in the split file, e.g. {missing[0]}"
        )
    return [mapping[r.image_id] for r in records]
