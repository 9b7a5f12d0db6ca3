"""What runs is what was checked, and what a model has seen is not taken for new evidence (issue 24).

- A model is read once: the bytes checked against the card are the ones every interpreter is built from, the
  ones bundle and calibrate copy, and the ones bench's latency child and LiteRT's own benchmark measure. Each
  test replaces the file on disk with another model right after the check (as a ``melkit bundle`` into the
  same folder would) and finds the checked model's answers, or its bytes, in the result.
- A card whose threshold is 0 or 1 (every image one class) is refused by every reader: predict, bench,
  calibrate's own result, and the Android core (ModelCard.java, run on the JVM).
- calibrate refuses images the model's split.csv lists as train or val, and an evaluation set that shares
  images with the calibration set (exit 2, saying how many), unless --allow-overlap, which warns and records it.
- predict streams its images: the same answers as one batch, an unreadable image still exit 2 with nothing
  printed.

The models are the committed release ones (tflite_models/, 224 px): no training.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import REPO, cli, copy_model
from conftest import one_line_error as one_line_of
from PIL import Image

import melkit.bench.predict as predict_mod
import melkit.release.bundle as bundle_mod
import melkit.release.calibrate as calibrate_mod
from melkit.bench import evaluate, latency, litert_tool
from melkit.bench.inputs import open_model, open_tflite
from melkit.bench.predict import contract_images, run_predict
from melkit.core.card import SCHEMA_PATH, ModelCard, load_card, sha256
from melkit.util.errors import BadInputError

MODELS = REPO / "tflite_models"
RELEASE_INT8 = MODELS / "melkit_mnv2_1_224_int8.tflite"  # 2.1.0: threshold folded in, domain guard
RELEASE_FLOAT = MODELS / "melkit_mnv2_1_224_float32.tflite"
PREVIOUS_INT8 = MODELS / "previous-1.1.0" / "melkit_mnv2_1_224_int8.tflite"  # 1.1.0: plain, threshold 0.279


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("MELKIT_QUIET", "1")  # no progress bars in the captured stderr


def one_line_error(r, *words):
    """conftest's, and stdout empty: nothing was answered."""
    line = one_line_of(r, *words)
    assert r.stdout == ""
    return line


def replace_file(path, data: bytes):
    """Another model at ``path``, put there atomically (as bundle and every melkit writer publish)."""
    tmp = path.with_name(path.name + ".swap")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def swap_after_first_call(monkeypatch, module, name, path, data):
    """Wrap ``module.name`` so that its first call replaces the file at ``path`` with ``data``: a step every
    command takes after checking the model and before (in the old code) opening it again."""
    real = getattr(module, name)
    swapped = []

    def wrapper(*a, **kw):
        if not swapped:
            replace_file(path, data)
            swapped.append(True)
        return real(*a, **kw)

    monkeypatch.setattr(module, name, wrapper)
    return swapped


def some_images(synth_dir, n):
    return sorted((synth_dir / "images").iterdir())[:n]


# --------------------------------------------------------------------------- 1. read once


def test_predict_answers_with_the_model_its_card_was_checked_against(synth_dir, tmp_path, monkeypatch):
    """The old 1.1.0 model is checked against its card, then the 2.1.0 model replaces the file while the
    images are decoded: the answers are still 1.1.0's (before the fix the 2.1.0 file ran under 1.1.0's card,
    reading its domain score as P(mel))."""
    model = copy_model(PREVIOUS_INT8, tmp_path / "m")
    images = some_images(synth_dir, 4)
    expected = run_predict(model, images)
    other = run_predict(RELEASE_INT8, images)
    assert [r["p_mel"] for r in other.predictions] != [r["p_mel"] for r in expected.predictions]

    swapped = swap_after_first_call(monkeypatch, predict_mod, "read_rgb", model, RELEASE_INT8.read_bytes())
    r = cli("predict", model, *images, "--json")
    assert swapped and sha256(model.read_bytes()) == sha256(RELEASE_INT8.read_bytes())  # it did change mid-run
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == expected.to_dict()


