"""melkit bench and melkit predict: parity arithmetic by hand, gates, one-class data, bad input, reports.

The CLI runs in-process (click's CliRunner) on the session's tiny run and its converted models. Latency
runs are few and the thread sweep stops at one thread: these tests check what is measured and reported,
never how fast anything is.
"""

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import HAM, built_once, need, subset_of

from melkit.bench import inputs, latency, parity
from melkit.bench import report as reporting
from melkit.bench.bench import BenchOptions
from melkit.bench.report import latency_ratios
from melkit.cli import main
from melkit.core.metrics import binary_report
from melkit.core.run import load_run
from melkit.data.records import Record
from melkit.util.errors import BadInputError

FAST = ["--runs", "3", "--warmup", "1", "--sweep-threads", "1", "--bootstrap", "50"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def model_file(converted, variant):
    return converted[1] / f"melkit_mnv2_0.35_48_{variant}.tflite"


def copy_model(converted, variant, dest, **card_changes):
    """A copy of a converted model and its card, the card edited (the sha256 still matches the model)."""
    src = model_file(converted, variant)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / src.name
    shutil.copy(src, target)
    card = json.loads(src.with_suffix(".json").read_text())
    for key, value in card_changes.items():
        *parents, leaf = key.split("__")  # input__dtype -> card["input"]["dtype"]
        holder = card
        for part in parents:
            holder = holder[part]
        holder[leaf] = value
    target.with_suffix(".json").write_text(json.dumps(card))
    return target


# --------------------------------------------------------------------------- arithmetic by hand


def test_compare_hand_computed():
    p_ref = [0.10, 0.40, 0.60, 0.90]
    p = [0.20, 0.55, 0.45, 0.90]
    vs = parity.compare(p_ref, 0.5, p, 0.5, ["a", "b", "c", "d"], [0, 0, 1, 1])
    # b: nv -> mel, c: mel -> nv; a and d keep their decision.
    assert vs["agreement"] == 0.5 and vs["n_flipped"] == 2
    assert vs["mean_abs_dp"] == pytest.approx((0.10 + 0.15 + 0.15 + 0.0) / 4)
    assert vs["max_abs_dp"] == pytest.approx(0.15)
    flips = {f["image_id"]: f for f in vs["flipped"]}
    assert set(flips) == {"b", "c"}
    assert flips["b"]["reference_says"] == "nv" and flips["b"]["model_says"] == "mel" and flips["b"]["label"] == 0
    assert flips["c"]["reference_says"] == "mel" and flips["c"]["model_says"] == "nv" and flips["c"]["label"] == 1


def test_compare_uses_each_models_own_threshold_and_p_equal_threshold_is_mel():
    vs = parity.compare([0.3, 0.7], 0.3, [0.3, 0.7], 0.5, ["a", "b"], [0, 1])
    # reference: both mel (0.3 >= 0.3); model: a is nv at its threshold 0.5.
    assert vs["agreement"] == 0.5 and [f["image_id"] for f in vs["flipped"]] == ["a"]


def test_flips_sorted_by_probability_change():
    vs = parity.compare([0.49, 0.51, 0.1], 0.5, [0.51, 0.2, 0.6], 0.5, ["small", "mid", "big"], [0, 1, 0])
    assert [f["image_id"] for f in vs["flipped"]] == ["big", "mid", "small"]


def test_evaluate_delta_auc_hand_computed():
    y = [0, 0, 1, 1]
    ref = [0.1, 0.2, 0.8, 0.9]  # AUC 1
    model = [0.1, 0.85, 0.8, 0.9]  # the nevus at 0.85 beats one melanoma: 3 of 4 pairs -> 0.75
    out = parity.evaluate(["ref", "m"], {"ref": np.array(ref), "m": np.array(model)}, {"ref": 0.5, "m": 0.5}, y,
                          ["l1", "l2", "l3", "l4"], ["a", "b", "c", "d"], "ref", n_boot=20)
    assert out["ref"]["vs_reference"] is None
    assert out["m"]["metrics"]["auc"] == pytest.approx(0.75)
    assert out["m"]["vs_reference"]["delta_auc"] == pytest.approx(-0.25)
    assert out["m"]["vs_reference"]["agreement"] == 0.75


def test_delta_auc_undefined_on_one_class():
    out = parity.evaluate(["ref", "m"], {"ref": np.array([0.2, 0.7]), "m": np.array([0.3, 0.4])},
                          {"ref": 0.5, "m": 0.5}, [0, 0], ["l1", "l2"], ["a", "b"], "ref", n_boot=10)
    assert out["m"]["metrics"]["auc"] is None and out["m"]["vs_reference"]["delta_auc"] is None
    assert out["m"]["vs_reference"]["agreement"] == 0.5


@pytest.mark.parametrize("age,band", [("0", "<30"), ("29.9", "<30"), ("30", "30-44"), ("44", "30-44"),
                                      ("45.0", "45-59"), ("60", "60-74"), ("74.5", "60-74"), ("75", "75+"),
                                      ("90", "75+"), ("", "unknown"), ("n/a", "unknown"), ("-3", "unknown")])
def test_age_bands(age, band):
    assert parity.age_band(age) == band


def _rec(i, label, **meta):
    return Record(f"img{i}", f"les{i}", label, f"/x/{i}.jpg", meta)


def test_subgroup_values_keep_only_fields_that_split_the_images():
    records = [_rec(0, 0, age="35", sex="male", localization="back", dataset="ham"),
               _rec(1, 1, age="80", sex="", localization="back", dataset="ham"),
               _rec(2, 1, age="", sex="female", localization="back", dataset="ham")]
    values = parity.subgroup_values(records)
    assert values["age"] == ["30-44", "75+", "unknown"]
    assert values["sex"] == ["male", "unknown", "female"]
    assert "localization" not in values and "dataset" not in values  # one value: the whole set again
    assert parity.subgroup_values([_rec(0, 0), _rec(1, 1)]) == {}  # class folders: no metadata


def test_subgroups_hand_computed():
    records = [_rec(0, 0, sex="male"), _rec(1, 1, sex="male"), _rec(2, 1, sex="male"), _rec(3, 0, sex="female")]
    probs = {"ref": np.array([0.2, 0.9, 0.4, 0.7]), "m": np.array([0.2, 0.9, 0.6, 0.3])}
    rows = parity.subgroups(records, ["ref", "m"], probs, {"ref": 0.5, "m": 0.5}, [0, 1, 1, 0], "ref")["sex"]
    male, female = rows  # the larger group first
    assert (male["value"], male["n"], male["n_pos"]) == ("male", 3, 2)
    assert male["models"]["ref"] == {"auc": 1.0, "sensitivity": 0.5, "specificity": 1.0, "agreement": 1.0}
    assert male["models"]["m"]["sensitivity"] == 1.0 and male["models"]["m"]["agreement"] == pytest.approx(2 / 3)
    assert female["models"]["ref"]["auc"] is None and female["models"]["ref"]["sensitivity"] is None
    assert female["models"]["ref"]["specificity"] == 0.0 and female["models"]["m"]["specificity"] == 1.0


def test_record_source_prefers_record_source_then_metadata_dataset():
    from types import SimpleNamespace

    assert parity.record_source(_rec(0, 0, dataset=" ham10000 ")) == "ham10000"
    assert parity.record_source(_rec(0, 0)) == parity.UNKNOWN
    assert parity.record_source(SimpleNamespace(source="isic2016", meta={"dataset": "ham10000"})) == "isic2016"
    assert parity.record_source(SimpleNamespace(source="", meta={"dataset": "ham10000"})) == "ham10000"
    assert parity.record_source(SimpleNamespace(source="", meta=None)) == parity.UNKNOWN


# Two sources: "a" (4 images, lesion l1 twice) and "b" (2 images, nevi only).
SRC = ["a", "b", "a", "a", "b", "a"]
SRC_Y = np.array([0, 0, 1, 1, 0, 0])
SRC_P = {"ref": np.array([0.1, 0.6, 0.8, 0.4, 0.2, 0.3]), "m": np.array([0.2, 0.4, 0.9, 0.6, 0.3, 0.7])}
SRC_THR = {"ref": 0.5, "m": 0.5}
SRC_LESIONS = ["l1", "l2", "l3", "l4", "l5", "l1"]
SRC_IDS = [f"i{k}" for k in range(6)]


def _by_source(sources=SRC):
    return parity.by_source(sources, ["ref", "m"], SRC_P, SRC_THR, SRC_Y, SRC_LESIONS, SRC_IDS, "ref", n_boot=30)


def test_by_source_hand_computed():
    out = _by_source()
    assert list(out) == ["a", "b"]  # the larger source first
    a, b = out["a"], out["b"]
    assert (a["n"], a["n_pos"], a["lesions"], b["n"], b["n_pos"], b["lesions"]) == (4, 2, 3, 2, 0, 2)
    assert a["n"] + b["n"] == len(SRC)
    idx = [0, 2, 3, 5]
    # The same binary_report as the pooled metrics, on the source's images with its lesions as groups.
    assert a["models"]["m"]["metrics"] == binary_report(SRC_Y[idx], SRC_P["m"][idx], 0.5,
                                                        groups=[SRC_LESIONS[i] for i in idx], n_boot=30)
    assert a["models"]["ref"]["metrics"]["auc"] == 1.0 and a["models"]["m"]["metrics"]["auc"] == 0.75
    # ref: nv, mel, nv, nv; m: nv, mel, mel, mel at 0.5 -> 2 of 4 agree.
    vs = a["models"]["m"]["vs_reference"]
    assert vs["agreement"] == 0.5 and vs["n_flipped"] == 2 and vs["delta_auc"] == pytest.approx(-0.25)
    assert "flipped" not in vs  # listed once, in the pooled vs_reference
    assert a["models"]["ref"]["vs_reference"] is None
    assert b["models"]["m"]["metrics"]["auc"] is None and b["models"]["m"]["vs_reference"]["delta_auc"] is None
    assert b["models"]["m"]["vs_reference"]["agreement"] == 0.5  # i1: ref mel (0.6), m nv (0.4)
    assert _by_source(["a"] * 6) is None  # one source: nothing beyond the pooled metrics


def _fake_report(sources):
    """reporting.build on hand-made evaluations (no model files, no TensorFlow)."""
    from pathlib import Path
    from types import SimpleNamespace

    names = ["ref", "m"]
    models = [SimpleNamespace(name=n, kind="tflite", path=Path(f"/x/{n}.tflite"), card=None, threshold=0.5,
                              image_size=48, size_bytes=1000) for n in names]
    records = [Record(i, les, int(y), f"/x/{i}.jpg", {"dataset": src})
               for i, les, y, src in zip(SRC_IDS, SRC_LESIONS, SRC_Y, sources)]
    results = parity.evaluate(names, SRC_P, SRC_THR, SRC_Y, SRC_LESIONS, SRC_IDS, "ref", n_boot=30)
    host = {"cpu": "cpu", "usable_cores": 2, "machine": "x86_64", "python": "3", "versions": {}}
    return reporting.build(reporting.ReportInputs(
        models=models, reference=models[0], source=inputs.ImageSource(records, "six images"), records=records,
        labels=SRC_Y, skipped=[], results=results, subgroups={}, latency=None, host=host, opts=BenchOptions(),
        failures=[], timings={},
        by_source=_by_source([parity.record_source(r) for r in records])))


def test_report_by_source_sections():
    report = _fake_report(SRC)
    assert sum(s["n"] for s in report["by_source"].values()) == report["images"]["n"] == 6
    json.dumps(report)  # serializable as report.json
    md, table = reporting.markdown(report), reporting.terminal_table(report)
    assert "## By source" in md and "by source (2 sources)" in table
    md_rows = [ln for ln in md.split("## By source")[1].split("\n## ")[0].splitlines() if ln.startswith("| ")]
    assert [r.split(" | ")[:4] for r in md_rows[1:]] == [["| a", "4", "2", "ref"], ["| ", "", "", "m"],
                                                         ["| b", "2", "0", "ref"], ["| ", "", "", "m"]]
    assert "1.000" in md_rows[1] and "reference" in md_rows[1] and "-0.2500" in md_rows[2]
    lines = table.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("by source")) + 3
    assert [ln.split()[:4] for ln in (lines[start], lines[start + 2])] == [["a", "4", "2", "ref"],
                                                                           ["b", "2", "0", "ref"]]
    # One source: no by_source key, no section, and the text is what it was without the feature.
    one = _fake_report(["a"] * 6)
    assert "by_source" not in one
    assert "By source" not in reporting.markdown(one) and "by source" not in reporting.terminal_table(one)


