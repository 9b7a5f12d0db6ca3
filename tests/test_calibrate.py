"""``melkit calibrate``: a new threshold (and display temperature) from a user's own labelled images.

Most tests run the committed release models (tflite_models/, always in the repository) on the session's
small synthetic set: no training. One test uses the session's converted tiny int8 model (it trains it once
if no other test has); one runs the real ISIC 2017 split and skips without ../shared.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, SHARED, need

from melkit.bench.inputs import open_tflite
from melkit.bench.predict import run_predict
from melkit.cli import main
from melkit.core.card import SCHEMA_PATH, ModelCard, load_card, write_card
from melkit.core.metrics import bootstrap_decision_cis
from melkit.core.probability import shown_p_mel
from melkit.core.temperature import fit_temperature
from melkit.core.threshold_policy import choose_threshold
from melkit.release.calibrate import CalibrateOptions, run_calibrate
from melkit.release.calibrate_card import output_levels, snap_to_grid
from melkit.release.calibrate_sets import MIN_PER_CLASS
from melkit.util.errors import BadInputError

RELEASE = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
RELEASE_FLOAT = REPO / "tflite_models" / "melkit_mnv2_1_224_float32.tflite"
ISIC2017 = SHARED / "data" / "isic2017-nv-mel"


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("MELKIT_QUIET", "1")  # no progress bars in the captured stderr


def run(*args):
    return CliRunner().invoke(main, ["calibrate", *map(str, args)], catch_exceptions=False)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder) -> dict:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


def copy_release(dest, model=RELEASE):
    """The release model, its card and labels.txt in a folder of their own."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in (model, model.with_suffix(".json"), model.parent / "labels.txt"):
        shutil.copy(src, dest / src.name)
    return dest / model.name


def synth_labels(synth_dir) -> dict:
    with open(synth_dir / "metadata.csv", newline="") as f:
        return {r["image_id"]: r["dx"] for r in csv.DictReader(f)}


def class_folders(synth_dir, dest, n_nv, n_mel):
    """nv/ and mel/ folders of links to the synthetic images (the class-folder layout)."""
    labels = synth_labels(synth_dir)
    want = {"nv": n_nv, "mel": n_mel}
    for dx in want:
        if want[dx]:
            (dest / dx).mkdir(parents=True)
    for image in sorted((synth_dir / "images").iterdir()):
        dx = labels.get(image.stem)
        if dx in want and want[dx] > 0:
            (dest / dx / image.name).symlink_to(image)
            want[dx] -= 1
    return dest


def card_dict(path) -> dict:
    return json.loads(path.read_text())


def check_halfway(card: ModelCard):
    """The threshold is exactly halfway between two adjacent values of the quantized output."""
    q = card.output.quantization
    k = card.threshold / q.scale + q.zero_point  # output steps, as a real number
    assert math.isclose(k - math.floor(k), 0.5, abs_tol=1e-9), (card.threshold, k)
    levels = output_levels(card)
    below, above = levels[levels < card.threshold][-1], levels[levels > card.threshold][0]
    assert math.isclose(card.threshold, (below + above) / 2, abs_tol=1e-15)
    assert math.isclose(above - below, q.scale, rel_tol=1e-9)


def check_card_file(path, validator=None):
    """The written card validates, round-trips byte for byte and reads back as a ModelCard."""
    d = card_dict(path)
    card = ModelCard.from_json(d)
    assert card.to_json() == d
    if validator is not None:
        validator.validate(d)
    return card


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


# --------------------------------------------------------------------------- the grid, the temperature, the CIs


@pytest.mark.parametrize("dtype, zero_point", [("uint8", 0), ("int8", -128)])
def test_snap_to_grid_keeps_every_decision_and_lies_halfway(dtype, zero_point):
    card = ModelCard.from_json(card_dict(RELEASE.with_suffix(".json")))
    out = card.output
    card = ModelCard.from_json({**card.to_json(), "output": {**out.to_json(), "dtype": dtype,
                                                             "quantization": {"scale": 1 / 256,
                                                                              "zero_point": zero_point}}})
    levels = output_levels(card)
    assert len(levels) == 256 and levels[0] == 0 and levels[-1] == 255 / 256
    for chosen in (levels[37], levels[37] + 1e-3, 0.2785167336168, levels[-1], 1.0, 1e-9):
        new, grid = snap_to_grid(chosen, levels, 1 / 256)
        assert grid["halfway"] and abs(new - chosen) <= 0.5 / 256 + 1e-15 and grid["moved"] == new - chosen
        assert np.array_equal(levels >= chosen, levels >= new)  # not one possible answer decided differently
        assert not np.any(levels == new) and math.isclose((new * 256) % 1, 0.5)
    new, grid = snap_to_grid(0.0, levels, 1 / 256)  # every image melanoma: nothing below to stay above
    assert new == 0.0 and not grid["halfway"]
    assert snap_to_grid(0.3, None) == (0.3, None)  # float output: as chosen


