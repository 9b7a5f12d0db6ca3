"""melkit train end to end on a tiny model: outputs, config, metrics, resume, refusals."""

import csv
import json
import os
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from conftest import (
    HAM,
    TINY_SEED,
    WEIGHTS_035,
    need,
    short_recipe,
    subset_of,
    tiny_recipe,
)

from melkit.train import callbacks as cb
from melkit.train import rundir
from melkit.train.trainer import TrainOptions, run_train
from melkit.util.errors import BadInputError

RUN_FILES = ["config.json", "curves.png", "fingerprint.json", "history.csv", "metrics.json", "model.keras",
             "predictions.csv", "split.csv"]


def test_run_dir_is_complete(tiny_run):
    out = tiny_run.out_dir
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    assert not out.with_name(out.name + ".partial").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["status"] == "complete"
    assert cfg["preprocessing"]["image_size"] == 48 and cfg["preprocessing"]["scale"] == "x = (q - 128) / 128"
    assert cfg["recipe"]["stages"][1]["trainable"] == "from:block_15_expand"
    assert cfg["seed"] == TINY_SEED and cfg["versions"]["tf_keras"].startswith("2.")
    assert cfg["data"]["split"]["counts"]["train"]["images"] > cfg["data"]["split"]["counts"]["test"]["images"]


def test_split_csv_is_lesion_grouped(tiny_run):
    rows = list(csv.DictReader(open(tiny_run.out_dir / "split.csv")))
    assert list(rows[0]) == ["image_id", "lesion_id", "label", "source", "split"]
    where = {}
    for r in rows:
        assert where.setdefault(r["lesion_id"], r["split"]) == r["split"]
    assert {r["label"] for r in rows} == {"nv", "mel"}


def test_history_has_every_epoch_of_every_stage(tiny_run):
    rows = list(csv.DictReader(open(tiny_run.out_dir / "history.csv")))
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("scratch", e) for e in range(1, 13)] + [
        ("finetune", 13), ("finetune", 14)]
    assert all(0 <= float(r["val_auc"]) <= 1 for r in rows)


def test_metrics_json(tiny_run):
    m = json.loads((tiny_run.out_dir / "metrics.json").read_text())
    assert m["val"]["auc"] > 0.75, m["val"]  # from random init, 14 epochs at 48 px learn the synthetic ABCD task
    assert m["threshold_policy"] == "youden" and 0 <= m["threshold"] <= 1
    for split in ("val", "test"):
        s = m[split]
        for key in ("auc", "auc_ci", "balanced_accuracy", "sensitivity", "specificity", "accuracy_at_threshold",
                    "accuracy_at_0_5", "majority_baseline"):
            assert key in s
        assert s["auc_ci"][0] <= s["auc"] <= s["auc_ci"][1]
        assert s["majority_baseline"] == max(s["n_pos"], s["n_neg"]) / s["n"]


def test_saved_model_reproduces_predictions(tiny_run):
    from melkit.core.run import predict_proba
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset
    from melkit.util.tf import keras

    preds = list(csv.DictReader(open(tiny_run.out_dir / "predictions.csv")))
    model = keras.models.load_model(tiny_run.out_dir / "model.keras")
    records = {r.image_id: r for r in read_dataset(tiny_run.config.data_dir).records}
    some = preds[:8]
    arr = load_images([records[p["image_id"]] for p in some], 48)
    p = predict_proba(model, arr.images)
    assert np.allclose(p, [float(r["p_mel"]) for r in some], atol=1e-5)


def test_same_seed_same_run(tiny_data, tmp_path, tiny_run):
    # Determinism: the session's run repeated with the same seed gives the same history and metrics.
    again = run_train(TrainOptions(data=str(tiny_data), out=str(tmp_path / "again"), recipe=tiny_recipe(),
                               weights=None, n_boot=200, seed=TINY_SEED))
    assert again.metrics == tiny_run.metrics
    a = (tiny_run.out_dir / "history.csv").read_text().splitlines()
    b = (tmp_path / "again" / "history.csv").read_text().splitlines()
    strip = lambda rows: [r.rsplit(",", 1)[0] for r in rows]  # drop the seconds column
    assert strip(a) == strip(b)


def test_refuses_to_overwrite_a_run(synth_dir, tiny_run):
    with pytest.raises(BadInputError, match="already holds a melkit run"):
        run_train(TrainOptions(data=str(synth_dir), out=str(tiny_run.out_dir), recipe=tiny_recipe(), weights=None))


