"""The model card's comparison with the previous release (``--compare``): file size, threshold, the cards'
validation and self-check, and each set both releases were benchmarked on, old against new with the change."""

from __future__ import annotations

from melkit.release.card_document.inputs import CardInputs
from melkit.util.fmt import code, mb, md_table, num, pct

__all__ = ["comparison_section"]


def _cmp_rows(label: str, old: dict, new: dict, vs_old=None, vs_new=None) -> list:
    rows = []
    for key, name, kind in (("auc", "AUC", "auc"), ("balanced_accuracy", "bal. acc %", "pct"),
                            ("sensitivity", "sens %", "pct"), ("specificity", "spec %", "pct")):
        a, b = old.get(key), new.get(key)
        if a is None and b is None:
            continue
        if kind == "auc":
            rows.append([label, name, num(a), num(b), num(None if None in (a, b) else b - a, "+.3f")])
        else:
            rows.append([label, name, pct(a), pct(b), num(None if None in (a, b) else 100 * (b - a), "+.1f")])
    if vs_old is not None or vs_new is not None:
        a, b = (vs_old or {}).get("agreement"), (vs_new or {}).get("agreement")
        rows.append([label, "agreement %", pct(a, 2), pct(b, 2),
                     num(None if None in (a, b) else 100 * (b - a), "+.2f")])
    return rows


def comparison_section(inputs: CardInputs) -> list:
    old, new = inputs.compare, inputs.card
    if old is None:
        return []
    rows = [["model file", "MB", mb(old.size_bytes), mb(new.size_bytes),
             f"{(new.size_bytes - old.size_bytes) / 1e6:+.2f}"],
            ["decision", "threshold (P(mel))", f"{old.trained_threshold:.4f}", f"{new.trained_threshold:.4f}",
             f"{new.trained_threshold - old.trained_threshold:+.4f}"]]
    rows += _cmp_rows("validation (cards, Keras)", old.validation, new.validation)
    a, b = old.selfcheck.get("agreement"), new.selfcheck.get("agreement")
    if a is not None or b is not None:
        rows.append(["validation (self-check)", "agreement %", pct(a, 2), pct(b, 2),
                     num(None if None in (a, b) else 100 * (b - a), "+.2f")])
    olds = {b.label: b for b in inputs.compare_benches}
    for b in inputs.benches:
        o = olds.pop(b.label, None)
        if o is not None:
            rows += _cmp_rows(b.label, o.entry["metrics"], b.entry["metrics"], o.entry.get("vs_reference"),
                              b.entry.get("vs_reference"))
    old_name, new_name = f"{old.version} ({old.variant})", f"{new.version} ({new.variant})"
    out = ["## Compared with the previous release", "",
           f"{code(old.name)} {old.version} ({code(old.model_file)}) against this model; bench rows only for "
           "sets both releases were benchmarked on.", ""]
    out += md_table(["set", "metric", old_name, new_name, "Δ"], rows) + [""]
    if olds:
        out += ["Benchmarked for the previous release only: " + ", ".join(sorted(olds)) + ".", ""]
    return out
