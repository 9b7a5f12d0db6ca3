"""Before a model is written: does the TFLite model agree with the Keras model it came from?

Run on the run's validation split through the contract. A variant whose output is constant or NaN, or
whose decisions agree with Keras on fewer than ``min_agreement`` of the images, is not written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from melkit.core.metrics import roc_auc
from melkit.util.fmt import num


@dataclass
class Check:
    variant: str
    n: int
    auc_keras: float | None
    auc_tflite: float | None
    agreement: float
    mean_abs_diff: float
    max_abs_diff: float
    size_bytes: int
    passed: bool
    reason: str = ""

    def to_dict(self):
        return asdict(self)


def compare(variant, p_keras, p_tflite, labels, threshold, size_bytes, min_agreement, tflite_threshold=None,
            p_shown=None) -> Check:
    """``p_tflite`` is the model's raw output, decided at ``tflite_threshold`` (default ``threshold``; 0.5 for a
    model with the threshold folded in); ``p_shown``, its calibrated P(mel) (default the raw one), is what the
    probability differences and the AUC are measured on."""
    p_keras, p_raw = np.asarray(p_keras, float), np.asarray(p_tflite, float)
    p_tflite = p_raw if p_shown is None else np.asarray(p_shown, float)
    decided_at = threshold if tflite_threshold is None else tflite_threshold
    agreement = float(np.mean((p_keras >= threshold) == (p_raw >= decided_at)))
    diff = np.abs(p_keras - p_tflite)
    reason = ""
    if not np.isfinite(p_tflite).all():
        reason = "output has NaN/inf"
    elif np.ptp(p_tflite) == 0:
        reason = "output is constant"
    elif agreement < min_agreement:
        reason = f"agreement {agreement:.3f} < {min_agreement}"
    finite = np.isfinite(p_tflite).all()
    return Check(
        variant=variant, n=len(labels), auc_keras=roc_auc(labels, p_keras),
        auc_tflite=roc_auc(labels, np.clip(p_tflite, 0, 1)) if finite else None, agreement=agreement,
        mean_abs_diff=float(diff.mean()) if finite else float("nan"),
        max_abs_diff=float(diff.max()) if finite else float("nan"),
        size_bytes=size_bytes, passed=not reason, reason=reason,
    )


def table(checks) -> str:
    head = f"{'variant':<11} {'AUC keras':>9} {'AUC tflite':>10} {'agree':>7} {'mean|dp|':>9} {'max|dp|':>8} {'MB':>6}  result"
    lines = [head, "-" * len(head)]
    for c in checks:
        lines.append(f"{c.variant:<11} {num(c.auc_keras, '.4f'):>9} {num(c.auc_tflite, '.4f'):>10} "
                     f"{100 * c.agreement:6.2f}% "
                     f"{c.mean_abs_diff:9.4f} {c.max_abs_diff:8.4f} {c.size_bytes / 1e6:6.2f}  "
                     f"{'ok' if c.passed else 'FAILED: ' + c.reason}")
    return "\n".join(lines)
