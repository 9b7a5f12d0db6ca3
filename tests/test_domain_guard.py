"""The input-domain guard (``melkit convert --domain-guard``, melkit/convert/domain_guard.py) on the tiny run.

The guard is a second output, ``domain_score`` (output 1; the probabilities stay output 0), with a
``domain_guard`` record in the card: predict, bench, the goldens and the Android core read it, and a card whose
guard does not match its model is refused. Models converted without it are as before.

What each test may lean on. The tiny model is trained on this machine, and another CPU trains it differently
(another trajectory, other features), so no verdict here depends on *which* images its guard flags. The tiny
guard is fitted with its threshold at the 0.9 quantile of the validation scores (the release uses 0.995), so
by construction about a tenth of the validation images lie out of its domain: the tests that need an
out-of-domain image (predict, bench, the Android core) take the validation image its own model scores highest,
and an in-domain one from the other end. Its float score must be exactly the Mahalanobis distance that was
fitted (arithmetic, not training). That the guard flags what lies off the training features is tested on
features placed by hand; that a trained guard flags noise, flat frames, text and patterns is tested on the
committed release models, whose weights no machine retrains. How well a release-size model separates
dermoscopy from noise, flat colours, gradients, text and photographs is measured by
``benchmarks/domain_guard.py`` (README there).
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

from melkit.bench.ood import generated
from melkit.cli import main
from melkit.convert import domain_guard as guards
from melkit.convert.converter import ConvertOptions, run_convert
from melkit.convert.metadata import read_metadata
from melkit.core.card import SCHEMA_PATH, ModelCard, load_card, write_card
from melkit.core.litert import (
    io_details,
    load_interpreter,
    predict_p_mel,
    predict_with_domain,
    to_input,
)
from melkit.core.run import load_run, split_records
from melkit.data.pipeline import load_images
from melkit.util.errors import BadInputError

VARIANTS = ("float32", "int8")
QUANTILE = 0.9  # the tiny guard's threshold: a tenth of validation lies out of its domain by construction
RELEASE = REPO / "tflite_models"
MP_PYTHON = Path(os.environ.get("MELKIT_MEDIAPIPE_PYTHON", REPO / ".venv-mediapipe" / "bin" / "python"))


def model_file(out: Path, variant: str) -> Path:
    return out / f"melkit_mnv2_0.35_48_{variant}.tflite"


@pytest.fixture(scope="module")
def guarded(tiny_run, tmp_path_factory):
    """The tiny run converted once with the guard: float32 and int8."""
    def build(out):
        opts = ConvertOptions(variants=list(VARIANTS), out=str(out), calibration_images=40, min_agreement=LOOSE,
                              domain_guard=True, domain_guard_quantile=QUANTILE)
        result = run_convert(tiny_run.out_dir, opts)
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
        assert g["layers"] == list(guards.LAYERS) and g["threshold"] > 0
        assert QUANTILE - 0.05 <= g["val_in_domain_float"] <= QUANTILE + 0.05  # the fitted quantile
        assert g["fitted_on"].startswith("train split (") and "not assessed" in d["decision"]
        assert g["balance"] == "class-source" and f"quantile {QUANTILE:g} " in g["threshold_policy"]
        assert sorted(k.split("/")[-1] for k in g["val_in_domain_by_group"]) == ["mel", "nv"]  # one source
        assert g["agreement"] >= 0.9 and g["val_in_domain"] >= 0.8
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
    guard = guards.fit_on_images(export, train.images, val_images.images, quantile=QUANTILE,
                                 train_groups=guards.group_names(train.records, "class-source"),
                                 val_groups=guards.group_names(val_images.records, "class-source"),
                                 balance="class-source")
    card = load_card(model_file(guarded, "float32"))
    assert guard.threshold == pytest.approx(card.guard_threshold, rel=1e-9)
    expected = guard.scores(guards.pooled_features(export, val_images.images))
    _, got = outputs(model_file(guarded, "float32"), val_images.images)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert np.mean(expected <= guard.threshold) == pytest.approx(guard.val_in_domain)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_guard_keeps_its_quantile_of_validation(guarded, val_images, variant):
    """The model's own in-domain decisions on validation are the fitted ones: the float model's rate is the
    card's, and the int8 model, whose score is quantized, ranks the images as the float one does."""
    path = model_file(guarded, variant)
    card = load_card(path)
    _, val = outputs(path, val_images.images)
    assert np.mean(card.in_domain(val)) == pytest.approx(card.domain_guard["val_in_domain"])
    assert QUANTILE - 0.1 <= np.mean(card.in_domain(val)) < 1.0  # some validation images are out, by construction
    _, ref = outputs(model_file(guarded, "float32"), val_images.images)
    assert np.mean(card.in_domain(val) == card.in_domain(ref)) >= 0.9
    assert np.corrcoef(np.argsort(np.argsort(val)), np.argsort(np.argsort(ref)))[0, 1] > 0.8


