"""The input-domain guard (``melkit convert --domain-guard``, melkit/convert/domain_guard.py) on the tiny run.

The guard is a second output, ``domain_score`` (output 1; the probabilities stay output 0), with a
``domain_guard`` record in the card: predict, bench, the goldens and the Android core read it, and a card whose
guard does not match its model is refused. Models converted without it are as before.

What the tiny model can show: its training images are synthetic (smooth blobs on flat skin-toned backgrounds,
48 px, random init), so flat colours and smooth gradients are *in* its domain; it must flag uniform noise,
keep ~all of its validation images, and its float score must be exactly the Mahalanobis distance that was
fitted. How well a release-size model separates dermoscopy from noise, flat colours, gradients, text and
photographs is measured by ``benchmarks/domain_guard.py`` (README there).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import LOOSE, REPO, built_once
from PIL import Image

from melkit.benchmark.ood import generated
from melkit.cli import main
from melkit.convert import domain_guard as guards
from melkit.convert.converter import ConvertOptions, convert_run
from melkit.convert.metadata import read_metadata
from melkit.core.card import SCHEMA_PATH, ModelCard, load_card, write_card
from melkit.core.errors import BadInputError
from melkit.core.litert import io_details, load_interpreter, predict_p_mel, predict_with_domain, to_input
from melkit.core.run import load_run, split_records
from melkit.data.pipeline import load_images

VARIANTS = ("float32", "int8")
MP_PYTHON = Path(os.environ.get("MELKIT_MEDIAPIPE_PYTHON", REPO / ".venv-mediapipe" / "bin" / "python"))


def model_file(out: Path, variant: str) -> Path:
    return out / f"melkit_mnv2_0.35_48_{variant}.tflite"


@pytest.fixture(scope="module")
def guarded(tiny_run, tmp_path_factory):
    """The tiny run converted once with the guard: float32 and int8."""
    def build(out):
        opts = ConvertOptions(variants=list(VARIANTS), out=str(out), calibration_images=40, min_agreement=LOOSE,
                              domain_guard=True)
        result = convert_run(tiny_run.out_dir, opts)
        assert not result.failed, result.table
        return out

    return built_once(tmp_path_factory, "guarded", build)


@pytest.fixture(scope="module")
def val_images(tiny_run):
    config = load_run(tiny_run.out_dir)
    return load_images(split_records(tiny_run.out_dir, config, "val"), config.preprocessing)


def outputs(path, images):
    card = load_card(path)
    return predict_with_domain(load_interpreter(path), images, p_mel_index=card.p_mel_index,
                               output=card.output.name, domain_output=card.guard_output.name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_probabilities_stay_output_0_and_the_score_is_output_1(guarded, converted, val_images, variant):
    path = model_file(guarded, variant)
    card = load_card(path)
    interp = load_interpreter(path)
    card.check_against(interp, path)
    outs = interp.get_output_details()
    assert len(outs) == 2 and card.guard_index == 1
    assert outs[0]["name"] == card.output.name and outs[0]["shape"].tolist() == [1, 2]
    assert outs[1]["name"] == card.guard_output.name and outs[1]["shape"].tolist() == [1, 1]
    assert io_details(interp)["more_outputs"][0]["name"] == card.guard_output.name
    # the signature names say the same: output 0 is "probabilities", output 1 "domain_score"
    q = to_input(val_images.images[:1], interp.get_input_details()[0])
    named = load_interpreter(path).get_signature_runner()(image=q)
    interp.set_tensor(interp.get_input_details()[0]["index"], q)
    interp.invoke()
    np.testing.assert_array_equal(named["probabilities"], interp.get_tensor(outs[0]["index"]))
    np.testing.assert_array_equal(named["domain_score"], interp.get_tensor(outs[1]["index"]))
    # The classifier is the one converted without the guard: the same P(mel) (int8: the same calibration,
    # range equalisation and weight rounding, so the same integers) and the same decision grid.
    plain = model_file(converted[1], variant)
    p_guard, _ = outputs(path, val_images.images)
    plain_card = load_card(plain)
    p_plain = predict_p_mel(load_interpreter(plain), val_images.images, p_mel_index=plain_card.p_mel_index)
    np.testing.assert_allclose(p_guard, p_plain, atol=1e-6)
    assert card.conversion["decision_grid"] == plain_card.conversion["decision_grid"]
    # metadata: two outputs described, labels for the first
    meta = read_metadata(path.read_bytes())
    assert meta["labels"] == ["nv", "mel"] and meta["output"]["name"] == "probability"
    assert meta["domain_output"]["name"] == "domain_score" and "not assessed" in meta["domain_output"]["description"]


def test_models_without_the_guard_are_as_before(converted):
    path = model_file(converted[1], "int8")
    d = json.loads(path.with_suffix(".json").read_text())
    assert "domain_guard" not in d and "not assessed" not in d["decision"]
    assert "more_outputs" not in io_details(load_interpreter(path))
    assert "domain_output" not in read_metadata(path.read_bytes())


def test_the_card_record_round_trips_and_validates(guarded):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    for variant in VARIANTS:
        card_path = model_file(guarded, variant).with_suffix(".json")
        d = json.loads(card_path.read_text())
        validator.validate(d)
        card = ModelCard.from_json(d)
        assert json.dumps(card.to_json()) == json.dumps(d)
        write_card(card_path.parent / "copy.json", card)
        assert (card_path.parent / "copy.json").read_bytes() == card_path.read_bytes()
        g = d["domain_guard"]
        assert g["output"]["index"] == 1 and g["output"]["shape"] == [1, 1] and g["method"] == "mahalanobis"
        assert g["layers"] == list(guards.LAYERS) and g["threshold"] > 0 and g["val_in_domain_float"] >= 0.9
        assert g["fitted_on"].startswith("train split (") and "not assessed" in d["decision"]
        assert g["agreement"] >= 0.9 and g["val_in_domain"] >= 0.9
        assert (g["output"]["dtype"], "ranges" in g) == (("uint8", True) if variant == "int8" else ("float32", False))
    # both the schema and ModelCard refuse a broken record, naming the field
    bad_records = [(("output", "index"), 0, "domain_guard.output.index"),
                   (("output", "shape"), [1, 2], "domain_guard.output.shape"),
                   (("threshold",), "2", "domain_guard.threshold"), (("method",), None, "domain_guard.method")]
    for path, value, field in bad_records:
        bad = copy.deepcopy(d)
        holder = bad["domain_guard"]
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = value
        assert not validator.is_valid(bad), path
        with pytest.raises(BadInputError, match=field.replace(".", r"\.")):
            ModelCard.from_json(bad)
    for key in ("output", "threshold", "method"):
        bad = copy.deepcopy(d)
        del bad["domain_guard"][key]
        assert not validator.is_valid(bad)
        with pytest.raises(BadInputError, match=f"'domain_guard.{key}' is missing"):
            ModelCard.from_json(bad)


def test_the_float_score_is_the_fitted_mahalanobis_distance(guarded, tiny_run, val_images):
    """Refitting on the run's training split gives the card's threshold, and the float32 .tflite's score is
    the numpy distance of the Keras model's pooled features: fit, graph, conversion and output order agree."""
    from melkit.convert.export import with_two_scores
    from melkit.core.run import load_trained_model

    logit, config = load_trained_model(tiny_run.out_dir)
    export = with_two_scores(logit)
    train = load_images(split_records(tiny_run.out_dir, config, "train"), config.preprocessing)
    guard = guards.fit_on_images(export, train.images, val_images.images)
    card = load_card(model_file(guarded, "float32"))
    assert guard.threshold == pytest.approx(card.guard_threshold, rel=1e-9)
    expected = guard.scores(guards.pooled_features(export, val_images.images))
    _, got = outputs(model_file(guarded, "float32"), val_images.images)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert np.mean(expected <= guard.threshold) == pytest.approx(guard.val_in_domain)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_guard_keeps_validation_and_flags_noise(guarded, val_images, variant):
    path = model_file(guarded, variant)
    card = load_card(path)
    _, val = outputs(path, val_images.images)
    assert np.mean(card.in_domain(val)) >= 0.9
    noise = [(n, rgb) for g, n, rgb in generated(groups=("noise",)) if n.startswith("uniform")]
    assert len(noise) == 9
    q = np.stack([card.preprocessing.apply(rgb) for _, rgb in noise])
    _, scores = outputs(path, q)
    assert not card.in_domain(scores).any(), [n for (n, _), s in zip(noise, scores) if s <= card.guard_threshold]
    # and the int8 score ranks them above every validation image, as the float one does
    assert scores.min() > val.max()


