"""Risk bands and their likelihood ratios: measured by melkit convert, read by predict, re-measured by bench.

The arithmetic on synthetic scores (counts by hand; a ratio that does not move with prevalence; the band of an
output on an edge), then the session's tiny converted models end to end.
"""

import json

import numpy as np
import pytest
from test_bench import model_file, run

from melkit.core.card import load_card
from melkit.core.likelihood import measure, ratios
from melkit.core.probability import band_of, post_test_probability
from melkit.core.run import load_run


def test_an_output_on_an_edge_is_in_the_band_above():
    edges = [0.0, 0.2, 0.5, 0.9, 1.0]
    assert band_of([0.0, 0.19, 0.2, 0.49, 0.5, 0.9, 1.0], edges).tolist() == [0, 0, 1, 1, 2, 3, 3]


def test_ratios_by_hand():
    p = np.array([0.1, 0.1, 0.3, 0.6, 0.6, 0.95, 0.1, 0.3, 0.6, 0.95])
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    out = ratios(p, y, [0.0, 0.2, 0.5, 0.9, 1.0])
    # nevi: 2, 1, 2, 1 of 6; melanomas: 1, 1, 1, 1 of 4; half an image of each class added to every band
    mel, nv = [1.5 / 6] * 4, [2.5 / 8, 1.5 / 8, 2.5 / 8, 1.5 / 8]
    assert [r[2] for r in out] == pytest.approx([m / n for m, n in zip(mel, nv)])
    # a band without melanomas: a small ratio, never 0
    none = ratios(np.array([0.1, 0.1, 0.95]), np.array([0, 0, 1]), [0.0, 0.5, 1.0])
    assert 0 < none[0][2] < 1 < none[1][2]
    assert post_test_probability(3.0, 0.25) == pytest.approx(0.5) and post_test_probability(None, 0.1) is None


def _source(n_mel, n_nv, rng):
    return (np.concatenate([rng.beta(5, 2, n_mel), rng.beta(2, 5, n_nv)]),
            np.concatenate([np.ones(n_mel, int), np.zeros(n_nv, int)]))


def test_a_source_with_many_melanomas_does_not_set_the_ratios():
    """Two sources with the same score distributions per class but 10 % and 60 % melanomas: weighting each
    source's classes alike gives the ratios of either source alone (up to sampling)."""
    rng = np.random.default_rng(0)
    pa, ya = _source(400, 3600, rng)
    pb, yb = _source(2400, 1600, rng)
    p, y = np.concatenate([pa, pb]), np.concatenate([ya, yb])
    src = ["a"] * len(pa) + ["b"] * len(pb)
    rec = measure(p, y, 0.5, sources=src)
    edges = [rec["bands"][0]["low"]] + [b["high"] for b in rec["bands"]]
    assert edges[2] == 0.5 and edges[0] == 0.0 and edges[-1] == 1.0
    for k, b in enumerate(rec["bands"]):
        alone = [ratios(q, t, edges)[k][2] for q, t in ((pa, ya), (pb, yb))]
        assert b["lr"] == pytest.approx(np.mean(alone), rel=0.25)
        assert set(b["lr_by_source"]) == {"a", "b"}
    lrs = [b["lr"] for b in rec["bands"]]
    assert lrs == sorted(lrs)  # a monotone score: higher bands, higher ratios
    # the 5 % tails: about 5 % of melanomas below the first edge, 5 % of nevi above the last inner one
    assert rec["bands"][0]["share_mel"] == pytest.approx(0.05, abs=0.01)
    assert rec["bands"][-1]["share_nv"] == pytest.approx(0.05, abs=0.01)
    assert all(b["lr"] > 0 for b in rec["bands"])


def test_convert_states_the_risk_bands_of_every_variant(converted):
    for variant in ("float32", "fp16", "dynamic", "int8"):
        card = load_card(model_file(converted, variant))
        assert card.threshold in card.risk_edges and len(card.likelihood_ratios["bands"]) == 4, variant


def test_predict_gives_the_band_and_bench_measures_the_same_ratios_on_validation(converted, tiny_run, tmp_path):
    model = model_file(converted, "int8")
    card = load_card(model)
    r = run("bench", "--reference", model_file(converted, "float32"), model, "--split", "val",
            "--split-csv", tiny_run.out_dir / "split.csv", "--data",
            load_run(tiny_run.out_dir).data_dir, "--out", tmp_path / "b",
            "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    bands = report["models"][1]["risk_bands"]["bands"]
    # One source, the same validation images: bench's ratios are the card's.
    assert [b["lr"] for b in bands] == pytest.approx([b["lr"] for b in card.likelihood_ratios["bands"]])
    assert sum(b["n_mel"] + b["n_nv"] for b in bands) == report["images"]["n"]
    assert "## Risk bands" in (tmp_path / "b" / "report.md").read_text()
    from melkit.data.readers import read_dataset

    data = load_run(tiny_run.out_dir).data_dir
    images = [str(rec.path) for rec in read_dataset(data).records[:6]]
    out = run("predict", model, *images, "--json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)["predictions"]
    for row in rows:
        k = int(card.risk_band([row.get("p_output", row["p_mel"])])[0])
        assert row["risk_band"] == card.likelihood_ratios["bands"][k]["name"]
        assert row["likelihood_ratio"] == card.likelihood_ratios["bands"][k]["lr"]
    assert "likelihood ratio" in run("predict", model, *images).output
