"""The int8 representative set: images from the run's *training* split only, through the contract.

Calibrating on val/test would leak them into the model's quantization ranges. One synthetic full-range
image (every pixel value 0 and 255 present) pins the input range to exactly [-1, 127/128], which makes
the uint8 input's scale 1/128 and zero point 128.
"""

from __future__ import annotations

import numpy as np

from melkit.core.errors import BadInputError
from melkit.core.run import split_records
from melkit.data.pipeline import load_images


def full_range_image(size: int) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[::2, ::2] = 255
    img[1::2, 1::2] = 255
    return img


def representative_images(run_dir, config, n: int, seed: int, data_dir=None) -> np.ndarray:
    """n-1 training images (seeded choice) + one full-range image, as uint8 q (N, S, S, 3)."""
    if n < 2:
        raise BadInputError("the representative set needs at least 2 images")
    size = config.image_size
    records = split_records(run_dir, config, "train", data_dir)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(records), size=min(n - 1, len(records)), replace=False))
    arr = load_images([records[i] for i in pick], config.preprocessing, desc="calibration")
    if len(arr.records) == 0:
        raise BadInputError("the representative set is empty: no training image could be read")
    return np.concatenate([arr.images, full_range_image(size)[None]], axis=0)
