"""The model card's Reproduce section: the ``melkit train``, ``melkit convert``, ``melkit bench`` and
``melkit card`` commands that made this release, reconstructed from what the card and the bench reports record
(each option by the flag its options dataclass declares, only where it differs from the default)."""

from __future__ import annotations

import re
import shlex
from dataclasses import MISSING
from pathlib import Path

from melkit.bench.bench import BenchOptions
from melkit.convert.options import ConvertOptions
from melkit.core.card import ModelCard
from melkit.core.recipe import PRESETS
from melkit.data.sources import training_licence
from melkit.release.card_document.inputs import OUT_NAME, Bench, CardInputs, training_datasets
from melkit.train.trainer import TrainOptions
from melkit.util.options import cli_fields, flag_name, option_of
from melkit.util.paths import stored_path

__all__ = ["command_line", "reproduce_section"]


def _default(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def command_line(prog: list, cls, values: dict) -> str:
    """The command that sets ``values`` (field name -> value) of options dataclass ``cls``: arguments first,
    then each option that differs from its default, by the flag ``cls`` declares for it."""
    args, options = [], []
    for f in cli_fields(cls):
        if f.name not in values:
            continue
        o, v, default = option_of(f), values[f.name], _default(f)
        flag = flag_name(f)
        if o.switches:
            options += [f"--{name}" for name in o.switches if name in (v or [])]
        elif o.argument:
            args += [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        elif v == default:
            continue
        elif o.off and v is None:
            options.append(o.off[0])
        elif o.is_flag or isinstance(default, bool):
            if bool(v) != bool(default):
                options.append(flag)
        else:
            for x in (v if isinstance(v, (list, tuple)) else [v]):
                options += [flag, str(x)]
    return " ".join(shlex.quote(a) for a in [*prog, *args, *options])


def _train_command(card: ModelCard, inputs: CardInputs) -> str | None:
    sr, td = card.source_run, card.training_data
    d = td.get("dir")
    if not d:
        return None
    recipe = sr.get("recipe") if isinstance(sr.get("recipe"), str) else None
    preset = PRESETS[recipe]() if recipe in PRESETS else None
    values = {"data": d if isinstance(d, list) else [p.strip() for p in str(d).split(" + ") if p.strip()],
              "out": f"runs/{Path(str(sr.get('path') or 'run')).name}", "seed": sr.get("seed", 0)}
    if recipe:
        values["recipe"] = recipe
    if sr.get("weights") is not None:
        values["weights"] = sr["weights"]
    alpha, size, cc = sr.get("alpha"), card.image_size, bool(card.preprocessing.color_constancy)
    if alpha is not None and (preset is None or alpha != preset.alpha):
        values["alpha"] = alpha
    if preset is None or size != preset.image_size:
        values["image_size"] = size
    if cc and (preset is None or not preset.color_constancy):
        values["color_constancy"] = True
    split = td.get("split") or {}
    if split.get("mode") == "csv":
        values["split_csv"] = "split.csv" if (inputs.card_dir / "split.csv").is_file() else "SPLIT.csv"
    elif split.get("mode") in ("lesion", "image"):
        values["split"] = split["mode"]
    if split.get("augment_before_split"):
        values["augment_before_split"] = True
    return command_line(["melkit", "train"], TrainOptions, values)


def _convert_command(card: ModelCard) -> str | None:
    conv = card.conversion
    values = {"variants": [card.variant], "version": card.version}
    alpha = card.source_run.get("alpha")
    if not (isinstance(alpha, (int, float)) and card.name == f"melkit_mnv2_{alpha:g}_{card.image_size}"):
        values["name"] = card.name
    if isinstance(conv, dict):
        if "calibration_images" in conv:
            values["calibration_images"] = conv["calibration_images"]
        eq = conv.get("range_equalization")
        values["equalize_margin"] = eq.get("margin") if isinstance(eq, dict) else None
        if isinstance(conv.get("weight_rounding"), dict):
            values["weight_rounding"] = conv["weight_rounding"].get("method")
        values["align_threshold"] = isinstance(conv.get("decision_grid"), dict)
        values["float_layers"] = list(conv.get("float_layers") or [])
        if "seed" in conv:
            values["seed"] = conv["seed"]
        if isinstance(conv.get("contract_change"), dict):  # the cards state another contract than the run's
            values["contract_version"] = card.preprocessing.version
        if "threshold_fold" in conv:  # a card from a convert that folds (or says why it did not)
            values["fold_threshold"] = card.threshold_fold is not None or isinstance(conv["threshold_fold"], dict)
    guard = card.domain_guard
    if guard:
        values["domain_guard"] = True
        quantile = re.search(r"quantile ([0-9.]+)", str(guard.get("threshold_policy", "")))
        if quantile:
            values["domain_guard_quantile"] = float(quantile.group(1))
        values["domain_guard_balance"] = guard.get("balance", "none")  # cards from before the option: none
        if isinstance(guard.get("shrinkage"), (int, float)):
            values["domain_guard_shrinkage"] = guard["shrinkage"]
    if card.author is not None:
        values["author"] = card.author
    if card.license is not None and card.license != _default_license(card):
        values["license"] = card.license
    return command_line(["melkit", "convert", f"runs/{Path(str(card.source_run.get('path') or 'run')).name}"],
                        ConvertOptions, values)


def _default_license(card: ModelCard) -> str:
    """The licence melkit convert states by default for the card's training sources (by their names)."""
    by_source = card.training_data.get("counts_by_source")
    return training_licence(list(by_source) if by_source else training_datasets(card))


def _bench_command(b: Bench) -> str | None:
    o = b.report.get("options")
    if not isinstance(o, dict):
        return None
    values = dict(o)
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return command_line(["melkit", "bench"], BenchOptions, values)


def _card_command(inputs: CardInputs) -> str:
    """This command, run from the model's directory."""
    d = inputs.card_dir
    model = d / inputs.card.model_file
    args = ["melkit", "card", model.name if model.is_file() else inputs.card_path.name]
    for b in inputs.benches:
        args += ["--bench", stored_path(b.dir, d)]
    if inputs.notes_path is not None:
        args += ["--notes", stored_path(inputs.notes_path, d)]
    if inputs.compare is not None:
        args += ["--compare", stored_path(inputs.compare_path, d)]
        args += [x for b in inputs.compare_benches for x in ("--compare-bench", stored_path(b.dir, d))]
    if inputs.license_id:
        args += ["--license", inputs.license_id]
    if inputs.out.resolve() != (d / OUT_NAME).resolve():
        args += ["--out", stored_path(inputs.out, d)]
    return " ".join(shlex.quote(a) for a in args)


def reproduce_section(inputs: CardInputs) -> list:
    card = inputs.card
    lines = ["# training and conversion, as the card records them (data folders and weights by name)"]
    lines += [c for c in (_train_command(card, inputs), _convert_command(card)) if c]
    benches = [c for c in map(_bench_command, inputs.benches) if c]
    if benches:
        lines += ["# the results above (paths as the bench was run)"] + benches
    lines += ["# this file, from the model's directory", _card_command(inputs)]
    return ["## Reproduce", "", "```sh", *lines, "```", ""]