def test_gate_failures():
    results = {"ref": {"vs_reference": None},
               "a": {"vs_reference": {"delta_auc": -0.03, "agreement": 0.97}},
               "b": {"vs_reference": {"delta_auc": None, "agreement": 1.0}},
               "c": {"vs_reference": {"delta_auc": -0.01, "agreement": 0.99}}}
    assert parity.gate_failures(results, "ref") == []
    fails = parity.gate_failures(results, "ref", max_auc_drop=0.02, min_agreement=0.98)
    assert len(fails) == 2 and fails[0].startswith("a: AUC drop 0.0300") and "a: agreement 0.9700" in fails[1]
    assert parity.gate_failures(results, "ref", max_auc_drop=0.01, min_agreement=0.99) == [
        "a: AUC drop 0.0300 > --max-auc-drop 0.01", "a: agreement 0.9700 < --min-agreement 0.99"]


def test_latency_summary_percentiles():
    s = latency.summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (s["n"], s["mean_ms"], s["min_ms"], s["max_ms"], s["p50_ms"]) == (5, 4.0, 1.0, 10.0, 3.0)
    assert s["p90_ms"] == pytest.approx(4.0 + 0.6 * 6.0)  # linear between the 4th and 5th value
    assert s["p99_ms"] == pytest.approx(4.0 + 0.96 * 6.0)


