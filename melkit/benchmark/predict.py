"""``melkit predict``: P(mel) and the decision for single photos, exactly as the app computes them.

Every image is decoded before any model runs, so an unreadable file is reported as bad input (exit 2)
rather than after minutes of work, and never silently dropped: a person asked about that photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melkit.benchmark import evaluate
from melkit.benchmark.inputs import open_model
from melkit.core.errors import BadInputError
from melkit.data.imageio import UnreadableImage, read_rgb
from melkit.data.preprocess import Contract

DECISIONS = {True: ("mel", "melanoma-suspicious"), False: ("nv", "nevus-like")}


def contract_images(paths, contract: Contract) -> np.ndarray:
    """The contract's steps up to q for each file: (N, size, size, 3) uint8."""
    out = []
    for p in paths:
        try:
            out.append(contract.apply(read_rgb(p, contract=contract)))
        except UnreadableImage as e:
            raise BadInputError(f"unreadable image: {e}") from None
    return np.stack(out)


def predict_files(model_path, image_paths) -> dict:
    if not image_paths:
        raise BadInputError("no images given")
    model = open_model(model_path)
    images = contract_images(image_paths, model.contract)
    if model.kind == "keras":
        probs = evaluate.keras_probs(evaluate.load_keras(model), images, desc="predict")
    else:
        probs = evaluate.tflite_probs(model, images, desc="predict")
    rows = []
    for path, p in zip(image_paths, probs):
        label, meaning = DECISIONS[bool(p >= model.threshold)]
        rows.append({"image": str(path), "p_mel": float(p), "decision": label, "meaning": meaning})
    return {"model": str(Path(model_path)), "kind": model.kind,
            "variant": model.card.variant if model.card else model.kind,
            "threshold": model.threshold, "image_size": model.image_size, "predictions": rows,
            "note": "Research model, not a medical device: it gives no diagnosis."}


def text(result: dict) -> str:
    lines = [f"{result['model']} ({result['variant']}, threshold {result['threshold']:.3f})"]
    width = max(len(r["image"]) for r in result["predictions"])
    for r in result["predictions"]:
        lines.append(f"{r['image']:<{width}}  P(mel) {r['p_mel']:.4f}  {r['meaning']}")
    lines.append(result["note"])
    return "\n".join(lines)