def test_bundle_copies_and_measures_the_checked_bytes(synth_dir, tmp_path, monkeypatch):
    """The file replaced after bundle's check (while the app's other assets are kept): the app gets the model,
    card and goldens that were checked, never the new file."""
    model = copy_model(PREVIOUS_INT8, tmp_path / "m")
    checked = model.read_bytes()
    card_bytes = model.with_suffix(".json").read_bytes()
    app = tmp_path / "app"
    (app / "app" / "src" / "main").mkdir(parents=True)
    (app / "app" / "src" / "main" / "AndroidManifest.xml").write_text("<manifest/>")
    swapped = swap_after_first_call(monkeypatch, bundle_mod, "keep_the_rest", model, RELEASE_INT8.read_bytes())
    r = cli("bundle", model, "--app", app)
    assert swapped and r.exit_code == 0, r.output
    assets = app / bundle_mod.ASSETS
    assert sha256((assets / model.name).read_bytes()) == sha256(checked)  # digests: pytest diffs bytes slowly
    assert (assets / model.with_suffix(".json").name).read_bytes() == card_bytes
    index = json.loads((app / bundle_mod.GOLDEN / "index.json").read_text())
    assert index["model_sha256"] == sha256(checked)
    # the goldens' outputs are the checked model's: the same P(mel) predict gives for the same image
    entry = index["images"][0]
    source = app / bundle_mod.GOLDEN / entry["source"]
    assert entry["p_mel"] == pytest.approx(run_predict(PREVIOUS_INT8, [source]).predictions[0]["p_mel"],
                                           abs=1e-12)


def test_calibrate_measures_and_copies_the_checked_bytes(synth_dir, tmp_path, monkeypatch):
    model = copy_model(PREVIOUS_INT8, tmp_path / "m")
    checked = model.read_bytes()
    swapped = swap_after_first_call(monkeypatch, calibrate_mod, "load_images", model, RELEASE_INT8.read_bytes())
    out = tmp_path / "out"
    r = cli("calibrate", model, "--data", synth_dir, "--out", out, "--bootstrap", "20", "--no-temperature")
    assert swapped and r.exit_code == 0, r.output
    assert sha256((out / model.name).read_bytes()) == sha256(checked)
    assert load_card(out / model.name).sha256 == sha256(checked)
    rows = {row["image_id"]: float(row["p_mel"]) for row in csv.DictReader(open(out / "predictions.csv"))}
    images = some_images(synth_dir, 3)
    want = run_predict(PREVIOUS_INT8, images).predictions  # a plain card: p_mel is the raw output
    assert [rows[p.stem] for p in images] == pytest.approx([w["p_mel"] for w in want], abs=1e-6)


def test_open_tflite_keeps_the_checked_bytes_and_builds_from_them(tmp_path):
    model = copy_model(PREVIOUS_INT8, tmp_path / "m")
    ref = open_tflite(model)
    assert sha256(ref.data) == sha256(PREVIOUS_INT8.read_bytes()) and ref.size_bytes == len(ref.data)
    model.unlink()  # gone from disk: whatever runs now runs from the checked bytes
    image = np.full((1, 224, 224, 3), 128, np.uint8)
    p, score = evaluate.tflite_outputs(ref, image)
    assert score is None and 0.0 <= p[0] <= 1.0


def test_latency_child_and_litert_benchmark_measure_the_checked_bytes(tmp_path):
    """bench's latency child and LiteRT's own benchmark run a private copy of the checked bytes; the path
    only names the model (here it no longer exists)."""
    data = PREVIOUS_INT8.read_bytes()
    gone = tmp_path / "gone.tflite"
    image = np.full((224, 224, 3), 128, np.uint8)
    result = latency.measure_in_child(gone, image, 1, 2, 0, [], False, data=data)
    assert result["timed"]["n"] == 2
    if litert_tool.available():
        out = litert_tool.run(gone, 1, 2, 0, data=data)
        assert "error" not in out, out
        assert f"--model={gone}" in out["command"] and str(tmp_path) in out["command"]


# --------------------------------------------------------------------------- 2. a degenerate threshold


def degenerate_copy(tmp_path, threshold, model=RELEASE_FLOAT):
    path = copy_model(model, tmp_path / f"t{threshold}")
    card = json.loads(path.with_suffix(".json").read_text())
    card["threshold"] = threshold
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


