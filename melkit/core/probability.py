"""From the model's raw P(mel) to the probability shown to a person, as the card says.

The decision always compares the raw output with the card's threshold. The probability a person sees,
and that calibration metrics (ECE, Brier, reliability) are computed on, is the calibrated one:

1. ``threshold_fold`` (melkit convert folded the threshold into the model, convert/fold.py): the model
   answers ``P' = sigmoid(z - zt)``; the calibrated ``P = sigmoid(logit(P') + zt)``, computed on the odds
   (``P'e^zt / (P'e^zt + 1 - P')``) so that 0 and 1 map to themselves.
2. ``calibration.temperature`` (melkit calibrate): ``sigmoid(logit(P) / T)`` with P clipped to
   ``[eps, 1 - eps]`` before the logit, eps = ``calibration.temperature_fit.logit_clip`` (else
   :func:`logit_clip`).

Cards with neither give the raw output back. The Android core mirrors this (ModelCard.shownPMel).
"""

from __future__ import annotations

import numpy as np

FLOAT_EPS = 1e-6  # a float output's P(mel) is clipped to [eps, 1 - eps] before its logit


def logit_clip(card) -> float:
    """eps of the temperature's logit: half the output's step for a quantized output (its 0 means "below
    half a step"), FLOAT_EPS for a float one."""
    q = card.output.quantization
    return float(q.scale) / 2 if q is not None and card.output.dtype in ("uint8", "int8") else FLOAT_EPS


def unfold(p, fold_logit: float | None) -> np.ndarray:
    """The calibrated P(mel) from a folded model's raw one: ``sigmoid(logit(p) + fold_logit)``."""
    p = np.asarray(p, float)
    if not fold_logit:
        return p
    odds = p * np.exp(fold_logit)
    return odds / (odds + (1.0 - p))


def tempered(p, temperature: float | None, eps: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)``, p clipped to [eps, 1 - eps]; p itself without a temperature."""
    p = np.asarray(p, float)
    if temperature is None:
        return p
    q = np.clip(p, eps, 1.0 - eps)
    return 1.0 / (1.0 + np.exp(-(np.log(q) - np.log1p(-q)) / temperature))


def temperature_of(card) -> tuple[float | None, float]:
    """(calibration temperature or None, its logit clip)."""
    c = card.calibration or {}
    fit = c.get("temperature_fit") or {}
    return c.get("temperature"), float(fit.get("logit_clip") or logit_clip(card))


def fold_logit(card) -> float | None:
    return None if card.threshold_fold is None else float(card.threshold_fold["logit"])


def shown_p_mel(card, p_raw) -> np.ndarray:
    """The probability shown to a person for the model's raw P(mel) (array-like): unfolded, then tempered.
    Without a card (a Keras model), the raw P(mel)."""
    if card is None:
        return np.asarray(p_raw, float)
    t, eps = temperature_of(card)
    return tempered(unfold(p_raw, fold_logit(card)), t, eps)


def logit_band(threshold: float, half_width: float) -> tuple[float, float]:
    """(low, high): the probabilities ``half_width`` logits below and above ``threshold`` (which the band always
    holds): the borderline band as convert measures it (melkit/convert/borderline.py) and calibrate moves it."""
    t = float(np.clip(threshold, 1e-9, 1.0 - 1e-9))
    z = np.log(t) - np.log1p(-t)
    return (min(threshold, float(1.0 / (1.0 + np.exp(-(z - half_width))))),
            max(threshold, float(1.0 / (1.0 + np.exp(-(z + half_width))))))


PREVALENCES = (0.05, 0.15, 0.40)  # where the card states the post-test probability of each risk band


def band_of(p, edges) -> np.ndarray:
    """The risk band of each raw output (melkit/core/likelihood.py): band k holds ``edges[k] <= p <
    edges[k + 1]``, the last band up to and including 1; an output at the threshold is in the band above it. A NaN
    output is in no band: -1 (as the Android core's ModelCard.riskBand)."""
    p = np.asarray(p, float)
    return np.where(np.isnan(p), -1, np.searchsorted(np.asarray(edges[1:-1], float), p, side="right"))


def post_test_probability(lr, prevalence: float):
    """The probability of melanoma after an output with likelihood ratio ``lr``, where ``prevalence`` of the
    lesions examined are melanomas (post-test odds = prior odds x LR); None without an LR."""
    if lr is None:
        return None
    odds = prevalence / (1.0 - prevalence) * lr
    return odds / (1.0 + odds)
