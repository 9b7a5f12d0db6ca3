"""melkit convert on the session's tiny run: every variant, metadata, cards, I/O contract, gates, refusals."""

import io as _io
import json
import re
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import LOOSE

from melkit.cli import main
from melkit.convert.converter import ConvertOptions, run_convert
from melkit.convert.metadata import read_metadata
from melkit.convert.selfcheck import compare
from melkit.core.card import load_card
from melkit.core.litert import io_details, load_interpreter
from melkit.util.errors import BadInputError


def test_every_variant_is_written_with_card_and_labels(converted):
    result, out = converted
    assert [c.variant for c in result.checks] == ["float32", "fp16", "dynamic", "int8"]
    assert (out / "labels.txt").read_text() == "nv\nmel\n"
    for variant in ("float32", "fp16", "dynamic", "int8"):
        model = out / f"melkit_mnv2_0.35_48_{variant}.tflite"
        card = json.loads(model.with_suffix(".json").read_text())
        assert card["variant"] == variant and card["labels"] == ["nv", "mel"]
        import hashlib

        assert card["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
        assert card["preprocessing"]["image_size"] == 48 and card["output"]["shape"] == [1, 2]
        assert card["training_data"]["split"]["mode"] == "lesion"
        # folded by default: the top category decides at 0.5, the trained threshold is kept in threshold_fold
        fold = card["threshold_fold"]
        assert card["threshold"] == 0.5 and 0 < fold["threshold"] < 1 and fold["threshold"] != 0.5
        assert fold["logit"] == pytest.approx(np.log(fold["threshold"] / (1 - fold["threshold"])), abs=1e-3)
        assert card["conversion"]["threshold_fold"] == {"folded": True}
    assert (out / "melkit_mnv2_0.35_48_int8_debug.csv").read_text().startswith("tensor_name,")


def test_float32_matches_keras(converted):
    float_check = converted[0].checks[0]
    # The Youden threshold is one validation image's own score, so that image's decision can flip on a 1e-6
    # difference; every other decision must agree.
    assert float_check.agreement >= 1 - 1 / float_check.n and float_check.max_abs_diff < 1e-4
    assert float_check.auc_tflite == pytest.approx(float_check.auc_keras, abs=1e-6)


def test_int8_io_follows_the_contract(converted):
    _, out = converted
    io = io_details(load_interpreter(out / "melkit_mnv2_0.35_48_int8.tflite"))
    assert io["input"]["dtype"] == "uint8" and io["input"]["shape"] == [1, 48, 48, 3]
    assert io["input"]["quantization"] == {"scale": pytest.approx(1 / 128), "zero_point": 128}
    assert io["output"]["dtype"] == "uint8" and io["output"]["shape"] == [1, 2]
    # batch 1 declared, not -1: LiteRT.js refuses a dynamic batch and offers no resize
    details = load_interpreter(out / "melkit_mnv2_0.35_48_int8.tflite").get_input_details()[0]
    assert list(details["shape_signature"]) == [1, 48, 48, 3]
    # integer-only: no float tensors except none at all in the ops' activations
    interp = load_interpreter(out / "melkit_mnv2_0.35_48_int8.tflite")
    ops = {d["op_name"] for d in interp._get_ops_details()}  # noqa: SLF001
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops or io["input"]["dtype"] == "uint8"


def test_metadata_is_embedded_and_readable(converted):
    _, out = converted
    data = (out / "melkit_mnv2_0.35_48_int8.tflite").read_bytes()
    meta = read_metadata(data)
    assert meta["name"] == "melkit_mnv2_0.35_48" and meta["labels"] == ["nv", "mel"]
    assert meta["input"]["image_size"] == 48 and meta["input"]["mean"] == [128.0]
    with zipfile.ZipFile(_io.BytesIO(data)) as z:
        assert z.read("labels.txt") == b"nv\nmel\n"


def test_scores_sum_to_one_and_follow_the_logit(converted, tiny_run):
    _, out = converted
    interp = load_interpreter(out / "melkit_mnv2_0.35_48_float32.tflite")
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 48, 48, 3)).astype(np.float32)
    interp.set_tensor(d_in["index"], x)
    interp.invoke()
    y = interp.get_tensor(d_out["index"])[0]
    assert y.sum() == pytest.approx(1.0, abs=1e-5)
    from melkit.util.tf import keras

    logit = keras.models.load_model(tiny_run.out_dir / "model.keras")(x).numpy()[0, 0]
    fold = load_card(out / "melkit_mnv2_0.35_48_float32.tflite").threshold_fold  # folded in: logit - zt
    zt = fold["logit"] if fold else 0.0
    assert y[1] == pytest.approx(1 / (1 + np.exp(-(logit - zt))), abs=1e-5)