def test_temperature_is_kept_only_when_it_helps_out_of_sample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    z = (2 * y - 1) * 1.0 + rng.normal(0, 1, 400)  # well calibrated at T = 1 ...
    over = 1 / (1 + np.exp(-4 * z))  # ... made overconfident: T = 4 undoes it
    fit = fit_temperature(y, over, 1e-6)
    # the true log-odds given z are 2 z (two unit normals at -1 and +1): T = 4 / 2
    assert fit["kept"] and 1.6 < fit["fitted"] < 2.5 and fit["nll_after"] < fit["nll_before"]
    assert fit["cv_nll_after"] < fit["cv_nll_before"]
    noise = rng.uniform(0, 1, 60)  # no signal: a temperature fitted to it does not carry over
    fit = fit_temperature(rng.integers(0, 2, 60), noise, 1e-6)
    assert fit["nll_after"] <= fit["nll_before"] + 1e-9
    assert fit["kept"] == (fit["nll_after"] < fit["nll_before"] and fit["cv_nll_after"] < fit["cv_nll_before"])


def test_bootstrap_decision_cis_pair_the_thresholds():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    same, moved = bootstrap_decision_cis(y, p, [0.5, 0.55], n_boot=300, seed=3)
    again = bootstrap_decision_cis(y, p, [0.5, 0.55], n_boot=300, seed=3)
    assert [same, moved] == again and "change" not in same
    for k in ("sensitivity", "specificity", "balanced_accuracy"):
        assert same[k][0] <= same[k][1] and moved["change"][k][0] <= moved["change"][k][1]
    assert moved["change"]["sensitivity"][1] <= 0 <= moved["change"]["specificity"][0]  # a higher threshold
    zero = bootstrap_decision_cis(y, p, [0.5, 0.5], n_boot=100)[1]["change"]
    assert all(v == [0.0, 0.0] for v in zero.values())
    with pytest.raises(BadInputError):
        bootstrap_decision_cis(y, p, [float("nan")])


# --------------------------------------------------------------------------- the command


