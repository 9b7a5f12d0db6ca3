"""Risk bands with likelihood ratios: what an output means on a device whose melanoma prevalence is unknown.

The model's P(mel) is not a probability a person can read: it was trained on sources with 14 % to 40 %
melanomas (and with label smoothing and source balance), so one number cannot be calibrated for every
clinic or phone. A likelihood ratio can: LR = P(output in this band | melanoma) / P(output in this band |
nevus) does not depend on how common melanoma is where the model is used. Whoever knows the prevalence of
their setting turns it into a probability (post-test odds = prior odds x LR); the card gives that for a few
prevalences.

Four bands of the model's raw output, around the threshold: below the point under which only ``tail`` (5 %)
of validation melanomas fall, up to the threshold, up to the point above which only ``tail`` of validation
nevi fall, and above it. Each band's LR is measured on the validation split with every source's classes
weighted alike (a source with many melanomas does not set the ratio), and per source, so the card shows how
much it moves from one device to the next. ``melkit bench`` measures the same ratios on its sets.
"""

from __future__ import annotations

import numpy as np

from melkit.core.probability import band_of

TAIL = 0.05
BAND_NAMES = ("well below the threshold", "below the threshold", "above the threshold", "well above the threshold")


def _weights(labels, sources) -> np.ndarray:
    """Each (source, class) group weighted to 1 in total: every source counts alike within each class."""
    labels = np.asarray(labels, int)
    sources = np.zeros(len(labels), dtype=object) if sources is None else np.asarray(sources, dtype=object)
    w = np.zeros(len(labels))
    for s in set(sources.tolist()):
        for c in (0, 1):
            idx = (sources == s) & (labels == c)
            if idx.any():
                w[idx] = 1.0 / idx.sum()
    return w


def _weighted_quantile(x, w, q) -> float:
    order = np.argsort(x)
    cw = np.cumsum(w[order]) / w.sum()
    return float(x[order][min(np.searchsorted(cw, q), len(x) - 1)])




def ratios(p, labels, edges, weights=None) -> list:
    """Per band: (melanoma share, nevus share, LR); None where a class is missing. Each share has half an image
    of its class added per band (Haldane's correction): a band without melanomas on validation gets a small
    ratio, not 0, since "never a melanoma" is more than a finite sample can show."""
    p, labels = np.asarray(p, float), np.asarray(labels, int)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, float)
    bands = band_of(p, edges)
    n_bands = len(edges) - 1
    shares = {}
    for c in (0, 1):
        total, n = w[labels == c].sum(), int((labels == c).sum())
        half = 0.5 * total / n if n else 0.0  # half of one image of this class, in weight
        shares[c] = [(w[(bands == k) & (labels == c)].sum() + half) / (total + n_bands * half) if n else None
                     for k in range(n_bands)]
    return [(a, b, (a / b) if a is not None and b else None) for a, b in zip(shares[1], shares[0])]


def measure(p_output, labels, threshold: float, sources=None, tail: float = TAIL) -> dict:
    """The card's ``likelihood_ratios`` record from the model's raw outputs on validation, decided at
    ``threshold`` (the card's: 0.5 for a folded model)."""
    p, labels = np.asarray(p_output, float), np.asarray(labels, int)
    w = _weights(labels, sources)
    low = _weighted_quantile(p[labels == 1], w[labels == 1], tail)
    high = _weighted_quantile(p[labels == 0], w[labels == 0], 1.0 - tail)
    low, high = min(low, threshold), max(high, threshold)
    edges = [0.0, low, threshold, high, 1.0]
    pooled = ratios(p, labels, edges, w)
    by_source = {}
    if sources is not None and len(set(sources)) > 1:
        src = np.asarray(sources, dtype=object)
        for s in sorted(set(src.tolist())):
            idx = src == s
            by_source[str(s)] = [r[2] for r in ratios(p[idx], labels[idx], edges)]
    bands = []
    for k, name in enumerate(BAND_NAMES):
        mel, nv, lr = pooled[k]
        band = {"name": name, "low": edges[k], "high": edges[k + 1], "lr": lr, "share_mel": mel, "share_nv": nv}
        if by_source:
            band["lr_by_source"] = {s: v[k] for s, v in by_source.items()}
        bands.append(band)
    return {
        "method": (f"likelihood ratio P(band | melanoma) / P(band | nevus) of the raw output on the validation "
                   f"split, each source's classes weighted alike, half an image of each class added per band; edges: the {tail:g} quantile of melanomas, the "
                   f"threshold, the {1 - tail:g} quantile of nevi"),
        "measured_on": "validation",
        "n": int(len(p)),
        "bands": bands,
    }

