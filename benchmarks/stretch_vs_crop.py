"""Stretch or centre crop: which input geometry suits the released models (contract v1 and v2)?

The contract stretches the whole image to a square (aspect ratio not kept); the training data (HAM10000
200x150, ISIC 2017 256x256) was stretched that way. A photo could instead be cropped to its centre square
first. This measures both with a release model on ISIC 2016 (external to its training, ~600x450), under
contract v1 and v2: AUC of each, and the paired bootstrap CI of AUC(stretch) - AUC(crop).

    .venv/bin/python benchmarks/stretch_vs_crop.py [--model tflite_models/melkit_mnv2_1_224_int8.tflite]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from melkit.core.card import load_card
from melkit.core.litert import load_interpreter, predict_p_mel
from melkit.core.metrics import roc_auc
from melkit.data.imageio import read_rgb

ROOT = Path(__file__).resolve().parent.parent


def centre_square(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top:top + s, left:left + s]


def labelled_images(data: Path, limit: int):
    rows = list(csv.DictReader(open(data / "metadata.csv", newline="")))
    rows = [r for r in rows if r["dx"] in ("nv", "mel")][:limit or None]
    paths = [next((data / "images").glob(r["image_id"] + ".*")) for r in rows]
    return paths, np.array([r["dx"] == "mel" for r in rows], int)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"))
    p.add_argument("--data", default=str(ROOT / "../shared/data/isic2016-nv-mel"))
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    card = load_card(args.model)
    interp = load_interpreter(args.model, num_threads=args.threads)
    paths, y = labelled_images(Path(args.data), args.limit)
    t0 = time.perf_counter()
    probs = {}
    for version in (1, 2):
        contract = card.preprocessing.with_version(version)
        for geometry, cut in (("stretch", lambda a: a), ("crop", centre_square)):
            q = np.stack([contract.apply(cut(read_rgb(path, contract=contract))) for path in paths])
            probs[version, geometry] = predict_p_mel(interp, q, p_mel_index=card.p_mel_index)
    rng = np.random.default_rng(0)
    print(f"{card.name} {card.version} ({card.variant}) on {len(y)} images of {args.data} ({y.sum()} mel), "
          f"{time.perf_counter() - t0:.0f} s")

    def paired(a, b) -> str:
        """AUC(a) - AUC(b) with its 95 % paired bootstrap CI (the same resampled images for both)."""
        diffs = []
        for _ in range(args.n_boot):
            i = rng.integers(0, len(y), len(y))
            if 0 < y[i].sum() < len(i):
                diffs.append(roc_auc(y[i], a[i]) - roc_auc(y[i], b[i]))
        lo, hi = np.quantile(diffs, [0.025, 0.975])
        return f"{roc_auc(y, a) - roc_auc(y, b):+.4f} [{lo:+.4f}, {hi:+.4f}]"

    print(f"{'contract':<10} {'AUC stretch':>11} {'AUC crop':>9}  stretch - crop [95% paired bootstrap CI]")
    for version in (1, 2):
        s, c = probs[version, "stretch"], probs[version, "crop"]
        print(f"melkit-v{version:<3} {roc_auc(y, s):>11.4f} {roc_auc(y, c):>9.4f}  {paired(s, c)}")
    print(f"v2 - v1, stretched: {paired(probs[2, 'stretch'], probs[1, 'stretch'])}")


if __name__ == "__main__":
    main()
