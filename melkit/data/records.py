"""What one labelled image is, independent of where it was read from."""

from __future__ import annotations

from dataclasses import dataclass, field

# Label index = position in this tuple; the exported models' outputs follow it ([P(nv), P(mel)]).
LABELS = ("nv", "mel")
NV, MEL = 0, 1


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

    @property
    def dx(self) -> str:
        return LABELS[self.label]


@dataclass
class DataSet:
    """Records read from one directory, plus what was left out and why."""

    root: str
    layout: str  # "ham10000" or "folders"
    records: list
    other_dx: dict = field(default_factory=dict)  # diagnosis -> number of images left out (akiec, bcc, ...)
    skipped: list = field(default_factory=list)  # (image_id, reason) for missing / unreadable images

    def counts(self) -> dict:
        n_mel = sum(r.label == MEL for r in self.records)
        return {
            "images": len(self.records),
            "nv": len(self.records) - n_mel,
            "mel": n_mel,
            "lesions": len({r.lesion_id for r in self.records}),
        }
