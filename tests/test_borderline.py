"""The borderline band: measured by melkit convert, stated in the card, shown by predict, reported by bench.

The band's arithmetic is tested on synthetic outputs (every disagreement inside, agreement outside, the folded
scale the same band as the unfolded one); the rest on the session's tiny converted models, whose card is
edited to place the band where a test needs it (the model's sha256 still matches).
"""

import json

import numpy as np
import pytest
from test_bench import copy_model, model_file, run

from melkit.convert.borderline import measure
from melkit.core.card import load_card


def _noisy(n=2000, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    p_float = 1 / (1 + np.exp(-z))
    p_out = 1 / (1 + np.exp(-(z + rng.normal(0, noise, n))))
    return p_float, p_out


def test_every_disagreement_lies_in_the_band_and_outside_it_all_agree():
    p_float, p_out = _noisy()
    t = 0.4
    band = measure(p_float, p_out, t, groups=["a", "b"] * 1000)
    flips = (p_float >= t) != (p_out >= t)
    inside = (p_out >= band["low"]) & (p_out <= band["high"])
    assert flips.sum() > 5 and inside[flips].all() and band["low"] <= t <= band["high"]
    v = band["validation"]
    assert v["flips"] == flips.sum() and v["flips_outside"] == 0 and v["agreement_outside"] == 1.0
    assert v["share"] == pytest.approx(inside.mean())
    # The noise is 0.15 logit; the band is a few times that, not the whole range.
    assert 0.3 < band["logit_half_width"] < 1.0 and v["share"] < 0.2
    assert sum(s["n"] for s in band["validation_by_source"].values()) == 2000
    assert sum(s["flips"] for s in band["validation_by_source"].values()) == flips.sum()


def test_a_folded_output_gets_the_same_band_on_its_own_scale():
    p_float, p_out = _noisy(seed=1)
    t = 0.3
    zt = np.log(t / (1 - t))
    folded = 1 / (1 + np.exp(-(np.log(p_out / (1 - p_out)) - zt)))  # crosses 0.5 where p_out crosses t
    plain, fold = measure(p_float, p_out, t), measure(p_float, folded, t, output_threshold=0.5)
    assert fold["low"] < 0.5 < fold["high"]
    assert fold["logit_half_width"] == pytest.approx(plain["logit_half_width"], abs=1e-6)
    assert fold["validation"] == plain["validation"]


def test_a_model_equal_to_the_reference_has_a_band_of_one_point():
    p = np.linspace(0.01, 0.99, 50)
    band = measure(p, p, 0.5)
    assert band["low"] == pytest.approx(0.5) and band["high"] == pytest.approx(0.5)
    assert band["validation"]["flips"] == 0


def test_convert_writes_the_band_of_each_quantized_variant(converted):
    assert load_card(model_file(converted, "float32")).borderline is None
    for variant in ("fp16", "dynamic", "int8"):
        card = load_card(model_file(converted, variant))
        b = card.borderline
        assert b is not None and b["low"] <= card.threshold <= b["high"], variant
        assert b["validation"]["flips_outside"] == 0 and b["validation"]["n"] > 0
        assert "borderline" in card.decision
    int8 = load_card(model_file(converted, "int8")).borderline
    assert int8["logit_half_width"] >= int8["noise_logit"] and int8["logit_half_width"] >= int8["farthest_flip_logit"]


def _raw_outputs(model, images):
    r = run("predict", model, *images, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_predict_shows_borderline_images_and_keeps_the_decision(converted, synth_dir, tmp_path):
    images = sorted((synth_dir / "images").glob("*"))[:12]
    t = load_card(model_file(converted, "int8")).threshold
    # A band of one point, the threshold: only an output exactly at it would be borderline.
    plain = copy_model(converted, "int8", tmp_path / "none", borderline__low=t, borderline__high=t)
    before = _raw_outputs(plain, images)
    p = np.array([r.get("p_output", r["p_mel"]) for r in before["predictions"]])
    assert [r["borderline"] for r in before["predictions"]] == list(p == t)
    # A band that holds the two outputs nearest the threshold, one on each side where there are.
    below, above = p[p < t], p[p >= t]
    low = below.max() if len(below) else t
    high = above.min() if len(above) else t
    banded = copy_model(converted, "int8", tmp_path / "band", borderline__low=float(low), borderline__high=float(high))
    after = _raw_outputs(banded, images)
    assert after["borderline"] == {"low": pytest.approx(low), "high": pytest.approx(high)}
    for b, a, pi in zip(before["predictions"], after["predictions"], p):
        assert a["decision"] == b["decision"]  # the decision stays binary
        inside = bool(low <= pi <= high)
        assert a["borderline"] is inside
        assert a["meaning"] == ("borderline: " + b["meaning"] if inside else b["meaning"])
    assert sum(a["borderline"] for a in after["predictions"]) >= 1
    text = run("predict", banded, *images).output
    assert "borderline: " in text and "borderline output" in text


def test_bench_reports_the_band_per_source(converted, synth_dir, tmp_path):
    int8 = copy_model(converted, "int8", tmp_path / "m", borderline__low=0.0, borderline__high=1.0)
    r = run("bench", "--reference", model_file(converted, "float32"), int8, "--data", synth_dir, "--out",
            tmp_path / "b", "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    ref, m = report["models"]
    assert "borderline" not in ref
    b = m["borderline"]  # every output in a band of [0, 1]: nothing outside it to agree on
    assert b["share"] == 1.0 and b["agreement_outside"] is None and b["flips_outside"] == 0
    assert b["flips_inside"] == m["vs_reference"]["n_flipped"]
    assert "## Borderline band" in (tmp_path / "b" / "report.md").read_text() and "borderline band" in r.output
    # The converter's own band: the same counts as recomputing it from predictions.csv.
    r = run("bench", "--reference", model_file(converted, "float32"), model_file(converted, "int8"), "--data",
            synth_dir, "--out", tmp_path / "c", "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    b = report["models"][1]["borderline"]
    card = load_card(model_file(converted, "int8"))
    assert (b["low"], b["high"]) == (card.borderline["low"], card.borderline["high"])
    assert b["n"] == report["images"]["n"] and b["n_borderline"] == round(b["share"] * b["n"])
