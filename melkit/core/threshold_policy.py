"""The decision threshold of a run, chosen on validation by a named policy.

A policy is a short string (``"youden"``, ``"sensitivity:0.90"``, ``"sensitivity-every-source:0.90"``,
``"specificity:0.90"``, ``"fixed:0.5"``) that a recipe, ``melkit train --threshold-policy`` and
``melkit calibrate --policy`` all accept; :func:`parse_threshold_policy` checks one before any work starts and
:func:`choose_threshold` applies it to labels and probabilities.

The conventions are melkit.core.metrics': label 1 = melanoma, ``p`` the predicted probability of melanoma,
melanoma called when ``p >= threshold``. Bad inputs raise :class:`BadInputError`; a policy that needs the ROC
curve on data with a single class raises it too, since no threshold can be chosen there.
"""

from __future__ import annotations

import math

import numpy as np

from melkit.core.metrics import _EPS, _both_classes, _roc_points, _validate
from melkit.util.errors import BadInputError

__all__ = ["parse_threshold_policy", "choose_threshold"]

# Written out once so that the error message and the docs cannot drift apart.
_POLICY_FORMS = ('"youden", "sensitivity:X", "sensitivity-every-source:X", "specificity:X", "fixed:X" with X in '
                 '(0, 1), e.g. "sensitivity:0.90"')


def parse_threshold_policy(policy: str) -> tuple[str, float | None]:
    """Parse a threshold policy string into ``(name, value)``.

    Accepted: ``"youden"`` -> ``("youden", None)``; ``"sensitivity:X"``, ``"sensitivity-every-source:X"``,
    ``"specificity:X"`` and ``"fixed:X"`` with X in (0, 1) -> ``(name, X)``. Anything else raises
    BadInputError listing the accepted forms.
    """
    if not isinstance(policy, str):
        raise BadInputError(f"threshold policy must be a string, one of {_POLICY_FORMS}; got {policy!r}")
    text = policy.strip().lower()
    if text == "youden":
        return "youden", None
    name, sep, raw = text.partition(":")
    name, raw = name.strip(), raw.strip()
    if sep and name in ("sensitivity", "sensitivity-every-source", "specificity", "fixed"):
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and 0.0 < value < 1.0:
            return name, value
    raise BadInputError(f"unknown threshold policy {policy!r}; accepted forms: {_POLICY_FORMS}")


def choose_threshold(y_true, p, policy: str = "youden", groups=None) -> float:
    """Pick a decision threshold (decide melanoma when ``p >= threshold``) by ``policy``.

    * ``youden``: the ROC threshold maximizing sensitivity + specificity - 1; on ties the highest
      such threshold (fewest false alarms for the same Youden index);
    * ``sensitivity:X``: the highest threshold whose sensitivity is >= X (the most specific way to
      miss at most 1-X of the melanomas);
    * ``sensitivity-every-source:X``: the highest threshold at which *every* group (``groups``: one
      source name per sample) with melanomas reaches sensitivity X: the lowest of the groups'
      ``sensitivity:X`` thresholds. A screening policy: a pooled target is met mostly on the sources that
      dominate the pool (their prior and their devices), while the next device may look like any of them.
      Without ``groups`` (or with one group) it is ``sensitivity:X``;
    * ``specificity:X``: the lowest threshold whose specificity is >= X (the most sensitive way to
      keep false alarms at most 1-X);
    * ``fixed:X``: X itself, whatever the data.

    Returns a finite float in [0, 1]: sklearn's "nobody positive" threshold is clipped to 1.0
    (which still calls lesions with p == 1 positive). Raises BadInputError when ``y_true`` has a
    single class and the policy needs the ROC curve.
    """
    name, value = parse_threshold_policy(policy)
    y, q = _validate(y_true, p)
    if name == "fixed":
        return float(value)
    if not _both_classes(y):
        raise BadInputError(f"threshold policy {policy!r} needs both melanoma and nevus samples, got one class")
    if name == "sensitivity-every-source":
        return _every_group_sensitivity(y, q, value, groups)
    thr, sens, spec = _roc_points(y, q)
    if name == "youden":
        i = int(np.argmax(sens + spec - 1.0))  # argmax takes the first = highest threshold on ties
    elif name == "sensitivity":
        # Sensitivity only grows as the threshold falls; the first point reaching X is the highest.
        i = int(np.argmax(sens >= value - _EPS))
    else:
        # Specificity only falls as the threshold falls; the last point still at X is the lowest.
        i = int(np.nonzero(spec >= value - _EPS)[0][-1])  # never empty: the first point has spec 1
    return float(np.clip(thr[i], 0.0, 1.0))


def _every_group_sensitivity(y: np.ndarray, q: np.ndarray, target: float, groups) -> float:
    """The lowest, over the groups with melanomas, of the highest threshold reaching ``target`` sensitivity
    in that group (its nevi play no part: sensitivity counts melanomas alone)."""
    g = np.full(len(y), "", dtype=object) if groups is None else np.asarray(groups, dtype=object)
    if len(g) != len(y):
        raise BadInputError(f"groups has {len(g)} entries for {len(y)} samples")
    out = 1.0
    for name in sorted(set(g[y == 1].tolist())):
        mel = np.sort(q[(g == name) & (y == 1)])[::-1]  # the group's melanoma scores, highest first
        k = int(math.ceil(target * len(mel) - _EPS))  # melanomas that must score >= the threshold
        out = min(out, float(mel[max(k, 1) - 1]))
    return float(np.clip(out, 0.0, 1.0))
