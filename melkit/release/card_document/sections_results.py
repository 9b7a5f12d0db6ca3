"""The model card's sections on what the model measured: screening at the card's threshold, what an output
means (the risk bands), the results of each ``melkit bench`` report (with its sources and subgroups), parity with
the reference models, and latency."""

from __future__ import annotations

from melkit.bench.host import host_line
from melkit.core.probability import PREVALENCES, post_test_probability
from melkit.release.card_document.inputs import Bench, CardInputs
from melkit.util.fmt import auc_ci, code, count, mb, md_table, num, pct

__all__ = ["RESULTS_HEAD", "SCREENING_HEAD", "screening_section", "risk_section", "results_section",
           "parity_section", "latency_section"]


def _threshold_text(card) -> str:
    """The card's threshold, and for a folded card the P(mel) it stands for."""
    if card.threshold_fold is None:
        return f"{card.threshold:.4f}"
    return f"{card.threshold:.4f} of the output, P(mel) {card.trained_threshold:.4f}"


RESULTS_HEAD = ["model", "thr", "AUC [95 % CI]", "sens %", "spec %", "bal. acc %", "sens @ 90 % spec",
                "spec @ 90 % sens", "acc % (majority)", "agreement % (flips)", "ECE", "Brier"]


def _results_rows(b: Bench) -> list:
    rows = []
    for e in b.report["models"]:
        m, vs = e.get("metrics") or {}, e.get("vs_reference")
        name = e.get("name", "?") + (" (reference)" if e.get("name") == b.reference else "")
        if e is b.entry:
            name = f"**{name}** (this model)"
        rows.append([name, num(e.get("threshold"), ".3f"), auc_ci(m), pct(m.get("sensitivity")),
                     pct(m.get("specificity")), pct(m.get("balanced_accuracy")),
                     pct(m.get("sensitivity_at_90_specificity")), pct(m.get("specificity_at_90_sensitivity")),
                     f"{pct(m.get('accuracy_at_threshold'))} ({pct(m.get('majority_baseline'))})",
                     "reference" if not vs else f"{pct(vs.get('agreement'), 2)} ({vs.get('n_flipped', 'n/a')})",
                     num(m.get("ece")), num(m.get("brier"))])
    return rows


def _by_source(b: Bench) -> list:
    by = b.report.get("by_source") or {}
    if not by:
        return []
    rows = []
    for src, s in by.items():  # the report's order: largest source first
        for k, e in enumerate(b.report["models"]):
            r = (s.get("models") or {}).get(e.get("name"))
            if r is None:
                continue
            m, vs = r.get("metrics") or {}, r.get("vs_reference")
            rows.append(([src, count(s.get("n")), count(s.get("n_pos"))] if k == 0 else ["", "", ""])
                        + [e.get("name"), auc_ci(m), pct(m.get("balanced_accuracy")), pct(m.get("sensitivity")),
                           pct(m.get("specificity")), "reference" if not vs else pct(vs.get("agreement"), 2)])
    return ["By source (each source's images alone, same thresholds):", ""] + md_table(
        ["source", "n", "mel", "model", "AUC [95 % CI]", "bal. acc %", "sens %", "spec %", "agreement %"], rows) + [""]


def _subgroups(b: Bench) -> list:
    groups = b.report.get("subgroups") or {}
    name = b.entry.get("name")
    out = []
    for field_name, rows in groups.items():
        body = [[r.get("value"), count(r.get("n")), count(r.get("n_pos")), num(r["models"][name].get("auc")),
                 pct(r["models"][name].get("sensitivity")), pct(r["models"][name].get("specificity")),
                 pct(r["models"][name].get("agreement"))]
                for r in rows if name in (r.get("models") or {})]
        if body:
            out += [f"<details><summary>{b.label}: by {field_name} ({name}; no CIs: small groups vary a lot)"
                    "</summary>", ""]
            out += md_table([field_name, "n", "mel", "AUC", "sens %", "spec %", "agreement %"], body) + [""]
            out += ["</details>", ""]
    return out


SCREENING_HEAD = ["set", "n", "mel", "AUC", "sens %", "spec %", "spec @ 90 % sens %", "mel not assessed %",
                  "nv not assessed %", "borderline %", "agreement outside it %"]


