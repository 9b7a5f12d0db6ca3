"""The bench report: ``report.json`` (every number), ``report.md`` (tables a person reads),
``predictions.csv`` (P(mel) per image and model, to recompute anything) and a compact terminal table.

report_tables.py makes each table's rows; this module builds the report object, lays the tables out in
report.md and in the terminal, and writes the files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from melkit.bench import report_tables as tables
from melkit.bench.host import host_line
from melkit.util.files import atomic_writer, write_json
from melkit.util.fmt import md_table, num, pct
from melkit.util.options import stored_options
from melkit.util.paths import stored_path
from melkit.util.spreadsheet import SpreadsheetWriter

__all__ = ["REPORT_VERSION", "ReportInputs", "latency_ratios", "domain_summary", "build", "terminal_table",
           "markdown", "write"]

REPORT_VERSION = 1
FLIPS_IN_MARKDOWN = 20


# --------------------------------------------------------------------------- building


@dataclass
class ReportInputs:
    """What one bench measured, as :func:`build` turns it into the report object. The optional parts appear
    only where they apply: ``by_source`` when the images come from more than one source, a model's
    ``domain_guard`` only for a model with a guard, its ``borderline`` only for a model whose card has a band,
    its ``risk_bands`` only for a card with likelihood ratios."""

    # the models and the images they were measured on
    models: list  # bench.inputs.ModelRef of each model, the reference among them
    reference: object  # the ModelRef the others are compared with
    source: object  # bench.inputs.ImageSource of the images
    records: list  # the images read, in the order of labels
    labels: np.ndarray
    skipped: list  # (image_id, reason) of each image that could not be read
    # what was measured
    results: dict  # name -> parity.evaluate's "metrics" and "vs_reference"
    subgroups: dict
    latency: dict | None
    host: dict
    # the run
    opts: object  # bench's BenchOptions
    failures: list  # the gates that failed
    timings: dict
    folder: str = "."  # the report's folder: paths in the report are stored relative to it (util.paths)
    by_source: dict | None = None  # parity.by_source
    domain: dict | None = None  # name -> domain_summary
    borderline: dict | None = None  # name -> parity.borderline_summary
    risk: dict | None = None  # name -> parity.risk_bands_summary


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def latency_ratios(models: list, latency: dict | None) -> dict:
    """Mean single-image latency of each .tflite over the float32 .tflite's and over Keras's (lower = faster)."""
    if not latency:
        return {}
    tfl = latency["tflite"]
    float_name = next((m["name"] for m in models if m["variant"] == "float32" and m["name"] in tfl), None)
    keras = latency.get("keras")
    out = {}
    for name, r in tfl.items():
        mean = r["timed"]["mean_ms"]
        out[name] = {
            "over_float32_tflite": _ratio(mean, tfl[float_name]["timed"]["mean_ms"]) if float_name else None,
            "over_keras_single": _ratio(mean, keras["single"]["mean_ms"]) if keras else None,
            "over_keras_batched_per_image": _ratio(mean, keras["batch_per_image"]["mean_ms"]) if keras else None,
            "xnnpack_on_over_off": _ratio(mean, (r.get("xnnpack_off") or {}).get("mean_ms")),
        }
    out["_float32_tflite"] = float_name
    return out


def _not_assessed_by_class(inside, labels) -> dict:
    """The share of melanomas and of nevi the guard would not assess (None for a class with no image): a guard
    that drops melanomas more often than nevi drops exactly the lesions a screening aid is for."""
    labels = np.asarray(labels, int)
    return {f"not_assessed_{name}": (float(np.mean(~inside[labels == c])) if (labels == c).any() else None)
            for c, name in ((1, "mel"), (0, "nv"))}


def domain_summary(card, scores, image_ids, labels, sources=None, worst: int = 20) -> dict:
    """A --domain-guard model's in-domain rate on the benchmarked images (a real dermoscopy set should be
    ~97-100 %), the share of melanomas and of nevi it would not assess (also per source, with ``sources``: one
    name per image, when there are several), and the images it would not assess, highest score first."""
    scores = np.asarray(scores, float)
    inside = card.in_domain(scores)
    order = [i for i in np.argsort(-scores) if not inside[i]][:worst]
    out = {"threshold": card.guard_threshold, "n": int(len(scores)), "n_in_domain": int(inside.sum()),
           "in_domain_rate": float(inside.mean()) if len(scores) else None,
           **_not_assessed_by_class(inside, labels),
           "score_p50": float(np.median(scores)) if len(scores) else None,
           "not_assessed": [{"image_id": image_ids[i], "domain_score": float(scores[i])} for i in order]}
    if sources is not None and len(set(sources)) > 1:
        sources, labels = np.asarray(sources, dtype=object), np.asarray(labels, int)
        out["by_source"] = {s: _not_assessed_by_class(inside[sources == s], labels[sources == s])
                            for s in sorted(set(sources))}
    return out


def build(inputs: ReportInputs) -> dict:
    """The report.json object. The metrics count every image, assessed (by a domain guard) or not."""
    entries = []
    for m in inputs.models:
        card = m.card
        entry = {
            "name": m.name, "kind": m.kind, "path": stored_path(m.path, inputs.folder),
            "variant": card.variant if card else "keras" if m.kind == "keras" else None,
            "threshold": m.threshold, "image_size": m.image_size, "size_bytes": m.size_bytes,
            "input": card.input.to_json() if card else None, "metrics": inputs.results[m.name]["metrics"],
            "vs_reference": inputs.results[m.name]["vs_reference"],
        }
        per_model = {"domain_guard": inputs.domain, "borderline": inputs.borderline, "risk_bands": inputs.risk}
        for key, by_name in per_model.items():
            if by_name and m.name in by_name:
                entry[key] = by_name[m.name]
        if inputs.latency and m.name in inputs.latency["tflite"]:
            entry["latency"] = inputs.latency["tflite"][m.name]
            entry["litert_benchmark"] = (inputs.latency.get("litert_benchmark") or {}).get(m.name)
        entries.append(entry)
    labels, records, opts = inputs.labels, inputs.records, inputs.opts
    return {
        "melkit_bench": REPORT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "images": {"source": inputs.source.recorded or inputs.source.description, "n": len(records), "n_mel": int(labels.sum()),
                   "n_nv": int(len(labels) - labels.sum()), "lesions": len({r.lesion_id for r in records}),
                   "skipped": [{"image_id": i, "reason": why} for i, why in inputs.skipped],
                   # rows of the data folders with another diagnosis: every row is used, skipped or counted here
                   "other_dx_left_out": dict(getattr(inputs.source, "other_dx", {}))},
        "reference": inputs.reference.name,
        "models": entries,
        "subgroups": inputs.subgroups,
        **({"by_source": inputs.by_source} if inputs.by_source else {}),
        "latency": inputs.latency,
        "latency_ratios": latency_ratios(entries, inputs.latency),
        "host": inputs.host,
        "gates": {"max_auc_drop": opts.max_auc_drop, "min_agreement": opts.min_agreement, "failures": inputs.failures},
        "options": stored_options(opts, inputs.folder),
        "timings_s": inputs.timings,
    }


# --------------------------------------------------------------------------- text


def _plain(head, rows) -> list:
    """A plain-text table for the terminal: columns aligned, the first to the left, the others to the right."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows]


