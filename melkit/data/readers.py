"""Readers for the two layouts melkit accepts.

1. HAM10000: ``HAM10000_metadata.csv`` or ``metadata.csv`` (lesion_id, image_id, dx, ...) beside one or
   more image folders (``images/``, ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``, ...).
2. Class folders, as the paper used: ``nv/`` and ``mel/`` (other class folders are counted, not used).

Only nevus and melanoma are kept; everything else is counted in ``DataSet.other_dx``. A missing
lesion_id makes the image its own lesion, which is the conservative choice for a grouped split only if
the source really has one image per lesion; the report says how many images had none.

Sources: every record keeps where it comes from (``Record.source``): the metadata's ``dataset`` value,
else the data folder's name (characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``). A
``dataset`` value must already be such a plain name. An optional ``split`` column prescribes an image's
split (``Record.fixed_split``): train, val or test; an empty cell leaves that image to melkit's split.
:func:`read_sources` reads several directories (``melkit train --data A --data B``) into one DataSet.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

from melkit.data.imageio import IMAGE_SUFFIXES
from melkit.data.records import LABELS, SPLITS, DataSet, Record
from melkit.util.errors import BadInputError

METADATA_NAMES = ("HAM10000_metadata.csv", "metadata.csv")
REQUIRED_COLUMNS = ("image_id", "dx")
META_COLUMNS = ("dx_type", "age", "sex", "localization", "dataset")
SOURCE_COLUMN = "dataset"
SPLIT_COLUMN = "split"
_SOURCE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def folder_source(root) -> str:
    """The source name of a directory without a ``dataset`` column: its name, made a plain name."""
    name = Path(os.path.abspath(os.fspath(root))).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "data"


def _row_source(metadata: Path, row: dict, default: str) -> str:
    value = row.get(SOURCE_COLUMN, "")
    if not value:
        return default
    if not _SOURCE_NAME.fullmatch(value):
        raise BadInputError(
            f"{metadata}: {SOURCE_COLUMN} value {value!r} of image {row['image_id']} is not a source name "
            f"(letters, digits, '.', '_', '-' only)"
        )
    return value


def _row_split(metadata: Path, row: dict) -> str:
    value = row.get(SPLIT_COLUMN, "")
    if value and value not in SPLITS:
        raise BadInputError(
            f"{metadata}: {SPLIT_COLUMN} value {value!r} of image {row['image_id']}: expected "
            f"{', '.join(SPLITS)} or empty (empty: melkit chooses the image's split)"
        )
    return value


def read_table(f, path) -> tuple[list, list]:
    """(columns, rows) of a CSV table open as ``f``: each row a dict of every column, values stripped ("" for a
    short row). One row per line, so that every line of the file is a row melkit uses or accounts for:
    refused (BadInputError naming the line) are a field running over several lines (a quote never closed
    makes the csv module read the rest of the file into one field) and a row with more fields than the header
    (an unquoted comma would shift the columns). Blank lines are skipped."""
    reader = csv.reader(f)
    columns, rows = None, []
    while True:
        line = reader.line_num + 1  # where the next row starts (blank lines before it are skipped below)
        try:
            fields = next(reader)
        except StopIteration:
            break
        if not fields:
            continue
        if any("\n" in v or "\r" in v for v in fields):
            raise BadInputError(f"{path}: line {line}: a field runs over {reader.line_num - line + 1} lines (a quote "
                                f"that is never closed?); every row must be on one line")
        if columns is None:
            columns = [c.strip() for c in fields]
            continue
        if len(fields) > len(columns):
            raise BadInputError(f"{path}: line {line} has {len(fields)} fields, the header {len(columns)}: quote a "
                                f"value that holds a comma")
        rows.append(dict(zip(columns, [v.strip() for v in fields] + [""] * (len(columns) - len(fields)))))
    return columns or [], rows


def find_metadata(root: Path) -> Path | None:
    for name in METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def _index_images(root: Path) -> tuple[dict, dict]:
    """image stem -> path, over root and every folder below it (HAM10000 ships two image folders), and
    stem -> every other distinct file of that stem (``a/X.png`` beside ``images/X.jpg``)."""
    index, others = {}, {}
    # os.walk, not rglob: follow symlinked image folders (a subset's metadata beside a link to the images).
    for dirpath, _, filenames in sorted(os.walk(root, followlinks=True)):
        # hidden folders and files are melkit's (and others') unfinished work: an extraction's .NAME.partial
        if any(part.startswith(".") for part in Path(dirpath).relative_to(root).parts):
            continue
        for name in sorted(n for n in filenames if not n.startswith(".")):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                first = index.setdefault(path.stem, path)
                # the same file reached through a symlinked folder is not a second image
                if first != path and os.path.realpath(first) != os.path.realpath(path):
                    others.setdefault(path.stem, []).append(path)
    return index, others


def read_ham10000(root, metadata: Path | None = None) -> DataSet:
    root = Path(root)
    metadata = metadata or find_metadata(root)
    if metadata is None:
        raise BadInputError(f"{root}: no {' or '.join(METADATA_NAMES)} found")
    try:
        with open(metadata, newline="", encoding="utf-8-sig") as f:
            columns, rows = read_table(f, metadata)
    except UnicodeDecodeError as e:
        raise BadInputError(f"{metadata}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except csv.Error as e:
        raise BadInputError(f"{metadata}: malformed CSV ({e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise BadInputError(
            f"{metadata}: missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}; "
            f"expected HAM10000 columns lesion_id,image_id,dx[,dx_type,age,sex,localization]"
        )
    ids = Counter(r["image_id"] for r in rows)
    dups = sorted(i for i, n in ids.items() if n > 1)
    if dups:
        raise BadInputError(f"{metadata}: duplicate image_id(s): {', '.join(dups[:5])}{' ...' if len(dups) > 5 else ''}")
    if any(not r["image_id"] for r in rows):
        raise BadInputError(f"{metadata}: a row has an empty image_id")

    default_source = folder_source(root)
    sources = [_row_source(metadata, row, default_source) for row in rows]  # every row checked, kept or not
    fixed = [_row_split(metadata, row) for row in rows]

    index, others = _index_images(root)
    records, other, skipped = [], Counter(), []
    for row, source, fixed_split in zip(rows, sources, fixed):
        dx = row["dx"].lower()
        if dx not in LABELS:
            other[dx or "(empty)"] += 1
            continue
        path = index.get(row["image_id"])
        if path is None:
            skipped.append((row["image_id"], f"image file not found: no {row['image_id']}.* under {root} "
                                             f"(listed in {metadata.name})"))
            continue
        if row["image_id"] in others:
            raise BadInputError(f"image id {row['image_id']} has two files, {path} and {others[row['image_id']][0]}: "
                                f"keep one (melkit would train on either)")
        meta = {k: row.get(k, "") for k in META_COLUMNS}
        records.append(
            Record(
                image_id=row["image_id"],
                lesion_id=row.get("lesion_id") or row["image_id"],
                label=LABELS.index(dx),
                path=str(path),
                meta=meta,
                source=source,
                fixed_split=fixed_split,
            )
        )
    kept = {r.image_id for r in records}
    no_lesion = sum(1 for row in rows if row["image_id"] in kept and not row.get("lesion_id"))
    return DataSet(str(root), "ham10000", records, dict(other), skipped, [str(root)], _source_dirs(records, root),
                   without_lesion_id=no_lesion)


def _source_dirs(records, root) -> dict:
    out = {}
    for r in records:
        out.setdefault(r.source, str(root))
    return out


def read_class_folders(root) -> DataSet:
    """Every file below a class folder (nv/, mel/) is accounted for: an image, or in ``skipped`` with its
    reason (a file melkit does not read as an image; hidden ones, like .DS_Store, are not the data set's)."""
    root = Path(root)
    records, other, seen, skipped = [], Counter(), {}, []
    source = folder_source(root)
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        every = [p for p in sorted(sub.rglob("*")) if p.is_file()]
        files = [p for p in every if p.suffix.lower() in IMAGE_SUFFIXES]
        name = sub.name.lower()
        if name not in LABELS:
            other[sub.name] += len(files)
            continue
        skipped += [(str(p.relative_to(root)), f"{p}: not an image file melkit reads (it reads "
                                               f"{', '.join(IMAGE_SUFFIXES)})") for p in every
                    if p.suffix.lower() not in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(sub).parts)]
        for path in files:
            if path.stem in seen:
                raise BadInputError(f"duplicate image id {path.stem!r}: {seen[path.stem]} and {path}")
            seen[path.stem] = path
            records.append(Record(path.stem, path.stem, LABELS.index(name), str(path), {"dataset": root.name},
                                  source=source))
    return DataSet(str(root), "folders", records, dict(other), skipped, [str(root)], _source_dirs(records, root),
                   without_lesion_id=len(records))


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


