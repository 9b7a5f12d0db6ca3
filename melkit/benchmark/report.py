"""The bench report: ``report.json`` (every number), ``report.md`` (tables a person reads),
``predictions.csv`` (P(mel) per image and model, to recompute anything) and a compact terminal table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import numpy as np

from melkit.benchmark.host import host_line
from melkit.core.files import atomic_writer, write_json
from melkit.core.spreadsheet import SpreadsheetWriter

REPORT_VERSION = 1
FLIPS_IN_MARKDOWN = 20


# --------------------------------------------------------------------------- building


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


def build(models, reference, source, records, labels, skipped, results, subgroups, latency, host, opts, failures,
          timings, by_source=None, domain=None, borderline=None, risk=None) -> dict:
    """The report.json object; ``by_source`` (parity.by_source) only appears when the images come from more
    than one source, a model's ``domain_guard`` (``domain``: name -> :func:`domain_summary`) only for a model
    with a guard, its ``borderline`` (name -> parity.borderline_summary) only for a model whose card has a band,
    its ``risk_bands`` (name -> parity.risk_bands_summary) only for a card with likelihood ratios.
    The metrics count every image, assessed or not."""
    entries = []
    for m in models:
        card = m.card
        entry = {
            "name": m.name, "kind": m.kind, "path": str(m.path),
            "variant": card.variant if card else "keras" if m.kind == "keras" else None,
            "threshold": m.threshold, "image_size": m.image_size, "size_bytes": m.size_bytes,
            "input": card.input.to_json() if card else None, "metrics": results[m.name]["metrics"],
            "vs_reference": results[m.name]["vs_reference"],
        }
        if domain and m.name in domain:
            entry["domain_guard"] = domain[m.name]
        if borderline and m.name in borderline:
            entry["borderline"] = borderline[m.name]
        if risk and m.name in risk:
            entry["risk_bands"] = risk[m.name]
        if latency and m.name in latency["tflite"]:
            entry["latency"] = latency["tflite"][m.name]
            entry["litert_benchmark"] = (latency.get("litert_benchmark") or {}).get(m.name)
        entries.append(entry)
    opt = asdict(opts)
    return {
        "melkit_bench": REPORT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "images": {"source": source.description, "n": len(records), "n_mel": int(labels.sum()),
                   "n_nv": int(len(labels) - labels.sum()), "lesions": len({r.lesion_id for r in records}),
                   "skipped": [{"image_id": i, "reason": why} for i, why in skipped],
                   # rows of the data folders with another diagnosis: every row is used, skipped or counted here
                   "other_dx_left_out": dict(getattr(source, "other_dx", {}))},
        "reference": reference.name,
        "models": entries,
        "subgroups": subgroups,
        **({"by_source": by_source} if by_source else {}),
        "latency": latency,
        "latency_ratios": latency_ratios(entries, latency),
        "host": host,
        "gates": {"max_auc_drop": opts.max_auc_drop, "min_agreement": opts.min_agreement, "failures": failures},
        "options": opt,
        "timings_s": timings,
    }


# --------------------------------------------------------------------------- formatting


def _f(v, spec=".3f", none="n/a"):
    return none if v is None else format(v, spec)


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}"


def _auc_ci(m):
    if m["auc"] is None:
        return "undefined"
    ci = m["auc_ci"]
    return f"{m['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _table(head, rows) -> list:
    """A markdown pipe table (also readable as plain text)."""
    cell = lambda c: str(c).replace("|", "\\|")  # a literal | (as in |Δp|) would end the cell
    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _parity_rows(report):
    for e in report["models"]:
        m, vs = e["metrics"], e["vs_reference"]
        if vs is None:
            yield [e["name"], _auc_ci(m), "reference", "", "", "", ""]
        else:
            yield [e["name"], _auc_ci(m), _f(vs["delta_auc"], "+.4f"), _pct(vs["agreement"]), vs["n_flipped"],
                   _f(vs["mean_abs_dp"], ".4f"), _f(vs["max_abs_dp"], ".4f")]


def _clinical_rows(report):
    for e in report["models"]:
        m = e["metrics"]
        thr = f"{m['threshold']:.3f}" + (f" (P {m['threshold_shown']:.3f})" if "threshold_shown" in m else "")
        yield [e["name"], thr, _pct(m["sensitivity"]), _pct(m["specificity"]),
               _pct(m["balanced_accuracy"]), _pct(m["sensitivity_at_90_specificity"]),
               _pct(m["specificity_at_90_sensitivity"]), _pct(m["accuracy_at_threshold"]),
               _pct(m["majority_baseline"]), _f(m["ece"], ".3f"), _f(m["brier"], ".3f")]


def _by_source_rows(report):
    """One row per source and model, the source's counts on its first row."""
    for source, s in (report.get("by_source") or {}).items():
        for k, e in enumerate(report["models"]):
            r = s["models"][e["name"]]
            m, vs = r["metrics"], r["vs_reference"]
            g = ((e.get("domain_guard") or {}).get("by_source") or {}).get(source, {})
            yield ([source, s["n"], s["n_pos"]] if k == 0 else ["", "", ""]) + [
                e["name"], _auc_ci(m), "reference" if vs is None else _f(vs["delta_auc"], "+.4f"),
                _pct(m["balanced_accuracy"]), _pct(m["sensitivity"]), _pct(m["specificity"]),
                _pct(m["specificity_at_90_sensitivity"]), "" if vs is None else _pct(vs["agreement"]),
                _not_assessed_cell(g)]