def terminal_table(report) -> str:
    im = report["images"]
    lines = [f"{im['n']} images ({im['n_mel']} mel, {im['lesions']} lesions): {im['source']}", ""]
    lines += _plain(tables.PARITY_HEAD, list(tables.parity_rows(report)))
    lines += [""] + _plain(tables.CLINICAL_HEAD, list(tables.clinical_rows(report)))
    if report.get("by_source"):
        lines += ["", (f"by source ({len(report['by_source'])} sources): at each model's threshold; ΔAUC and "
                       "agree % vs the reference on the same images")]
        lines += _plain(tables.BY_SOURCE_HEAD, list(tables.by_source_rows(report)))
    if any("domain_guard" in e for e in report["models"]):
        lines += ["", "input-domain guard: images each model would assess (in domain); the metrics above count all"]
        lines += _plain(tables.DOMAIN_HEAD, list(tables.domain_rows(report)))
    if any("borderline" in e for e in report["models"]):
        lines += ["", "borderline band: images in each model's band, and agreement with the reference outside it"]
        lines += _plain(tables.BORDERLINE_HEAD, list(tables.borderline_rows(report)))
    if report["latency"]:
        s = report["latency"]["settings"]
        lines += ["", f"latency: {s['runs']} timed single-image runs at {s['threads']} thread(s); "
                      f"× = mean over the float32 .tflite's / over Keras's single-image mean"]
        lines += _plain(tables.LATENCY_HEAD, list(tables.latency_rows(report)))

    lines += ["", "host: " + host_line(report["host"])]
    for f in report["gates"]["failures"]:
        lines.append(f"GATE FAILED: {f}")
    return "\n".join(lines)