def test_a_guard_fitted_on_placed_features_flags_what_lies_off_them():
    """fit() on features whose distribution is known: the score is the ridge-whitened squared distance, the
    threshold the quantile, and points off the training cloud (along a direction with variance, or along one
    the training features never vary in) score far above it while fresh draws of the cloud stay in."""
    rng = np.random.default_rng(0)
    scale = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.0])  # the last feature never varies in training
    train = rng.normal(size=(4000, 6)) * scale + 3.0
    val = rng.normal(size=(1000, 6)) * scale + 3.0
    guard = guards.fit(train, val, layers=("a", "b"), dims=(4, 2), shrinkage=0.1, quantile=0.99)
    assert guard.components == 6 and guard.dims == (4, 2) and guard.n_fit == 4000
    cov = np.cov(train, rowvar=False)
    regularised = cov + 0.1 * np.trace(cov) / 6 * np.eye(6)  # ridge: 0.1 x the mean eigenvalue
    d = val - train.mean(0)
    expected = np.einsum("ij,ij->i", d, np.linalg.solve(regularised, d.T).T) / 6  # Mahalanobis over 6 components
    np.testing.assert_allclose(guard.scores(val), expected, rtol=1e-9)
    assert guard.threshold == pytest.approx(np.quantile(guard.scores(val), 0.99))
    assert guard.val_in_domain == pytest.approx(0.99, abs=0.002)
    fresh = rng.normal(size=(1000, 6)) * scale + 3.0
    assert np.mean(guard.scores(fresh) <= guard.threshold) > 0.97
    off = np.full((2, 6), 3.0)
    off[0, 0] += 40.0  # ten standard deviations along the widest direction
    off[1, 5] += 6.0  # a step where training never moved: only the ridge bounds its weight
    assert (guard.scores(off) > 5 * guard.threshold).all(), guard.scores(off) / guard.threshold