def _not_assessed_cell(g: dict) -> str:
    """"mel % / nv %" not assessed by a guard; empty for a model without one."""
    if not g or "not_assessed_mel" not in g:
        return ""
    return f"{_pct(g['not_assessed_mel'])} / {_pct(g['not_assessed_nv'])}"


def _latency_rows(report):
    lat = report["latency"]
    ratios = report["latency_ratios"]
    for e in report["models"]:
        r = e.get("latency")
        if r is None:
            continue
        t, off, ext = r["timed"], r.get("xnnpack_off"), e.get("litert_benchmark") or {}
        ra = ratios.get(e["name"], {})
        yield [e["name"], f"{e['size_bytes'] / 1e6:.2f}", f"{r['init_ms']:.1f}", f"{r['first_inference_ms']:.1f}",
               f"{t['mean_ms']:.2f}", f"{t['p50_ms']:.2f}", f"{t['p90_ms']:.2f}", f"{t['p99_ms']:.2f}",
               _f(off and off["mean_ms"], ".2f"), f"{r['peak_rss_mb']:.0f}",
               _f(ext.get("latency", {}).get("avg_ms"), ".2f", "-" if not ext else "error"),
               _f(ra.get("over_float32_tflite"), ".2f"), _f(ra.get("over_keras_single"), ".3f")]
    k = lat.get("keras")
    if k:
        yield ["keras (1 image)", "", "", "", f"{k['single']['mean_ms']:.2f}", f"{k['single']['p50_ms']:.2f}",
               f"{k['single']['p90_ms']:.2f}", f"{k['single']['p99_ms']:.2f}", "", "", "", "", "1"]
        b = k["batch_per_image"]
        yield [f"keras (batch {k['batch_size']}, per image)", "", "", "", f"{b['mean_ms']:.2f}", f"{b['p50_ms']:.2f}",
               f"{b['p90_ms']:.2f}", f"{b['p99_ms']:.2f}", "", "", "", "", ""]


PARITY_HEAD = ["model", "AUC [95% CI]", "ΔAUC", "agree %", "flips", "mean|Δp|", "max|Δp|"]
CLINICAL_HEAD = ["model", "thr", "sens %", "spec %", "bal.acc %", "sens@90spec %", "spec@90sens %", "acc %",
                 "majority %", "ECE", "Brier"]
