"""The model card JSON beside each .tflite: the one contract bench, bundle and the Android app read.

It says how to feed the model (the preprocessing contract, input/output dtypes, shapes, quantization),
how to read it (labels, the decision threshold chosen on validation), where it came from (run, data,
split, versions) and which file it describes (sha256).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from melkit.data.preprocess import CONTRACT
from melkit.core.errors import BadInputError
from melkit.core.files import read_json

CARD_VERSION = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_card(model_file: str, data: bytes, variant: str, io: dict, config: dict, metrics: dict, run_dir,
              name: str, version: str, selfcheck: dict, extra: dict | None = None) -> dict:
    return {
        "melkit_card": CARD_VERSION,
        "name": name,
        "version": version,
        "variant": variant,
        "model_file": model_file,
        "sha256": sha256(data),
        "size_bytes": len(data),
        "labels": config["labels"],
        "labels_file": "labels.txt",
        "threshold": metrics["threshold"],
        "threshold_policy": metrics["threshold_policy"],
        "decision": "melanoma-suspicious when P(mel) >= threshold, else nevus-like",
        "preprocessing": {**CONTRACT, "image_size": config["preprocessing"]["image_size"]},
        "input": io["input"],
        "output": {**io["output"], "meaning": "[P(nv), P(mel)], matching labels"},
        "source_run": {
            "path": str(Path(run_dir).resolve()),
            "recipe": config["recipe"]["name"],
            "alpha": config["model"]["alpha"],
            "seed": config["seed"],
            "weights": config["model"]["weights"],
        },
        "training_data": {
            "dir": config["data"]["dir"],
            "counts": config["data"]["counts"],
            "split": {k: config["data"]["split"][k] for k in ("mode", "augment_before_split", "seed", "counts")},
        },
        "validation": {k: metrics["val"][k] for k in ("n", "auc", "auc_ci", "balanced_accuracy", "sensitivity",
                                                       "specificity")},
        "selfcheck": selfcheck,
        "versions": config["versions"],
        "not_a_medical_device": "Research model. It gives no diagnosis and must not be used for clinical decisions.",
        **(extra or {}),
    }


def load_card(model_path) -> dict:
    """The card of a .tflite (``<model>.json``), checked against the file's sha256."""
    model_path = Path(model_path)
    card_path = model_path.with_suffix(".json")
    if not card_path.is_file():
        raise BadInputError(f"no model card {card_path} beside {model_path}")
    try:
        card = read_json(card_path)
    except ValueError as e:
        raise BadInputError(f"{card_path}: not valid JSON ({e})") from None
    if card.get("melkit_card") != CARD_VERSION:
        raise BadInputError(f"{card_path}: not a melkit model card (version {card.get('melkit_card')})")
    if sha256(model_path.read_bytes()) != card["sha256"]:
        raise BadInputError(f"{model_path} does not match its card (sha256 differs)")
    return card
