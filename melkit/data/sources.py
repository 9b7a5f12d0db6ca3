"""The public data sets ``melkit data fetch`` knows: where they live, which files make them, their terms.

Both sets come from one Harvard Dataverse record. Files are picked by name pattern, not by id, so a new
version of the record (new ids, a renamed extension) still resolves. The names below are the record's as
far as we know them; they could not be checked against the live record from here.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from melkit.data.readers import read_table
from melkit.util.errors import BadInputError
from melkit.util.files import atomic_writer

DEFAULT_BASE_URL = "https://dataverse.harvard.edu"
DOI = "doi:10.7910/DVN/DBW86T"

# Each known source's licence, by the source name melkit's readers give its records (the metadata's ``dataset``
# value, else the folder's name): (display name, licence), as each set's publisher states it (the sets kept in
# ../shared/data list theirs in its README.md). The one place: ``melkit convert`` states the training data's
# licence in every model's metadata and card from here, and ``melkit data fetch`` prints HAM10000's.
SOURCE_LICENCES = {
    "ham10000": ("HAM10000", "CC BY-NC 4.0"),  # Tschandl et al. 2018, Harvard Dataverse doi:10.7910/DVN/DBW86T
    "isic2016": ("ISIC 2016", "CC0 1.0"),  # ISIC Archive (CC-0)
    "isic2017": ("ISIC 2017", "CC0 1.0"),  # ISIC Archive (CC-0)
    # Combalia et al. 2019, Hospital Clinic de Barcelona; the BCN part of the ISIC 2019 training set (CC BY-NC)
    "bcn20000": ("BCN20000", "CC BY-NC 4.0"),
}
UNKNOWN_LICENCE = "unknown: see the training data's terms"

LICENCE = (f"{SOURCE_LICENCES['ham10000'][1]} (non-commercial use, with attribution): "
           "https://creativecommons.org/licenses/by-nc/4.0/")
CITATION = ("Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
            "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018), "
            "doi:10.1038/sdata.2018.161. Data: Harvard Dataverse, doi:10.7910/DVN/DBW86T.")


@dataclass(frozen=True)
class Wanted:
    """One file of a set: a pattern over the record's file names, and what melkit does with it."""

    pattern: str  # full match, case-insensitive, against the label, stored and original file names
    kind: str  # "archive": extracted into a folder named after it; "table": kept as save_as
    save_as: str  # the local file name (a table's name is what the readers look for)

    def matches(self, names) -> bool:
        return any(re.fullmatch(self.pattern, n, flags=re.IGNORECASE) for n in names if n)


@dataclass(frozen=True)
class DataSetSource:
    name: str
    title: str
    files: tuple
    # A table whose columns are not HAM10000's is turned into metadata.csv (image_id, dx) after download.
    ground_truth: str | None = None
    use: str = "melkit train --data DIR"


SETS = {
    s.name: s
    for s in (
        DataSetSource(
            "ham10000", "HAM10000 (10,015 training images and metadata)",
            (
                Wanted(r"HAM10000_images_part_1\.zip", "archive", "HAM10000_images_part_1.zip"),
                Wanted(r"HAM10000_images_part_2\.zip", "archive", "HAM10000_images_part_2.zip"),
                # Ingested by Dataverse: listed as .tab, the original may carry .csv or no extension.
                Wanted(r"HAM10000_metadata(\.(csv|tab|txt))?", "table", "HAM10000_metadata.csv"),
            ),
        ),
        DataSetSource(
            "isic2018-test", "ISIC 2018 Task 3 test set (1,512 images and ground truth), an external test set",
            (
                Wanted(r"ISIC2018_Task3_Test_(Images|Input)\.zip", "archive", "ISIC2018_Task3_Test_Images.zip"),
                Wanted(r"ISIC2018_Task3_Test_GroundTruth(\.(csv|tab|txt))?", "table",
                       "ISIC2018_Task3_Test_GroundTruth.csv"),
            ),
            ground_truth="ISIC2018_Task3_Test_GroundTruth.csv",
            use="melkit reads it with --data DIR; keep it out of training to measure generalisation",
        ),
    )
}


def get_source(name: str) -> DataSetSource:
    try:
        return SETS[name.lower()]
    except KeyError:
        raise BadInputError(f"unknown data set {name!r}; choose one of: {', '.join(SETS)}") from None


# The ISIC challenge's own ground truth is one-hot: image,MEL,NV,BCC,AKIEC,BKL,DF,VASC.
_ONE_HOT = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def write_metadata_from_ground_truth(src: Path, dest: Path) -> int:
    """Write ``dest`` (HAM10000 columns) from a ground-truth table, which may already have them or be one-hot.

    Returns the number of rows. The verified original stays beside it untouched.
    """
    with open(src, newline="", encoding="utf-8-sig") as f:
        columns, rows = read_table(f, src)  # a quote never closed is refused, never the rest of the file in one row
    if "image_id" in columns and "dx" in columns:
        out_cols, out_rows = columns, rows
    elif "image" in columns and all(c in columns for c in _ONE_HOT):
        out_cols = ["image_id", "dx"]
        out_rows = []
        for r in rows:
            scores = {c: float(r[c] or 0) for c in _ONE_HOT}
            out_rows.append({"image_id": r["image"], "dx": max(scores, key=scores.get).lower()})
    else:
        raise BadInputError(f"{src}: unexpected ground-truth columns {', '.join(columns) or 'none'}; "
                            f"expected HAM10000's (image_id, dx, ...) or ISIC's one-hot (image, {', '.join(_ONE_HOT)})")
    with atomic_writer(dest) as f:
        w = csv.DictWriter(f, out_cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(out_rows)
    return len(out_rows)


def source_licence(source: str) -> tuple[str, str] | None:
    """(display name, licence) of a source name, or None when melkit does not know its terms.

    Matched case-insensitively, as the name itself or followed by a separator (a folder ``ham10000-nv-mel``
    read without a ``dataset`` column is source ``ham10000-nv-mel``)."""
    name = source.lower()
    if name in SOURCE_LICENCES:
        return SOURCE_LICENCES[name]
    known = [k for k in SOURCE_LICENCES if re.match(re.escape(k) + r"[-_.]", name)]
    return SOURCE_LICENCES[max(known, key=len)] if known else None


def training_licence(sources) -> str:
    """The licence a model inherits from its training data: one source's licence, or each source's licence
    with its name ("CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)"). A source whose terms melkit does not know
    is said to be unknown, never guessed."""
    sources = sorted(set(sources))
    if not sources:
        return UNKNOWN_LICENCE
    parts = []
    for s in sources:
        known = source_licence(s)
        parts.append((known[1], known[0]) if known else (UNKNOWN_LICENCE, s))
    if len(parts) == 1 and parts[0][0] != UNKNOWN_LICENCE:
        return parts[0][0]
    return "; ".join(dict.fromkeys(f"{licence} ({name})" for licence, name in parts))