BY_SOURCE_HEAD = ["source", "n", "mel", "model", "AUC [95% CI]", "ΔAUC", "bal.acc %", "sens %", "spec %",
                  "spec@90sens %", "agree %", "not assessed mel / nv %"]
DOMAIN_HEAD = ["model", "threshold", "in domain %", "in domain", "not assessed", "mel not assessed %",
               "nv not assessed %", "score p50"]


def _domain_rows(report):
    for e in report["models"]:
        g = e.get("domain_guard")
        if g:
            yield [e["name"], f"{g['threshold']:.3f}", _pct(g["in_domain_rate"]), g["n_in_domain"],
                   g["n"] - g["n_in_domain"], _pct(g.get("not_assessed_mel")), _pct(g.get("not_assessed_nv")),
                   _f(g["score_p50"], ".3f")]


def _domain_md(report) -> list:
    if not any("domain_guard" in e for e in report["models"]):
        return []
    out = ["## Input-domain guard", "",
           "Models converted with `--domain-guard` say whether each image looks like a dermoscopic lesion image "
           "(domain score <= threshold); out of the domain the app and `melkit predict` give no melanoma score. "
           "On a real dermoscopy set the in-domain rate should be ~97-100 %. The metrics above count every "
           "image, assessed or not.", ""]
    out += _table(DOMAIN_HEAD, _domain_rows(report)) + [""]
    for e in report["models"]:
        g = e.get("domain_guard")
        if g and g["not_assessed"]:
            shown = ", ".join(f"{x['image_id']} ({x['domain_score']:.2f})" for x in g["not_assessed"][:10])
            out += [f"{e['name']}, not assessed (highest score first): {shown}", ""]
    return out


BORDERLINE_HEAD = ["model", "source", "band (output)", "n", "borderline %", "agree outside %", "flips outside",
                   "flips inside"]


def _borderline_rows(report):
    for e in report["models"]:
        b = e.get("borderline")
        if not b:
            continue
        for k, (source, r) in enumerate([("all", b)] + list((b.get("by_source") or {}).items())):
            yield [e["name"] if k == 0 else "", source, f"{b['low']:.4f}-{b['high']:.4f}" if k == 0 else "", r["n"],
                   _pct(r["share"]), _pct(r["agreement_outside"]), r["flips_outside"], r["flips_inside"]]


def _borderline_md(report) -> list:
    if not any("borderline" in e for e in report["models"]):
        return []
    return ["## Borderline band", "",
            "A quantized model's card names the band of its output around the threshold where it and the float "
            "model were seen to disagree on validation (`melkit convert`); images in it are shown as "
            "\"borderline: ...\" with the decision. Share of these images in the band, and agreement with the "
            "reference outside it (the band's promise: 100 %).", ""] + _table(BORDERLINE_HEAD,
                                                                             _borderline_rows(report)) + [""]


RISK_HEAD = ["model", "source", "band", "mel", "nv", "LR here", "LR card (validation)"]


def _risk_rows(report):
    for e in report["models"]:
        r = e.get("risk_bands")
        if not r:
            continue
        groups = [("all", r["bands"])] + list((r.get("by_source") or {}).items())
        for g, (source, bands) in enumerate(groups):
            for k, b in enumerate(bands):
                yield [e["name"] if g == k == 0 else "", source if k == 0 else "", b["name"], b["n_mel"], b["n_nv"],
                       _f(b["lr"], ".2f"), _f(b["lr_card"], ".2f")]


def _risk_md(report) -> list:
    if not any("risk_bands" in e for e in report["models"]):
        return []
    return ["## Risk bands", "",
            "Each band of the model's output with the likelihood ratio P(band | melanoma) / P(band | nevus) "
            "measured on these images, beside the one its card states (validation): a likelihood ratio does not "
            "depend on the share of melanomas, so it should hold on another device where P(mel) does not.", ""] + \
        _table(RISK_HEAD, _risk_rows(report)) + [""]


