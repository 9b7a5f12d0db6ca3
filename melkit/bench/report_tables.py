"""Each table of the bench report as a header and rows of text cells, read from the report.json object
(report.build): parity with the reference, clinical metrics, by source, the input-domain guard, the borderline
band, the risk bands and latency. report.py lays the same rows out in report.md and in the terminal, so the two
always show the same numbers.
"""

from __future__ import annotations

from melkit.util.fmt import auc_ci, mb, num, pct

__all__ = ["PARITY_HEAD", "CLINICAL_HEAD", "BY_SOURCE_HEAD", "DOMAIN_HEAD", "BORDERLINE_HEAD", "RISK_HEAD",
           "LATENCY_HEAD", "parity_rows", "clinical_rows", "by_source_rows", "domain_rows", "borderline_rows",
           "risk_rows", "latency_rows"]

PARITY_HEAD = ["model", "AUC [95% CI]", "ΔAUC", "agree %", "flips", "mean|Δp|", "max|Δp|"]
CLINICAL_HEAD = ["model", "thr", "sens %", "spec %", "bal.acc %", "sens@90spec %", "spec@90sens %", "acc %",
                 "majority %", "ECE", "Brier"]
BY_SOURCE_HEAD = ["source", "n", "mel", "model", "AUC [95% CI]", "ΔAUC", "bal.acc %", "sens %", "spec %",
                  "spec@90sens %", "agree %", "not assessed mel / nv %"]
DOMAIN_HEAD = ["model", "threshold", "in domain %", "in domain", "not assessed", "mel not assessed %",
               "nv not assessed %", "score p50"]
BORDERLINE_HEAD = ["model", "source", "band (output)", "n", "borderline %", "agree outside %", "flips outside",
                   "flips inside"]
RISK_HEAD = ["model", "source", "band", "mel", "nv", "LR here", "LR card (validation)"]
LATENCY_HEAD = ["model", "MB", "init ms", "first ms", "mean ms", "p50", "p90", "p99", "XNNPACK off ms",
                "peak RSS MB", "LiteRT tool avg ms", "× float32", "× keras"]


def parity_rows(report):
    """One row per model: its AUC, and its AUC change, agreement and flips against the reference."""
    for e in report["models"]:
        m, vs = e["metrics"], e["vs_reference"]
        if vs is None:
            yield [e["name"], auc_ci(m), "reference", "", "", "", ""]
        else:
            yield [e["name"], auc_ci(m), num(vs["delta_auc"], "+.4f"), pct(vs["agreement"]), vs["n_flipped"],
                   num(vs["mean_abs_dp"], ".4f"), num(vs["max_abs_dp"], ".4f")]


def clinical_rows(report):
    """One row per model: its rates at its own threshold, ECE and Brier."""
    for e in report["models"]:
        m = e["metrics"]
        thr = f"{m['threshold']:.3f}" + (f" (P {m['threshold_shown']:.3f})" if "threshold_shown" in m else "")
        yield [e["name"], thr, pct(m["sensitivity"]), pct(m["specificity"]),
               pct(m["balanced_accuracy"]), pct(m["sensitivity_at_90_specificity"]),
               pct(m["specificity_at_90_sensitivity"]), pct(m["accuracy_at_threshold"]),
               pct(m["majority_baseline"]), num(m["ece"], ".3f"), num(m["brier"], ".3f")]


def by_source_rows(report):
    """One row per source and model, the source's counts on its first row."""
    for source, s in (report.get("by_source") or {}).items():
        for k, e in enumerate(report["models"]):
            r = s["models"][e["name"]]
            m, vs = r["metrics"], r["vs_reference"]
            g = ((e.get("domain_guard") or {}).get("by_source") or {}).get(source, {})
            yield ([source, s["n"], s["n_pos"]] if k == 0 else ["", "", ""]) + [
                e["name"], auc_ci(m), "reference" if vs is None else num(vs["delta_auc"], "+.4f"),
                pct(m["balanced_accuracy"]), pct(m["sensitivity"]), pct(m["specificity"]),
                pct(m["specificity_at_90_sensitivity"]), "" if vs is None else pct(vs["agreement"]),
                _not_assessed_cell(g)]


