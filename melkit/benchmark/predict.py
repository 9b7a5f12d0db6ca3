"""``melkit predict``: P(mel) and the decision for single photos, exactly as the app computes them.

Every image is decoded before any model runs, so an unreadable file is reported as bad input (exit 2)
rather than after minutes of work, and never silently dropped: a person asked about that photo.

A model converted with ``--domain-guard`` also says, for each image, whether it looks like a dermoscopic
lesion image (``in_domain`` and the ``domain_score`` behind it). When it does not, the decision is
``not_assessed`` with a plain message and no melanoma score (``p_mel`` is null); the exit code stays 0.
Rows of models without a guard are as before (no ``in_domain``).

``p_mel`` is the probability shown to a person (melkit.core.probability: unfolded when the card's threshold
was folded into the model, tempered when melkit calibrate fitted a temperature); the decision compares the
model's raw output with the card's threshold. When the two differ (such a card), each row also gives that raw
output (``p_output``) and the result the threshold on the shown scale (``threshold_shown``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from melkit.benchmark import evaluate
from melkit.benchmark.inputs import open_model
from melkit.core.card import NOT_ASSESSED
from melkit.core.errors import BadInputError
from melkit.core.probability import shown_p_mel
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
    scores = None
    if model.kind == "keras":
        probs = evaluate.keras_probs(evaluate.load_keras(model), images, desc="predict")
    else:
        probs, scores = evaluate.tflite_outputs(model, images, desc="predict")
    rows = []
    shown = shown_p_mel(model.card, probs)  # None for a Keras run: its raw P(mel)
    mapped = model.card is not None and (model.card.threshold_fold is not None
                                         or (model.card.calibration or {}).get("temperature") is not None)
    for i, (path, p) in enumerate(zip(image_paths, probs)):
        label, meaning = DECISIONS[bool(p >= model.threshold)]
        row = {"image": str(path), "p_mel": float(shown[i]), "decision": label, "meaning": meaning}
        if mapped:
            row["p_output"] = float(p)
        if scores is not None:
            in_domain = bool(model.card.in_domain(scores[i]))
            if not in_domain:  # no melanoma score at all, raw or shown
                row.update(p_mel=None, decision="not_assessed", meaning=NOT_ASSESSED,
                           **({"p_output": None} if mapped else {}))
            row.update(in_domain=in_domain, domain_score=float(scores[i]))
        rows.append(row)
    guard = {"domain_threshold": model.card.guard_threshold} if scores is not None else {}
    if mapped:
        guard["threshold_shown"] = float(shown_p_mel(model.card, [model.threshold])[0])
    return {"model": str(Path(model_path)), "kind": model.kind,
            "variant": model.card.variant if model.card else model.kind,
            "threshold": model.threshold, **guard, "image_size": model.image_size, "predictions": rows,
            "note": "Research model, not a medical device: it gives no diagnosis."}


def text(result: dict) -> str:
    guard = (f", domain guard threshold {result['domain_threshold']:.3f}" if "domain_threshold" in result else "")
    threshold = result.get("threshold_shown", result["threshold"])  # on the scale of the P(mel) shown
    lines = [f"{result['model']} ({result['variant']}, threshold {threshold:.3f}{guard})"]
    width = max(len(r["image"]) for r in result["predictions"])
    for r in result["predictions"]:
        if r.get("in_domain") is False:
            lines.append(f"{r['image']:<{width}}  P(mel)   -     {r['meaning']} "
                         f"(domain score {r['domain_score']:.3g} > {result['domain_threshold']:.3g})")
        else:
            lines.append(f"{r['image']:<{width}}  P(mel) {r['p_mel']:.4f}  {r['meaning']}")
    lines.append(result["note"])
    return "\n".join(lines)
