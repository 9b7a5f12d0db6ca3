"""The model card's Hugging Face-style front matter: its licence id, tags, training data sets and the
``model-index`` metrics (the card's validation, its self-check and each bench report), as a dict for
:func:`~melkit.release.card_document.yaml_emitter.to_yaml`."""

from __future__ import annotations

import re

from melkit.release.card_document.inputs import CardInputs, training_datasets

__all__ = ["HAM10000_LICENSE", "UNKNOWN_LICENSE", "TAGS", "hf_license_id", "license_of", "front_matter"]

HAM10000_LICENSE = "cc-by-nc-4.0"  # HAM10000 is CC BY-NC 4.0: a model trained on it inherits the restriction
UNKNOWN_LICENSE = "other"
TAGS = ("melkit", "image-classification", "dermoscopy", "melanoma", "skin-lesion", "mobilenet-v2", "tflite")


# Hugging Face licence ids a card's licence text may name (https://huggingface.co/docs/hub/repositories-licenses).
_HF_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "gpl-3.0", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0",
                "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0",
                "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0",
                "cc-by-nc-sa-4.0"}
_CC = re.compile(r"cc[- ]by((?:[- ](?:nc|sa|nd))*)[- ](\d\.\d)")


def _license_part_id(text: str) -> str | None:
    """The Hugging Face id of one licence ("CC BY-NC 4.0", "CC0 1.0", "Apache-2.0", "cc-by-4.0"), else None."""
    t = re.sub(r"\s*\([^()]*\)$", "", text.strip()).strip().lower()  # "(HAM10000)": whose licence it is
    if t in _HF_LICENSES:
        return t
    if re.fullmatch(r"cc[- ]?0(?:[- ]1\.0)?", t):
        return "cc0-1.0"
    m = _CC.fullmatch(t)
    if m:
        hf = "cc-by" + re.sub(r"[- ]", "-", m.group(1)) + "-" + m.group(2)
        return hf if hf in _HF_LICENSES else None
    if re.fullmatch(r"apache(?: license)?,?[- ](?:version )?2\.0", t):
        return "apache-2.0"
    return "mit" if t in ("mit license", "the mit license") else None


def hf_license_id(text: str) -> str | None:
    """The Hugging Face licence id of a card's licence text, or None when it names none.

    Several licences joined by "; " (one per training source, melkit/data/sources.py) give one id when they
    agree; CC0 adds no terms, so "CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)" is cc-by-nc-4.0. An unknown
    part (e.g. "unknown: see the training data's terms") gives None: the front matter says "other"."""
    ids = [_license_part_id(p) for p in text.split(";")]
    if not ids or None in ids:
        return None
    restricting = set(ids) - {"cc0-1.0"} or {"cc0-1.0"}
    return restricting.pop() if len(restricting) == 1 else None


def license_of(inputs: CardInputs) -> str:
    """The front matter's licence id: --license, else the card's licence mapped to an id ("other" when it maps
    to none), else (a card without one, from an older release) cc-by-nc-4.0 when trained on HAM10000."""
    if inputs.license_id:
        return inputs.license_id
    if inputs.card.license is not None:
        return hf_license_id(inputs.card.license) or UNKNOWN_LICENSE
    names = training_datasets(inputs.card) + list(inputs.card.training_data.get("counts_by_source") or {})
    return HAM10000_LICENSE if any("ham10000" in n.lower() for n in names) else UNKNOWN_LICENSE


def _r(v, digits=4):
    return None if v is None else round(float(v), digits)


def _index_metrics(m: dict, threshold: float, what: str) -> list:
    """model-index metrics of one evaluation (the card's validation form or a bench report's metrics)."""
    out = []
    if m.get("auc") is not None:
        ci = m.get("auc_ci")
        entry = {"type": "roc_auc", "value": _r(m["auc"])}
        if ci:
            entry["name"] = f"AUC{what} [95% CI {ci[0]:.3f}, {ci[1]:.3f}]"
            entry["args"] = {"ci_95": [_r(ci[0]), _r(ci[1])]}
        else:
            entry["name"] = f"AUC{what}"
        out.append(entry)
    for key, kind, name in (("balanced_accuracy", "balanced_accuracy", "balanced accuracy"),
                            ("sensitivity", "sensitivity", "sensitivity"),
                            ("specificity", "specificity", "specificity")):
        if m.get(key) is not None:
            out.append({"type": kind, "value": _r(m[key]), "name": f"{name}{what} at threshold {threshold:.4f}"})
    return out


def _result(dataset: str, split: str | None, name: str, metrics: list) -> dict:
    ds = {"name": name, "type": dataset}
    if split is not None:
        ds["split"] = split
    return {"task": {"type": "image-classification", "name": "melanoma vs nevus (dermoscopy)"},
            "dataset": ds, "metrics": metrics}


def front_matter(inputs: CardInputs) -> dict:
    card = inputs.card
    thr = card.trained_threshold  # on the P(mel) scale: the Keras model's and (unfolded) the file's
    train_sets = training_datasets(card)
    results = []
    v = card.validation
    if v:
        metrics = _index_metrics(v, thr, " (source Keras model)")
        sc = card.selfcheck
        if sc.get("auc_tflite") is not None:
            metrics.append({"type": "roc_auc", "value": _r(sc["auc_tflite"]),
                            "name": f"AUC of this {card.variant} file (convert self-check)"})
        if sc.get("agreement") is not None:
            metrics.append({"type": "agreement", "value": _r(sc["agreement"]),
                            "name": "decision agreement with the source Keras model"})
        results.append(_result("+".join(train_sets), "val", f"{'+'.join(train_sets)} val", metrics))
    for src, m in sorted((card.extra.get("validation_by_source") or {}).items()):
        results.append(_result(src, "val", f"{src} val (source Keras model)",
                               _index_metrics(m, thr, " (source Keras model)")))
    for name, m in sorted((card.extra.get("external") or {}).items()):
        results.append(_result(name, None, f"{name} (external, source Keras model)",
                               _index_metrics(m, thr, " (source Keras model)")))
    for b in inputs.benches:
        metrics = _index_metrics(b.entry["metrics"], thr, "")
        vs = b.entry.get("vs_reference")
        if vs and vs.get("agreement") is not None:
            metrics.append({"type": "agreement", "value": _r(vs["agreement"]),
                            "name": f"decision agreement with {b.reference}"})
        results.append(_result(b.dataset, b.split, f"{b.label} (melkit bench)", metrics))
    fm = {"license": license_of(inputs)}
    if fm["license"] == UNKNOWN_LICENSE:
        fm["license_name"] = card.license or "not stated"  # the card's own words when they name no id
    fm["tags"] = list(dict.fromkeys(TAGS + (card.variant,)))
    fm["datasets"] = train_sets
    fm["pipeline_tag"] = "image-classification"
    fm["model-index"] = [{"name": f"{card.name}-{card.version}-{card.variant}", "results": results}]
    return fm