def test_same_seed_same_int8_bytes(tiny_run, tmp_path, converted):
    opts = ConvertOptions(variants=["int8"], out=str(tmp_path), calibration_images=40, min_agreement=LOOSE)
    run_convert(tiny_run.out_dir, opts)
    name = "melkit_mnv2_0.35_48_int8.tflite"
    assert (tmp_path / name).read_bytes() == (converted[1] / name).read_bytes()


def test_int8_input_and_float_output_options(tiny_run, tmp_path):
    opts = ConvertOptions(variants=["int8"], out=str(tmp_path), calibration_images=40, min_agreement=LOOSE,
                          input_type="int8", output_type="float32")
    run_convert(tiny_run.out_dir, opts)
    io = io_details(load_interpreter(tmp_path / "melkit_mnv2_0.35_48_int8.tflite"))
    assert io["input"]["dtype"] == "int8" and io["input"]["quantization"]["zero_point"] == 0
    assert io["output"]["dtype"] == "float32"


def test_int8_mixed_keeps_a_named_layer_in_float(tiny_run, tmp_path, converted):
    import csv

    rows = list(csv.DictReader(open(converted[1] / "melkit_mnv2_0.35_48_int8_debug.csv")))
    worst = rows[0]["tensor_name"]
    opts = ConvertOptions(variants=["int8-mixed"], out=str(tmp_path), calibration_images=40, min_agreement=LOOSE,
                          float_layers=[worst])
    run_convert(tiny_run.out_dir, opts)
    interp = load_interpreter(tmp_path / "melkit_mnv2_0.35_48_int8-mixed.tflite")
    kept = [t for t in interp.get_tensor_details() if t["name"] == worst]
    assert kept and kept[0]["dtype"] == np.float32
    with pytest.raises(BadInputError, match="no tensor named"):
        run_convert(tiny_run.out_dir, ConvertOptions(variants=["int8-mixed"], out=str(tmp_path / "x"),
                                                     calibration_images=40, float_layers=["nope"]))


def test_qat_runs_and_is_compared_with_ptq(tiny_run, tmp_path):
    opts = ConvertOptions(variants=["int8", "qat"], out=str(tmp_path), calibration_images=40, min_agreement=LOOSE)
    lines = []
    result = run_convert(tiny_run.out_dir, opts, echo=lines.append)
    assert any(re.match(r"qat: Keras-QAT validation AUC [01]\.\d{4} \(float Keras [01]\.\d{4}\)", line)
               for line in lines), lines
    qat = [c for c in result.checks if c.variant == "qat"][0]
    assert qat.auc_tflite is not None and 0 <= qat.agreement <= 1
    written = (tmp_path / "melkit_mnv2_0.35_48_qat.tflite").exists()
    int8 = [c for c in result.checks if c.variant == "int8"][0]
    assert written == (qat.agreement > int8.agreement)
    assert written or "does not beat" in result.skipped_qat


def test_report_only_writes_nothing(tiny_run, tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--float32", "--report-only", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "float32" in r.output and "AUC keras" in r.output and not out.exists()


def test_gate_failure_exits_1_and_writes_nothing_for_that_variant(tiny_run, tmp_path, monkeypatch):
    import melkit.convert.converter

    monkeypatch.setattr(melkit.convert.converter, "predict_p_mel",
                        lambda interp, q, progress=None, p_mel_index=-1: np.full(len(q), 0.3))
    r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--float32", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "constant" in r.output
    assert not list(tmp_path.glob("*.tflite"))


def test_compare_gates():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.6, 0.9])
    assert compare("x", p, p, y, 0.5, 10, 0.99).passed
    assert compare("x", p, np.array([0.1, 0.6, 0.6, 0.9]), y, 0.5, 10, 0.99).reason.startswith("agreement 0.750")
    assert "NaN" in compare("x", p, np.array([np.nan] * 4), y, 0.5, 10, 0.5).reason