def test_calibrate_the_int8_release_on_a_synthetic_set(synth_dir, tmp_path, validator):
    model = copy_release(tmp_path / "in")
    before = listing(model.parent)
    out = tmp_path / "out"
    r = run(model, "--data", synth_dir, "--out", out, "--bootstrap", "200")
    assert r.exit_code == 0, r.output
    assert "halfway between the outputs" in r.stdout and "sensitivity" in r.stdout and "[" in r.stdout
    assert listing(model.parent) == before  # the input is untouched
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [model.name, model.with_suffix(".json").name, "labels.txt", "calibration.json", "predictions.csv",
         ".melkit-output"])  # the marker: a later calibrate --force may replace this folder
    assert (out / model.name).read_bytes() == model.read_bytes()  # a byte copy
    assert (out / "labels.txt").read_bytes() == (model.parent / "labels.txt").read_bytes()
    card = check_card_file(out / model.with_suffix(".json").name, validator)
    assert card == load_card(out / model.name) and card.sha256 == digest(model)
    check_halfway(card)
    old = load_card(model)
    report = json.loads((out / "calibration.json").read_text())
    # the policy's threshold, chosen on what the model answers for these images
    rows = list(csv.DictReader(open(out / "predictions.csv", newline="")))
    y = np.array([r["label"] == "mel" for r in rows], int)
    p = np.array([float(r["p_mel"]) for r in rows])
    assert report["threshold"]["chosen"] == pytest.approx(choose_threshold(y, p, "youden"), abs=1e-6)
    assert card.threshold == report["threshold"]["after"] and report["threshold"]["before"] == old.threshold
    assert abs(card.threshold - report["threshold"]["chosen"]) <= 0.5 / 256
    assert not np.any(np.isclose(p, card.threshold, atol=1e-7))  # no answer sits on the threshold
    assert [r["decision_after"] for r in rows] == ["mel" if v >= card.threshold else "nv" for v in p]
    c = card.calibration
    assert c["policy"] == "youden" and c["n"] == len(rows) == card.validation["n"]
    assert card.threshold_policy == f"youden on {synth_dir.name}"
    assert c["previous"]["threshold"] == old.threshold and c["previous"]["validation"] == old.validation
    assert c["set"]["after"]["sensitivity"] == card.validation["sensitivity"]
    for side in ("before", "after"):
        for k in ("sensitivity", "specificity", "balanced_accuracy"):
            lo, hi = c["set"][side][f"{k}_ci"]
            assert lo <= c["set"][side][k] <= hi
    assert report["calibration_set"]["decisions_changed"] == int(np.sum((p >= old.threshold) != (p >= card.threshold)))
    # everything else of the card as it was, but what is measured around the threshold: the borderline band moved
    # with it (the same logit half-width), the risk bands measured again on this set
    moved = ("threshold", "threshold_policy", "validation", "borderline", "likelihood_ratios")
    same = {k: v for k, v in old.to_json().items() if k not in moved}
    assert {k: v for k, v in card.to_json().items() if k in same} == same
    assert card.borderline["logit_half_width"] == old.borderline["logit_half_width"]
    assert card.threshold in card.risk_edges and card.likelihood_ratios["measured_on"] != "validation"
    # predict reads the new card: the new threshold
    image = sorted((synth_dir / "images").iterdir())[0]
    assert run_predict(out / model.name, [image]).threshold == card.threshold
    # the same OUT again: refused without --force, replaced with it
    r = run(model, "--data", synth_dir, "--out", out, "--bootstrap", "50")
    assert r.exit_code == 2 and "exists" in r.stderr
    r = run(model, "--data", synth_dir, "--out", out, "--bootstrap", "50", "--policy", "sensitivity:0.9", "--force")
    assert r.exit_code == 0, r.output
    forced = load_card(out / model.name)
    check_halfway(forced)
    assert forced.threshold_policy.startswith("sensitivity:0.9 on ") and forced.calibration["set"]["after"][
        "sensitivity"] >= 0.9
    assert listing(model.parent) == before and not (tmp_path / "out.partial").exists()


def test_a_float_model_keeps_the_policys_threshold_and_a_temperature_only_maps_the_shown_probability(
        synth_dir, tmp_path, validator):
    out = tmp_path / "out"
    result = run_calibrate(CalibrateOptions(model=str(RELEASE_FLOAT), out=str(out), data=[str(synth_dir)],
                                        policy="specificity:0.8", n_boot=100), echo=lambda _: None)
    card = check_card_file(out / RELEASE_FLOAT.with_suffix(".json").name, validator)
    th = result.report["threshold"]
    assert th["grid"] is None and card.threshold == th["after"] == th["chosen"]
    assert (out / RELEASE_FLOAT.name).read_bytes() == RELEASE_FLOAT.read_bytes()
    temp = result.report["temperature"]
    assert temp is not None and card.calibration["temperature"] == (temp["fitted"] if temp["kept"] else None)
    if temp["kept"]:  # the decision is the raw P(mel) against the threshold: the shown one is only displayed
        t = temp["fitted"]
        zt = card.threshold_fold["logit"] if card.threshold_fold else 0.0  # a folded card: unfolded first
        assert card.calibration["threshold_shown"] == pytest.approx(
            1 / (1 + math.exp(-(math.log(card.threshold / (1 - card.threshold)) + zt) / t)))
    assert result.report["calibration_set"]["after"]["specificity"] >= 0.8
    # --no-temperature: none fitted, none in the card
    r = run(RELEASE_FLOAT, "--data", synth_dir, "--out", tmp_path / "plain", "--no-temperature", "--bootstrap", "50")
    assert r.exit_code == 0, r.output
    plain = load_card(tmp_path / "plain" / RELEASE_FLOAT.name)
    assert plain.calibration["temperature"] is None and plain.calibration["temperature_fit"] is None