def test_latency_ratios():
    models = [{"name": "keras", "variant": "keras"}, {"name": "float32", "variant": "float32"},
              {"name": "int8", "variant": "int8"}]
    lat = {"tflite": {"float32": {"timed": {"mean_ms": 8.0}, "xnnpack_off": {"mean_ms": 40.0}},
                      "int8": {"timed": {"mean_ms": 4.0}, "xnnpack_off": None}},
           "keras": {"single": {"mean_ms": 32.0}, "batch_per_image": {"mean_ms": 16.0}}}
    r = latency_ratios(models, lat)
    assert r["int8"] == {"over_float32_tflite": 0.5, "over_keras_single": 0.125, "over_keras_batched_per_image": 0.25,
                         "xnnpack_on_over_off": None}
    assert r["float32"]["over_float32_tflite"] == 1.0 and r["float32"]["xnnpack_on_over_off"] == 0.2


def test_unique_names():
    ms = [inputs.ModelRef("tflite", __import__("pathlib").Path(p), n, 0.5, 32)
          for p, n in [("a/x.tflite", "int8"), ("b/y.tflite", "int8"), ("a/z.tflite", "fp16")]]
    inputs.unique_names(ms)
    assert [m.name for m in ms] == ["a/int8", "b/int8", "fp16"]