def _not_assessed_cell(g: dict) -> str:
    """"mel % / nv %" not assessed by a guard; empty for a model without one."""
    if not g or "not_assessed_mel" not in g:
        return ""
    return f"{pct(g['not_assessed_mel'])} / {pct(g['not_assessed_nv'])}"


def domain_rows(report):
    """One row per model with an input-domain guard: how many images it would assess."""
    for e in report["models"]:
        g = e.get("domain_guard")
        if g:
            yield [e["name"], f"{g['threshold']:.3f}", pct(g["in_domain_rate"]), g["n_in_domain"],
                   g["n"] - g["n_in_domain"], pct(g.get("not_assessed_mel")), pct(g.get("not_assessed_nv")),
                   num(g["score_p50"], ".3f")]


def borderline_rows(report):
    """Per model whose card has a borderline band: all images, then each source (when there are several)."""
    for e in report["models"]:
        b = e.get("borderline")
        if not b:
            continue
        for k, (source, r) in enumerate([("all", b)] + list((b.get("by_source") or {}).items())):
            yield [e["name"] if k == 0 else "", source, f"{b['low']:.4f}-{b['high']:.4f}" if k == 0 else "", r["n"],
                   pct(r["share"]), pct(r["agreement_outside"]), r["flips_outside"], r["flips_inside"]]


def risk_rows(report):
    """Per model whose card has risk bands: each band's counts and likelihood ratios, all images then each
    source."""
    for e in report["models"]:
        r = e.get("risk_bands")
        if not r:
            continue
        groups = [("all", r["bands"])] + list((r.get("by_source") or {}).items())
        for g, (source, bands) in enumerate(groups):
            for k, b in enumerate(bands):
                yield [e["name"] if g == k == 0 else "", source if k == 0 else "", b["name"], b["n_mel"], b["n_nv"],
                       num(b["lr"], ".2f"), num(b["lr_card"], ".2f")]


def latency_rows(report):
    """One row per timed .tflite, then Keras single-image and batched (when timed)."""
    lat = report["latency"]
    ratios = report["latency_ratios"]
    for e in report["models"]:
        r = e.get("latency")
        if r is None:
            continue
        t, off, ext = r["timed"], r.get("xnnpack_off"), e.get("litert_benchmark") or {}
        ra = ratios.get(e["name"], {})
        yield [e["name"], mb(e["size_bytes"]), f"{r['init_ms']:.1f}", f"{r['first_inference_ms']:.1f}",
               f"{t['mean_ms']:.2f}", f"{t['p50_ms']:.2f}", f"{t['p90_ms']:.2f}", f"{t['p99_ms']:.2f}",
               num(off and off["mean_ms"], ".2f"), f"{r['peak_rss_mb']:.0f}",
               num(ext.get("latency", {}).get("avg_ms"), ".2f", "-" if not ext else "error"),
               num(ra.get("over_float32_tflite"), ".2f"), num(ra.get("over_keras_single"), ".3f")]
    k = lat.get("keras")
    if k:
        yield ["keras (1 image)", "", "", "", f"{k['single']['mean_ms']:.2f}", f"{k['single']['p50_ms']:.2f}",
               f"{k['single']['p90_ms']:.2f}", f"{k['single']['p99_ms']:.2f}", "", "", "", "", "1"]
        b = k["batch_per_image"]
        yield [f"keras (batch {k['batch_size']}, per image)", "", "", "", f"{b['mean_ms']:.2f}", f"{b['p50_ms']:.2f}",
               f"{b['p90_ms']:.2f}", f"{b['p99_ms']:.2f}", "", "", "", "", ""]