def test_an_evaluation_set_and_the_metadata_split_column(tmp_path):
    from melkit.data.synth import write_synth_dataset

    data = tmp_path / "d"
    write_synth_dataset(data, n_lesions=120, mel_fraction=0.4, seed=4, split_fractions=(0.2, 0.4, 0.4))
    r = run(RELEASE, "--data", data, "--split", "val", "--eval-data", data, "--eval-split", "test",
            "--out", tmp_path / "out", "--bootstrap", "50")
    if "at least" in r.stderr:  # the draw gave a split too few of a class: the refusal is the right answer
        pytest.skip(r.stderr)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "calibration.json").read_text())
    rows = list(csv.DictReader(open(data / "metadata.csv", newline="")))
    n = {s: sum(r["split"] == s for r in rows) for s in ("val", "test")}
    assert report["calibration_set"]["n"] == n["val"] and report["evaluation_set"]["n"] == n["test"]
    assert "evaluation set" in r.stdout and "split val (metadata)" in r.stdout
    assert load_card(tmp_path / "out" / RELEASE.name).threshold_policy == "youden on d val"


def refusal(r, message):
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("melkit: error: "), r.stderr
    assert message in lines[0], lines[0]


def test_refusals_exit_2_with_one_line(synth_dir, tmp_path):
    model = copy_release(tmp_path / "in")
    before = listing(model.parent)
    few_mel = class_folders(synth_dir, tmp_path / "few", MIN_PER_CLASS + 5, MIN_PER_CLASS - 1)
    only_nv = class_folders(synth_dir, tmp_path / "nv_only", MIN_PER_CLASS + 5, 0)
    broken = class_folders(synth_dir, tmp_path / "broken", MIN_PER_CLASS, MIN_PER_CLASS)
    victim = sorted((broken / "mel").iterdir())[2]
    victim.unlink()
    victim.write_bytes(b"\xff\xd8\xff" + b"not really a jpeg" * 20)  # corrupt
    (broken / "nv" / "notes.png").write_text("a text file with an image's name")  # not an image at all
    bare = tmp_path / "bare" / model.name
    bare.parent.mkdir()
    shutil.copy(model, bare)
    changed = copy_release(tmp_path / "changed")
    changed.write_bytes(changed.read_bytes() + b"\0")
    cases = [
        ([few_mel], "19 melanomas"),
        ([only_nv], "only nevi"),
        ([broken], "unreadable image"),
        ([synth_dir, "--policy", "magic"], "unknown threshold policy"),
        ([synth_dir, "--eval-split", "test"], "need --eval-data"),
        ([synth_dir, "--split", "val"], "needs a split file"),  # the synthetic set has no split column
    ]
    for args, message in cases:
        out = tmp_path / "out"
        refusal(run(model, "--data", *args, "--out", out), message)
        assert not out.exists() and not (tmp_path / "out.partial").exists()
    refusal(run(bare, "--data", synth_dir, "--out", tmp_path / "o"), "no model card")
    refusal(run(changed, "--data", synth_dir, "--out", tmp_path / "o"), "does not match its card")
    refusal(run(model.parent, "--data", synth_dir, "--out", tmp_path / "o"), "is a folder")
    for out in (model.parent, tmp_path):  # the input's folder, or one that holds it: even with --force
        refusal(run(model, "--data", synth_dir, "--out", out, "--force"), "holds the input model")
    refusal(run(model, "--out", tmp_path / "o"), "no calibration images")
    assert listing(model.parent) == before and not (tmp_path / "o").exists()


def test_calibration_field_of_the_card(validator, tmp_path):
    d = card_dict(RELEASE.with_suffix(".json"))
    record = {"fitted_on": "my set", "n": 60, "policy": "youden", "temperature": 1.5, "anything": [1, 2]}
    with_it = {**d, "calibration": record}
    validator.validate(with_it)
    card = ModelCard.from_json(with_it)
    assert card.calibration == record and card.to_json() == with_it
    keys = list(card.to_json())
    assert keys[-1] == "conversion" and keys.index("calibration") < keys.index("conversion")
    write_card(tmp_path / "c.json", card)
    assert ModelCard.from_json(json.loads((tmp_path / "c.json").read_text())) == card
    assert ModelCard.from_json(d).calibration is None and "calibration" not in ModelCard.from_json(d).to_json()
    for bad, message in [({**record, "temperature": 0}, "must be positive or null"),
                         ({**record, "temperature": "1.5"}, "'calibration.temperature' must be a number"),
                         ({k: v for k, v in record.items() if k != "n"}, "'calibration.n' is missing"),
                         ("youden", "'calibration' must be an object")]:
        assert not validator.is_valid({**d, "calibration": bad})
        with pytest.raises(BadInputError, match=message):
            ModelCard.from_json({**d, "calibration": bad})


