"""Shared fixtures: one small synthetic data set and one tiny trained run for the whole session.

The tiny model is trained from random init on the embedded synthetic data, so every test that needs a trained
model runs everywhere, with or without ../shared. Real data and ImageNet weights live in ../shared (beside the
repository); only tests that need them skip cleanly when it is absent.
"""

from __future__ import annotations

import csv
import fcntl
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("CI", "true")  # one line per epoch from Keras, quiet progress bars
os.environ["TF_USE_LEGACY_KERAS"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MELKIT_SHARED", REPO.parent / "shared"))
HAM = SHARED / "data" / "ham10000-nv-mel"
ISIC2016 = SHARED / "data" / "isic2016-nv-mel"
WEIGHTS_035 = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_no_top.h5"
WEIGHTS_100 = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5"


def built_once(tmp_path_factory, name: str, build):
    """``build(folder)`` run once for the whole test session, its result shared by every pytest-xdist worker.

    Each worker is a process with its own session and module fixtures, so a trained run or a conversion would be
    built once per worker. The first worker to ask builds it in a folder of the session's shared temp root under
    a lock and pickles the result; the others wait on the lock and read that. A build that raised (or skipped)
    leaves no result, and the next worker to ask tries again. Results must not be changed by the tests.
    """
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    root.mkdir(exist_ok=True)
    folder, result = root / name, root / f".{name}.pickle"
    with open(root / f".{name}.built-once-lock", "w") as lock:  # not melkit's own NAME.lock beside an output
        fcntl.flock(lock, fcntl.LOCK_EX)
        if result.exists():
            return pickle.loads(result.read_bytes())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        value = build(folder)
        result.write_bytes(pickle.dumps(value))
        return value


BUILT_CHAIN = {"tiny_run", "converted"}  # the session's trained run and its conversions: minutes to build


def pytest_collection_modifyitems(config, items):
    """Order for pytest-xdist's worksteal, where each worker starts on a contiguous part of this list: the
    first part opens with the tests that need the session's trained run and conversions, so that one worker
    builds them while the others run tests that need neither, instead of all waiting on the same lock. Which
    test runs where never changes a result, only how long the session takes."""
    chain, rest = [], []
    for item in items:
        (chain if BUILT_CHAIN & set(getattr(item, "fixturenames", ())) else rest).append(item)
    first = len(items) // max(1, getattr(config.option, "numprocesses", None) or 1)
    items[:] = chain[:first] + rest + chain[first:]


def need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only beside the repository on project machines)")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    from melkit.data.synth import write_synth_dataset

    def build(folder):
        write_synth_dataset(folder / "data", n_lesions=60, seed=1)
        return folder / "data"

    return built_once(tmp_path_factory, "synth_dir", build)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The synthetic set the session's tiny model learns on: more lesions than ``synth_dir``, whose ~20
    validation images are too few to measure what a model learned (here ~50 validation images)."""
    from melkit.data.synth import write_synth_dataset

    def build(folder):
        write_synth_dataset(folder / "data", n_lesions=160, seed=1)
        return folder / "data"

    return built_once(tmp_path_factory, "tiny_data", build)


def tiny_recipe(**kw):
    """melkit's ``tiny`` recipe (melkit.core.recipe.tiny_recipe: a 48-px alpha-0.35 MobileNetV2 from random init,
    ~25 s on ``tiny_data``), with the fields in ``kw`` replaced."""
    from dataclasses import replace

    from melkit.core.recipe import tiny_recipe as tiny_preset

    return replace(tiny_preset(), **kw)


def short_recipe(epochs: int, **kw):
    """The tiny recipe with ``epochs`` epochs in each of its two stages and a fixed threshold, for tests of what
    training does (resume, strategies), not of what it learns: a model of a few epochs may not separate the
    classes, and a Youden threshold of 0 or 1 is refused."""
    from melkit.core.recipe import Stage

    return tiny_recipe(stages=[Stage("scratch", "all", epochs, 2e-3),
                               Stage("finetune", "from:block_15_expand", epochs, 1e-4)],
                       threshold_policy="fixed:0.5", **kw)


# The tiny run's training seed. Another CPU trains it along another trajectory (other float rounding), so no
# test may lean on the exact model one machine trains: MELKIT_TEST_SEED=1 (2, 3, ...) stands in for another
# machine, and the tests that use the tiny run must pass with it too (README, "Tests").
TINY_SEED = int(os.environ.get("MELKIT_TEST_SEED", "0"))


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    from melkit.train.trainer import TrainOptions, run_train

    return built_once(tmp_path_factory, "tiny_run", lambda folder: run_train(TrainOptions(
        data=str(tiny_data), out=str(folder / "tiny"), recipe=tiny_recipe(), weights=None, n_boot=200,
        seed=TINY_SEED)))


def subset_of(src: Path, dest: Path, n_lesions: int, seed=0, mel_share=0.3) -> Path:
    """A HAM10000-style subset of ``src``: a metadata.csv of some lesions plus a link to its images."""
    rows = list(csv.DictReader(open(src / "metadata.csv", newline="")))
    mel = sorted({r["lesion_id"] for r in rows if r["dx"] == "mel"})
    nv = sorted({r["lesion_id"] for r in rows if r["dx"] == "nv"} - set(mel))
    rng = random.Random(seed)
    n_mel = int(n_lesions * mel_share)
    keep = set(rng.sample(mel, n_mel) + rng.sample(nv, n_lesions - n_mel))
    dest.mkdir(parents=True)
    (dest / "images").symlink_to(src / "images")
    with open(dest / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(r for r in rows if r["lesion_id"] in keep)
    return dest


# Tiny 48-px models on ~50 validation images flip a few borderline decisions; the gate is tested in test_convert.
LOOSE = 0.5


@pytest.fixture(scope="session")
def converted(tiny_run, tmp_path_factory):
    from melkit.convert.converter import ConvertOptions, run_convert

    def build(out):
        opts = ConvertOptions(variants=["float32", "fp16", "dynamic", "int8"], out=str(out), calibration_images=40,
                              min_agreement=LOOSE, debug=True)
        return run_convert(tiny_run.out_dir, opts), out

    return built_once(tmp_path_factory, "converted", build)


def cli(*args):
    """``melkit ARGS`` in-process (click's CliRunner), exceptions not caught: a traceback fails the test."""
    from click.testing import CliRunner

    from melkit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(r, *words):
    """Exit 2 and one stderr line ``melkit: error: ...`` holding every word; returns that line."""
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("melkit: error: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def copy_model(model, dest):
    """``model``, its card and labels.txt copied into a folder of their own (no split.csv); the copy's path."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in (model, model.with_suffix(".json"), model.parent / "labels.txt"):
        shutil.copy(src, dest / src.name)
    return dest / model.name


def class_copy(synth_dir, dest, per_class):
    """nv/ and mel/ folders under ``dest`` with ``per_class`` copies each of ``synth_dir``'s images."""
    with open(synth_dir / "metadata.csv", newline="") as f:
        labels = {r["image_id"]: r["dx"] for r in csv.DictReader(f)}
    want = {"nv": per_class, "mel": per_class}
    for dx in want:
        (dest / dx).mkdir(parents=True)
    for image in sorted((synth_dir / "images").iterdir()):
        dx = labels[image.stem]
        if want[dx]:
            shutil.copy(image, dest / dx / image.name)
            want[dx] -= 1
    return dest
