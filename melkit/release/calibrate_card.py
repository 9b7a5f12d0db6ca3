"""The card ``melkit calibrate`` writes beside the model's byte copy: the previous card with a new threshold,
its calibration record, and the threshold-centred records moved to the new threshold.

What the new card says:

* ``threshold``: the policy's choice on the set. A quantized output (uint8 or int8) can only answer
  ``scale * (k - zero_point)``; the threshold is then moved to lie exactly halfway between the two output
  values around it (the highest value the policy calls nevus and the lowest it calls melanoma). No answer
  can then equal the threshold, so no float rounding of the comparison, on the phone or here, can flip a
  decision (convert/decision_grid.py explains why an int8 threshold must lie between two answers). The
  move is at most half an output step and changes no decision on the set, whose answers all lie on that
  grid. convert gets the same guarantee for the first threshold by aligning the scores' grid to it; that
  changes the model, which calibrate never does, so the guarantee here is on the output grid alone.
* ``calibration.temperature`` (unless ``--no-temperature``): a temperature T fitted on the set by
  minimizing the negative log-likelihood of ``sigmoid(logit(P(mel)) / T)`` (a bounded 1-D search on log T),
  kept only if it lowers the NLL on the set both as fitted and out of sample (lesion-grouped 5-fold
  cross-validation: fitted on the set, any T lowers its NLL a little), else null; the ECE before and after
  is reported (on a hundred images it is too noisy to decide). It maps only the
  probability shown to a person, ``P_shown = sigmoid(logit(P(mel)) / T)``: the decision stays ``P(mel) >=
  threshold`` on the model's raw output, what the app compares, so a temperature never changes a decision
  (it is monotone); ``calibration.threshold_shown`` is the threshold on the shown scale.
* ``validation``: the set's metrics at the new threshold (as train writes it: the metrics where the
  threshold was chosen); the previous threshold, policy and validation are kept in
  ``calibration.previous``, the before/after numbers with bootstrap CIs in ``calibration.set``.
* ``borderline`` and ``likelihood_ratios`` (when the card has them): the borderline band keeps its logit
  half-width around the new threshold, and the risk bands' likelihood ratios are measured again on the set.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from melkit import __version__
from melkit.core import likelihood
from melkit.core.card import ModelCard
from melkit.core.probability import fold_logit, logit_band, tempered, unfold
from melkit.release.calibrate_sets import LabelledSet

__all__ = ["output_levels", "snap_to_grid", "new_card", "bands_at"]


def output_levels(card: ModelCard) -> np.ndarray | None:
    """Every P(mel) a quantized output can give, as melkit reads it (dequantized, clipped to [0, 1]),
    ascending and distinct; None for a float output."""
    q = card.output.quantization
    if q is None or card.output.dtype not in ("uint8", "int8"):
        return None
    info = np.iinfo(card.output.dtype)
    k = np.arange(info.min, info.max + 1, dtype=np.float64)
    # As litert.predict_p_mel dequantizes and evaluate.tflite_probs clips.
    return np.unique(np.clip((k - q.zero_point) * float(q.scale), 0.0, 1.0))


def snap_to_grid(threshold: float, levels: np.ndarray | None, step: float | None = None) -> tuple[float, dict | None]:
    """(threshold, record): ``threshold`` moved halfway between the output value below it and the lowest one
    at or above it, which decides every output value as ``threshold`` does. None record for a float output."""
    if levels is None:
        return float(threshold), None
    above = levels[levels >= threshold]
    below = levels[levels < threshold]
    if len(below) == 0:  # everyone is melanoma: there is no answer below to stay above
        new = float(threshold)
        halfway = False
        lo, hi = None, float(above[0])
    else:
        lo = float(below[-1])
        hi = float(above[0]) if len(above) else min(1.0, lo + (step or 0.0))  # nobody: past the top answer
        new = (lo + hi) / 2
        halfway = hi > lo
    return new, {
        "chosen": float(threshold),
        "threshold": new,
        "moved": new - float(threshold),
        "below": lo,
        "above": hi,
        "output_step": step,
        "halfway": halfway,
    }


def new_card(card: ModelCard, set_name: str, policy: str, threshold: float, grid: dict | None,
             temp: dict | None, calib: dict, evaluation: dict | None, eps: float) -> ModelCard:
    """``card`` with the threshold chosen by ``policy`` on the set ``set_name``, that set's metrics as its
    validation, and the calibration record (``calib``/``evaluation``: calibrate_sets.measure of each set,
    ``temp``: the temperature fit or None)."""
    temperature = temp["fitted"] if temp and temp["kept"] else None
    record = {
        "fitted_on": calib["description"],
        "n": calib["n"],
        "n_mel": calib["n_mel"],
        "n_nv": calib["n_nv"],
        "policy": policy,
        "threshold": threshold,
        "grid": grid,
        "temperature": temperature,
        "temperature_fit": temp,
        "applies_to": "temperature: the displayed probability only, P_shown = sigmoid(logit(P(mel)) / temperature) "
                      f"with P(mel) clipped to [{eps:g}, 1 - {eps:g}]; the decision compares the raw P(mel) "
                      "with threshold"
                      + ("; P(mel) is first unfolded (threshold_fold)" if card.threshold_fold else ""),
        "threshold_shown": (None if temperature is None else
                            float(tempered(unfold([threshold], fold_logit(card)), temperature, eps)[0])),
        "previous": {"threshold": card.threshold, "threshold_policy": card.threshold_policy,
                     "validation": card.validation, "calibration": card.calibration},
        "set": {k: calib[k] for k in ("auc", "auc_ci", "before", "after", "change", "probability")},
        **({"evaluation": evaluation} if evaluation else {}),
        "melkit": __version__,
    }
    after = calib["after"]
    validation = {"n": calib["n"], "auc": calib["auc"], "auc_ci": calib["auc_ci"],
                  "balanced_accuracy": after["balanced_accuracy"], "sensitivity": after["sensitivity"],
                  "specificity": after["specificity"], "set": calib["description"], "by": "melkit calibrate"}
    return replace(card, threshold=threshold, threshold_policy=f"{policy} on {set_name}",
                   validation=validation, calibration=record)


def bands_at(calibrated: ModelCard, card: ModelCard, s: LabelledSet, threshold: float) -> ModelCard:
    """``calibrated`` (:func:`new_card` of ``card``) with ``card``'s threshold-centred records moved to the new
    threshold: the borderline band keeps its logit half-width (the quantization noise does not depend on where
    the threshold is) around it, and the risk bands' likelihood ratios are measured again on this set, the
    user's own device."""
    changes = {}
    if card.borderline is not None:
        low, high = logit_band(threshold, float(card.borderline.get("logit_half_width", 0.0)))
        changes["borderline"] = {**card.borderline, "low": low, "high": high,
                                 "recentred": "melkit calibrate: the same logit half-width around its threshold"}
    if card.likelihood_ratios is not None:
        changes["likelihood_ratios"] = {**likelihood.measure(s.p, s.labels, threshold), "measured_on": s.description,
                                        "by": "melkit calibrate"}
    return replace(calibrated, **changes) if changes else calibrated