def test_calibrate_a_converted_tiny_int8_model(converted, tiny_data, tmp_path):
    result, folder = converted
    model = next(p for p in sorted(folder.glob("*.tflite")) if load_card(p).variant == "int8")
    before = digest(model)
    r = run(model, "--data", tiny_data, "--out", tmp_path / "out", "--bootstrap", "100")
    assert r.exit_code == 0, r.output
    card = load_card(tmp_path / "out" / model.name)
    assert card.output.dtype == "uint8"  # convert's default output: a grid of 1/256
    check_halfway(card)
    assert digest(model) == before == digest(tmp_path / "out" / model.name)
    assert open_tflite(tmp_path / "out" / model.name).threshold == card.threshold
    # convert folded the threshold in: the fold stays, the new threshold applies to the raw output, and what
    # is shown is unfolded (then tempered) as predict and the app show it
    assert card.threshold_fold == load_card(model).threshold_fold is not None
    assert ("no longer equals melkit's decision" in r.output) == (card.threshold != 0.5)
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    raw = np.array([float(x["p_mel"]) for x in rows])
    # both columns are rounded to 6 decimals: the shown value lies between those of raw -+ half a unit, as
    # steep as the unfolding and the temperature make the map on this machine's tiny model
    ends = np.sort([shown_p_mel(card, raw - 5e-7), shown_p_mel(card, raw + 5e-7)], axis=0)
    shown = np.array([float(x["p_shown"]) for x in rows])
    assert ((ends[0] - 5e-7 - 1e-12 <= shown) & (shown <= ends[1] + 5e-7 + 1e-12)).all()
    assert [x["decision_after"] for x in rows] == ["mel" if v >= card.threshold else "nv" for v in raw]
    # The threshold-centred records follow the new threshold: the borderline band keeps its logit half-width
    # around it, the risk bands are measured again on this set (one edge at the new threshold).
    old = load_card(model)
    assert card.borderline["low"] <= card.threshold <= card.borderline["high"]
    assert card.borderline["logit_half_width"] == old.borderline["logit_half_width"]
    assert card.threshold in card.risk_edges and card.likelihood_ratios["by"] == "melkit calibrate"


# --------------------------------------------------------------------------- real data


def test_isic2017_val_to_test_with_the_release_model(tmp_path, validator):
    data = need(ISIC2017)
    meta = data / "metadata.csv"
    before = digest(RELEASE)
    out = tmp_path / "out"
    args = [RELEASE, "--data", data, "--split-csv", meta, "--split", "val", "--eval-data", data,
            "--eval-split-csv", meta, "--eval-split", "test", "--out", out]
    # ISIC 2017's val split is the release's own val split (tflite_models/split.csv): refused, then allowed
    refusal(run(*args), "106 of 106 images of the calibration set (--data) are in the model's training split")
    r = run(*args, "--allow-overlap")
    assert r.exit_code == 0, r.output
    assert card_dict(out / RELEASE.with_suffix(".json").name)["calibration"]["overlap"]["calibration_set"] == {
        "images": 106, "in_training_split": 106, "val": 106}
    assert digest(RELEASE) == before == digest(out / RELEASE.name)
    card = check_card_file(out / RELEASE.with_suffix(".json").name, validator)
    check_halfway(card)
    assert card.threshold_policy == "youden on isic2017-nv-mel val"
    c = card.calibration
    assert (c["n"], c["n_mel"], c["n_nv"]) == (106, 30, 76)
    ev = c["evaluation"]
    assert (ev["n"], ev["n_mel"], ev["n_nv"]) == (517, 118, 399)
    for m in (c["set"], ev):
        assert 0.5 < m["auc"] < 1
        for side in ("before", "after"):
            assert m[side]["balanced_accuracy_ci"][0] <= m[side]["balanced_accuracy"] \
                <= m[side]["balanced_accuracy_ci"][1]
    assert c["set"]["after"]["balanced_accuracy"] >= c["set"]["before"]["balanced_accuracy"]  # Youden, on its set