@pytest.mark.parametrize("args,message", [
    ([], "choose at least one variant"),
    (["--float32", "--float-layer", "x"], "--float-layer needs --int8-mixed"),
    (["--float32", "--input-type", "int8"], "apply to --int8 or --qat"),
    (["--int8", "--calibration-images", "1"], "at least 2"),
])
def test_bad_flags_exit_2(tiny_run, tmp_path, args, message):
    r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--out", str(tmp_path / "o"), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_bad_run_dirs_exit_2(tmp_path, tiny_run):
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "missing"), "--float32"])
    assert r.exit_code == 2 and "not found" in r.output
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(tiny_run.out_dir, broken)
    (broken / "model.keras").write_bytes(b"garbage")
    r = CliRunner().invoke(main, ["convert", str(broken), "--float32"])
    assert r.exit_code == 2 and "cannot load" in r.output
    assert not (broken / "tflite").exists() or not list((broken / "tflite").glob("*.tflite"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--float32", "--out", str(afile)])
    assert r.exit_code == 2 and "is a file" in r.output


def test_depthwise_equalisation_keeps_the_float_model(tiny_run):
    from melkit.convert.qat import equalize_depthwise
    from melkit.core.run import load_trained_model
    from melkit.util.tf import keras

    model, _ = load_trained_model(tiny_run.out_dir)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 48, 48, 3)).astype(np.float32)
    before = model.predict(x, verbose=0)
    assert equalize_depthwise(model) == 17  # every depthwise conv of MobileNetV2 is followed by its BatchNorm
    assert np.allclose(model.predict(x, verbose=0), before, atol=1e-4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            ch = np.abs(layer.get_weights()[0]).max(axis=(0, 1, 3))
            assert np.allclose(ch[ch > 0], np.median(ch[ch > 0]), rtol=1e-5)


def test_range_equalisation_keeps_the_float_model_and_fills_the_relu6_range(tiny_run):
    from melkit.convert.equalize import (
        _channel_max,
        equalizable_pairs,
        equalize_activation_ranges,
    )
    from melkit.convert.representative import representative_images
    from melkit.core.run import load_trained_model
    from melkit.data.contract import normalize

    model, config = load_trained_model(tiny_run.out_dir)
    rep = representative_images(tiny_run.out_dir, config, 40, 0)
    pairs = equalizable_pairs(model)
    # Conv1 + 16 expand + 17 depthwise ReLU6 outputs, each feeding a conv that is linear per input channel,
    # and out_relu feeding the logit through the global average pool
    assert len(pairs) == 35 and type(pairs[-1][2]).__name__ == "Dense"
    before_max = _channel_max(model, [r for _, r, _ in pairs], rep)
    eq, n = equalize_activation_ranges(model, rep, margin=1.5)
    assert n == 35
    x = normalize(rep)
    # On the calibration images nothing new reaches the cap, so the function is the same (float rounding aside)
    assert np.allclose(eq.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    after_max = _channel_max(eq, [eq.get_layer(r.name) for _, r, _ in pairs], rep)
    for lo, hi in zip(before_max, after_max):
        live = (lo > 6.0 / 1.5 / 64) & (lo < 6.0 / 1.5)
        assert np.allclose(hi[live], 4.0, rtol=1e-3)  # every live channel now peaks at 6 / margin
    # The reference model itself is untouched.
    assert np.allclose(_channel_max(model, [r for _, r, _ in pairs], rep)[0], before_max[0])
    with pytest.raises(ValueError):
        equalize_activation_ranges(model, rep, margin=0.9)


def test_equalisation_and_rounding_are_recorded_and_can_be_switched_off(tiny_run, tmp_path, converted):
    card = json.loads((converted[1] / "melkit_mnv2_0.35_48_int8.json").read_text())
    assert card["conversion"]["range_equalization"] == {"margin": 1.5, "layers": 35}
    assert json.loads((converted[1] / "melkit_mnv2_0.35_48_float32.json").read_text())[
        "conversion"]["range_equalization"] is None
    r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--int8", "--no-equalize", "--weight-rounding",
                                  "nearest", "--no-align-threshold", "--out", str(tmp_path),
                                  "--calibration-images", "40", "--min-agreement", str(LOOSE)])
    assert r.exit_code == 0, r.output
    assert "weight rounding:" not in r.output
    plain = json.loads((tmp_path / "melkit_mnv2_0.35_48_int8.json").read_text())
    assert plain["conversion"]["range_equalization"] is None
    assert plain["conversion"]["weight_rounding"] == {"method": "nearest"}
    assert plain["conversion"]["decision_grid"] is None
    assert plain["sha256"] != card["sha256"]
    # without an aligned grid the int8 fold would not be exact: left unfolded, and said so
    assert "threshold_fold" not in plain and plain["threshold"] == card["threshold_fold"]["threshold"]
    assert plain["conversion"]["threshold_fold"]["folded"] is False and "not folded" in r.output