@pytest.mark.parametrize("threshold", [0, 1, 0.0, 1.0])
def test_a_card_that_calls_every_image_one_class_is_refused(threshold):
    d = json.loads(RELEASE_FLOAT.with_suffix(".json").read_text())
    d.pop("likelihood_ratios", None)  # its edges sit at the release's own threshold
    with pytest.raises(BadInputError, match=r"'threshold' must be a probability strictly between 0 and 1"):
        ModelCard.from_json({**d, "threshold": threshold})
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    assert not validator.is_valid({**d, "threshold": threshold})
    assert validator.is_valid({**d, "threshold": 1e-6}) and ModelCard.from_json({**d, "threshold": 1e-6})


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_predict_and_bench_refuse_a_degenerate_card(synth_dir, tmp_path, threshold):
    model = degenerate_copy(tmp_path, threshold)
    image = some_images(synth_dir, 1)[0]
    one_line_error(cli("predict", model, image), str(model.with_suffix(".json")), "'threshold'")
    out = tmp_path / "bench"
    one_line_error(cli("bench", "--reference", RELEASE_FLOAT, model, "--data", synth_dir, "--no-latency",
                       "--out", out), str(model.with_suffix(".json")), "'threshold'")
    assert not out.exists()


def test_calibrate_writes_no_card_whose_threshold_calls_every_image_one_class(synth_dir, tmp_path, monkeypatch):
    """A policy that picks 1.0 on the user's set (a float output: nothing to snap to) is a failed gate (exit 1)
    and no card is written; before, the card was written with exit 0."""
    monkeypatch.setattr(calibrate_mod, "choose_threshold", lambda y, p, policy: 1.0)
    out = tmp_path / "out"
    r = cli("calibrate", copy_model(RELEASE_FLOAT, tmp_path / "m"), "--data", synth_dir, "--out", out,
            "--bootstrap", "20", "--no-temperature")
    assert r.exit_code == 1, r.output
    assert "every image one class" in r.stderr and not out.exists()