def test_interrupted_run_resumes(synth_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    recipe = short_recipe(2)  # what is tested is where the resume starts
    opts = TrainOptions(data=str(synth_dir), out=str(out), recipe=recipe, weights=None, n_boot=100)
    real = cb.HistoryLog.on_epoch_end

    def crash_in_finetune(self, epoch, logs=None):
        real(self, epoch, logs)
        if self.stage == "finetune":
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(cb.HistoryLog, "on_epoch_end", crash_in_finetune)
    with pytest.raises(KeyboardInterrupt):
        run_train(opts)
    partial = tmp_path / "run.partial"
    assert partial.is_dir() and not out.exists()
    assert not (partial / "model.keras").exists()  # nothing looks finished
    with pytest.raises(BadInputError, match="--resume"):
        run_train(opts)
    monkeypatch.setattr(cb.HistoryLog, "on_epoch_end", real)
    opts.resume = True
    result = run_train(opts)
    assert (out / "model.keras").exists() and not partial.exists()
    rows = list(csv.DictReader(open(out / "history.csv")))
    first = recipe.stages[0]
    assert [r["stage"] for r in rows].count(first.name) == first.epochs  # the first stage was not trained again
    assert {int(r["epoch"]) for r in rows if r["stage"] == "finetune"} == {first.epochs + 1, first.epochs + 2}
    assert result.metrics["test"]["auc"] is not None


def test_resume_refuses_any_difference_and_names_it(synth_dir, tmp_path, monkeypatch):
    """A resume with another split file, split mode, weights file or seed would silently train another run
    (44 test images of a new split trained on; ImageNet swapped for none): each is refused, naming the key."""
    out = tmp_path / "run"
    opts = dict(data=str(synth_dir), out=str(out), recipe=tiny_recipe(), weights=None, n_boot=100)

    def crash(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(cb.HistoryLog, "on_epoch_end", crash)
    with pytest.raises(KeyboardInterrupt):
        run_train(TrainOptions(**opts))
    partial = tmp_path / "run.partial"
    fp = json.loads((partial / "fingerprint.json").read_text())
    assert {"data", "split", "split_mode", "weights", "recipe", "image_size", "seed", "versions"} <= set(fp)
    rows = list(csv.DictReader(open(partial / "split.csv")))
    swapped = tmp_path / "other_split.csv"  # the same images, two one-image lesions moved between splits
    single = {k for k, n in Counter(r["lesion_id"] for r in rows).items() if n == 1}
    a, b = (next(r for r in rows if r["split"] == s and r["lesion_id"] in single) for s in ("train", "test"))
    a["split"], b["split"] = "test", "train"
    with open(swapped, "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n" + b"not the weights the run started with")  # passes the format check
    for change, key in [(dict(split_csv=str(swapped)), "split"), (dict(split="image"), "split_mode"),
                        (dict(weights=str(weights)), "weights"), (dict(seed=1), "seed")]:
        with pytest.raises(BadInputError, match=rf"--resume: .*\b{key}\b.* differ"):
            run_train(TrainOptions(**{**opts, **change, "resume": True}))
        assert partial.is_dir() and json.loads((partial / "fingerprint.json").read_text()) == fp  # kept as it was


def test_resume_needs_the_same_recipe(synth_dir, tmp_path):
    partial = tmp_path / "r.partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"recipe": {"name": "other"}, "seed": 0, "preprocessing": {},
                                                     "data": {"dir": str(synth_dir)}}))
    with pytest.raises(BadInputError, match="recipe differs"):
        run_train(TrainOptions(data=str(synth_dir), out=str(tmp_path / "r"), recipe=tiny_recipe(), weights=None, resume=True))


def test_resume_compares_where_the_data_is_not_how_it_was_written(tiny_run, tiny_data, synth_dir, tmp_path):
    """An unfinished run of an older melkit recorded its data directory absolute, a newer one relative to the
    run folder: the same directory either way. Another directory is refused."""
    partial = tmp_path / "r.partial"
    partial.mkdir()
    config = replace(tiny_run.config, data={**tiny_run.config.data, "dir": os.path.relpath(tiny_data, tmp_path / "r")},
                     folder=tmp_path / "r")
    for written in (str(tiny_data.resolve()), os.path.relpath(tiny_data, partial)):
        (partial / "config.json").write_text(json.dumps({**config.to_json(), "data": {"dir": written}}))
        rundir.check_resume(partial, config, resume=True)
    (partial / "config.json").write_text(json.dumps({**config.to_json(), "data": {"dir": str(synth_dir)}}))
    with pytest.raises(BadInputError, match="data directory differs"):
        rundir.check_resume(partial, config, resume=True)


def test_no_melanoma_is_refused(tmp_path, synth_dir):
    lines = (synth_dir / "metadata.csv").read_text().splitlines()
    d = tmp_path / "nv_only"
    d.mkdir()
    (d / "images").symlink_to(synth_dir / "images")
    (d / "metadata.csv").write_text("\n".join([lines[0]] + [l for l in lines[1:] if ",nv," in l]) + "\n")
    with pytest.raises(BadInputError, match="no readable mel images"):
        run_train(TrainOptions(data=str(d), out=str(tmp_path / "out"), recipe=tiny_recipe(), weights=None))
    assert not (tmp_path / "out").exists()


@pytest.mark.real_data
def test_real_ham10000_subset_learns(tmp_path):
    """ImageNet alpha-0.35 weights, 64 px, 300 real lesions: the lesion-grouped val AUC beats chance clearly."""
    data = subset_of(need(HAM), tmp_path / "ham", n_lesions=300, seed=0)
    r = run_train(TrainOptions(data=str(data), out=str(tmp_path / "run"), weights=str(need(WEIGHTS_035)),
                           recipe=tiny_recipe(image_size=64, stages=[tiny_recipe().stages[0].__class__(
                               "head", "head", 8, 1e-3)]), n_boot=200))
    assert r.metrics["val"]["auc"] > 0.7, r.metrics["val"]
    assert r.config.data["counts"]["lesions"] == 300
