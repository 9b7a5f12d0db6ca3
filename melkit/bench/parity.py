"""Parity: every model's clinical metrics, and how far each one moved from the reference.

Decisions are taken at each model's own threshold (the one in its card, or the run's), because that is
what the app will do; with cards from one run every model shares the run's threshold anyway. ``probs`` are
the models' raw outputs (decisions, AUC); ``shown``, where given, the probabilities a person sees
(melkit.core.probability: a folded model's unfolded): calibration and probability changes are measured on them.
"""

from __future__ import annotations

import math

import numpy as np

from melkit.core import likelihood
from melkit.core.metrics import N_BOOT, binary_report, confusion_at, roc_auc
from melkit.util.options import SEED

# Bands wide enough to hold a few melanomas each on HAM10000's test split, split where the risk changes.
AGE_BANDS = ((0, 30, "<30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"), (75, math.inf, "75+"))
# The metadata's ``dataset`` column is not among them: the source of an image gets full metrics (by_source).
SUBGROUP_FIELDS = ("age", "sex", "localization")
UNKNOWN = "unknown"


def record_source(record) -> str:
    """Where an image comes from: ``Record.source`` when set, else its metadata's ``dataset``; ``unknown``
    when neither says."""
    return (getattr(record, "source", "") or (record.meta or {}).get("dataset") or "").strip() or UNKNOWN


def age_band(value) -> str:
    """The band of an age given as text ("45", "45.0"); ``unknown`` when empty or not a number."""
    try:
        age = float(value)
    except (TypeError, ValueError):
        return UNKNOWN
    if not math.isfinite(age) or age < 0:
        return UNKNOWN
    return next(name for lo, hi, name in AGE_BANDS if lo <= age < hi)


def subgroup_values(records) -> dict:
    """field -> one value per record, for the metadata fields that actually split the images.

    A field is left out when no record has it, or when every record has the same value: a subgroup
    equal to the whole set says nothing new.
    """
    out = {}
    for name in SUBGROUP_FIELDS:
        raw = [(r.meta or {}).get(name, "") for r in records]
        if name == "age":
            values = [age_band(v) if str(v).strip() else UNKNOWN for v in raw]
        else:
            values = [str(v).strip().lower() or UNKNOWN for v in raw]
        if len(set(values) - {UNKNOWN}) >= 1 and len(set(values)) >= 2:
            out[name] = values
    return out


def decisions(p, threshold) -> np.ndarray:
    return np.asarray(p, float) >= threshold


def compare(p_ref, thr_ref, p, thr, image_ids, labels, shown_ref=None, shown=None) -> dict:
    """Agreement of decisions (on the raw outputs), the flipped images (largest probability change first) and
    |Δp| (on the shown probabilities, when given)."""
    d_ref, d = decisions(p_ref, thr_ref), decisions(p, thr)
    p_ref = np.asarray(p_ref if shown_ref is None else shown_ref, float)
    p = np.asarray(p if shown is None else shown, float)
    diff = np.abs(p - p_ref)
    flipped = [
        {"image_id": image_ids[i], "label": int(labels[i]), "p_reference": float(p_ref[i]), "p": float(p[i]),
         "reference_says": "mel" if d_ref[i] else "nv", "model_says": "mel" if d[i] else "nv"}
        for i in np.flatnonzero(d_ref != d)
    ]
    flipped.sort(key=lambda f: -abs(f["p"] - f["p_reference"]))
    return {
        "agreement": float(np.mean(d_ref == d)),
        "n_flipped": len(flipped),
        "flipped": flipped,
        "mean_abs_dp": float(diff.mean()),
        "max_abs_dp": float(diff.max()),
    }


def borderline_summary(card, p, thr, p_ref, thr_ref, sources=None) -> dict:
    """For a model whose card has a borderline band (melkit/convert/borderline.py): the share of images whose
    raw output lies in it and the agreement with the reference outside it (the band's promise: 100 %), on all
    images and, with ``sources`` (one per image, several), per source."""
    inside = card.is_borderline(p)
    agree = decisions(p_ref, thr_ref) == decisions(p, thr)

    def one(idx) -> dict:
        ins, ok = inside[idx], agree[idx]
        out = ~ins
        return {"n": int(len(ins)), "n_borderline": int(ins.sum()),
                "share": float(ins.mean()) if len(ins) else None,
                "agreement_outside": float(ok[out].mean()) if out.any() else None,
                "flips_outside": int((~ok & out).sum()), "flips_inside": int((~ok & ins).sum())}

    summary = {"low": float(card.borderline["low"]), "high": float(card.borderline["high"]),
               **one(np.arange(len(inside)))}
    if sources is not None and len(set(sources)) > 1:
        sources = np.asarray(sources, dtype=object)
        summary["by_source"] = {s: one(np.flatnonzero(sources == s)) for s in sorted(set(sources))}
    return summary


