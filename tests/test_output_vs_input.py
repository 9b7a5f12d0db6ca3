"""No command's output may be, hold, or lie inside one of its inputs, and --force replaces only a folder melkit
wrote. Refused up front (exit 2, one line naming both paths) before anything is created: a bench or train
--out inside a class-folder data set (its plots would be read as melanomas by the next run), a calibrate --out
that is the data folder or holds it (--force would delete the labelled images), a card --out that is the model
or its card JSON, a convert --out that is the run, a bundle --golden-dir holding the model or someone's files,
a demo --out inside its --data. What legitimately sits beside an input still works (RUN/tflite, RUN/bench,
MODEL_CARD.md beside the model: the other tests).

No training: the committed release models run on copies of the session's synthetic set; the convert case
uses a run directory made by hand (refused before its model is read).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import REPO, cli, copy_model, one_line_error
from conftest import class_copy as copy_classes

from melkit.core.recipe import default_recipe
from melkit.core.run import RunConfig
from melkit.data.contract import CONTRACT
from melkit.util.errors import BadInputError
from melkit.util.files import OUTPUT_MARKER, check_out_apart

FLOAT = REPO / "tflite_models" / "melkit_mnv2_1_224_float32.tflite"
INT8 = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("MELKIT_QUIET", "1")  # no progress bars in the captured stderr


def tree(folder) -> dict:
    """Every file below ``folder`` (links followed) with its bytes."""
    out = {}
    for dirpath, _, names in os.walk(folder, followlinks=True):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def class_copy(synth_dir, dest, per_class=25):
    """conftest's, 25 of each class by default (calibrate needs 20 of each)."""
    return copy_classes(synth_dir, dest, per_class)


# --------------------------------------------------------------------------- the helper


def test_check_out_apart_resolves_links_and_dotdot(tmp_path):
    data, run_dir, model = tmp_path / "data", tmp_path / "run", tmp_path / "m" / "model.tflite"
    for d in (data / "mel", run_dir, model.parent):
        d.mkdir(parents=True)
    model.write_bytes(b"x")
    (tmp_path / "link").symlink_to(data)
    inputs = dict(read=[("the model", model), ("the run directory", run_dir), ("the split file", None)],
                  data=[("the data folder", data)])
    check_out_apart(tmp_path / "elsewhere", **inputs)
    check_out_apart(run_dir / "tflite", **inputs)  # inside a folder read by name: fine (RUN/tflite)
    check_out_apart(model.parent / "MODEL_CARD.md", **inputs)  # beside the model: fine
    cases = [(tmp_path / "link" / "mel" / "plots", "is inside the data folder"),
             (tmp_path / "run" / ".." / "data", "is the data folder"),
             (tmp_path, "holds"),
             (run_dir, "is the run directory"),
             (model, "is the model"),
             (tmp_path / "m", "holds the model")]
    for out, message in cases:
        with pytest.raises(BadInputError, match=message):
            check_out_apart(out, **inputs)


# --------------------------------------------------------------------------- each writing command


def test_bench_out_inside_a_class_folder_data_set_is_refused_before_anything_is_written(synth_dir, tmp_path):
    d = class_copy(synth_dir, tmp_path / "d", per_class=4)
    before = tree(d)
    for out in (d / "mel" / "bench", d, tmp_path):
        r = cli("bench", FLOAT, "--reference", FLOAT, "--data", d, "--no-latency", "--bootstrap", "20", "--out", out)
        one_line_error(r, f"--out {out}", str(d))
        assert tree(d) == before  # no plot among the melanomas, no lock, no staging folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and not tmp_path.with_name(tmp_path.name + ".lock").exists()


def test_train_out_inside_the_data_folder_is_refused_before_anything_is_created(synth_dir, tmp_path):
    d = class_copy(synth_dir, tmp_path / "d", per_class=4)
    before = tree(d)
    for out in (d / "mel" / "run", d / "run"):
        one_line_error(cli("train", "--data", d, "--out", out, "--weights", "none", "--epochs", "1,1"),
                "is inside the data folder", str(d))
        assert tree(d) == before


