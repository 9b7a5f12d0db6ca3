"""melkit train killed with SIGKILL (a real subprocess) at staged moments: OUT is never
half there (no run, or a complete run whose config, split, fingerprint, metrics, predictions and model are
all of one run) and ``--resume`` of the unfinished ``OUT.partial`` always completes.

The staged kills come from a wrapper that runs the real CLI with one library function wrapped to SIGKILL
its own process at that moment: after the run's config is written, after a stage's checkpoint is recorded,
between the model and the metrics, in the middle of the checkpoints' removal, just before the publishing
rename. Tiny on purpose: 32-px alpha-0.35 model, one epoch, on the session's synthetic set. Kills at random
moments are benchmarks/reliability.py's (50 per command; too slow for CI).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from melkit.train.rundir import RUN_FILES, _digest

ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CI": "true", "TF_CPP_MIN_LOG_LEVEL": "3",
       "CUDA_VISIBLE_DEVICES": ""}

# Runs the CLI with one function wrapped to kill -9 the process at a named point (argv[1]).
WRAPPER = r'''
import os, shutil, signal, sys
from pathlib import Path
import melkit.util.files as files
from melkit.train import rundir, trainer

point = sys.argv[1]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after_write(module, name):
    real = module.write_json
    def wrapped(path, obj):
        real(path, obj)
        if Path(path).name == name:
            die()
    module.write_json = wrapped

if point == "config":  # the unfinished run's config.json (status training) is written
    after_write(trainer, "config.json")
elif point == "stage":  # a stage's final checkpoint is recorded in state.json
    after_write(trainer, "state.json")
elif point == "model":  # model.keras is in OUT.partial, metrics.json not yet
    real_json = rundir.write_json
    def before_metrics(path, obj):
        if Path(path).name == "metrics.json":
            die()
        real_json(path, obj)
    rundir.write_json = before_metrics
elif point == "cleanup":  # the checkpoints are half removed: the weights went first
    real_rmtree = shutil.rmtree
    def half(path, *a, **k):
        weights = list(Path(path).rglob("final.ckpt*")) if "checkpoint" in Path(path).name else []
        if weights:
            for f in weights:
                f.unlink()
            die()
        real_rmtree(path, *a, **k)
    shutil.rmtree = half
elif point == "publish":  # everything is written, the rename of OUT.partial to OUT is next
    real_replace = os.replace
    def before_publish(src, dst):
        if Path(src).name.endswith(".partial"):
            die()
        real_replace(src, dst)
    rundir.os.replace = before_publish

from melkit.cli import main
main(sys.argv[2:], prog_name="melkit")
'''


def train_args(data: Path, out: Path, resume=False) -> list:
    return ["train", "--data", str(data), "--out", str(out), "--recipe", "scratch", "--epochs", "1", "--alpha",
            "0.35", "--image-size", "32", "--batch-size", "16", "--weights", "none", "--threshold-policy",
            "fixed:0.5"] + (["--resume"] if resume else [])


def run_killed_at(point: str, args: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRAPPER, point] + args, capture_output=True, text=True, env=ENV)


def rows(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def published_state(out: Path) -> str:
    """'absent' (nothing at OUT) or 'complete' after checking every file of OUT is of one run."""
    if not out.exists():
        return "absent"
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    config = json.loads((out / "config.json").read_text())
    fp = json.loads((out / "fingerprint.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["status"] == "complete" and fp["seed"] == config["seed"]
    split = rows(out / "split.csv")
    assert _digest(f"{r['image_id']}\t{r['split']}" for r in split) == fp["split"], "split of another run"
    held_out = sorted((r["image_id"], r["split"]) for r in split if r["split"] != "train")
    assert sorted((r["image_id"], r["split"]) for r in rows(out / "predictions.csv")) == held_out
    for name in ("val", "test"):
        assert metrics[name]["n"] == sum(s == name for _, s in held_out)
    return "complete"


def model_reproduces_predictions(out: Path, data: Path):
    """The published model.keras gives the published predictions.csv: model and metrics are of one run."""
    from melkit.core.run import load_run, load_trained_model, predict_proba
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_sources

    config = load_run(out)
    model, _ = load_trained_model(out)
    preds = {r["image_id"]: float(r["p_mel"]) for r in rows(out / "predictions.csv")}
    records = [r for r in read_sources([str(data)]).records if r.image_id in preds]
    arr = load_images(records, config.preprocessing)
    got = predict_proba(model, arr.images, 16)
    np.testing.assert_allclose(got, [preds[r.image_id] for r in arr.records], atol=2e-5)


# The moments killed in CI; the wrapper also knows "config" (after config.json) and "model" (between model and
# metrics), which the reliability benchmark's random kills cover.
STAGED = ("stage", "cleanup", "publish")


def test_kills_at_staged_moments_leave_no_run_or_a_whole_one_and_resume_completes(synth_dir, tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    resume = False
    for point in STAGED:
        r = run_killed_at(point, train_args(synth_dir, out, resume))
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-2000:])
        assert published_state(out) == "absent", point
        assert partial.is_dir(), point
        resume = True
    r = subprocess.run([sys.executable, "-m", "melkit.cli"] + train_args(synth_dir, out, resume=True),
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert published_state(out) == "complete" and not partial.exists()
    model_reproduces_predictions(out, synth_dir)
