"""The int8 representative set: images from the run's *training* split only, through the contract.

Calibrating on val/test would leak them into the model's quantization ranges. One synthetic full-range
image (every pixel value 0 and 255 present) pins the input range to exactly [-1, 127/128], which makes
the uint8 input's scale 1/128 and zero point 128.

``sources="balanced"`` draws the images equally from every training source (as far as each has images) rather
than in proportion to their size, so the ranges are not HAM10000's alone (the parity issue's candidate 4).
"""

from __future__ import annotations

import numpy as np

from melkit.core.run import split_records
from melkit.data.pipeline import load_images
from melkit.util.errors import BadInputError


def full_range_image(size: int) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[::2, ::2] = 255
    img[1::2, 1::2] = 255
    return img


CALIBRATION_SOURCES = ("pooled", "balanced")


def _balanced_pick(records, n: int, rng) -> list:
    """n indices drawn equally from each source (a small source gives all it has, the rest share what is left)."""
    by_source = {}
    for i, r in enumerate(records):
        by_source.setdefault(r.source, []).append(i)
    pools = [list(rng.permutation(v)) for _, v in sorted(by_source.items())]
    pick, left = [], min(n, len(records))
    while left > 0:
        open_pools = [p for p in pools if p]
        share = max(1, left // len(open_pools))
        for pool in open_pools:
            take = min(share, len(pool), left)
            pick += [int(i) for i in pool[:take]]
            del pool[:take]
            left -= take
            if left == 0:
                break
    return pick


def representative_images(run_dir, config, n: int, seed: int, data_dir=None, sources: str = "pooled") -> np.ndarray:
    """n-1 training images (seeded choice; ``sources`` "balanced": equally from each source) + one full-range
    image, as uint8 q (N, S, S, 3)."""
    if n < 2:
        raise BadInputError("the representative set needs at least 2 images")
    size = config.image_size
    records = split_records(run_dir, config, "train", data_dir)
    rng = np.random.default_rng(seed)
    if sources == "balanced":
        pick = sorted(_balanced_pick(records, n - 1, rng))
    else:
        pick = sorted(rng.choice(len(records), size=min(n - 1, len(records)), replace=False))
    arr = load_images([records[i] for i in pick], config.preprocessing, desc="calibration")
    if len(arr.records) == 0:
        raise BadInputError("the representative set is empty: no training image could be read")
    return np.concatenate([arr.images, full_range_image(size)[None]], axis=0)
