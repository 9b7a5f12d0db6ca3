"""The model card's sections on the release itself: its files (the model, its card, the other variants, the
labels, the split and the bench reports) and the model (architecture, decision, tensors, guard, borderline band,
preprocessing contract, conversion settings)."""

from __future__ import annotations

from pathlib import Path

from melkit.release.card_document.inputs import CardInputs
from melkit.util.fmt import code, count, mb, md_table, pct

__all__ = ["display_path", "files_section", "model_section"]


def display_path(path: Path, *bases: Path) -> str:
    """``path`` relative to the first base that holds it (posix), else its name: the same text from any
    working directory."""
    p = Path(path).resolve()
    for base in bases:
        try:
            rel = p.relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            continue
        return rel or "."
    return p.name


def files_section(inputs: CardInputs) -> list:
    card, d = inputs.card, inputs.card_dir
    out_dir = inputs.out.parent
    where = "" if out_dir.resolve() == d.resolve() else f" (in {code(display_path(d, out_dir))})"
    out = ["## Files", "", f"Paths relative to the model's directory{where}.", ""]
    io = f"input {card.input.dtype} {list(card.input.shape)}, output {card.output.dtype} {list(card.output.shape)}"
    rows = [[f"{code(card.model_file)} ({mb(card.size_bytes)} MB)",
             f"this model: {card.variant}, {io} ({card.output.meaning}); sha256 {code(card.sha256)}"],
            [code(inputs.card_path.name), "its melkit model card: preprocessing contract, I/O, threshold, sha256, "
                                           "validation and self-check (what bench, bundle and the app read)"]]
    for name, other in inputs.siblings:
        rows.append([f"{code(other.model_file)} ({mb(other.size_bytes)} MB)",
                     f"the {other.variant} variant of the same release (card {code(name)})"])
    labels = ", ".join(code(x) for x in card.labels)
    present = "" if (d / card.labels_file).is_file() else " (not beside the model; the labels are in the card)"
    rows.append([code(card.labels_file), f"{labels}: the output's order{present}"])
    if (d / "split.csv").is_file():
        rows.append([code("split.csv"), "the data split the model was trained and evaluated on (ids only)"])
    for b in inputs.benches:
        im = b.report["images"]
        rows.append([code(display_path(b.dir, d, out_dir) + "/"),
                     f"melkit bench report on {b.label}: {count(im.get('n'))} images (report.md / report.json)"])
    return out + md_table(["file", "what it is"], rows) + [""]


def model_section(inputs: CardInputs) -> list:
    card = inputs.card
    p = card.preprocessing
    sr = card.source_run
    alpha = sr.get("alpha")
    out = ["## Model", ""]
    arch = f"MobileNetV2 (alpha {alpha})" if isinstance(alpha, (int, float)) else "MobileNetV2"
    out += [f"- Architecture: {arch}, {p.image_size}x{p.image_size} {p.color} input, one logit exported as "
            f"two scores {card.output.meaning}.",
            f"- Initial weights: {code(sr.get('weights'))}." if sr.get("weights") else "- Initial weights: n/a.",
            f"- Decision: {card.decision}; threshold {card.trained_threshold:.4f} (policy "
            f"{code(card.threshold_policy)}, "
            "chosen on the validation split).",
            *([f"- Threshold folded into the model: the trained threshold {card.threshold_fold['threshold']:.4f} "
               f"(logit {card.threshold_fold['logit']:.4f}) now sits at 0.5 of the output, so a generic client's top "
               "category is this decision; the calibrated P(mel) = sigmoid(logit(output) + logit)."]
              if card.threshold_fold else []),
            f"- Input tensor {code(card.input.name)}: {card.input.dtype} {list(card.input.shape)}"
            + (f", scale {card.input.quantization.scale:g}, zero point {card.input.quantization.zero_point}"
               if card.input.quantization else "") + ".",
            f"- Output tensor {code(card.output.name)}: {card.output.dtype} {list(card.output.shape)}"
            + (f", scale {card.output.quantization.scale:g}, zero point {card.output.quantization.zero_point}"
               if card.output.quantization else "") + "."]
    if card.domain_guard is not None:
        g, q = card.guard_output, card.guard_output.quantization
        out += [f"- Input-domain guard, output {card.guard_index} {code(g.name)}: {g.dtype} {list(g.shape)}"
                + (f", scale {q.scale:g}, zero point {q.zero_point}" if q else "")
                + f"; an image whose domain score is above {card.guard_threshold:.4g} does not look like a "
                "dermoscopic lesion image and is not assessed (no melanoma score)."]
    if card.borderline is not None:
        b, v = card.borderline, card.borderline.get("validation") or {}
        out += [f"- Borderline band: an assessed image whose output P(mel) lies in [{b['low']:.4f}, {b['high']:.4f}] "
                "is shown as \"borderline: nevus-like\" or \"borderline: melanoma-suspicious\" (the decision itself "
                "is unchanged): there this model and the float model it came from were seen to disagree "
                f"({pct(v.get('share'))} of validation, {count(v.get('flips'))} disagreement(s), all inside)."]
    if card.license is not None or card.author is not None:  # cards of 2.0.0 and older state neither
        out += [f"- Licence: {card.license or 'not stated'}; author: {card.author or 'not stated'} (as the "
                "model's TFLite metadata states them)."]
    out += [""]
    out += [f"Preprocessing contract {code(p.name)} (every client must feed the model exactly this):", ""]
    pj = p.to_json()
    rows = [[k, code(pj[k])] for k in ("color", "resize", "rounding", "scale", "mean", "std", "image_size")]
    iq = pj["input_quantization"]
    rows.append(["input_quantization", code(f"{iq['dtype']}, scale {iq['scale']:g}, zero point {iq['zero_point']}")])
    rows.append(["color_constancy", code(pj["color_constancy"]) if pj.get("color_constancy") else "none"])
    out += md_table(["field", "value"], rows) + [""]
    conv = card.conversion
    if conv:
        out += ["### Conversion", ""]
        items = []
        if "calibration_images" in conv:
            items.append(f"calibration: {count(conv['calibration_images'])} images from the "
                         f"{conv.get('calibration_split', '?')} split"
                         + (", drawn equally from each source" if conv.get("calibration_sources") == "balanced" else "")
                         + f" (seed {conv.get('seed', '?')})")
        eq = conv.get("range_equalization")
        items.append(f"ReLU6 range equalisation: {eq['layers']} layers, margin {eq['margin']:g}"
                     if isinstance(eq, dict) else "ReLU6 range equalisation: off")
        wr = conv.get("weight_rounding")
        if isinstance(wr, dict):
            items.append(f"int8 weight rounding: {wr.get('method')} ({wr.get('layers')} layers)")
        grid = conv.get("decision_grid")
        if isinstance(grid, dict):
            items.append(f"output grid aligned to the threshold: scale {grid.get('scale_before', 0):.4f} -> "
                         f"{grid.get('scale_after', 0):.4f}, threshold logit {grid.get('threshold_logit', 0):.4f} "
                         f"at {grid.get('threshold_in_steps', 0):.1f} steps")
        layers = conv.get("float_layers")
        items.append("layers kept in float: " + (", ".join(map(code, layers)) if layers else "none"))
        out += [f"- {i}" for i in items] + [""]
    return out
