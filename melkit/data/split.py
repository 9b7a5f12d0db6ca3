"""Train/val/test splits, written as ``split.csv`` (image_id,lesion_id,label,source,split).

melkit splits by lesion: HAM10000 holds several images of one lesion, and putting them on both sides of
a split lets the model recognise the lesion rather than the disease. The paper's leaky image-level split
and its pre-split melanoma augmentation exist only to measure how much they inflate the numbers.

Several sources (``--data A --data B``): a split a source's metadata prescribes (``Record.fixed_split``)
is kept, for every image of its lesion; the other lesions are split stratified by source and label, so
each source is spread over train, val and test in the same proportions. Every source needs both classes,
and a source melkit splits needs both classes in each of train, val and test.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import replace

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from melkit.data.records import LABELS, MEL, SPLITS, count_records
from melkit.util.errors import BadInputError
from melkit.util.files import atomic_writer

SPLIT_COLUMNS = ("image_id", "lesion_id", "label", "source", "split")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9._-]*")  # "" is a record without a source
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
        try:
            rest, held = next(sgkf.split(np.zeros(len(labels)), labels, groups))
        except ValueError:  # "n_splits=k cannot be greater than the number of members in each class"
            counts = ", ".join(f"{n} {LABELS[c] if isinstance(c, (int, np.integer)) else c}"
                               for c, n in zip(*np.unique(labels, return_counts=True)))
            raise BadInputError(f"too few images for a {fraction:.0%} lesion-grouped split ({counts}): it needs "
                                f"at least {k} of one class") from None
    return rest, held


def split_by_lesion(records, val_fraction=0.15, test_fraction=0.15, seed=0, strict_sources=True) -> list:
    """Stratified, lesion-grouped split: no lesion is in two splits. Returns one split name per record.

    Lesions with an image whose source prescribes a split (``fixed_split``) keep that split, all their
    images; the other lesions are split with a stratified group k-fold over (source, label). For one
    source without prescribed splits this is the plain label-stratified split (the same for a seed).
    ``strict_sources=False`` turns the per-source checks into warnings: for the sub-sources one directory
    may name (HAM10000's own ``dataset`` column names its clinics), not sources the user chose to combine.
    """
    _check_sources(records, strict_sources)
    fixed = _fixed_lesions(records)
    splits = np.array(["train"] * len(records), dtype=object)
    free = []
    for i, r in enumerate(records):
        if r.lesion_id in fixed:
            splits[i] = fixed[r.lesion_id]
        else:
            free.append(i)
    free = np.array(free, dtype=np.int64)
    if len(free):
        code = {s: k for k, s in enumerate(sorted({records[i].source for i in free}))}
        # One source: the strata are the labels themselves, so the split is the single-source one.
        strata = np.array([code[records[i].source] * len(LABELS) + records[i].label for i in free])
        groups = np.array([records[i].lesion_id for i in free])
        rest, test = _one_grouped_fold(strata, groups, test_fraction, seed)
        splits[free[test]] = "test"
        # val_fraction is of the whole set, so relative to what is left after test.
        _, val = _one_grouped_fold(strata[rest], groups[rest], val_fraction / (1.0 - test_fraction), seed + 1)
        splits[free[rest[val]]] = "val"
    _check_split(records, list(splits), grouped=True)
    _check_split_by_source(records, list(splits), {records[i].source for i in free}, strict_sources)
    return list(splits)


def _source_problem(message: str, strict: bool):
    if strict:
        raise BadInputError(message)
    warnings.warn(message)


def _source_name(source: str) -> str:
    return repr(source) if source else "(unnamed)"


def _check_sources(records, strict=True):
    """Every source holds both classes: a source of one class teaches the model its look, not the disease."""
    by = {}
    for r in records:
        by.setdefault(r.source, set()).add(r.label)
    for source in sorted(by):
        for label in sorted(set(range(len(LABELS))) - by[source]):
            _source_problem(f"source {_source_name(source)} has no {LABELS[label]} images: every source needs both "
                            f"classes, or the model learns the source instead of the disease", strict)


def _fixed_lesions(records) -> dict:
    """lesion_id -> the split prescribed for one of its images; a lesion prescribed two splits is refused."""
    fixed, example = {}, {}
    for r in records:
        if not r.fixed_split:
            continue
        if r.fixed_split not in SPLITS:
            raise BadInputError(f"image {r.image_id}: unknown prescribed split {r.fixed_split!r}")
        if fixed.setdefault(r.lesion_id, r.fixed_split) != r.fixed_split:
            raise BadInputError(
                f"lesion {r.lesion_id} is prescribed two splits, {fixed[r.lesion_id]} (image "
                f"{example[r.lesion_id]}) and {r.fixed_split} (image {r.image_id}): a lesion must sit in one split"
            )
        example.setdefault(r.lesion_id, r.image_id)
    return fixed


def _check_split_by_source(records, splits, split_sources, strict=True):
    """Each source melkit split (``split_sources``) has both classes in each of train, val and test."""
    if len({r.source for r in records}) < 2:
        return  # one source: _check_split said it all
    for source in sorted(split_sources):
        mine = [(r, s) for r, s in zip(records, splits) if r.source == source]
        for name in SPLITS:
            labels = {r.label for r, s in mine if s == name}
            if labels != {0, 1}:
                n_lesions = {lab: len({r.lesion_id for r, _ in mine if r.label == lab}) for lab in (0, 1)}
                _source_problem(
                    f"source {_source_name(source)} is too small for a stratified lesion split: its {name} part has "
                    f"no {' or '.join(LABELS[i] for i in sorted({0, 1} - labels))} images ({len(mine)} images: "
                    f"{n_lesions[0]} nv and {n_lesions[1]} mel lesions)", strict)
                break


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
            out.append(replace(r, image_id=f"{r.image_id}_aug{t}", transform=int(t)))
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


def split_counts(records, splits, by_source=None) -> dict:
    """{split: {images, nv, mel, lesions}} for train, val and test; with ``by_source`` (default: when the
    records come from more than one source) also ``"by_source": {source: {split: {images, nv, mel,
    lesions}}}``."""
    out = {name: count_records(r for r, s in zip(records, splits) if s == name) for name in SPLITS}
    sources = sorted({r.source for r in records})
    if by_source or (by_source is None and len(sources) > 1):
        out["by_source"] = {
            source: {name: count_records(r for r, s in zip(records, splits) if s == name and r.source == source)
                     for name in SPLITS}
            for source in sources
        }
    return out


def write_split_csv(path, records, splits) -> None:
    with atomic_writer(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SPLIT_COLUMNS)
        for r, s in zip(records, splits):
            w.writerow([r.image_id, r.lesion_id, r.dx, r.source, s])


class SplitManifest(dict):
    """image_id -> split name, as a split file states it; ``labels`` holds its ``label`` column (if any)."""

    def __init__(self, path, splits: dict, labels: dict):
        super().__init__(splits)
        self.path, self.labels = str(path), labels


def read_split_csv(path) -> SplitManifest:
    """image_id -> split name, validated. The ``source`` column is optional (split files before
    multi-source training lack it); where present its values must be plain source names. The ``label``
    column, where present, is kept to be checked against the data (:func:`apply_split_csv`)."""
    labels = {}
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
                if not _SOURCE_NAME.fullmatch(row.get("source") or ""):  # optional column (older files lack it)
                    raise BadInputError(f"{path}: unknown source {row['source']!r} for {row['image_id']}")
                out[row["image_id"]] = row["split"]
                if row.get("label"):
                    labels[row["image_id"]] = row["label"]
    except OSError as e:
        raise BadInputError(f"cannot read split file {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except csv.Error as e:
        raise BadInputError(f"{path}: malformed CSV ({e})") from None
    return SplitManifest(path, out, labels)


def check_split_labels(records, mapping: dict) -> None:
    """A split file whose ``label`` column contradicts the data's labels was made for other data: refused."""
    labels = getattr(mapping, "labels", {})
    wrong = [r for r in records if r.image_id in labels and labels[r.image_id] != r.dx]
    if wrong:
        r = wrong[0]
        where = f"{mapping.path}: " if isinstance(mapping, SplitManifest) else "split file: "
        raise BadInputError(f"{where}{len(wrong)} label(s) contradict the data, e.g. {r.image_id} is "
                            f"{labels[r.image_id]!r} there and {r.dx!r} in the metadata")


def apply_split_csv(records, mapping: dict, *, allow_leak: bool = False) -> list:
    """Each record's split from a split file. Refused: an image the file lacks, a label that contradicts the
    data's, and (unless ``allow_leak``, to measure a leak on purpose) a lesion the file puts in two splits."""
    where = f"{mapping.path}: " if isinstance(mapping, SplitManifest) else "split file: "
    missing = [r.image_id for r in records if r.image_id not in mapping]
    if missing:
        raise BadInputError(
            f"{len(missing)} image(s) of the data set are not in the split file, e.g. {missing[0]}"
        )
    check_split_labels(records, mapping)
    splits = [mapping[r.image_id] for r in records]
    if not allow_leak:
        first = {}
        for r, s in zip(records, splits):
            other = first.setdefault(r.lesion_id, (s, r.image_id))
            if other[0] != s:
                raise BadInputError(f"{where}lesion {r.lesion_id} is in two splits ({other[0]}: {other[1]}, {s}: "
                                    f"{r.image_id}): a leak; keep each lesion in one split (--split image measures "
                                    f"a leak on purpose)")
    return splits
