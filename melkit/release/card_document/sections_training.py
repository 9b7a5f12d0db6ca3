"""The model card's sections on what the card itself records: the training (recipe, stages, package versions,
training data and split) and the validation the card states (the source Keras model's, and the conversion
self-check)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from melkit.core.card import ModelCard
from melkit.core.recipe import PRESETS
from melkit.release.card_document.inputs import CardInputs, training_datasets
from melkit.util.fmt import auc_ci, code, count, md_table, num, pct

__all__ = ["training_section", "validation_section"]


def _recipe(card: ModelCard):
    """(name, stages as dicts, settings dict, where they come from) of the training recipe."""
    r = card.source_run.get("recipe")
    if isinstance(r, dict):
        return r.get("name"), r.get("stages") or [], r, "the card"
    stages = card.source_run.get("stages")
    if stages:
        return r, stages, {}, "the card"
    if r in PRESETS:
        preset = PRESETS[r]()
        return r, [asdict(s) for s in preset.stages], preset.to_dict(), f"melkit's {code(r)} preset"
    return r, [], {}, None


def training_section(inputs: CardInputs) -> list:
    card = inputs.card
    sr, td = card.source_run, card.training_data
    name, stages, settings, origin = _recipe(card)
    out = ["## Training", "",
           f"Recipe {code(name)}, seed {sr.get('seed', 'n/a')}, from run {code(Path(str(sr.get('path', ''))).name)}."]
    if stages:
        out += ["", f"Stages (from {origin}; epochs are the most each stage may run):", ""]
        rows = [[s.get("name"), code(s.get("trainable")), s.get("epochs"), f"{s.get('learning_rate', 0):g}",
                 s.get("optimizer", "adam"), "yes" if s.get("augment") else "no",
                 s.get("early_stopping_patience") or "off"] for s in stages]
        out += md_table(["stage", "trains", "epochs", "learning rate", "optimizer", "augmentation",
                         "early stopping patience"], rows)
        keys = ("batch_size", "dropout", "class_weights", "oversample", "source_balance", "color_constancy",
                "label_smoothing", "bn_inference")
        shown = [f"{k} {settings[k]}" for k in keys if k in settings]
        if shown:
            out += ["", f"Settings (from {origin}): " + ", ".join(shown) + "."]
    steps = card.versions_by_step
    if steps and steps.get("training") == card.versions:  # an older card: one flat record, the training run's
        out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in card.versions.items()) + "."]
    elif steps:
        out += ["", "Package versions:", ""]
        out += [f"- {step}: " + ", ".join(f"{k} {v}" for k, v in packages.items()) + "."
                for step, packages in steps.items()]
    out += ["", "### Training data", ""]
    names = training_datasets(card)
    out += [f"{', '.join(map(code, names)) or 'n/a'} ({code(td.get('dir'))})."]
    split = td.get("split") or {}
    if split:
        out += ["", f"Split: mode {code(split.get('mode'))}, seed {split.get('seed')}, augmentation before the "
                    f"split {'yes' if split.get('augment_before_split') else 'no'}."]
    head = ["set", "images", "nv", "mel", "lesions"]
    counts = td.get("counts") or {}
    rows = [["all", *(count(counts.get(k)) for k in head[1:])]] if counts else []
    rows += [[s, *(count(c.get(k)) for k in head[1:])] for s, c in (split.get("counts") or {}).items()
             if s != "by_source"]  # split counts per source: a table of their own would repeat the one below
    if rows:
        out += [""] + md_table(head, rows)
    by_source = td.get("counts_by_source") or {}
    if by_source:
        out += ["", "By source:", ""]
        out += md_table(["source", *head[1:]],
                        [[s, *(count(c.get(k)) for k in head[1:])] for s, c in sorted(by_source.items())])
    return out + [""]


def _validation_rows(name: str, m: dict) -> list:
    return [name, count(m.get("n")), auc_ci(m), pct(m.get("sensitivity")), pct(m.get("specificity")),
            pct(m.get("balanced_accuracy"))]


def validation_section(inputs: CardInputs) -> list:
    card = inputs.card
    rows = []
    if card.validation:
        rows.append(_validation_rows("validation", card.validation))
    for src, m in sorted((card.extra.get("validation_by_source") or {}).items()):
        rows.append(_validation_rows(f"validation: {src}", m))
    for name, m in sorted((card.extra.get("external") or {}).items()):
        rows.append(_validation_rows(f"external: {name}", m))
    out = ["## Validation", "",
           "As the card states them: the source (Keras) model from training, at the threshold "
           f"{card.trained_threshold:.4f}. "
           "The validation split also chose the threshold and the best epoch, so its numbers are optimistic. AUC "
           "with its 95 % bootstrap CI.", ""]
    if rows:
        out += md_table(["set", "n", "AUC [95 % CI]", "sens %", "spec %", "bal. acc %"], rows) + [""]
    sc = card.selfcheck
    if sc:
        verdict = "passed." if sc.get("passed") else f"**failed** ({sc.get('reason') or 'no reason given'})."
        out += [f"Conversion self-check ({sc.get('variant', card.variant)} vs Keras on {count(sc.get('n'))} validation "
                f"images): AUC {num(sc.get('auc_tflite'), '.4f')} vs {num(sc.get('auc_keras'), '.4f')}, decision "
                f"agreement {pct(sc.get('agreement'), 2)} %, mean / max abs ΔP "
                f"{num(sc.get('mean_abs_diff'), '.4f')} / {num(sc.get('max_abs_diff'), '.4f')}: {verdict}", ""]
    return out
