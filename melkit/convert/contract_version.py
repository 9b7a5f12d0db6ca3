"""``melkit convert --contract-version``: which preprocessing contract the cards state.

A run is trained and validated under its own contract (``config.json``). Its cards may state another
version only where that changes nothing the model was trained or validated on. v1 and v2 differ only in
v2's box step (and JPEG draft decoding), which touches only images whose short side is more than twice
the input size; so the change is allowed when every training and validation image of the run has a short
side of at most ``2 * image_size`` (then both contracts give the same bytes on them), and refused with a
one-line BadInputError otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from melkit.core.run import RunConfig, split_records
from melkit.util.errors import BadInputError

CHANGE_SPLITS = ("train", "val")


def check_contract_change(sizes, image_size: int, old: str, new: str) -> dict:
    """``sizes``: (image, width, height) of every training/validation image. The card's record of the change
    if no image is affected (short side at most ``2 * image_size``); BadInputError naming one if some are."""
    limit = 2 * int(image_size)
    sizes = list(sizes)
    over = [(name, w, h) for name, w, h in sizes if min(w, h) > limit]
    if over:
        name, w, h = max(over, key=lambda s: min(s[1], s[2]))
        raise BadInputError(f"cannot change the contract {old} -> {new}: {len(over)} of the run's {len(sizes)} "
                            f"training/validation images have a short side over {limit} px (e.g. {name}, {w}x{h}), "
                            f"where the two contracts give the model different inputs")
    return {"from": old, "checked_images": len(sizes),
            "max_short_side": max((min(w, h) for _, w, h in sizes), default=0)}


def image_sizes(records):
    """(path, width, height) of each distinct image file, from its header (no decode); unreadable files,
    which training skipped, are left out."""
    for path in sorted({r.path for r in records}):
        try:
            with Image.open(path) as img:  # header only; Pillow warnings are filtered by melkit.data.imageio
                yield path, img.width, img.height
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue


def config_for_cards(run_dir, config: RunConfig, version: int | None, data_dir=None) -> tuple[RunConfig, dict | None]:
    """The run's config with the contract ``version`` its cards will state, and the card's record of the change
    (None when ``version`` is None or the run's own: nothing changes)."""
    old = config.preprocessing
    if version is None or version == old.version:
        return config, None
    try:
        new = old.with_version(version)
    except ValueError as e:
        raise BadInputError(str(e)) from None
    records = [r for split in CHANGE_SPLITS for r in split_records(run_dir, config, split, data_dir)]
    change = check_contract_change(image_sizes(records), config.image_size, old.name, new.name)
    return replace(config, preprocessing=new), change