def markdown(report) -> str:

    im = report["images"]
    out = ["# melkit bench", "",
           f"{im['n']} images ({im['n_mel']} melanoma, {im['n_nv']} nevus; {im['lesions']} lesions) from "
           f"{im['source']}. Reference: **{report['reference']}**. Created {report['created']}.", ""]
    if im["skipped"]:
        out += [f"{len(im['skipped'])} image(s) could not be read and were left out (see report.json).", ""]
    if im.get("other_dx_left_out"):
        other = ", ".join(f"{dx} {n}" for dx, n in sorted(im["other_dx_left_out"].items()))
        out += [f"Left out, other diagnoses than nevus and melanoma in the data folders: {other}.", ""]
    out += ["## Parity with the reference", "",
            "ΔAUC = model − reference; agreement = same decision at each model's own threshold; flips = images "
            "whose decision changed. AUC CI: 95 % bootstrap over lesions.", ""]
    out += md_table(tables.PARITY_HEAD, tables.parity_rows(report)) + [""]
    out += ["## Clinical metrics", "", "Percentages at the model's threshold (from its card or the run)."
            + (" (P x): the threshold on the scale of the P(mel) shown, for a card whose threshold is folded into "
               "the model's output (or tempered); ECE and Brier are on that scale." if any(
                   "threshold_shown" in e["metrics"] for e in report["models"]) else ""), ""]
    out += md_table(tables.CLINICAL_HEAD, tables.clinical_rows(report)) + [""]
    out += _by_source_md(report)
    out += _subgroups_md(report)
    out += _flips_md(report)
    out += _domain_md(report)
    out += _borderline_md(report)
    out += _risk_md(report)
    if report["latency"]:
        out += _latency_md(report)
    out += ["## Host", "", host_line(report["host"]), ""]
    g = report["gates"]
    if g["max_auc_drop"] is not None or g["min_agreement"] is not None:
        out += ["## Gates", "", f"--max-auc-drop {g['max_auc_drop']}, --min-agreement {g['min_agreement']}: "
                + ("**FAILED**" if g["failures"] else "passed"), ""]
        out += [f"- {f}" for f in g["failures"]] + [""]
    if report.get("plots"):
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    return "\n".join(out)


def _by_source_md(report) -> list:
    if not report.get("by_source"):
        return []
    out = ["## By source", "",
           (f"The images come from {len(report['by_source'])} sources; the metrics above on each source's "
            "images alone, at each model's own threshold. AUC CI: 95 % bootstrap over the source's lesions; "
            "ΔAUC and agreement against the reference on the same images."), ""]
    return out + md_table(tables.BY_SOURCE_HEAD, tables.by_source_rows(report)) + [""]


def _subgroups_md(report) -> list:
    if not report["subgroups"]:
        return []
    names = [e["name"] for e in report["models"]]
    out = ["## Subgroups", "", "Per value: AUC / sensitivity % / specificity % (agreement % with the reference).", ""]
    for field_name, rows in report["subgroups"].items():
        out += [f"### {field_name}", ""]
        body = []
        for row in rows:
            cells = [row["value"], row["n"], row["n_pos"]]
            for n in names:
                s = row["models"][n]
                cells.append(f"{num(s['auc'])} / {pct(s['sensitivity'])} / {pct(s['specificity'])}"
                             + ("" if n == report["reference"] else f" ({pct(s['agreement'])})"))
            body.append(cells)
        out += md_table([field_name, "n", "mel"] + names, body) + [""]
    return out


def _flips_md(report) -> list:
    out = []
    for e in report["models"]:
        vs = e["vs_reference"]
        if not vs or not vs["flipped"]:
            continue
        if not out:
            out = ["## Flipped decisions", "", f"Largest probability change first; at most {FLIPS_IN_MARKDOWN} per "
                   "model here, all in report.json.", ""]
        rows = [[f["image_id"], "mel" if f["label"] else "nv", f"{f['p_reference']:.3f}", f"{f['p']:.3f}",
                 f"{f['reference_says']} → {f['model_says']}"] for f in vs["flipped"][:FLIPS_IN_MARKDOWN]]
        out += [f"### {e['name']} ({vs['n_flipped']})", ""]
        out += md_table(["image", "truth", "p reference", "p model", "decision"], rows) + [""]
    return out


