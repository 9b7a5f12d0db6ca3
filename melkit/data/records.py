"""What one labelled image is, independent of where it was read from."""

from __future__ import annotations

from dataclasses import dataclass, field

from melkit.util.errors import BadInputError

# Label index = position in this tuple; the exported models' outputs follow it ([P(nv), P(mel)]).
LABELS = ("nv", "mel")
NV, MEL = 0, 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    image_id: str
    lesion_id: str
    label: int  # 0 = nv, 1 = mel
    path: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # age, sex, localization, dataset
    # Paper reproduction only (``--augment-before-split``): index of a fixed flip/rotation applied to the
    # resized image. 0 means the image as it is.
    transform: int = 0
    # Where the image comes from: the metadata's ``dataset`` value, else the data folder's name (a plain name:
    # letters, digits, ``.``, ``_``, ``-``). "" for records made by hand (one unnamed source).
    source: str = ""
    # The split the source's metadata prescribes (its ``split`` column: one of SPLITS); "" when melkit
    # chooses the split.
    fixed_split: str = ""

    @property
    def dx(self) -> str:
        return LABELS[self.label]


def count_records(records) -> dict:
    """images, nv, mel and lesions of some records."""
    records = list(records)
    n_mel = sum(r.label == MEL for r in records)
    return {
        "images": len(records),
        "nv": len(records) - n_mel,
        "mel": n_mel,
        "lesions": len({r.lesion_id for r in records}),
    }


def refuse_unusable(skipped: list, where: str, remedy: str) -> None:
    """BadInputError when ``skipped`` ((image_id, reason) of images the data lists but melkit cannot use) is not
    empty: no row is left out in silence. ``where`` names the data, ``remedy`` says what the user can do."""
    if skipped:
        raise BadInputError(f"{len(skipped)} image(s) of {where} cannot be used, e.g. {skipped[0][1]}; {remedy}")


@dataclass
class DataSet:
    """Records read from one directory (or several, one per source), plus what was left out and why."""

    root: str  # the directory; several are joined by " + "
    layout: str  # "ham10000" or "folders"; several directories of different layouts: "mixed"
    records: list
    other_dx: dict = field(default_factory=dict)  # diagnosis -> number of images left out (akiec, bcc, ...)
    skipped: list = field(default_factory=list)  # (image_id, reason) for missing / unreadable images
    dirs: list = field(default_factory=list)  # the directories read, in order
    sources: dict = field(default_factory=dict)  # source name -> the directory its records came from
    # Records with no lesion id (class folders; an empty or absent lesion_id column): each is its own lesion.
    without_lesion_id: int = 0

    def counts(self) -> dict:
        return count_records(self.records)

    def counts_by_source(self) -> dict:
        """source -> counts() of its records, sources sorted by name."""
        by = {}
        for r in self.records:
            by.setdefault(r.source, []).append(r)
        return {s: count_records(by[s]) for s in sorted(by)}
