"""Clinical metrics of a binary melanoma-vs-nevus classifier.

Conventions used throughout:

* label 1 = melanoma = positive class, label 0 = nevus = negative class;
* ``p`` is the predicted probability of melanoma;
* a decision at ``threshold`` calls a lesion melanoma when ``p >= threshold`` (the same rule as
  ``sklearn.metrics.roc_curve``, so thresholds taken from the ROC curve mean what they say).

Everything that is undefined on the data at hand (an AUC with one class, a sensitivity without
positives) is reported as ``None`` rather than as NaN or a crash, because a benchmark on a small or
skewed split must still produce a readable report. Bad inputs raise :class:`BadInputError`.

Choosing the decision threshold by a named policy (youden, sensitivity:X, ...) is
melkit.core.threshold_policy's job, on the ROC operating points computed here.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from melkit.util.errors import BadInputError
from melkit.util.options import SEED

__all__ = [
    "roc_auc",
    "bootstrap_auc_ci",
    "bootstrap_decision_cis",
    "confusion_at",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "expected_calibration_error",
    "brier_score",
    "reliability_curve",
    "binary_report",
    "N_BOOT",
]

N_BOOT = 1000  # bootstrap resamples of the AUC CI (melkit bench --bootstrap, train's metrics)

# Ratios such as 9/10 and the literal 0.9 are both correctly rounded and compare equal, but a
# tolerance keeps a target like 0.9 from missing a point at exactly 90% through rounding elsewhere.
_EPS = 1e-12


# --------------------------------------------------------------------------- input validation


def _validate(y_true, p) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y, p)`` as 1-D int / float arrays, or raise BadInputError saying what is wrong."""
    try:
        y = np.asarray(y_true)
        q = np.asarray(p, dtype=float)
    except (TypeError, ValueError) as exc:  # ragged lists, strings that are not numbers
        raise BadInputError(f"labels and probabilities must be 1-D numeric sequences ({exc})") from exc
    if y.ndim != 1 or q.ndim != 1:
        raise BadInputError(f"labels and probabilities must be 1-D, got shapes {y.shape} and {q.shape}")
    if len(y) != len(q):
        raise BadInputError(f"labels and probabilities differ in length: {len(y)} vs {len(q)}")
    if len(y) == 0:
        raise BadInputError("no samples: labels and probabilities are empty")
    # bool labels are fine (True = melanoma); anything else must be numeric and exactly 0 or 1.
    if y.dtype == bool:
        y = y.astype(int)
    if not np.issubdtype(y.dtype, np.number):
        raise BadInputError(f"labels must be 0 (nevus) or 1 (melanoma), got dtype {y.dtype}")
    if not np.all(np.isin(y, (0, 1))):
        bad = sorted({v.item() for v in y[~np.isin(y, (0, 1))]}, key=str)[:5]
        raise BadInputError(f"labels must be 0 (nevus) or 1 (melanoma), found {bad}")
    if not np.all(np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
        raise BadInputError("probabilities must be finite and within [0, 1]")
    return y.astype(int), q


def _validate_groups(groups, n: int) -> np.ndarray:
    """Return ``groups`` as a 1-D array of length ``n`` (any hashable-sortable ids, e.g. lesion ids)."""
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise BadInputError(f"groups must be 1-D with one id per sample ({n}), got shape {g.shape}")
    return g


def _validate_unit(value, name: str, lo_open: bool = False, hi_open: bool = False) -> float:
    """Check that ``value`` is a real number in [0, 1] (ends open as asked) and return it as float."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise BadInputError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if (value < 0 or value > 1) or (lo_open and value == 0) or (hi_open and value == 1):
        span = ("(" if lo_open else "[") + "0, 1" + (")" if hi_open else "]")
        raise BadInputError(f"{name} must lie in {span}, got {value}")
    return value


def _validate_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise BadInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.min() == 0 and y.max() == 1)


# --------------------------------------------------------------------------- AUC and its CI


def roc_auc(y_true, p) -> float | None:
    """Area under the ROC curve, or None when ``y_true`` holds a single class (AUC is undefined).

    Ties between a melanoma and a nevus count one half, as in the Mann-Whitney statistic
    (sklearn does this).
    """
    y, q = _validate(y_true, p)
    if not _both_classes(y):
        return None
    return float(roc_auc_score(y, q))


def _weighted_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of each row of ``weights`` (shape ``(B, n)``, a count per sample), ties counting one half.

    A bootstrap resample is a multiset of the original samples, so it is fully described by how
    often each sample was drawn. Working on those counts lets all resamples share one sort of ``p``
    instead of re-sorting B times. Rows without both classes give NaN.
    """
    values, inv = np.unique(p, return_inverse=True)  # ascending distinct scores
    u = len(values)
    b = weights.shape[0]
    offsets = (np.arange(b) * u)[:, None]

    def per_value(mask: np.ndarray) -> np.ndarray:
        # Sum the weights of the samples of one class that share each distinct score -> (B, u).
        flat = (offsets + inv[mask][None, :]).ravel()
        return np.bincount(flat, weights=weights[:, mask].ravel(), minlength=b * u).reshape(b, u)

    pos = per_value(y == 1)
    neg = per_value(y == 0)
    # A melanoma at score s beats every nevus strictly below s and ties (1/2) with those at s.
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = np.sum(pos * (neg_below + 0.5 * neg), axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def _check_n_boot(n_boot) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise BadInputError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


def _bootstrap_weights(n: int, groups, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)``: how often each sample is in each resample (the same resamples for a given seed).

    With ``groups`` whole groups are drawn with replacement and each sample carries its group's count;
    without, samples are drawn one by one.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        units, unit_of_sample = n, np.arange(n)
    else:
        g = _validate_groups(groups, n)
        _, unit_of_sample = np.unique(g, return_inverse=True)
        units = int(unit_of_sample.max()) + 1
    # Draw `units` units per resample and count how often each unit was drawn ...
    draws = rng.integers(0, units, size=(n_boot, units))
    counts = np.bincount((np.arange(n_boot)[:, None] * units + draws).ravel(), minlength=n_boot * units)
    counts = counts.reshape(n_boot, units).astype(float)
    # ... then every sample carries the count of its unit (its lesion, or itself).
    return counts[:, unit_of_sample]


def bootstrap_auc_ci(
    y_true, p, groups=None, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of the AUC, or None when the AUC is undefined.

    With ``groups`` (e.g. lesion ids) whole groups are resampled with replacement and every image
    of a drawn group comes along: images of one lesion are not independent, and resampling them
    one by one would give a CI that is too narrow. Without groups, images are resampled.
    Resamples that contain a single class have no AUC and are skipped. The result is
    deterministic for a given ``seed`` (``numpy.random.default_rng(seed)``).
    """
    y, q = _validate(y_true, p)
    n_boot = _check_n_boot(n_boot)
    level = _validate_unit(level, "level", lo_open=True, hi_open=True)
    if not _both_classes(y):
        return None
    aucs = _weighted_auc(y, q, _bootstrap_weights(len(y), groups, n_boot, seed))
    aucs = aucs[~np.isnan(aucs)]
    if len(aucs) == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(aucs, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_decision_cis(
    y_true, p, thresholds, groups=None, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95
) -> list[dict]:
    """Percentile-bootstrap CIs of sensitivity, specificity and balanced accuracy at each threshold.

    Returns one dict per threshold, ``{"sensitivity": [lo, hi], "specificity": ..., "balanced_accuracy":
    ...}`` (None where a class is missing). Every threshold is measured on the same resamples (lesions
    with ``groups``, as :func:`bootstrap_auc_ci` draws them for the same seed), so the dicts after the
    first also hold ``"change"``: the CI of each metric at that threshold minus at the first one, a
    paired comparison that is much tighter than comparing two separate intervals. Resamples without
    one of the classes leave out the metrics that need it.
    """
    y, q = _validate(y_true, p)
    n_boot = _check_n_boot(n_boot)
    level = _validate_unit(level, "level", lo_open=True, hi_open=True)
    thresholds = [float(t) for t in thresholds]
    if not thresholds or not all(math.isfinite(t) for t in thresholds):
        raise BadInputError(f"thresholds must be finite numbers, got {thresholds!r}")
    w = _bootstrap_weights(len(y), groups, n_boot, seed)
    pos, neg = w @ (y == 1), w @ (y == 0)
    alpha = (1.0 - level) / 2.0

    def ci(values: np.ndarray):
        values = values[~np.isnan(values)]
        if len(values) == 0:
            return None
        lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
        return [float(lo), float(hi)]

    with np.errstate(invalid="ignore", divide="ignore"):
        draws = []
        for t in thresholds:
            called = q >= t
            sens = np.where(pos > 0, (w @ (called & (y == 1))) / pos, np.nan)
            spec = np.where(neg > 0, (w @ (~called & (y == 0))) / neg, np.nan)
            draws.append({"sensitivity": sens, "specificity": spec, "balanced_accuracy": (sens + spec) / 2})
    out = []
    for i, d in enumerate(draws):
        row = {k: ci(v) for k, v in d.items()}
        if i:
            row["change"] = {k: ci(v - draws[0][k]) for k, v in d.items()}
        out.append(row)
    return out


# --------------------------------------------------------------------------- operating points


def _roc_points(y: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ROC operating points as ``(thresholds, sensitivity, specificity)``, thresholds descending.

    Every distinct score is kept (``drop_intermediate=False``) because a policy may pick any of
    them. Sensitivity and specificity are recomputed from integer counts so that e.g. 9 of 10
    nevi gives a specificity of exactly 0.9. The first threshold is sklearn's "nobody positive"
    point (inf, or max+1 in old versions); callers clip it.
    """
    fpr, tpr, thr = roc_curve(y, q, drop_intermediate=False)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    tp = np.rint(tpr * n_pos)
    fp = np.rint(fpr * n_neg)
    return thr, tp / n_pos, (n_neg - fp) / n_neg


def confusion_at(y_true, p, threshold) -> dict:
    """Confusion counts ``{"tp", "fp", "tn", "fn"}`` (plain ints) when deciding melanoma at ``p >= threshold``."""
    y, q = _validate(y_true, p)
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
        raise BadInputError(f"threshold must be a finite number, got {threshold!r}")
    pred = q >= threshold
    pos = y == 1
    return {
        "tp": int(np.sum(pred & pos)),
        "fp": int(np.sum(pred & ~pos)),
        "tn": int(np.sum(~pred & ~pos)),
        "fn": int(np.sum(~pred & pos)),
    }


def sensitivity_at_specificity(y_true, p, target: float = 0.90) -> float | None:
    """Best sensitivity among ROC thresholds whose specificity is >= ``target``; None with one class.

    The "nobody positive" point (sensitivity 0, specificity 1) always qualifies, so the answer is
    defined whenever both classes are present.
    """
    y, q = _validate(y_true, p)
    target = _validate_unit(target, "target")
    if not _both_classes(y):
        return None
    _, sens, spec = _roc_points(y, q)
    return float(sens[spec >= target - _EPS].max())


def specificity_at_sensitivity(y_true, p, target: float = 0.90) -> float | None:
    """Best specificity among ROC thresholds whose sensitivity is >= ``target``; None with one class.

    The lowest threshold (everybody positive, sensitivity 1) always qualifies.
    """
    y, q = _validate(y_true, p)
    target = _validate_unit(target, "target")
    if not _both_classes(y):
        return None
    _, sens, spec = _roc_points(y, q)
    return float(spec[sens >= target - _EPS].max())


# --------------------------------------------------------------------------- calibration


def _bin_index(q: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability: bin b covers [b/n, (b+1)/n), and p == 1 joins the last bin.

    ``floor(p * n)`` keeps 0.3 in bin [0.3, 0.4) with 10 bins, whereas comparing against
    ``linspace(0, 1, 11)`` would not (its 4th edge is 0.30000000000000004).
    """
    return np.minimum((q * n_bins).astype(int), n_bins - 1)


def reliability_curve(y_true, p, n_bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin: ``lo``, ``hi``, ``n``, ``mean_p`` and ``frac_pos`` (observed melanoma rate).

    A calibrated model has ``mean_p`` close to ``frac_pos`` in every bin.
    """
    y, q = _validate(y_true, p)
    n_bins = _validate_n_bins(n_bins)
    idx = _bin_index(q, n_bins)
    rows = []
    for b in np.unique(idx).tolist():  # .tolist() -> plain ints, so lo/hi come out as plain floats
        inside = idx == b
        rows.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "n": int(inside.sum()),
                "mean_p": float(q[inside].mean()),
                "frac_pos": float(y[inside].mean()),
            }
        )
    return rows


def expected_calibration_error(y_true, p, n_bins: int = 10) -> float:
    """ECE: the mean over equal-width bins of |mean(p) - mean(y)|, weighted by the share of samples in the bin."""
    y, q = _validate(y_true, p)
    return float(sum(r["n"] * abs(r["mean_p"] - r["frac_pos"]) for r in reliability_curve(y, q, n_bins)) / len(y))


def brier_score(y_true, p) -> float:
    """Brier score: mean squared difference between the probability and the 0/1 label (lower is better)."""
    y, q = _validate(y_true, p)
    return float(np.mean((q - y) ** 2))


# --------------------------------------------------------------------------- report


def binary_report(y_true, p, threshold, groups=None, n_boot: int = N_BOOT, seed: int = SEED, shown=None) -> dict:
    """All metrics of one evaluation as a JSON-serializable dict (plain floats, ints and None).

    Metrics that a missing class makes undefined are None, so a one-class split still reports.
    ``majority_baseline`` is the accuracy of always answering the majority class (nevus on a tie):
    a model whose accuracy does not beat it has learned nothing usable from accuracy's point of view.
    ``shown``: the probabilities a person is shown (melkit.core.probability), if not ``p`` itself: the
    calibration metrics (ECE, Brier) are computed on them, decisions and AUC on ``p``.
    """
    y, q = _validate(y_true, p)
    q_shown = q if shown is None else _validate(y_true, shown)[1]
    n = len(y)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    if groups is not None:
        groups = _validate_groups(groups, n)
    conf = confusion_at(y, q, threshold)
    sens = conf["tp"] / n_pos if n_pos else None
    spec = conf["tn"] / n_neg if n_neg else None
    defined = [v for v in (sens, spec) if v is not None]
    at_half = confusion_at(y, q, 0.5)
    ci = bootstrap_auc_ci(y, q, groups=groups, n_boot=n_boot, seed=seed)
    majority_label = 1 if n_pos > n_neg else 0
    return {
        "n": n,
        "n_pos": n_pos,
        "n_neg": n_neg,
        "auc": roc_auc(y, q),
        "auc_ci": None if ci is None else [ci[0], ci[1]],
        "threshold": float(threshold),
        "sensitivity": None if sens is None else float(sens),
        "specificity": None if spec is None else float(spec),
        "balanced_accuracy": float(sum(defined) / len(defined)),  # never empty: n >= 1
        "accuracy_at_threshold": (conf["tp"] + conf["tn"]) / n,
        "accuracy_at_0_5": (at_half["tp"] + at_half["tn"]) / n,
        "majority_baseline": max(n_pos, n_neg) / n,
        "majority_label": majority_label,
        "sensitivity_at_90_specificity": sensitivity_at_specificity(y, q, 0.90),
        "specificity_at_90_sensitivity": specificity_at_sensitivity(y, q, 0.90),
        "ece": expected_calibration_error(y, q_shown),
        "brier": brier_score(y, q_shown),
        "confusion": conf,
    }