def _png(path, rgb):
    Image.fromarray(rgb).save(path)
    return path


def test_predict_says_not_assessed_with_exit_0(guarded, converted, val_images, tmp_path):
    model = model_file(guarded, "int8")
    card = load_card(model)
    noise = _png(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    _, val = outputs(model, val_images.images)
    lesion = val_images.records[int(np.argmin(val))].path  # the most typical validation image
    r = CliRunner().invoke(main, ["predict", "--json", str(model), str(noise), str(lesion)])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("{"):])
    assert result["domain_threshold"] == card.guard_threshold
    out, inside = result["predictions"]
    folded = {"p_output": None} if card.threshold_fold else {}  # no score at all, raw or shown
    assert out == {"image": str(noise), "p_mel": None, "decision": "not_assessed",
                   "meaning": "not assessed: this does not look like a dermoscopic image of a skin lesion",
                   **folded, "in_domain": False, "domain_score": pytest.approx(out["domain_score"])}
    assert out["domain_score"] > card.guard_threshold
    assert inside["in_domain"] is True and inside["domain_score"] <= card.guard_threshold
    assert inside["decision"] in ("nv", "mel") and 0 <= inside["p_mel"] <= 1
    r = CliRunner().invoke(main, ["predict", str(model), str(noise), str(lesion)])
    assert r.exit_code == 0 and "not assessed: this does not look like" in r.output and "nevus-like" in r.output \
        or "melanoma-suspicious" in r.output, r.output
    # a model without the guard: rows exactly as before
    plain = model_file(converted[1], "int8")
    r = CliRunner().invoke(main, ["predict", "--json", str(plain), str(noise)])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("{"):])
    assert "domain_threshold" not in result
    folded = {"p_output"} if load_card(plain).threshold_fold else set()  # the raw output beside the shown P(mel)
    assert set(result["predictions"][0]) == {"image", "p_mel", "decision", "meaning"} | folded