def test_a_class_balanced_guard_keeps_the_minority_class_that_a_plain_one_drops():
    """Placed features: many nevi in a tight cloud, few melanomas spread wider (atypical lesions). Fitted on
    every image alike, the guard's threshold is the nevi's and drops a large share of melanomas; fitted with
    each class weighted alike, and its threshold the highest of the classes' quantiles, each class keeps at
    least the quantile of its validation images, while points off both clouds still score far above it."""
    from melkit.data.records import Record

    rng = np.random.default_rng(1)

    def draw(n_nv, n_mel):
        x = np.r_[rng.normal(size=(n_nv, 5)), rng.normal(size=(n_mel, 5)) * 3.0 + 1.0]
        return x, np.r_[np.zeros(n_nv, int), np.ones(n_mel, int)]

    (train, y_train), (val, y_val) = draw(3000, 300), draw(1500, 150)
    names = {"none": None}
    plain = guards.fit(train, val, ("a",), (5,), quantile=0.99)
    records = lambda y: [Record(path="x.png", image_id=str(i), lesion_id=str(i), label=int(v), source="s")  # noqa: E731
                         for i, v in enumerate(y)]
    for balance in ("class", "class-source"):
        groups = guards.group_names(records(y_train), balance)
        assert sorted(set(groups)) == (["mel", "nv"] if balance == "class" else ["s/mel", "s/nv"])
        names[balance] = guards.fit(train, val, ("a",), (5,), quantile=0.99, train_groups=groups,
                                    val_groups=guards.group_names(records(y_val), balance), balance=balance)
    balanced = names["class"]
    dropped = lambda g, y: np.mean(g.scores(val[y_val == y]) > g.threshold)  # noqa: E731
    assert dropped(plain, 1) > 0.05 > 0.01 > dropped(plain, 0)  # the plain guard drops melanomas (11 %), no nevus
    assert dropped(balanced, 1) <= 0.02 and dropped(balanced, 0) <= 0.02  # the quantile of each, to one image
    assert balanced.val_in_domain_by_group == {"mel": pytest.approx(1 - dropped(balanced, 1)),
                                               "nv": pytest.approx(1 - dropped(balanced, 0))}
    assert names["class-source"].threshold == pytest.approx(balanced.threshold)  # one source: the same fit
    off = np.full((1, 5), 40.0)
    assert balanced.scores(off)[0] > 5 * balanced.threshold
    with pytest.raises(BadInputError, match="unknown guard balance"):
        guards.group_names(records(y_val), "source")


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_released_guard_flags_noise_flat_frames_text_and_patterns(variant):
    """Release 2.1.0's guard (committed weights: the same verdict on every machine) leaves every generated
    image of these groups out of its domain with margin (lowest score about 1.4x its threshold, measured);
    smooth gradients, which the int8 score puts right at its threshold, are left to benchmarks/domain_guard.py."""
    path = RELEASE / f"melkit_mnv2_1_224_{variant}.tflite"
    card = load_card(path)
    images = [(n, rgb) for g, n, rgb in generated(groups=("noise", "flat", "text", "pattern"))]
    q = np.stack([card.preprocessing.apply(rgb) for _, rgb in images])
    _, scores = outputs(path, q)
    ratio = scores / card.guard_threshold
    assert len(images) == 73 and ratio.min() > 1.25, [(n, r) for (n, _), r in zip(images, ratio) if r <= 1.25]


def _extremes(path, val_images):
    """The validation images that ``path``'s own guard scores highest and lowest: (file, score) each."""
    _, scores = outputs(path, val_images.images)
    hi, lo = int(np.argmax(scores)), int(np.argmin(scores))
    return (val_images.records[hi].path, scores[hi]), (val_images.records[lo].path, scores[lo])


def _png(path, rgb):
    Image.fromarray(rgb).save(path)
    return path


def test_predict_says_not_assessed_with_exit_0(guarded, converted, val_images, tmp_path):
    model = model_file(guarded, "int8")
    card = load_card(model)
    (atypical, top), (lesion, _) = _extremes(model, val_images)  # the least and the most typical
    assert top > card.guard_threshold  # a tenth of validation lies out of the tiny guard's domain
    r = CliRunner().invoke(main, ["predict", "--json", str(model), str(atypical), str(lesion)])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("{"):])
    assert result["domain_threshold"] == card.guard_threshold
    out, inside = result["predictions"]
    folded = {"p_output": None} if card.threshold_fold else {}  # no score at all, raw or shown
    # nor a borderline mark or a risk band: they describe a score
    folded.update({"borderline": None} if card.borderline else {})
    folded.update({"risk_band": None, "likelihood_ratio": None} if card.likelihood_ratios else {})
    assert out == {"image": str(atypical), "p_mel": None, "decision": "not_assessed",
                   "meaning": "not assessed: this does not look like a dermoscopic image of a skin lesion",
                   **folded, "in_domain": False, "domain_score": pytest.approx(out["domain_score"])}
    assert out["domain_score"] > card.guard_threshold
    assert inside["in_domain"] is True and inside["domain_score"] <= card.guard_threshold
    assert inside["decision"] in ("nv", "mel") and 0 <= inside["p_mel"] <= 1
    r = CliRunner().invoke(main, ["predict", str(model), str(atypical), str(lesion)])
    assert r.exit_code == 0 and "not assessed: this does not look like" in r.output and "nevus-like" in r.output \
        or "melanoma-suspicious" in r.output, r.output
    # a model without the guard: rows exactly as before
    noise = _png(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    plain = model_file(converted[1], "int8")
    r = CliRunner().invoke(main, ["predict", "--json", str(plain), str(noise)])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output[r.output.index("{"):])
    assert "domain_threshold" not in result
    plain_card = load_card(plain)
    folded = {"p_output"} if plain_card.threshold_fold else set()  # the raw output beside the shown P(mel)
    folded |= {"borderline"} if plain_card.borderline else set()
    folded |= {"risk_band", "likelihood_ratio"} if plain_card.likelihood_ratios else set()
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
        assert g["threshold"] == load_card(out / entry["path"]).guard_threshold  # the path is the report's
        n_mel = report["images"]["n_mel"]
        assert round(g["not_assessed_mel"] * n_mel + g["not_assessed_nv"] * (g["n"] - n_mel)) == g["n"] - g["n_in_domain"]
    text = (out / "report.md").read_text()
    assert "## Input-domain guard" in text and "mel not assessed %" in text and "input-domain guard" in r.output