def _screening_row(label: str, n, n_pos, m: dict, guard: dict, band: dict) -> list:
    return [label, count(n), count(n_pos), num(m.get("auc")), pct(m.get("sensitivity")), pct(m.get("specificity")),
            pct(m.get("specificity_at_90_sensitivity")), pct(guard.get("not_assessed_mel")),
            pct(guard.get("not_assessed_nv")), pct(band.get("share")), pct(band.get("agreement_outside"), 2)]


def screening_section(inputs: CardInputs) -> list:
    """This model on every benchmarked set and source at its one threshold: what a screening aid is judged by
    (melanomas found, at what specificity), the melanomas and nevi its guard would not assess, and the share of
    images in its borderline band. Only for cards whose benches report the guard or the band (3.0.0 onwards)."""
    if not any(b.entry.get("domain_guard") or b.entry.get("borderline") for b in inputs.benches):
        return []
    rows = []
    for b in inputs.benches:
        e, im = b.entry, b.report["images"]
        guard, band = e.get("domain_guard") or {}, e.get("borderline") or {}
        rows.append(_screening_row(f"**{b.label}**", im.get("n"), im.get("n_mel"), e.get("metrics") or {}, guard,
                                   band))
        for src, s in (b.report.get("by_source") or {}).items():
            r = (s.get("models") or {}).get(e.get("name"))
            if r is not None:
                rows.append(_screening_row(f"{b.label}: {src}", s.get("n"), s.get("n_pos"), r.get("metrics") or {},
                                           (guard.get("by_source") or {}).get(src, {}),
                                           (band.get("by_source") or {}).get(src, {})))
    return (["## Screening at the card's threshold", "",
             f"This model ({inputs.card.variant}) at its one threshold ({_threshold_text(inputs.card)}), on each set "
             "`melkit bench` measured and each source in it: melanomas found (sensitivity) and nevi cleared "
             "(specificity), the specificity it would have at 90 % sensitivity, the share of melanomas and of nevi "
             "its input-domain guard would not assess, and the share of images in its borderline band with the "
             "agreement with the reference outside it. The metrics count every image, assessed or not.", ""]
            + md_table(SCREENING_HEAD, rows) + [""])


def risk_section(inputs: CardInputs) -> list:
    """What an output means: the card's risk bands, each with its likelihood ratio on validation (and per source),
    the probability of melanoma it gives at a few prevalences, and the ratios measured on each benched set."""
    lr = inputs.card.likelihood_ratios
    if lr is None:
        return []
    bands = lr["bands"]
    sources = sorted({s for b in bands for s in (b.get("lr_by_source") or {})})
    head = (["band (output P(mel))", "LR (validation)"] + [f"LR {s}" for s in sources]
            + [f"P(melanoma) % at {100 * q:g} % prevalence" for q in PREVALENCES])
    rows = [[f"{b['name']} [{b['low']:.3f}, {b['high']:.3f})", num(b["lr"], ".2f")]
            + [num((b.get("lr_by_source") or {}).get(s), ".2f") for s in sources]
            + [pct(post_test_probability(b["lr"], q)) for q in PREVALENCES] for b in bands]
    out = ["## What an output means", "",
           "The P(mel) this model outputs is a score, not a probability: it was trained on sources with 14 % to 40 % "
           "melanomas, so no single number is calibrated for every clinic or phone. Each output instead falls in one "
           "of the risk bands below, whose likelihood ratio (how many times as common such an output is for "
           "melanomas as for nevi; every source's classes weighted alike) holds whatever the prevalence of "
           "melanoma where the model is used; the probability it gives follows from the prevalence (post-test "
           "odds = prior odds x LR). `melkit predict` and the app show the band and its ratio. Ratios per source "
           "show how much they move from one device to the next.", ""] + md_table(head, rows) + [""]
    measured = [(b.label, b.entry["risk_bands"]) for b in inputs.benches if b.entry.get("risk_bands")]
    if measured:
        out += ["Measured by `melkit bench` on each set (LR here / card):", ""]
        out += md_table(["set"] + [b["name"] for b in bands],
                        [[label] + [f"{num(x['lr'], '.2f')} / {num(x['lr_card'], '.2f')}" for x in r["bands"]]
                         for label, r in measured]) + [""]
    return out