def test_calibrate_force_never_deletes_the_data_or_a_folder_melkit_did_not_write(synth_dir, tmp_path):
    model = copy_model(INT8, tmp_path / "in")
    parent = tmp_path / "mine"
    d = class_copy(synth_dir, parent / "d")
    (parent / "notes.txt").write_text("my notes\n")
    before = tree(parent)
    for out, message in ((d, "is the data folder"), (parent, "holds the data folder"),
                         (d / "mel" / "cal", "is inside the data folder")):
        one_line_error(cli("calibrate", model, "--data", d, "--out", out, "--force"), message, str(d))
        assert tree(parent) == before
    # a folder of someone else's files: not replaced, even with --force
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work\n")
    one_line_error(cli("calibrate", model, "--data", d, "--out", theirs, "--force"), "melkit did not write",
            OUTPUT_MARKER)
    assert (theirs / "thesis.tex").read_text() == "years of work\n" and sorted(os.listdir(theirs)) == ["thesis.tex"]
    # what calibrate wrote says so: --force replaces it
    out = tmp_path / "out"
    assert cli("calibrate", model, "--data", d, "--out", out, "--bootstrap", "20").exit_code == 0
    assert (out / OUTPUT_MARKER).is_file()
    r = cli("calibrate", model, "--data", d, "--out", out, "--bootstrap", "20", "--force", "--policy", "fixed:0.5")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "calibration.json").read_text())["policy"] == "fixed:0.5"
    assert tree(parent) == before


def test_card_out_never_overwrites_the_model_or_a_card(tmp_path):
    model = copy_model(INT8, tmp_path / "m")
    float_model = copy_model(FLOAT, tmp_path / "m")
    before = tree(tmp_path / "m")
    for out, message in ((model, "is the model"), (model.with_suffix(".json"), "is the model card"),
                         (float_model.with_suffix(".json"), "is a model card")):
        one_line_error(cli("card", model, "--out", out), message, str(out))
        one_line_error(cli("card", model.with_suffix(".json"), "--out", out), message)
    assert tree(tmp_path / "m") == before
    r = cli("card", model)  # MODEL_CARD.md beside the model, as the release workflow writes it
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m" / "MODEL_CARD.md").is_file()


def fake_run(tmp_path, data):
    """A run directory convert accepts as finished, its config naming ``data``: refused before its model is read."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = RunConfig(data={"dir": str(data)}, preprocessing=CONTRACT.for_size(48), labels=("nv", "mel"),
                       recipe=default_recipe(), model={}, seed=0, training={}, versions={})
    (run_dir / "config.json").write_text(json.dumps(config.to_json()))
    (run_dir / "model.keras").write_bytes(b"not read")
    return run_dir


def test_convert_out_is_never_the_run_a_folder_holding_it_or_inside_its_data(synth_dir, tmp_path):
    d = class_copy(synth_dir, tmp_path / "d", per_class=2)
    run_dir = fake_run(tmp_path, d)
    before = tree(tmp_path)
    for out, message in ((run_dir, "is the run directory"), (tmp_path, "holds the run directory"),
                         (d / "models", "is inside the data folder")):
        one_line_error(cli("convert", run_dir, "--float32", "--out", out), message)
        assert tree(tmp_path) == before


def fake_app(folder):
    """What bundle takes for the Android app (its manifest), nothing else."""
    (folder / "app" / "src" / "main").mkdir(parents=True)
    (folder / "app" / "src" / "main" / "AndroidManifest.xml").write_text("<manifest/>\n")
    return folder


def test_bundle_golden_dir_never_holds_an_input_or_replaces_someone_elses_folder(synth_dir, tmp_path):
    app = fake_app(tmp_path / "app")
    model = copy_model(INT8, tmp_path / "m")
    image = tmp_path / "photos" / "lesion.jpg"
    image.parent.mkdir()
    shutil.copy(sorted((synth_dir / "images").iterdir())[0], image)
    (tmp_path / "photos" / "other.jpg").write_bytes(b"a photo of mine")
    before = tree(tmp_path)
    one_line_error(cli("bundle", model, "--app", app, "--golden-dir", model.parent), "holds the model")
    one_line_error(cli("bundle", model, "--app", app, "--golden-dir", app), "is the app")
    one_line_error(cli("bundle", model, "--app", app, "--golden-dir", image.parent, "--image", image), "holds the image")
    one_line_error(cli("bundle", model, "--app", app, "--golden-dir", tmp_path / "photos", "--image", REPO / "README.md"),
            "holds files melkit did not write")
    assert tree(tmp_path) == before
    # a golden folder bundle wrote says so, and the next bundle may replace it
    golden = tmp_path / "golden"
    for _ in range(2):
        r = cli("bundle", model, "--app", app, "--golden-dir", golden)
        assert r.exit_code == 0, r.output
        assert (golden / OUTPUT_MARKER).is_file() and (golden / "index.json").is_file()


def test_demo_out_inside_its_data_is_refused_before_anything_is_created(synth_dir, tmp_path):
    d = class_copy(synth_dir, tmp_path / "d", per_class=2)
    before = tree(d)
    one_line_error(cli("demo", "--data", d, "--out", d / "mel" / "demo"), "is inside the data folder")
    assert tree(d) == before
