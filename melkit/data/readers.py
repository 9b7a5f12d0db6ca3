"""Readers for the two layouts melkit accepts.

1. HAM10000: ``HAM10000_metadata.csv`` or ``metadata.csv`` (lesion_id, image_id, dx, ...) beside one or
   more image folders (``images/``, ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``, ...).
2. Class folders, as the paper used: ``nv/`` and ``mel/`` (other class folders are counted, not used).

Only nevus and melanoma are kept; everything else is counted in ``DataSet.other_dx``. A missing
lesion_id makes the image its own lesion, which is the conservative choice for a grouped split only if
the source really has one image per lesion; the report says how many images had none.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from melkit.core.errors import BadInputError
from melkit.data.imageio import IMAGE_SUFFIXES
from melkit.data.records import LABELS, DataSet, Record

METADATA_NAMES = ("HAM10000_metadata.csv", "metadata.csv")
REQUIRED_COLUMNS = ("image_id", "dx")
META_COLUMNS = ("dx_type", "age", "sex", "localization", "dataset")


def find_metadata(root: Path) -> Path | None:
    for name in METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _index_images(root: Path) -> dict:
    """image stem -> path, over root and every folder below it (HAM10000 ships two image folders)."""
    index = {}
    # os.walk, not rglob: follow symlinked image folders (a subset's metadata beside a link to the images).
    for dirpath, dirnames, filenames in sorted(os.walk(root, followlinks=True)):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                index.setdefault(path.stem, path)
    return index


def read_ham10000(root, metadata: Path | None = None) -> DataSet:
    root = Path(root)
    metadata = metadata or find_metadata(root)
    if metadata is None:
        raise BadInputError(f"{root}: no {' or '.join(METADATA_NAMES)} found")
    with open(metadata, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise BadInputError(
                f"{metadata}: missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}; "
                f"expected HAM10000 columns lesion_id,image_id,dx[,dx_type,age,sex,localization]"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    ids = Counter(r["image_id"] for r in rows)
    dups = sorted(i for i, n in ids.items() if n > 1)
    if dups:
        raise BadInputError(f"{metadata}: duplicate image_id(s): {', '.join(dups[:5])}{' ...' if len(dups) > 5 else ''}")
    if any(not r["image_id"] for r in rows):
        raise BadInputError(f"{metadata}: a row has an empty image_id")

    index = _index_images(root)
    records, other, skipped = [], Counter(), []
    for row in rows:
        dx = row["dx"].lower()
        if dx not in LABELS:
            other[dx or "(empty)"] += 1
            continue
        path = index.get(row["image_id"])
        if path is None:
            skipped.append((row["image_id"], "image file listed in metadata not found"))
            continue
        meta = {k: row.get(k, "") for k in META_COLUMNS}
        records.append(
            Record(
                image_id=row["image_id"],
                lesion_id=row.get("lesion_id") or row["image_id"],
                label=LABELS.index(dx),
                path=str(path),
                meta=meta,
            )
        )
    return DataSet(str(root), "ham10000", records, dict(other), skipped)


def read_class_folders(root) -> DataSet:
    root = Path(root)
    records, other, seen = [], Counter(), {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [p for p in sorted(sub.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        name = sub.name.lower()
        if name not in LABELS:
            other[sub.name] += len(files)
            continue
        for path in files:
            if path.stem in seen:
                raise BadInputError(f"duplicate image id {path.stem!r}: {seen[path.stem]} and {path}")
            seen[path.stem] = path
            records.append(Record(path.stem, path.stem, LABELS.index(name), str(path), {"dataset": root.name}))
    return DataSet(str(root), "folders", records, dict(other), [])


def read_dataset(root) -> DataSet:
    """Read a HAM10000-style or class-folder directory; raise BadInputError for anything else."""
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"data directory not found: {root}")
    if find_metadata(root) is not None:
        return read_ham10000(root)
    if any((root / name).is_dir() for name in LABELS):
        return read_class_folders(root)
    raise BadInputError(
        f"{root}: not a melkit data set: expected {' or '.join(METADATA_NAMES)} with image folders "
        f"(HAM10000 layout) or class folders nv/ and mel/"
    )