def test_the_android_core_refuses_a_degenerate_card_too(tmp_path):
    """ModelCard.java (the app's card reader) refuses thresholds 0 and 1 (CoreTest.aThresholdOfZeroOrOneIsRefused),
    compiled and run on the JVM as tests/test_android.py does."""
    from test_android import CORE, CORE_TESTS, JVM_CP, cp, java_files, need_jvm, sh

    need_jvm()
    classes = tmp_path / "classes"
    sh("javac", "--release", "8", "-encoding", "UTF-8", "-cp", cp(*JVM_CP), "-d", classes,
       *java_files(CORE, CORE_TESTS))
    r = subprocess.run(["java", "-cp", cp(classes, *JVM_CP), "org.junit.runner.JUnitCore", "org.melkit.core.CoreTest"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "degenerate thresholds refused: 5" in r.stdout, r.stdout[-4000:]


# --------------------------------------------------------------------------- 3. calibrating on what the model saw


def split_ids(split: str, n: int) -> list:
    rows = csv.DictReader(open(MODELS / "split.csv", newline=""))
    return [r["image_id"] for r in rows if r["split"] == split][:n]


def labelled_set(synth_dir, dest, n_each=22, renamed=()):
    """nv/ and mel/ folders of links to synthetic images; the first images take the names in ``renamed``
    (ids of the release's split.csv)."""
    labels = {r["image_id"]: r["dx"] for r in csv.DictReader(open(synth_dir / "metadata.csv", newline=""))}
    left = {"nv": n_each, "mel": n_each}
    names = list(renamed)
    for dx in left:
        (dest / dx).mkdir(parents=True)
    for image in sorted((synth_dir / "images").iterdir()):
        dx = labels[image.stem]
        if left[dx]:
            stem = names.pop(0) if names else image.stem
            (dest / dx / f"{stem}{image.suffix}").symlink_to(image)
            left[dx] -= 1
    return dest


def test_the_models_split_travels_with_it_and_must_match_its_card(tmp_path):
    path, mapping = calibrate_mod.training_split(RELEASE_INT8, load_card(RELEASE_INT8))
    assert path == MODELS / "split.csv" and mapping[split_ids("val", 1)[0]] == "val"
    alone = copy_model(RELEASE_INT8, tmp_path / "alone")
    assert calibrate_mod.training_split(alone, load_card(alone)) == (None, None)
    run_dir = tmp_path / "run"
    in_run = copy_model(RELEASE_INT8, run_dir / "tflite")  # a run's own conversions: RUN/tflite/, RUN/split.csv
    shutil.copy(MODELS / "split.csv", run_dir / "split.csv")
    assert calibrate_mod.training_split(in_run, load_card(in_run))[0] == run_dir / "split.csv"
    other = alone.parent / "split.csv"  # another data set's split beside the model: not the model's
    other.write_text("image_id,lesion_id,label,split\nX1,L1,nv,train\nX2,L2,mel,val\n")
    assert calibrate_mod.training_split(alone, load_card(alone)) == (None, None)


def test_calibrate_refuses_images_the_model_was_trained_or_validated_on(synth_dir, tmp_path):
    seen = split_ids("train", 5) + split_ids("val", 2)
    data = labelled_set(synth_dir, tmp_path / "mine", renamed=seen)
    out = tmp_path / "out"
    line = one_line_error(cli("calibrate", RELEASE_INT8, "--data", data, "--out", out),
                          "7 of 44 images of the calibration set (--data)", "5 train, 2 val",
                          str(MODELS / "split.csv"), "--allow-overlap")
    assert "evaluation" not in line and not out.exists()
    # --eval-data sharing images with --data: noticed the same way (here without any training image)
    clean = labelled_set(synth_dir, tmp_path / "clean")
    one_line_error(cli("calibrate", RELEASE_INT8, "--data", clean, "--eval-data", clean, "--out", out),
                   "44 of 44 images of the evaluation set (--eval-data) are also in the calibration set (--data)")
    assert not out.exists()


def test_allow_overlap_warns_and_records_it_in_the_card(synth_dir, tmp_path):
    data = labelled_set(synth_dir, tmp_path / "mine", renamed=split_ids("train", 3) + split_ids("val", 1))
    out = tmp_path / "out"
    r = cli("calibrate", RELEASE_INT8, "--data", data, "--out", out, "--allow-overlap", "--bootstrap", "20",
            "--no-temperature")
    assert r.exit_code == 0, r.output
    assert "melkit: warning: 4 of 44 images of the calibration set (--data) are in the model's training split" \
        in r.stderr
    overlap = load_card(out / RELEASE_INT8.name).calibration["overlap"]
    assert overlap == {"split_csv": "split.csv", "allowed": True,
                       "calibration_set": {"images": 44, "in_training_split": 4, "train": 3, "val": 1}}
    assert json.loads((out / "calibration.json").read_text())["overlap"] == overlap


def test_a_calibration_without_overlap_records_none_in_the_card(synth_dir, tmp_path):
    """No overlap: the card is as before (no ``overlap`` key), the report says what was checked against."""
    out = tmp_path / "out"
    r = cli("calibrate", RELEASE_INT8, "--data", labelled_set(synth_dir, tmp_path / "clean"), "--out", out,
            "--bootstrap", "20", "--no-temperature")
    assert r.exit_code == 0, r.output
    assert "overlap" not in load_card(out / RELEASE_INT8.name).calibration
    assert json.loads((out / "calibration.json").read_text())["overlap"] == {"split_csv": "split.csv",
                                                                              "allowed": False}


# --------------------------------------------------------------------------- 4. predict streams


def test_streamed_predict_gives_what_one_batch_gave(synth_dir, monkeypatch):
    """Chunks of 2 over 5 images: the same JSON as one chunk, and the same outputs as the old path (every image
    decoded into one array, then run)."""
    images = some_images(synth_dir, 5)
    monkeypatch.setattr(predict_mod, "CHUNK", 2)
    streamed = run_predict(RELEASE_INT8, images)
    monkeypatch.setattr(predict_mod, "CHUNK", 10**6)
    assert run_predict(RELEASE_INT8, images) == streamed
    model = open_model(RELEASE_INT8)
    p, score = evaluate.tflite_outputs(model, contract_images(images, model.contract))
    rows = streamed.predictions
    assert [r["domain_score"] for r in rows] == score.tolist()
    assert [r["p_output"] for r in rows if r["in_domain"]] == [float(v) for v, s in zip(p, score)
                                                              if model.card.in_domain(s)]


def test_an_unreadable_image_is_exit_2_before_the_model_runs_or_anything_prints(synth_dir, tmp_path, monkeypatch):
    images = some_images(synth_dir, 3)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("a text file with an image's name")
    ran = []
    real = evaluate.run_tflite
    monkeypatch.setattr(evaluate, "run_tflite", lambda *a, **kw: ran.append(1) or real(*a, **kw))
    monkeypatch.setattr(predict_mod, "CHUNK", 1)
    one_line_error(cli("predict", RELEASE_INT8, *images, not_an_image), "unreadable image", str(not_an_image))
    assert ran == []  # the header pass found it: no image was run
    # a header that reads but pixels that do not (a truncated file): found mid-way, still nothing printed
    truncated = tmp_path / "truncated.png"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    truncated.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    one_line_error(cli("predict", RELEASE_INT8, *images, truncated), "unreadable image", str(truncated))
    assert len(ran) == len(images)
