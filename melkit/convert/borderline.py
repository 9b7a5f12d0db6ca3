"""The borderline band: the model outputs around the threshold where rounding can still decide.

A quantized model's P(mel) differs from the float model's by a little noise (|dP| about 0.015 on average for
int8). An image far from the threshold keeps its decision; one within that noise of it may not. Agreement
alone cannot name which images those are, so ``melkit convert`` measures the noise on the validation split
and writes the band of the quantized model's own output within which its decision may differ from the float
model's. The decision stays binary (a generic client's top category is unchanged); melkit predict, bench, the
Android core and the app show it as "borderline: nevus-like" / "borderline: melanoma-suspicious".

Measured in logit distance from the threshold, each model on its own scale (a folded model's raw output
crosses 0.5 where the float model crosses the trained threshold): the half-width is the larger of

- the ``quantile`` (0.995) of |distance(quantized) - distance(float)| over validation: the noise, and
- the distance of the farthest validation image whose decision differs: every flip seen lies in the band,

so outside the band every validation image agrees with the float model by construction; the test sets (bench)
show whether that holds on images the band was not measured on.
"""

from __future__ import annotations

import numpy as np

from melkit.core.probability import logit_band

QUANTILE = 0.995
_EPS = 1e-7


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def measure(p_float, p_output, threshold: float, output_threshold: float | None = None, groups=None,
            quantile: float = QUANTILE) -> dict:
    """The card's ``borderline`` record for a model whose raw outputs on validation are ``p_output``, decided
    at ``output_threshold`` (default ``threshold``; 0.5 for a folded model), against the float model's
    ``p_float`` decided at ``threshold``. ``groups`` (one source name per image) adds each source's share."""
    p_float, p_output = np.asarray(p_float, float), np.asarray(p_output, float)
    t_out = threshold if output_threshold is None else output_threshold
    d_float = _logit(p_float) - _logit(threshold)
    d_out = _logit(p_output) - _logit(t_out)
    flips = (p_float >= threshold) != (p_output >= t_out)
    noise = float(np.quantile(np.abs(d_out - d_float), quantile)) if len(d_out) else 0.0
    farthest_flip = float(np.abs(d_out[flips]).max()) if flips.any() else 0.0
    half = max(noise, farthest_flip)
    low, high = logit_band(t_out, half)
    if flips.any():  # exactly every flip inside, whatever the rounding of the sigmoid
        low = min(low, float(p_output[flips].min()))
        high = max(high, float(p_output[flips].max()))
    inside = (p_output >= low) & (p_output <= high)
    record = {
        "low": low,
        "high": high,
        "method": (f"quantized-vs-float noise on validation: logit half-width = max({quantile:g} quantile of the "
                   "logit difference to the float model, the farthest disagreeing image's distance to the "
                   "threshold)"),
        "reference": "the float Keras model the variant was converted from",
        "logit_half_width": half,
        "noise_quantile": quantile,
        "noise_logit": noise,
        "farthest_flip_logit": farthest_flip,
        "validation": _shares(inside, flips),
    }
    if groups is not None:
        groups = np.asarray(groups)
        record["validation_by_source"] = {str(g): _shares(inside[groups == g], flips[groups == g])
                                          for g in sorted(set(groups.tolist()))}
    return record


def _shares(inside: np.ndarray, flips: np.ndarray) -> dict:
    n = int(len(inside))
    outside = ~inside
    return {"n": n, "share": float(inside.mean()) if n else 0.0, "flips": int(flips.sum()),
            "flips_outside": int((flips & outside).sum()),
            "agreement_outside": float(1.0 - (flips & outside).sum() / outside.sum()) if outside.any() else 1.0}