def _domain_md(report) -> list:
    if not any("domain_guard" in e for e in report["models"]):
        return []
    out = ["## Input-domain guard", "",
           "Models converted with `--domain-guard` say whether each image looks like a dermoscopic lesion image "
           "(domain score <= threshold); out of the domain the app and `melkit predict` give no melanoma score. "
           "On a real dermoscopy set the in-domain rate should be ~97-100 %. The metrics above count every "
           "image, assessed or not.", ""]
    out += md_table(tables.DOMAIN_HEAD, tables.domain_rows(report)) + [""]
    for e in report["models"]:
        g = e.get("domain_guard")
        if g and g["not_assessed"]:
            shown = ", ".join(f"{x['image_id']} ({x['domain_score']:.2f})" for x in g["not_assessed"][:10])
            out += [f"{e['name']}, not assessed (highest score first): {shown}", ""]
    return out


def _table_section(report, key: str, title: str, text: str, head: list, rows) -> list:
    """A section shown only when some model's entry has ``key``: its title, what it shows, its table."""
    if not any(key in e for e in report["models"]):
        return []
    return [f"## {title}", "", text, ""] + md_table(head, rows(report)) + [""]


def _borderline_md(report) -> list:
    return _table_section(
        report, "borderline", "Borderline band",
        "A quantized model's card names the band of its output around the threshold where it and the float "
        "model were seen to disagree on validation (`melkit convert`); images in it are shown as "
        "\"borderline: ...\" with the decision. Share of these images in the band, and agreement with the "
        "reference outside it (the band's promise: 100 %).", tables.BORDERLINE_HEAD, tables.borderline_rows)


def _risk_md(report) -> list:
    return _table_section(
        report, "risk_bands", "Risk bands",
        "Each band of the model's output with the likelihood ratio P(band | melanoma) / P(band | nevus) "
        "measured on these images, beside the one its card states (validation): a likelihood ratio does not "
        "depend on the share of melanomas, so it should hold on another device where P(mel) does not.",
        tables.RISK_HEAD, tables.risk_rows)


def _latency_md(report) -> list:
    lat = report["latency"]
    s = lat["settings"]
    out = ["## Latency", "",
           f"LiteRT interpreter, one image per invoke, {s['warmup']} warm-up then {s['runs']} timed runs at "
           f"{s['threads']} thread(s), each model in a fresh process (init, first inference and peak RSS are "
           "that process's). × float32 / × keras: mean latency over the float32 .tflite's / over Keras "
           "single-image `predict_on_batch` (lower is faster). Keras uses every core.", ""]
    out += md_table(tables.LATENCY_HEAD, tables.latency_rows(report)) + [""]
    if s["sweep"]:
        out += ["### Thread sweep (mean ms)", ""]
        rows = [[name] + [num(r["sweep"].get(str(t), {}).get("mean_ms"), ".2f") for t in s["sweep"]]
                for name, r in lat["tflite"].items()]
        out += md_table(["model"] + [f"{t} thr" for t in s["sweep"]], rows) + [""]
    ext = lat.get("litert_benchmark")
    if ext:
        out += ["LiteRT's own tool, same files and settings:", ""]
        out += [f"- `{r.get('command', '')}`: " + (f"avg {r['latency']['avg_ms']} ms, median "
                                                  f"{r['latency']['median_ms']} ms" if "latency" in r
                                                  else f"error: {r.get('error')}") for r in ext.values()]
        out += [""]
    out += ["### The same measurement on a phone", "", "With TFLite's prebuilt Android `benchmark_model`:", "",
            "```sh"] + lat["phone_commands"] + ["```", ""]
    return out


# --------------------------------------------------------------------------- writing


def write(out, report, records, probs) -> list:
    """report.json, report.md and predictions.csv (``probs``: the P(mel) a person is shown, per model), each
    atomically; returns their paths."""
    write_json(out / "report.json", report)
    with atomic_writer(out / "report.md") as f:
        f.write(markdown(report))
    with atomic_writer(out / "predictions.csv") as f:
        w = SpreadsheetWriter(f)
        names = list(probs)
        w.writerow(["image_id", "lesion_id", "label"] + [f"p_mel_{n}" for n in names])
        for i, r in enumerate(records):
            w.writerow([r.image_id, r.lesion_id, r.dx] + [f"{probs[n][i]:.6f}" for n in names])
    return [out / "report.json", out / "report.md", out / "predictions.csv"]