def read_sources(dirs) -> DataSet:
    """Read one directory per source (``--data A --data B``) into one DataSet.

    Each directory is read by :func:`read_dataset`; its records keep their sources. Refused with a
    BadInputError: no directory, a directory given twice, one source name coming from two directories, an
    image id in two directories. ``root`` joins the directories with " + "; ``dirs`` lists them; ``sources``
    maps each source to its directory. One directory gives exactly what ``read_dataset`` gives.
    """
    dirs = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
    if not dirs:
        raise BadInputError("no data directory given")
    seen_dirs = {}
    for d in dirs:
        key = os.path.realpath(os.fspath(d))
        if key in seen_dirs:
            raise BadInputError(f"data directory {d} given twice (as {seen_dirs[key]} and {d})")
        seen_dirs[key] = d
    sets = [read_dataset(d) for d in dirs]
    if len(sets) == 1:
        return sets[0]
    sources, ids = {}, {}
    for ds in sets:
        for source in ds.sources:
            if source in sources:
                raise BadInputError(
                    f"source {source!r} comes from two directories, {sources[source]} and {ds.root}: give each "
                    f"directory its own {SOURCE_COLUMN} name"
                )
            sources[source] = ds.root
        here = {r.image_id for r in ds.records}
        shared = sorted(here & ids.keys())
        if shared:
            raise BadInputError(
                f"image id {shared[0]} is in both {ids[shared[0]]} and {ds.root} ({len(shared)} shared id(s)): "
                f"an image may come from one source only"
            )
        ids.update(dict.fromkeys(here, ds.root))
    other = Counter()
    for ds in sets:
        other.update(ds.other_dx)
    layouts = {ds.layout for ds in sets}
    return DataSet(
        root=" + ".join(ds.root for ds in sets),
        layout=layouts.pop() if len(layouts) == 1 else "mixed",
        records=[r for ds in sets for r in ds.records],
        other_dx=dict(other),
        skipped=[s for ds in sets for s in ds.skipped],
        dirs=[ds.root for ds in sets],
        sources=sources,
        without_lesion_id=sum(ds.without_lesion_id for ds in sets),
    )