def results_section(inputs: CardInputs) -> list:
    if not inputs.benches:
        return []
    out = ["## Results", "",
           "From `melkit bench`, at each model's threshold (this model's is the card's, "
           f"{_threshold_text(inputs.card)}). AUC with its 95 % bootstrap CI (over lesions); agreement: the same "
           "decision as the reference on the same image; acc % (majority): accuracy, and that of always answering "
           "the larger class.", ""]
    for b in inputs.benches:
        im = b.report["images"]
        out += [f"### {b.label}", "",
                f"{count(im.get('n'))} images ({count(im.get('n_mel'))} mel, {count(im.get('n_nv'))} nv; "
                f"{count(im.get('lesions'))} lesions): {im.get('source', 'n/a')}. Reference: {code(b.reference)}."
                + (f" {len(im['skipped'])} unreadable image(s) left out." if im.get("skipped") else ""), ""]
        out += md_table(RESULTS_HEAD, _results_rows(b)) + [""]
        out += _by_source(b)
        out += _subgroups(b)
    return out


def parity_section(inputs: CardInputs) -> list:
    card = inputs.card
    rows = []
    sc = card.selfcheck
    if sc.get("agreement") is not None:
        n = sc.get("n")
        flips = round((1 - sc["agreement"]) * n) if isinstance(n, int) else "n/a"
        delta = None if None in (sc.get("auc_tflite"), sc.get("auc_keras")) else sc["auc_tflite"] - sc["auc_keras"]
        rows.append(["validation (convert self-check)", sc.get("variant", card.variant), "Keras", num(delta, "+.4f"),
                     pct(sc["agreement"], 2), flips,
                     f"{num(sc.get('mean_abs_diff'), '.4f')} / {num(sc.get('max_abs_diff'), '.4f')}"])
    for b in inputs.benches:
        for e in b.report["models"]:
            vs = e.get("vs_reference")
            if not vs:
                continue
            rows.append([b.label, e.get("name"), b.reference, num(vs.get("delta_auc"), "+.4f"),
                         pct(vs.get("agreement"), 2), vs.get("n_flipped", "n/a"),
                         f"{num(vs.get('mean_abs_dp'), '.4f')} / {num(vs.get('max_abs_dp'), '.4f')}"])
    if not rows:
        return []
    return (["## Parity", "", "Each model against its reference on the same images: ΔAUC (model − reference), "
             "decision agreement at each model's threshold, decisions flipped, mean / max abs change of P(mel).", ""]
            + md_table(["set", "model", "vs", "ΔAUC", "agreement %", "flips", "mean / max abs ΔP"], rows) + [""])


def latency_section(inputs: CardInputs) -> list:
    rows, hosts = [], {}
    for b in inputs.benches:
        lat = b.report.get("latency") or {}
        tfl = lat.get("tflite") or {}
        for e in b.report["models"]:
            r = tfl.get(e.get("name"))
            if not r:
                continue
            t, off = r.get("timed") or {}, r.get("xnnpack_off") or {}
            rows.append([b.label, e.get("name") + (" (this model)" if e is b.entry else ""),
                         mb(e["size_bytes"]) if e.get("size_bytes") else "n/a", r.get("threads", "n/a"),
                         num(t.get("mean_ms"), ".2f"),
                         f"{num(t.get('p50_ms'), '.2f')} / {num(t.get('p90_ms'), '.2f')} / "
                         f"{num(t.get('p99_ms'), '.2f')}",
                         num(off.get("mean_ms"), ".2f", "-"), num(r.get("peak_rss_mb"), ".0f")])
        k = lat.get("keras")
        if k and k.get("single"):
            rows.append([b.label, "Keras (1 image)", "", "", num(k["single"].get("mean_ms"), ".2f"),
                         f"{num(k['single'].get('p50_ms'), '.2f')} / {num(k['single'].get('p90_ms'), '.2f')} / "
                         f"{num(k['single'].get('p99_ms'), '.2f')}", "", ""])
        if tfl and b.report.get("host"):
            try:
                hosts.setdefault(host_line(b.report["host"]), []).append(b.label)
            except (KeyError, TypeError):
                pass
    if not rows:
        return []
    out = ["## Latency", "", "LiteRT interpreter, one image per invoke, as `melkit bench` measured it "
                             "(each model in a fresh process; XNNPACK off: the builtin kernels).", ""]
    out += md_table(["set", "model", "MB", "threads", "mean ms", "p50 / p90 / p99 ms", "XNNPACK off ms",
                     "peak RSS MB"], rows) + [""]
    for line, labels in hosts.items():
        out += [f"Host ({', '.join(labels)}): {line}."]
    out += ["", "No phone numbers here: measure on a device with the `adb` commands in each bench report.md.", ""]
    return out