def _beside(model: Path, dest: Path, edit) -> Path:
    """``model`` copied into ``dest`` with its card passed through ``edit(card_dict)``."""
    dest.mkdir()
    shutil.copy(model, dest / model.name)
    d = json.loads(model.with_suffix(".json").read_text())
    edit(d)
    (dest / model.name).with_suffix(".json").write_text(json.dumps(d))
    return dest / model.name


def test_a_card_whose_guard_does_not_match_the_model_is_refused(guarded, converted, tmp_path):
    guard_int8, plain_int8 = model_file(guarded, "int8"), model_file(converted[1], "int8")
    guard_card = json.loads(guard_int8.with_suffix(".json").read_text())

    def scale(d):
        d["domain_guard"]["output"]["quantization"]["scale"] *= 1.01

    def rename(d):
        d["domain_guard"]["output"]["name"] = "somewhere_else"

    def plain_card_for_a_guard_model(d):
        del d["domain_guard"]

    def guard_card_for_a_plain_model(d):
        d["domain_guard"] = guard_card["domain_guard"]

    cases = [(guard_int8, scale, "card says domain_guard.output quantization"),
             (guard_int8, rename, "card says domain_guard.output is 'somewhere_else'"),
             (guard_int8, plain_card_for_a_guard_model, "card says the model has 1 output(s)"),
             (plain_int8, guard_card_for_a_plain_model, "card says the model has 2 output(s)")]
    noise = _png(tmp_path / "noise.png", np.zeros((20, 20, 3), np.uint8))
    for i, (model, edit, message) in enumerate(cases):
        path = _beside(model, tmp_path / str(i), edit)
        r = CliRunner().invoke(main, ["predict", str(path), str(noise)])
        errors = [line for line in r.output.splitlines() if line.startswith("melkit: error:")]
        assert r.exit_code == 2 and len(errors) == 1 and message in errors[0], (message, r.output)
        assert "Traceback" not in r.output


def test_bench_reports_the_in_domain_rate(guarded, synth_dir, tmp_path):
    out = tmp_path / "bench"
    r = CliRunner().invoke(main, ["bench", str(model_file(guarded, "int8")), "--reference",
                                  str(model_file(guarded, "float32")), "--data", str(synth_dir), "--no-latency",
                                  "--bootstrap", "20", "--out", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    for entry in report["models"]:
        g = entry["domain_guard"]
        assert g["n"] == report["images"]["n"] and 0 <= g["n_in_domain"] <= g["n"]
        assert g["in_domain_rate"] == pytest.approx(g["n_in_domain"] / g["n"])
        assert g["threshold"] == load_card(entry["path"]).guard_threshold
    assert "## Input-domain guard" in (out / "report.md").read_text() and "input-domain guard" in r.output


def test_convert_refuses_guard_options_it_cannot_honour(tiny_run, tmp_path):
    for args, message in ((["--int8", "--qat", "--domain-guard"], "--domain-guard does not support --qat"),
                          (["--float32", "--domain-guard-quantile", "0.99"], "--domain-guard-quantile needs "
                                                                              "--domain-guard")):
        r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), *args, "--out", str(tmp_path / "x")])
        assert r.exit_code == 2 and message in r.output, r.output
        assert not (tmp_path / "x").exists()


