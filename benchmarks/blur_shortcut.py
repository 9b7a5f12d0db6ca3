"""The low-resolution shortcut: does P(mel) rise when a sharp image is made as blurry as a low-resolution source?

BCN20000 is only at hand at 84x84 and is 40 % melanoma; HAM10000 and ISIC are sharp and 14-23 % melanoma. A
model trained on them can learn "blurry means melanoma". Measured directly, for each run (its float Keras
model, through its own contract): every image of DIR as it is, and the same image first downscaled to SIDE
pixels (short side; box filter, as a downscaled copy is made) and then through the contract (which resizes it
up). Reported per class: the mean change of P(mel) and the share of images whose P(mel) rises by more than
0.05. The screening issue's target: it must not rise.

    .venv/bin/python benchmarks/blur_shortcut.py RUN_DIR [RUN_DIR ...] [--data ../shared/data/isic2016-nv-mel]
        [--side 84]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from melkit.core.run import load_trained_model, predict_proba  # noqa: E402
from melkit.data.imageio import read_rgb  # noqa: E402
from melkit.data.readers import read_dataset  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isic2016-nv-mel"


def downscaled(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` with its short side at ``side`` pixels (box filter), as a downscaled copy of a set is made."""
    h, w = rgb.shape[:2]
    f = side / min(h, w)
    if f >= 1:
        return rgb
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--side", type=int, default=84)
    args = ap.parse_args()
    records = read_dataset(args.data).records
    labels = np.array([r.label for r in records])
    print(f"\nP(mel) change when {Path(args.data).name} ({len(records)} images) is downscaled to {args.side} px "
          f"first: mean ΔP, share rising > 0.05\n")
    print("| run | melanomas | nevi | all |")
    print("|---|---|---|---|")
    for run in args.runs:
        model, config = load_trained_model(run)
        contract = config.preprocessing
        sharp, blurry = [], []
        for r in records:
            rgb = read_rgb(r.path, contract=contract)
            sharp.append(contract.apply(rgb))
            blurry.append(contract.apply(downscaled(rgb, args.side)))
        delta = predict_proba(model, np.stack(blurry)) - predict_proba(model, np.stack(sharp))

        def cell(mask):
            return f"{delta[mask].mean():+.3f}, {100 * np.mean(delta[mask] > 0.05):.0f} %"

        print(f"| {run} | {cell(labels == 1)} | {cell(labels == 0)} | {cell(labels >= 0)} |")


if __name__ == "__main__":
    main()