def test_compensated_rounding_beats_nearest_on_the_layer_output():
    from melkit.convert.rounding import compensated_rounding

    rng = np.random.default_rng(0)
    # Correlated, ReLU-like inputs (as after a depthwise conv) and weights with a few large ones per column
    x = np.maximum(rng.normal(size=(3000, 48)) @ rng.normal(size=(48, 48)) * 0.3, 0)
    w = rng.normal(size=(48, 12)) * rng.uniform(0.05, 1.0, size=(48, 1))
    step = np.abs(w).max(axis=0) / 127
    q = compensated_rounding(w, x.T @ x)
    nearest = np.round(w / step) * step
    assert np.allclose(q / step, np.round(q / step), atol=1e-9)  # on the int8 grid
    assert np.all(np.abs(np.round(q / step)) <= 127)
    assert np.allclose(np.abs(q).max(axis=0), np.abs(w).max(axis=0))  # the converter's scales stay the same
    err_q = np.linalg.norm(x @ (w - q))
    err_nearest = np.linalg.norm(x @ (w - nearest))
    assert err_q < 0.85 * err_nearest, (err_q, err_nearest)


def test_converter_keeps_the_compensated_int8_weights(tiny_run, converted):
    """The int8 model holds exactly the rounded weights: the converter's own rounding must not undo them."""
    from melkit.convert.equalize import equalize_activation_ranges
    from melkit.convert.export import with_two_scores
    from melkit.convert.representative import representative_images
    from melkit.convert.rounding import pointwise_convs, round_pointwise_weights
    from melkit.core.run import load_trained_model

    model, config = load_trained_model(tiny_run.out_dir)
    rep = representative_images(tiny_run.out_dir, config, 40, 0)
    eq, _ = equalize_activation_ranges(with_two_scores(model), rep, 1.5)
    rounded, n = round_pointwise_weights(eq, rep, seed=0)
    assert n == 34  # 16 expand + 17 project + Conv_1
    card = json.loads((converted[1] / "melkit_mnv2_0.35_48_int8.json").read_text())
    assert card["conversion"]["weight_rounding"] == {"method": "compensated", "layers": 34}
    interp = load_interpreter(converted[1] / "melkit_mnv2_0.35_48_int8.tflite")
    tensors = {t["name"]: t for t in interp.get_tensor_details()}
    checked = 0
    for conv, f in pointwise_convs(rounded):
        if not conv.name.endswith("_project"):
            continue
        expected = rounded.get_layer(conv.name).get_weights()[0][0, 0] * f  # folded (cin, cout)
        step = np.abs(expected).max(axis=0) / 127
        ints = np.round(expected / step).T  # TFLite keeps OHWI
        found = [t for name, t in tensors.items() if conv.name + "/" in name and t["dtype"] == np.int8
                 and len(t["shape"]) == 4 and tuple(t["shape"][[0, 3]]) == ints.shape]
        assert len(found) == 1, [n for n in tensors if conv.name + "/" in n]
        got = interp.get_tensor(found[0]["index"])[:, 0, 0, :]
        assert np.array_equal(got, ints.astype(np.int8)), conv.name
        checked += 1
    assert checked == 17


@pytest.mark.parametrize("scale,z", [(0.065, -0.952), (0.065, 0.952), (0.1, 3.0), (0.0257, 0.03), (0.2, 5.0)])
def test_aligned_scale_is_the_narrowest_grid_with_the_threshold_halfway(scale, z):
    from melkit.convert.decision_grid import aligned_scale

    s = aligned_scale(scale, z)
    steps = abs(z) / s
    assert steps == pytest.approx(round(steps)) and round(steps) % 2 == 1  # an odd multiple: a switching point
    assert s >= scale and abs(z) / (round(steps) + 2) < scale  # the next narrower candidate is too narrow
    assert aligned_scale(0.1, 0.05) is None  # threshold at P~0.5: no grid that wide has a switch there