LATENCY_HEAD = ["model", "MB", "init ms", "first ms", "mean ms", "p50", "p90", "p99", "XNNPACK off ms",
                "peak RSS MB", "LiteRT tool avg ms", "× float32", "× keras"]


def _plain(head, rows) -> list:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows]


def terminal_table(report) -> str:
    im = report["images"]
    lines = [f"{im['n']} images ({im['n_mel']} mel, {im['lesions']} lesions): {im['source']}", ""]
    lines += _plain(PARITY_HEAD, list(_parity_rows(report)))
    lines += [""] + _plain(CLINICAL_HEAD, list(_clinical_rows(report)))
    if report.get("by_source"):
        lines += ["", (f"by source ({len(report['by_source'])} sources): at each model's threshold; ΔAUC and "
                       "agree % vs the reference on the same images")]
        lines += _plain(BY_SOURCE_HEAD, list(_by_source_rows(report)))
    if any("domain_guard" in e for e in report["models"]):
        lines += ["", "input-domain guard: images each model would assess (in domain); the metrics above count all"]
        lines += _plain(DOMAIN_HEAD, list(_domain_rows(report)))
    if any("borderline" in e for e in report["models"]):
        lines += ["", "borderline band: images in each model's band, and agreement with the reference outside it"]
        lines += _plain(BORDERLINE_HEAD, list(_borderline_rows(report)))
    if report["latency"]:
        s = report["latency"]["settings"]
        lines += ["", f"latency: {s['runs']} timed single-image runs at {s['threads']} thread(s); "
                      f"× = mean over the float32 .tflite's / over Keras's single-image mean"]
        lines += _plain(LATENCY_HEAD, list(_latency_rows(report)))

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
    out += _table(PARITY_HEAD, _parity_rows(report)) + [""]
    out += ["## Clinical metrics", "", "Percentages at the model's threshold (from its card or the run)."
            + (" (P x): the threshold on the scale of the P(mel) shown, for a card whose threshold is folded into "
               "the model's output (or tempered); ECE and Brier are on that scale." if any(
                   "threshold_shown" in e["metrics"] for e in report["models"]) else ""), ""]
    out += _table(CLINICAL_HEAD, _clinical_rows(report)) + [""]
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
    return out + _table(BY_SOURCE_HEAD, _by_source_rows(report)) + [""]


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
                cells.append(f"{_f(s['auc'])} / {_pct(s['sensitivity'])} / {_pct(s['specificity'])}"
                             + ("" if n == report["reference"] else f" ({_pct(s['agreement'])})"))
            body.append(cells)
        out += _table([field_name, "n", "mel"] + names, body) + [""]
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
        out += _table(["image", "truth", "p reference", "p model", "decision"], rows) + [""]
    return out


def _latency_md(report) -> list:
    lat = report["latency"]
    s = lat["settings"]
    out = ["## Latency", "",
           f"LiteRT interpreter, one image per invoke, {s['warmup']} warm-up then {s['runs']} timed runs at "
           f"{s['threads']} thread(s), each model in a fresh process (init, first inference and peak RSS are "
           "that process's). × float32 / × keras: mean latency over the float32 .tflite's / over Keras "
           "single-image `predict_on_batch` (lower is faster). Keras uses every core.", ""]
    out += _table(LATENCY_HEAD, _latency_rows(report)) + [""]
    if s["sweep"]:
        out += ["### Thread sweep (mean ms)", ""]
        rows = [[name] + [_f(r["sweep"].get(str(t), {}).get("mean_ms"), ".2f") for t in s["sweep"]]
                for name, r in lat["tflite"].items()]
        out += _table(["model"] + [f"{t} thr" for t in s["sweep"]], rows) + [""]
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
