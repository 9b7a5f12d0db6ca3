"""Does a generic client decide like melkit? MediaPipe Tasks' top category against ``melkit predict``.

MediaPipe's ImageClassifier (and the TFLite Task Library) read the labels from the model's metadata and
report the top category, the argmax of [P(nv), P(mel)]. melkit decides "mel" when the model's P(mel) >= the
card's threshold. A model converted with the threshold folded in (convert/fold.py, the default) has
threshold 0.5 and no ties, so the two must agree on every image; an unfolded one disagrees wherever
0.5 < P(mel) < threshold (or the reverse).

MediaPipe cannot run melkit's contract (Shades of Gray, the box filter, melkit's exact resize), so, as
tests/mediapipe_client.py does, it is given the contract's output pixels at the model size: its own resize
is then the identity, and the comparison is of the model and its reading alone. The client runs in the
mediapipe venv (``bash setup.sh --with-mediapipe``; or MELKIT_MEDIAPIPE_PYTHON).

    .venv/bin/python benchmarks/mediapipe_agreement.py MODEL.tflite --data DIR [--data DIR2]
        [--split-csv SPLIT.csv --split test] [--limit N] [--min-agreement 0.999]

Prints n, the agreement, the disagreements (P(mel) and both answers) and, for an unfolded model, how many
images lie between 0.5 and the threshold. Exit 0; 1 when --min-agreement is given and not met; 2 on bad
input (one line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "tests" / "mediapipe_client.py"
MP_PYTHON = Path(os.environ.get("MELKIT_MEDIAPIPE_PYTHON", ROOT / ".venv-mediapipe" / "bin" / "python"))


def mediapipe_top(model: Path, images: np.ndarray) -> list[str]:
    """MediaPipe ImageClassifier's top category for each (S, S, 3) uint8 image, in the mediapipe venv."""
    if not MP_PYTHON.exists():
        raise FileNotFoundError(f"no mediapipe venv at {MP_PYTHON} (bash setup.sh --with-mediapipe)")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images)
        proc = subprocess.run([str(MP_PYTHON), str(CLIENT), str(model), str(Path(tmp) / "images.npy")],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mediapipe client failed: {proc.stderr.strip().splitlines()[-1:]}")
    return [r["top"] for r in json.loads(proc.stdout.strip().splitlines()[-1])]


def measure(model_path, data, split_csv=None, split=None, limit=None) -> dict:
    """Both answers on the contract's pixels of every selected image."""
    from melkit.bench import evaluate
    from melkit.bench.inputs import open_tflite, select_records
    from melkit.data.pipeline import load_images

    model = open_tflite(model_path)
    card = model.card
    source = select_records(None, None, split or "test", data, split_csv)
    records = source.records[:limit] if limit else source.records
    arr = load_images(records, card.preprocessing, desc=f"images {card.image_size}px")
    p = evaluate.tflite_probs(model, arr.images)  # raw P(mel), as melkit predict decides on it
    melkit = np.where(p >= card.threshold, "mel", "nv")
    top = np.array(mediapipe_top(Path(model_path), arr.images))
    lo, hi = sorted((0.5, float(card.threshold)))
    return {"model": str(model_path), "images": source.description, "n": len(p), "threshold": card.threshold,
            "folded": card.threshold_fold is not None,
            "agreement": float(np.mean(top == melkit)),
            "between_half_and_threshold": int(np.sum((p > lo) & (p < hi))),
            "disagreements": [{"image_id": r.image_id, "p_mel": float(pi), "melkit": m, "mediapipe": t}
                              for r, pi, m, t in zip(arr.records, p, melkit, top) if m != t]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", action="append", required=True, help="image directory (repeat for several)")
    ap.add_argument("--split-csv")
    ap.add_argument("--split", help="split of --split-csv (default test)")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--min-agreement", type=float, help="exit 1 below this agreement")
    a = ap.parse_args(argv)
    from melkit.util.errors import BadInputError

    try:
        r = measure(a.model, a.data, a.split_csv, a.split, a.limit)
    except (BadInputError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = r["disagreements"]
    print(f"{r['model']}: {r['n']} images ({r['images']}), card threshold {r['threshold']:.4f}, "
          f"{'threshold folded in' if r['folded'] else 'not folded'}")
    print(f"MediaPipe top category == melkit decision: {100 * r['agreement']:.2f} % ({r['n'] - len(d)} of {r['n']}); "
          f"{len(d)} disagreement(s)")
    if not r["folded"]:
        print(f"  {r['between_half_and_threshold']} image(s) have P(mel) between 0.5 and the threshold: there a "
              "generic client's argmax and melkit's threshold disagree (a folded model fixes this)")
    for x in d[:20]:
        print(f"  {x['image_id']}: P(mel) {x['p_mel']:.4f}  melkit {x['melkit']}  MediaPipe {x['mediapipe']}")
    if a.min_agreement is not None and r["agreement"] < a.min_agreement:
        print(f"agreement below --min-agreement {a.min_agreement}")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.exit(main())
