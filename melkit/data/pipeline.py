"""From records to tensors: decode once, resize by the contract, keep in memory, then tf.data.

Images are decoded and resized once (in threads: Pillow and numpy release the GIL) and held as one
uint8 array, 150 KB per 224 px image, so 7,000 images fit in about 1 GB. Every epoch then reads memory,
not JPEGs. Augmentation happens only on the training split, after the contract's resize.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from melkit.data.contract import CONTRACT, Contract, normalize
from melkit.data.imageio import UnreadableImage, read_rgb
from melkit.util.progress import progress_bar


@dataclass
class ImageArray:
    """Resized uint8 images with their records; what could not be decoded is in ``skipped``."""

    records: list
    images: np.ndarray  # (N, S, S, 3) uint8: the contract's q
    skipped: list = field(default_factory=list)  # (image_id, reason)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int32)

    def subset(self, mask) -> "ImageArray":
        idx = np.flatnonzero(mask)
        return ImageArray([self.records[i] for i in idx], self.images[idx])


def dihedral(img: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 flips/rotations of a square image (t=0 is the identity)."""
    out = np.rot90(img, k=t % 4)
    return np.ascontiguousarray(out[:, ::-1] if t >= 4 else out)


def load_images(records, contract: Contract | int, desc="decoding", workers=None) -> ImageArray:
    """Decode every record once and apply the contract (a Contract with its image size, or just a size for the
    plain contract). Unreadable images are skipped and reported, not fatal."""
    contract = CONTRACT.for_size(contract) if isinstance(contract, int) else contract
    size = contract.image_size
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    out = np.zeros((len(records), size, size, 3), np.uint8)
    ok = np.zeros(len(records), bool)
    skipped = []
    by_path = {}  # --augment-before-split copies share one decode
    for i, r in enumerate(records):
        by_path.setdefault(r.path, []).append(i)

    def work(path):
        try:
            return path, contract.apply(read_rgb(path, contract=contract)), None
        except UnreadableImage as e:
            return path, None, str(e)

    with ThreadPoolExecutor(workers) as pool, progress_bar(total=len(by_path), desc=desc, unit="img") as bar:
        for path, img, err in pool.map(work, list(by_path)):
            for i in by_path[path]:
                if err is None:
                    out[i] = dihedral(img, records[i].transform)
                    ok[i] = True
                else:
                    skipped.append((records[i].image_id, err))
            bar.update(1)
    kept = [r for r, k in zip(records, ok) if k]
    return ImageArray(kept, out[ok], skipped)


def class_weights(labels) -> dict:
    """Balanced weights n / (2 * n_c): each class contributes equally to the loss."""
    labels = np.asarray(labels)
    n = len(labels)
    return {c: float(n / (2.0 * max(1, int((labels == c).sum())))) for c in (0, 1)}


def strata(records, by_class: bool, by_source: bool) -> np.ndarray | None:
    """Group index per record for balanced drawing: by class (oversampling), by source, both, or None."""
    if not (by_class or by_source):
        return None
    keys = [((r.source,) if by_source else ()) + ((r.label,) if by_class else ()) for r in records]
    index = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([index[k] for k in keys], np.int64)


def source_weights(records) -> np.ndarray:
    """Per-image weights n / (k * n_source): each of k sources contributes equally to the loss."""
    counts = Counter(r.source for r in records)
    return np.array([len(records) / (len(counts) * counts[r.source]) for r in records], np.float32)


def make_dataset(images, labels, batch_size, *, training=False, augmenter=None, seed=0, oversample=False,
                 groups=None, sample_weights=None):
    """A tf.data pipeline over in-memory uint8 images: shuffle, batch, augment, normalize, prefetch.

    Training draws equally from each group of ``groups`` (see :func:`strata`; ``oversample`` alone means
    by class). Returns (x, y) or (x, y, w) batches of float32 inputs per the contract and float32 labels.
    """
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    labels = np.asarray(labels, np.float32).reshape(-1, 1)
    n = len(labels)
    autotune = tf.data.AUTOTUNE
    if groups is None and oversample:
        groups = labels[:, 0].astype(np.int64)
    if groups is not None and training:
        # Equal draws from each group; an epoch is still n images so epochs stay comparable.
        parts = []
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            parts.append(
                tf.data.Dataset.from_tensor_slices((images[idx], labels[idx]))
                .shuffle(len(idx), seed=seed + int(g), reshuffle_each_iteration=True).repeat()
            )
        ds = tf.data.Dataset.sample_from_datasets(parts, weights=[1 / len(parts)] * len(parts), seed=seed).take(n)
    else:
        tensors = (images, labels) if sample_weights is None else (images, labels, np.asarray(sample_weights, np.float32))
        ds = tf.data.Dataset.from_tensor_slices(tensors)
        if training:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augmenter is not None:
        # One map call at a time keeps the random stream, and so the run, deterministic for a seed.
        ds = ds.map(lambda x, *rest: (augmenter(x), *rest), num_parallel_calls=1)
        ds = ds.map(lambda x, *rest: (tf.clip_by_value(x, 0.0, 255.0), *rest))
    ds = ds.map(lambda x, *rest: (normalize(x), *rest), num_parallel_calls=autotune)
    return ds.prefetch(autotune)