def test_the_guard_summary_counts_melanomas_and_nevi_apart_per_source():
    """bench's domain summary: the share of each class not assessed, overall and per source."""
    from types import SimpleNamespace

    from melkit.bench.report import domain_summary

    card = SimpleNamespace(guard_threshold=1.0, in_domain=lambda s: np.asarray(s) <= 1.0)
    scores = [0.5, 2.0, 0.5, 0.5, 3.0, 0.5, 0.5, 0.5]
    labels = [1, 1, 0, 0, 0, 0, 1, 0]
    sources = ["a", "a", "a", "a", "b", "b", "b", "b"]
    g = domain_summary(card, scores, [f"i{k}" for k in range(8)], labels, sources)
    assert (g["not_assessed_mel"], g["not_assessed_nv"]) == (pytest.approx(1 / 3), pytest.approx(1 / 5))
    assert g["by_source"] == {"a": {"not_assessed_mel": 0.5, "not_assessed_nv": 0.0},
                              "b": {"not_assessed_mel": 0.0, "not_assessed_nv": pytest.approx(1 / 3)}}
    assert [x["image_id"] for x in g["not_assessed"]] == ["i4", "i1"]
    one = domain_summary(card, scores[:4], ["x"] * 4, [0] * 4, ["a"] * 4)
    assert one["not_assessed_mel"] is None and "by_source" not in one


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


def test_jvm_core_matches_python_goldens_of_guard_models(guarded, val_images, tmp_path):
    """The Android core reads the guard output as Python does (score bit for bit, in_domain, "not assessed"),
    on goldens with out-of-domain images added: the default set (its noise and text) and the validation images
    each model scores highest (out of the tiny guard's domain by construction) and lowest."""
    from test_android import (
        CORE,
        CORE_TESTS,
        JVM_CP,
        cp,
        java_files,
        need_jvm,
        run_junit,
        sh,
    )

    from melkit.release.bundle import check_model
    from melkit.release.golden import write_goldens

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
        (atypical, _), (typical, _) = _extremes(model, val_images)
        picked = write_goldens(model, card, interp, tmp_path / f"{variant}-val", images=[atypical, typical])
        for golden in (index, picked):
            assert all(set(i) >= {"domain_output_raw", "domain_score", "in_domain"} for i in golden["images"])
            assert all((i["decision"] == "not assessed") == (not i["in_domain"]) for i in golden["images"])
            n += len(golden["images"])
            n_out += sum(not i["in_domain"] for i in golden["images"])
        assert [i["in_domain"] for i in picked["images"]] == [False, True]
        dirs += [tmp_path / variant, tmp_path / f"{variant}-val"]
    r = run_junit(classes, dirs)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert f"golden images checked: {n}" in r.stdout
    assert f"golden domain guard checked: {n} (not assessed: {n_out})" in r.stdout and n_out >= 2
    # negative control: one flipped bit in a guard output fails the JVM test
    int8 = tmp_path / "int8"
    index = json.loads((int8 / "index.json").read_text())
    index["images"][0]["domain_output_raw"][0] ^= 1
    (int8 / "index.json").write_text(json.dumps(index))
    r = run_junit(classes, [int8])
    assert r.returncode != 0 and "domain score" in r.stdout
