"""The card of one converted model, built from the run it came from and what the conversion measured.

``melkit convert`` calls :func:`make_card` once per variant; the card it returns is checked to survive
:meth:`ModelCard.from_json` and :meth:`ModelCard.to_json` unchanged, so a field ModelCard does not know fails
the conversion instead of vanishing from a later rewrite of the card (calibrate, bundle). What each field means
is in melkit/core/card.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from melkit.core.card import CARD_VERSION, ModelCard, sha256
from melkit.core.run import RunConfig
from melkit.util.files import _jsonable

__all__ = ["make_card"]


def _validation(m: dict) -> dict:
    """The headline metrics of one evaluation, as the card states them."""
    return {k: m[k] for k in ("n", "auc", "auc_ci", "balanced_accuracy", "sensitivity", "specificity")}


def make_card(*, model_file: str, data: bytes, variant: str, io: dict,
              config: RunConfig, metrics: dict, run_dir,
              name: str, version: str,
              selfcheck: dict, extra: dict | None = None, domain_guard: dict | None = None,
              threshold_fold: dict | None = None, borderline: dict | None = None,
              likelihood_ratios: dict | None = None,
              license: str | None = None, author: str | None = None, versions: dict | None = None) -> ModelCard:
    """The card of one converted model, every argument named, in five groups:

    * the model: its file name, bytes, ``variant`` and ``io`` (the interpreter's io_details);
    * the run it came from: its ``config``, ``metrics`` (metrics.json) and ``run_dir``;
    * the release: its ``name`` and ``version``;
    * what the conversion measured and added: the ``selfcheck``, ``extra`` top-level keys (``conversion``), and the
      optional records ``domain_guard`` (melkit/convert/domain_guard.py), ``threshold_fold`` (fold.py),
      ``borderline`` (borderline.py) and ``likelihood_ratios`` (melkit/core/likelihood.py), each left out when None;
    * provenance: ``license``, ``author`` and ``versions`` ({"training": ..., "conversion": ...}), what the model's
      metadata states (melkit/convert/provenance.py); without them the card is as older releases' were (no
      licence or author, ``versions`` the run's).
    """
    d = {
        "melkit_card": CARD_VERSION,
        "name": name,
        "version": version,
        "variant": variant,
        "model_file": model_file,
        "sha256": sha256(data),
        "size_bytes": len(data),
        "labels": list(config.labels),
        "labels_file": "labels.txt",
        # folded into the model: its output crosses 0.5 where the trained P(mel) crosses the threshold
        "threshold": metrics["threshold"] if threshold_fold is None else 0.5,
        **({"threshold_fold": threshold_fold} if threshold_fold else {}),
        "threshold_policy": metrics["threshold_policy"],
        "decision": "melanoma-suspicious when P(mel) >= threshold, else nevus-like"
                    + ("; not assessed (no P(mel) given) when domain_score > domain_guard.threshold"
                       if domain_guard else "")
                    + ("; borderline (shown with the decision) when borderline.low <= P(mel) <= borderline.high"
                       if borderline else ""),
        **({"borderline": borderline} if borderline else {}),
        **({"likelihood_ratios": likelihood_ratios} if likelihood_ratios else {}),
        "preprocessing": config.preprocessing.to_json(),
        "input": io["input"],
        "output": {**io["output"], "meaning": "[P(nv), P(mel)], matching labels"},
        "source_run": {
            # names, not this machine's paths: a card travels with its model to other machines and the app
            "path": Path(run_dir).resolve().name,
            "recipe": config.recipe.name,
            "alpha": config.alpha,
            "seed": config.seed,
            "weights": Path(config.model["weights"]).name if config.model["weights"] else None,
        },
        "training_data": {
            "dir": " + ".join(Path(d).name for d in config.data_dirs),
            "counts": config.data["counts"],
            **({"counts_by_source": config.data["counts_by_source"]} if "counts_by_source" in config.data else {}),
            "split": {k: config.data["split"][k] for k in ("mode", "augment_before_split", "seed", "counts")},
        },
        "validation": _validation(metrics["val"]),
        "selfcheck": selfcheck,
        "versions": config.versions if versions is None else versions,
        "not_a_medical_device": "Research model. It gives no diagnosis and must not be used for clinical decisions.",
        **{k: v for k, v in (("license", license), ("author", author)) if v is not None},
        **({"domain_guard": domain_guard} if domain_guard else {}),
        # several sources: each one's validation at the same threshold, and each external set's
        **({"validation_by_source": {s: _validation(m["val"]) for s, m in metrics["sources"].items() if "val" in m}}
           if metrics.get("sources") else {}),
        **({"external": {s: _validation(m) for s, m in metrics["external"].items() if m.get("n")}}
           if metrics.get("external") else {}),
        **(extra or {}),
    }
    text = json.dumps(d, default=_jsonable)  # numpy scalars, tuples, paths: as write_json writes them
    card = ModelCard.from_json(json.loads(text))
    if json.dumps(card.to_json()) != text:  # a field ModelCard does not know would be lost
        raise ValueError(f"ModelCard does not reproduce the card of {model_file}: update melkit/core/card.py")
    return card