def test_widen_ranges_leaves_float_models_and_sets_int8_ranges(guarded):
    data = model_file(guarded, "float32").read_bytes()
    assert guards.widen_ranges(data, 1.0) == (data, None)
    card = load_card(model_file(guarded, "int8"))
    ranges = card.domain_guard["ranges"]
    score = [r for r in ranges if r["tensor"] == card.guard_output.name]
    assert len(score) == 1 and score[0]["range"] == [0.0, pytest.approx(guards.SCORE_RANGE * card.guard_threshold)]
    assert card.guard_output.quantization.scale == pytest.approx(guards.SCORE_RANGE * card.guard_threshold / 255,
                                                                 rel=1e-6)
    assert {tuple(r["range"]) for r in ranges} >= {(-guards.Z_RANGE, guards.Z_RANGE), (0.0, guards.Z_RANGE ** 2)}


# ---------------------------------------------------------------------------------------------------
# MediaPipe Tasks and the Android core on guard models
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_mediapipe_still_classifies_a_guard_model(guarded, variant, tmp_path, val_images):
    if not MP_PYTHON.exists():
        pytest.skip("no mediapipe venv (bash setup.sh --with-mediapipe)")
    model = model_file(guarded, variant)
    images = val_images.images[:4]
    np.save(tmp_path / "images.npy", images)
    proc = subprocess.run([str(MP_PYTHON), str(REPO / "tests" / "mediapipe_client.py"), str(model),
                           str(tmp_path / "images.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(set(r["scores"]) == {"nv", "mel"} for r in results)  # the first head: labels from the metadata zip
    card = load_card(model)
    interp = load_interpreter(model)
    for img, r in zip(images, results):
        s = r["scores"]
        p = predict_p_mel(interp, img[None], p_mel_index=card.p_mel_index, output=card.output.name)[0]
        assert s["mel"] == pytest.approx(p, abs=1e-5) and s["nv"] == pytest.approx(1 - p, abs=1 / 128)
        assert r["top"] == ("mel" if p >= card.threshold else "nv")  # the folded threshold: melkit's decision


def test_jvm_core_matches_python_goldens_of_guard_models(guarded, tmp_path):
    """The Android core reads the guard output as Python does (score bit for bit, in_domain, "not assessed"),
    on goldens with out-of-domain images added."""
    from test_android import CORE, CORE_TESTS, JVM_CP, cp, java_files, need_jvm, run_junit, sh

    from melkit.bundle import check_model
    from melkit.golden import write_goldens

    need_jvm()
    classes = tmp_path / "classes"
    sh("javac", "--release", "8", "-encoding", "UTF-8", "-Xlint:all", "-Werror", "-cp", cp(*JVM_CP), "-d", classes,
       *java_files(CORE, CORE_TESTS))
    dirs, n, n_out = [], 0, 0
    for variant in VARIANTS:
        model = model_file(guarded, variant)
        card, interp = check_model(model)
        index = write_goldens(model, card, interp, tmp_path / variant)
        names = [i["name"] for i in index["images"]]
        assert names[-2:] == ["ood_noise", "ood_text"] and index["domain_threshold"] == card.guard_threshold
        assert all(set(i) >= {"domain_output_raw", "domain_score", "in_domain"} for i in index["images"])
        n += len(names)
        n_out += sum(not i["in_domain"] for i in index["images"])
        assert not next(i for i in index["images"] if i["name"] == "ood_noise")["in_domain"]
        assert all((i["decision"] == "not assessed") == (not i["in_domain"]) for i in index["images"])
        dirs.append(tmp_path / variant)
    r = run_junit(classes, dirs)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert f"golden images checked: {n}" in r.stdout
    assert f"golden domain guard checked: {n} (not assessed: {n_out})" in r.stdout and n_out >= 2
    # negative control: one flipped bit in a guard output fails the JVM test
    index = json.loads((dirs[1] / "index.json").read_text())
    index["images"][0]["domain_output_raw"][0] ^= 1
    (dirs[1] / "index.json").write_text(json.dumps(index))
    r = run_junit(classes, [dirs[1]])
    assert r.returncode != 0 and "domain score" in r.stdout