def risk_bands_summary(card, p, labels, sources=None) -> dict:
    """For a model whose card has risk bands (melkit/core/likelihood.py): each band's likelihood ratio measured on
    these images beside the card's (validation), and per source with ``sources`` (several): whether what the card
    promises holds on another device."""
    labels = np.asarray(labels, int)
    edges, bands = card.risk_edges, card.likelihood_ratios["bands"]
    inside = card.risk_band(p)

    def one(idx) -> list:
        measured = likelihood.ratios(np.asarray(p, float)[idx], labels[idx], edges)
        return [{"name": b["name"], "lr_card": b["lr"], "lr": lr, "n_mel": int(((inside[idx] == k) & (labels[idx] == 1)).sum()),
                 "n_nv": int(((inside[idx] == k) & (labels[idx] == 0)).sum())}
                for k, (b, (_, _, lr)) in enumerate(zip(bands, measured))]

    summary = {"bands": one(np.arange(len(labels)))}
    if sources is not None and len(set(sources)) > 1:
        sources = np.asarray(sources, dtype=object)
        summary["by_source"] = {s: one(np.flatnonzero(sources == s)) for s in sorted(set(sources))}
    return summary


def delta_auc(auc, auc_ref):
    return None if auc is None or auc_ref is None else float(auc - auc_ref)


def evaluate(names, probs: dict, thresholds: dict, labels, lesion_ids, image_ids, reference: str,
             n_boot=N_BOOT, seed=SEED, shown: dict | None = None) -> dict:
    """name -> {"metrics": binary_report, "vs_reference": compare + delta_auc (None for the reference)}."""
    labels = np.asarray(labels, int)
    shown = shown or probs
    out = {}
    for name in names:
        m = binary_report(labels, probs[name], thresholds[name], groups=lesion_ids, n_boot=n_boot, seed=seed,
                          shown=shown[name])
        out[name] = {"metrics": m, "vs_reference": None}
    ref_auc = out[reference]["metrics"]["auc"]
    for name in names:
        if name == reference:
            continue
        vs = compare(probs[reference], thresholds[reference], probs[name], thresholds[name], image_ids, labels,
                     shown[reference], shown[name])
        vs["delta_auc"] = delta_auc(out[name]["metrics"]["auc"], ref_auc)
        out[name]["vs_reference"] = vs
    return out


def by_source(sources, names, probs: dict, thresholds: dict, labels, lesion_ids, image_ids, reference: str,
              n_boot=N_BOOT, seed=SEED, shown: dict | None = None) -> dict | None:
    """source -> {"n", "n_pos", "lesions", "models": evaluate() on that source's images} (largest first), or
    None when every image comes from one source. The flipped images are left out of each source's
    vs_reference (n_flipped stays): the pooled vs_reference lists them all."""
    sources = np.asarray(sources, dtype=object)
    values = sorted(set(sources), key=lambda v: (-(sources == v).sum(), v))
    if len(values) < 2:
        return None
    labels = np.asarray(labels, int)
    shown = shown or probs
    out = {}
    for value in values:
        idx = np.flatnonzero(sources == value)
        lesions = [lesion_ids[i] for i in idx]
        results = evaluate(names, {n: np.asarray(probs[n])[idx] for n in names}, thresholds, labels[idx], lesions,
                           [image_ids[i] for i in idx], reference, n_boot=n_boot, seed=seed,
                           shown={n: np.asarray(shown[n])[idx] for n in names})
        for r in results.values():
            if r["vs_reference"] is not None:
                del r["vs_reference"]["flipped"]
        out[value] = {"n": len(idx), "n_pos": int(labels[idx].sum()), "lesions": len(set(lesions)),
                      "models": results}
    return out


def subgroups(records, names, probs: dict, thresholds: dict, labels, reference: str) -> dict:
    """field -> rows, one per value (largest first): n, melanomas, and per model AUC, sens, spec, agreement."""
    labels = np.asarray(labels, int)
    out = {}
    for field_name, values in subgroup_values(records).items():
        values = np.asarray(values, dtype=object)
        rows = []
        for value in sorted(set(values), key=lambda v: (-(values == v).sum(), v)):
            idx = np.flatnonzero(values == value)
            y = labels[idx]
            row = {"value": value, "n": int(len(idx)), "n_pos": int(y.sum()), "models": {}}
            d_ref = decisions(probs[reference][idx], thresholds[reference])
            for name in names:
                p = probs[name][idx]
                c = confusion_at(y, p, thresholds[name])
                n_pos, n_neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
                row["models"][name] = {
                    "auc": roc_auc(y, p),
                    "sensitivity": c["tp"] / n_pos if n_pos else None,
                    "specificity": c["tn"] / n_neg if n_neg else None,
                    "agreement": float(np.mean(decisions(p, thresholds[name]) == d_ref)),
                }
            rows.append(row)
        out[field_name] = rows
    return out


def gate_failures(results: dict, reference: str, max_auc_drop=None, min_agreement=None) -> list:
    """Human-readable reasons, one per model and gate failed; empty when every model passes."""
    failures = []
    for name, r in results.items():
        vs = r["vs_reference"]
        if name == reference or vs is None:
            continue
        if max_auc_drop is not None and vs["delta_auc"] is not None and -vs["delta_auc"] > max_auc_drop + 1e-12:
            failures.append(f"{name}: AUC drop {-vs['delta_auc']:.4f} > --max-auc-drop {max_auc_drop}")
        if min_agreement is not None and vs["agreement"] < min_agreement - 1e-12:
            failures.append(f"{name}: agreement {vs['agreement']:.4f} < --min-agreement {min_agreement}")
    return failures
