"""Temperature scaling of P(mel): fitting a temperature T on labelled outputs, and the negative log-likelihood
it is judged by.

A temperature maps a calibrated P(mel) to the probability shown to a person, ``sigmoid(logit(P) / T)``
(applied by melkit.core.probability.tempered, which every reader of a card uses). It is monotone, so it never
changes a decision; it only makes the shown number honest where the model is over- or under-confident.
``melkit calibrate`` fits one on a user's own labelled set; this module is that fit, pure arithmetic on arrays
(no model, no images), beside probability.py which applies what a card says.

Why the fit is cautious: fitted on the set itself, any T lowers that set's NLL a little, so on a hundred images
that proves nothing. :func:`fit_temperature` keeps T only if it also lowers the NLL out of sample (lesion-grouped
cross-validation), and reports the ECE before and after without gating on it (too noisy on a small set).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.model_selection import StratifiedGroupKFold

from melkit.core.metrics import expected_calibration_error
from melkit.core.probability import tempered
from melkit.util.options import SEED

__all__ = ["TEMPERATURE_BOUNDS", "CV_FOLDS", "logit", "nll", "best_temperature", "fit_temperature"]

TEMPERATURE_BOUNDS = (0.05, 20.0)
CV_FOLDS = 5  # folds of the out-of-sample check of a temperature


def logit(p, eps: float) -> np.ndarray:
    """``log(p / (1 - p))`` with p clipped to [eps, 1 - eps] first (as tempered clips it)."""
    q = np.clip(np.asarray(p, float), eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def nll(y: np.ndarray, z: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``sigmoid(z / t)``, computed stably."""
    s = z / t
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def best_temperature(y: np.ndarray, z: np.ndarray) -> float:
    """The T within TEMPERATURE_BOUNDS minimizing :func:`nll` of labels ``y`` on logits ``z`` (a bounded 1-D
    search on log T)."""
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    best = minimize_scalar(lambda lt: nll(y, z, math.exp(lt)), bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-5})
    return float(math.exp(best.x))


def fit_temperature(y, p, eps: float, groups=None, folds: int = CV_FOLDS, seed: int = SEED) -> dict:
    """T minimizing the NLL of ``sigmoid(logit(p) / T)`` on (y, p), and whether to keep it.

    Fitted on the set itself, T always lowers the set's NLL a little, so that alone proves nothing on a
    small set. T is kept only if it also lowers the NLL out of sample: in a ``folds``-fold cross-validation
    over lesions (stratified by class), each fold's images scored with the T fitted on the other folds. The
    ECE is reported, not a gate: with 10 bins on a hundred images it moves by a few points by chance.
    """
    y = np.asarray(y, float)
    z = logit(p, eps)
    t = best_temperature(y, z)
    nll_before, nll_after = nll(y, z, 1.0), nll(y, z, t)
    lesions = np.arange(len(y)) if groups is None else np.asarray(groups)
    folds = min(folds, len(np.unique(lesions)))
    cv_raw = cv_t = math.nan
    if folds >= 2:
        cv_raw, cv_t = 0.0, 0.0
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the least populated class has fewer members than n_splits"
            splits = list(splitter.split(z, y.astype(int), lesions))
        for train, held in splits:
            t_fold = best_temperature(y[train], z[train])
            cv_raw += nll(y[held], z[held], 1.0) * len(held)
            cv_t += nll(y[held], z[held], t_fold) * len(held)
        cv_raw, cv_t = cv_raw / len(y), cv_t / len(y)
    kept = bool(nll_after < nll_before and cv_t < cv_raw)  # False when there was no cross-validation (NaN)
    reason = ("lowers the NLL on the set and out of sample (cross-validated)" if kept else
              "does not lower the NLL on the set" if nll_after >= nll_before else
              "too few lesions to check it out of sample" if folds < 2 else
              "does not lower the cross-validated NLL (it would fit this set's noise)")
    return {"fitted": t, "kept": kept, "reason": reason, "bounds": list(TEMPERATURE_BOUNDS), "logit_clip": eps,
            "nll_before": nll_before, "nll_after": nll_after,
            "cv_folds": folds, "cv_nll_before": None if folds < 2 else cv_raw,
            "cv_nll_after": None if folds < 2 else cv_t,
            "ece_before": expected_calibration_error(y.astype(int), np.asarray(p, float)),
            "ece_after": expected_calibration_error(y.astype(int), tempered(p, t, eps))}