def test_int8_scores_switch_exactly_at_the_threshold(converted, tiny_run):
    """The grid is aligned to the trained threshold and the threshold folded in: every int8 answer is an odd
    multiple of the scores' step, never 0 (no tie), and the top category, the written P(mel) >= 0.5 and the
    sign of the folded logit agree."""
    from ai_edge_litert.interpreter import Interpreter

    from melkit.convert.decision_grid import threshold_logit
    from melkit.core.run import load_run, split_records
    from melkit.data.pipeline import load_images

    _, out = converted
    card = json.loads((out / "melkit_mnv2_0.35_48_int8.json").read_text())
    grid, thr = card["conversion"]["decision_grid"], card["threshold_fold"]["threshold"]
    assert card["threshold"] == 0.5
    # narrowed to what the uint8 output can tell apart (|z| ~ 6.2), never below that or the calibrated range
    assert grid and grid["logit_range"] >= min(2 * 127 * grid["scale_before"], 6.2)
    assert json.loads((out / "melkit_mnv2_0.35_48_float32.json").read_text())["conversion"]["decision_grid"] is None
    interp = Interpreter(str(out / "melkit_mnv2_0.35_48_int8.tflite"), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    scores = next(d for d in interp.get_tensor_details() if d["name"] == grid["tensor"])
    s = scores["quantization"][0]
    assert s == pytest.approx(grid["scale_after"], rel=1e-6)
    z_thr = threshold_logit(thr)
    assert abs(z_thr) / s == pytest.approx(grid["threshold_in_steps"]) and round(abs(z_thr) / s) % 2 == 1
    images = load_images(split_records(tiny_run.out_dir, load_run(tiny_run.out_dir), "val"), 48).images
    noise = np.random.default_rng(0).integers(0, 256, (60, 48, 48, 3), dtype=np.uint8)
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    gaps = []
    for q in np.concatenate([images, noise]):
        interp.set_tensor(d_in["index"], q[None])
        interp.invoke()
        q_nv, q_mel = interp.get_tensor(scores["index"])[0].astype(int)
        assert (q_mel - q_nv) % 2 == 1  # z' = z - z_thr: the unfolded even multiple of s minus an odd one
        z = s * (q_mel - q_nv)
        out_q = interp.get_tensor(d_out["index"])[0]
        p_mel = (out_q[1] - d_out["quantization"][1]) * d_out["quantization"][0]
        assert (p_mel >= card["threshold"]) == (z > 0) == (out_q[1] > out_q[0])  # never a tie
        gaps.append(abs(z))
    assert min(gaps) >= s * (1 - 1e-4)  # never closer than one step: rounding cannot move a decision


def _described(data: bytes, images) -> dict:
    """What a TFLite client can see of a model: ops, tensors with their quantization, I/O, signatures, outputs."""
    interp = load_interpreter(data)
    interp.allocate_tensors()
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    results = []
    for image in images:
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            image = np.clip(np.round(image / scale + zero), 0, 255).astype(inp["dtype"])
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        results.append([interp.get_tensor(o["index"]).tobytes() for o in outs])
    return {"ops": [op["op_name"] for op in interp._get_ops_details()],
            "tensors": [(t["name"], tuple(t["shape_signature"]), t["quantization"])
                        for t in interp.get_tensor_details()],
            "io": [(d["name"], str(d["dtype"])) for d in [inp, *outs]],
            "signatures": interp.get_signature_list(), "outputs": results}


@pytest.mark.parametrize("quantized", [False, True])
def test_keras_converter_gives_from_keras_models_graph(quantized):
    """variants.keras_converter skips from_keras_model's whole-model SavedModel; what it converts must be the
    same model: ops, tensor names, quantization, signature, output order and outputs to the bit."""
    from melkit.convert.variants import _representative, keras_converter
    from melkit.util.tf import keras, tf

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3), name="image")
    h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(x)))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.DepthwiseConv2D(3, padding="same")(h))
    model = keras.Model(x, [keras.layers.Dense(2, activation="softmax", name="probabilities")(h),
                            keras.layers.Dense(1, name="domain_score")(h)])
    images = np.random.default_rng(0).uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)
    described = []
    for conv in (tf.lite.TFLiteConverter.from_keras_model(model), keras_converter(model)):
        if quantized:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = _representative(((images + 1) * 127.5).astype(np.uint8))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.uint8
        described.append(_described(conv.convert(), images))
    assert described[0]["signatures"]["serving_default"]["outputs"] == ["domain_score", "probabilities"]
    # The one intended difference: melkit declares batch 1 (phone clients, LiteRT.js), from_keras_model -1.
    assert described[1]["tensors"][0][1][0] == 1 and described[0]["tensors"][0][1][0] == -1
    described[0]["tensors"] = [(name, tuple(1 if s == -1 else s for s in shape), q)
                               for name, shape, q in described[0]["tensors"]]
    assert described[1] == described[0]


def test_balanced_calibration_draws_each_source_alike():
    """--calibration-sources balanced: a small source gives all it has, the others share the rest equally."""
    from collections import Counter
    from types import SimpleNamespace

    from melkit.convert.representative import _balanced_pick

    records = [SimpleNamespace(source=s) for s, n in (("a", 100), ("b", 10), ("c", 50)) for _ in range(n)]
    pick = _balanced_pick(records, 60, np.random.default_rng(0))
    assert len(pick) == len(set(pick)) == 60
    assert Counter(records[i].source for i in pick) == {"a": 25, "b": 10, "c": 25}
    assert sorted(_balanced_pick(records, 500, np.random.default_rng(0))) == list(range(160))  # all, no repeats