def test_select_records_from_a_split_csv(synth_dir, tmp_path):
    from melkit.data.readers import read_dataset

    ids = sorted(r.image_id for r in read_dataset(synth_dir).records)
    split = tmp_path / "split.csv"
    split.write_text("image_id,split\n" + "".join(f"{i},{'test' if k % 3 == 0 else 'train'}\n"
                                                  for k, i in enumerate(ids)))
    src = inputs.select_records(None, None, "test", data=synth_dir, split_csv=split)
    assert sorted(r.image_id for r in src.records) == ids[::3]
    assert len(inputs.select_records(None, None, "test", data=synth_dir).records) == len(ids)
    with pytest.raises(BadInputError, match="empty"):
        inputs.select_records(None, None, "val", data=synth_dir, split_csv=split)
    with pytest.raises(BadInputError, match="no images"):
        inputs.select_records(None, None, "test")


def test_select_records_of_a_multi_source_run(synth_dir, tmp_path):
    from types import SimpleNamespace

    a, in_a = _with_sources(synth_dir, tmp_path / "a", lambda les: "clinic" if int(les[-1]) % 2 else None)
    b, in_b = _with_sources(synth_dir, tmp_path / "b", lambda les: None if int(les[-1]) % 2 else "synth")
    ids = sorted({**in_a, **in_b})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "split.csv").write_text("image_id,split\n" + "".join(f"{i},{'test' if k % 2 else 'train'}\n"
                                                                    for k, i in enumerate(ids)))
    config = SimpleNamespace(data_dirs=[str(a), str(b)], data_dir=f"{a} + {b}")
    src = inputs.select_records(run_dir, config, "test")
    assert sorted(r.image_id for r in src.records) == ids[1::2]
    assert {parity.record_source(r) for r in src.records} == {"clinic", "synth"}
    config.data_dirs = [str(a), str(tmp_path / "moved")]
    with pytest.raises(BadInputError, match="moved is not there"):
        inputs.select_records(run_dir, config, "test")


# --------------------------------------------------------------------------- bench end to end


@pytest.fixture(scope="module")
def bench_out(tiny_run, converted, tmp_path_factory):
    def build(out):
        r = run("bench", tiny_run.out_dir, model_file(converted, "float32"), model_file(converted, "int8"),
                "--out", out, *FAST, "--litert-benchmark")
        assert r.exit_code == 0, r.output
        return out, r.output

    return built_once(tmp_path_factory, "bench_out", build)


def test_bench_writes_parseable_reports(bench_out, tiny_run):
    out, output = bench_out
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["keras", "float32", "int8"] and report["reference"] == "keras"
    split = list(csv.DictReader(open(tiny_run.out_dir / "split.csv")))
    n_test = sum(r["split"] == "test" for r in split)
    assert report["images"]["n"] == n_test and "split test of run" in report["images"]["source"]
    # The Keras reference reproduces the run's own test metrics: same images, same contract.
    run_test = json.loads((tiny_run.out_dir / "metrics.json").read_text())["test"]
    keras = report["models"][0]["metrics"]
    assert keras["auc"] == pytest.approx(run_test["auc"], abs=1e-6) and keras["confusion"] == run_test["confusion"]
    f32 = report["models"][1]
    assert f32["vs_reference"]["agreement"] == 1.0 and f32["vs_reference"]["max_abs_dp"] < 1e-4
    for m in report["models"][1:]:
        lat = m["latency"]
        assert lat["timed"]["n"] == 3 and len(lat["timed"]["runs_ms"]) == 3 and set(lat["sweep"]) == {"1"}
        assert lat["xnnpack_off"]["n"] == 3 and lat["peak_rss_mb"] > lat["rss_before_model_mb"] > 0
        assert m["litert_benchmark"]["latency"]["num_runs"] == 3
    assert report["latency"]["keras"]["single"]["n"] == 3
    assert report["latency_ratios"]["_float32_tflite"] == "float32"
    assert report["host"]["usable_cores"] >= 1 and report["host"]["versions"]["tensorflow"]
    assert any("--graph=/data/local/tmp/melkit_mnv2_0.35_48_int8.tflite" in c
               for c in report["latency"]["phone_commands"])
    md = (out / "report.md").read_text()
    assert "## Parity with the reference" in md and "## Latency" in md and "benchmark_model --graph=" in md
    # One source (the synthetic set's "synth"): no per-source section anywhere.
    assert "by_source" not in report and "## By source" not in md and "by source" not in output
    for png in ("roc.png", "reliability.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == n_test and set(rows[0]) >= {"image_id", "p_mel_keras", "p_mel_int8"}
    assert "AUC [95% CI]" in output and "× float32" in output
    print("bench timings", report["timings_s"])


def test_predict_agrees_with_bench(bench_out, tiny_run, converted):
    out, _ = bench_out
    rows = list(csv.DictReader(open(out / "predictions.csv")))[:2]
    data = load_run(tiny_run.out_dir).data_dir
    from melkit.data.readers import read_dataset

    paths = {r.image_id: r.path for r in read_dataset(data).records}
    images = [paths[r["image_id"]] for r in rows]
    r = run("predict", model_file(converted, "int8"), *images, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert [p["image"] for p in result["predictions"]] == images and result["variant"] == "int8"
    for pred, row in zip(result["predictions"], rows):
        assert pred["p_mel"] == pytest.approx(float(row["p_mel_int8"]), abs=1e-6)
        # the raw output decides; p_mel is the calibrated probability shown (unfolded: the threshold is folded in)
        assert pred["decision"] == ("mel" if pred["p_output"] >= result["threshold"] else "nv")
        assert (pred["p_mel"] >= result["threshold_shown"]) == (pred["p_output"] >= result["threshold"])
    # The run dir (Keras) through the same contract.
    r = run("predict", tiny_run.out_dir, images[0], "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["kind"] == "keras" and "not a medical device" in result["note"]
    assert result["predictions"][0]["p_mel"] == pytest.approx(float(rows[0]["p_mel_keras"]), abs=1e-5)


def test_gates_exit_1_and_still_write_the_report(bench_out, converted, tiny_run, tmp_path):
    out, _ = bench_out
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    ref_card = json.loads(model_file(converted, "float32").with_suffix(".json").read_text())
    ref_thr = ref_card["threshold_fold"]["threshold"]  # predictions.csv holds the unfolded (shown) P(mel)
    ref_mel = [float(r["p_mel_float32"]) >= ref_thr for r in rows]
    # A model whose threshold calls everything the opposite of some reference decision: agreement < 1. Not 0 or
    # 1 (a card that calls every image one class is refused): above the uint8 output's top value 255/256, every
    # image is nevus-like; just above 0, every image with an output above 0.
    forced = 1 - 1e-9 if any(ref_mel) else 1e-9
    model = copy_model(converted, "int8", tmp_path / "m", threshold=forced)
    card = json.loads(model.with_suffix(".json").read_text())
    for measured_around_the_threshold in ("borderline", "likelihood_ratios"):  # a card keeps them with it
        card.pop(measured_around_the_threshold)
    model.with_suffix(".json").write_text(json.dumps(card))
    common = ["bench", "--reference", model_file(converted, "float32"), model, "--data",
              load_run(tiny_run.out_dir).data_dir, "--split-csv",
              tiny_run.out_dir / "split.csv", "--no-latency", "--bootstrap", "20"]
    r = run(*common, "--out", tmp_path / "fail", "--min-agreement", "1.0")
    assert r.exit_code == 1, r.output
    assert "agreement" in r.output and "--min-agreement 1.0" in r.output
    report = json.loads((tmp_path / "fail" / "report.json").read_text())
    assert report["gates"]["failures"] and report["models"][1]["vs_reference"]["agreement"] < 1
    r = run(*common, "--out", tmp_path / "pass", "--min-agreement", "0", "--max-auc-drop", "1")
    assert r.exit_code == 0, r.output


def test_one_class_data_reports_auc_undefined_and_exits_0(converted, synth_dir, tmp_path):
    from melkit.data.readers import read_dataset

    one = tmp_path / "only_nv"
    (one / "nv").mkdir(parents=True)
    for rec in [r for r in read_dataset(synth_dir).records if r.label == 0][:30]:
        shutil.copy(rec.path, one / "nv")
    r = run("bench", model_file(converted, "float32"), model_file(converted, "int8"), "--reference",
            model_file(converted, "float32"), "--data", one, "--out", tmp_path / "b", *FAST, "--no-latency")
    assert r.exit_code == 0, r.output
    # the reference's parity row: its AUC, undefined with one class, reads n/a
    assert any(ln.split()[1:3] == ["n/a", "reference"] for ln in r.output.splitlines()), r.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["images"]["n_mel"] == 0 and report["images"]["n"] == len(list((one / "nv").iterdir()))
    for m in report["models"]:
        assert m["metrics"]["auc"] is None and m["metrics"]["sensitivity"] is None
        assert m["metrics"]["specificity"] is not None
    assert report["models"][1]["vs_reference"]["delta_auc"] is None
    assert not (tmp_path / "b" / "roc.png").exists() and (tmp_path / "b" / "reliability.png").exists()


def _with_sources(synth_dir, dest, source_of_lesion):
    """A HAM10000-style copy of synth_dir's metadata (images linked) whose dataset column says
    ``source_of_lesion(lesion_id)``; lesions it maps to None are left out."""
    with open(synth_dir / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    dest.mkdir(parents=True)
    (dest / "images").symlink_to(synth_dir / "images")
    kept = [{**r, "dataset": source_of_lesion(r["lesion_id"])} for r in rows]
    kept = [r for r in kept if r["dataset"] is not None]
    with open(dest / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(kept)
    return dest, {r["image_id"]: r["dataset"] for r in kept}


def test_bench_reports_each_source(converted, synth_dir, tmp_path):
    from melkit.core.metrics import roc_auc

    with open(synth_dir / "metadata.csv", newline="") as f:
        clinic = set(sorted({r["lesion_id"] for r in csv.DictReader(f)})[::2])
    data, source_of = _with_sources(synth_dir, tmp_path / "two", lambda les: "clinic" if les in clinic else "synth")
    models = ["--reference", model_file(converted, "float32"), model_file(converted, "int8")]
    r = run("bench", *models, "--data", data, "--out", tmp_path / "b", "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    by = report["by_source"]
    assert set(by) == {"clinic", "synth"}
    assert sum(s["n"] for s in by.values()) == report["images"]["n"] == len(source_of)
    assert sum(s["n_pos"] for s in by.values()) == report["images"]["n_mel"]
    assert sum(s["lesions"] for s in by.values()) == report["images"]["lesions"]
    names = [m["name"] for m in report["models"]]
    with open(tmp_path / "b" / "predictions.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    for name, s in by.items():
        assert list(s["models"]) == names and s["models"]["float32"]["vs_reference"] is None
        int8 = s["models"]["int8"]
        assert int8["metrics"]["n"] == s["n"] and int8["metrics"]["auc_ci"] is not None
        assert 0 <= int8["vs_reference"]["agreement"] <= 1 and "flipped" not in int8["vs_reference"]
        # The source's own images: its AUC recomputed from predictions.csv.
        mine = [p for p in preds if source_of[p["image_id"]] == name]
        assert len(mine) == s["n"]
        auc = roc_auc([p["label"] == "mel" for p in mine], [float(p["p_mel_int8"]) for p in mine])
        assert int8["metrics"]["auc"] == pytest.approx(auc, abs=1e-3)
    md = (tmp_path / "b" / "report.md").read_text()
    section = md.split("## By source")[1].split("\n## ")[0]
    md_counts = {ln.split(" | ")[0][2:]: int(ln.split(" | ")[1]) for ln in section.splitlines()
                 if ln.startswith(("| clinic ", "| synth "))}
    assert md_counts == {k: s["n"] for k, s in by.items()}
    assert "by source (2 sources)" in r.output
    table = r.output.split("by source (2 sources)")[1].splitlines()
    out_counts = {ln.split()[0]: int(ln.split()[1]) for ln in table if ln.startswith(("clinic ", "synth "))}
    assert out_counts == md_counts
    print(r.output)

    # The same two sources as two directories (--data repeated): the same images per source.
    a, _ = _with_sources(synth_dir, tmp_path / "a", lambda les: "clinic" if les in clinic else None)
    b, _ = _with_sources(synth_dir, tmp_path / "b2", lambda les: None if les in clinic else "synth")
    r = run("bench", *models, "--data", a, "--data", b, "--out", tmp_path / "ab", "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    ab = json.loads((tmp_path / "ab" / "report.json").read_text())
    assert {k: (s["n"], s["n_pos"]) for k, s in ab["by_source"].items()} == {k: (s["n"], s["n_pos"])
                                                                             for k, s in by.items()}
    assert ab["by_source"]["clinic"]["models"]["int8"]["metrics"]["auc"] == pytest.approx(
        by["clinic"]["models"]["int8"]["metrics"]["auc"], abs=1e-6)

    # One source: no by_source, no section, no table.
    r = run("bench", *models, "--data", synth_dir, "--out", tmp_path / "one", "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    assert "by_source" not in json.loads((tmp_path / "one" / "report.json").read_text())
    assert "## By source" not in (tmp_path / "one" / "report.md").read_text() and "by source" not in r.output


# --------------------------------------------------------------------------- bad input


def test_bad_models_exit_2(converted, tmp_path, synth_dir):
    image = sorted((synth_dir / "images").iterdir())[0]
    # missing card
    bare = tmp_path / "bare" / "m.tflite"
    bare.parent.mkdir()
    shutil.copy(model_file(converted, "int8"), bare)
    cases = [(bare, "no model card")]
    # corrupt .tflite whose card matches its bytes: the interpreter must refuse it
    corrupt = copy_model(converted, "int8", tmp_path / "corrupt")
    corrupt.write_bytes(b"this is not a flatbuffer" * 10)
    card = json.loads(corrupt.with_suffix(".json").read_text())
    card["sha256"] = hashlib.sha256(corrupt.read_bytes()).hexdigest()
    corrupt.with_suffix(".json").write_text(json.dumps(card))
    cases.append((corrupt, "not a loadable TFLite model"))
    # a card that lies about the input
    cases.append((copy_model(converted, "int8", tmp_path / "dtype", input__dtype="float32"),
                  "input dtype float32, the model has uint8"))
    cases.append((copy_model(converted, "int8", tmp_path / "size", preprocessing__image_size=64), "input shape"))
    # a model changed after its card was written
    changed = copy_model(converted, "int8", tmp_path / "changed")
    changed.write_bytes(model_file(converted, "fp16").read_bytes())
    cases.append((changed, "does not match its card"))
    cases.append((tmp_path / "no_such_run", "not found"))
    for model, message in cases:
        r = run("predict", model, image)
        assert r.exit_code == 2, (model, r.output)
        assert message in r.output, (model, r.output)
    r = run("bench", tmp_path / "no_such_run", "--no-latency")
    assert r.exit_code == 2 and "not found" in r.output


def test_predict_unreadable_image_exits_2(converted, synth_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(sorted((synth_dir / "images").iterdir())[0].read_bytes()[:100])
    r = run("predict", model_file(converted, "float32"), broken)
    assert r.exit_code == 2 and "unreadable image" in r.output and "broken.jpg" in r.output
    r = run("predict", model_file(converted, "float32"), tmp_path / "missing.png")
    assert r.exit_code == 2 and "file not found" in r.output


def test_predict_text_output(converted, synth_dir):
    images = sorted((synth_dir / "images").iterdir())[:2]
    r = run("predict", model_file(converted, "fp16"), *images)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if "P(mel)" in ln]
    assert len(lines) == 2 and all(str(p) in ln for p, ln in zip(images, lines))
    assert all(("melanoma-suspicious" in ln) != ("nevus-like" in ln) for ln in lines)


def test_bench_without_reference_is_bad_input(converted):
    r = run("bench", model_file(converted, "int8"), "--no-latency")
    assert r.exit_code == 2 and "no reference" in r.output


# --------------------------------------------------------------------------- real data


def test_bench_on_a_few_real_ham_images(tiny_run, converted, tmp_path):
    data = subset_of(need(HAM), tmp_path / "ham", n_lesions=12, seed=3)
    r = run("bench", tiny_run.out_dir, model_file(converted, "int8"), "--data", data, "--out", tmp_path / "b",
            "--no-latency", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    n_rows = sum(1 for _ in csv.DictReader(open(data / "metadata.csv")))
    assert report["images"]["n"] == n_rows and report["images"]["n_mel"] > 0
    assert {"age", "sex", "localization"} <= set(report["subgroups"])
    for rows in report["subgroups"].values():
        assert sum(row["n"] for row in rows) == n_rows
