"""``melkit demo``: the whole job end to end, offline, on the embedded synthetic data set (or ``--data``).

synth -> train -> convert (float32 reference + int8) -> bench -> predict one image -> bundle into a copy of
android_demo. Every artifact lands under ``--out``; the repository's own android_demo/ is never touched.

The whole output is built in ``OUT.partial`` beside ``OUT`` under OUT's lock and published with one rename
only when every step succeeded: a failed step (a quality gate, a full disk, Ctrl-C) removes the staging
folder and leaves no ``OUT`` behind, and a kill -9 leaves a staging folder the next run removes, so a rerun
of the same command always starts clean.

Nothing is rewritten at publication: what the steps record of where things are (the run's data directory,
the bench report's model paths) is stored relative to the folder holding it, and so stays true after the
rename. Only what the demo prints and returns names the staging folder's paths, mapped to the published
ones on the way (:func:`_path_forms`, :func:`_moved`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click

from melkit.bench.bench import BenchOptions, BenchResult, run_bench
from melkit.bench.predict import run_predict, text
from melkit.convert.converter import ConvertOptions, ConvertResult, run_convert
from melkit.data.readers import read_dataset
from melkit.data.split import read_split_csv
from melkit.data.synth import write_synth_dataset
from melkit.release.bundle import run_bundle
from melkit.train.summary import print_train_summary
from melkit.train.trainer import TrainOptions, TrainResult, run_train
from melkit.util.errors import BadInputError, QualityGateError
from melkit.util.files import check_out_apart, exclusive, staging
from melkit.util.options import SEED, Epochs, default_of, opt

# The repository's Android project, next to the package in a checkout (editable install).
APP_TEMPLATE = Path(__file__).resolve().parents[1] / "android_demo"
STEPS = 6


def _app_copy(out: Path) -> Path | None:
    if not (APP_TEMPLATE / "app" / "src" / "main" / "AndroidManifest.xml").is_file():
        return None
    dest = out / "android_demo"
    # Only the sources: toolchain/build folders of the checkout stay behind.
    shutil.copytree(APP_TEMPLATE, dest, ignore=shutil.ignore_patterns(".toolchain", "build", ".gradle", "*.apk"))
    return dest


@dataclass
class DemoOptions:
    out: str = opt("melkit-demo", type=click.Path(file_okay=False))
    data_dir: str | None = opt(None, flag="--data", type=click.Path(),
                               help="Run the same pipeline on real data instead.")
    weights: str = opt("none", help="none (offline), imagenet or a local .h5.")
    seed: int = opt(SEED)
    lesions: int = opt(default_of(write_synth_dataset, "n_lesions"), min=12, max=100000,
                       help="Size of the synthetic data set.")
    epochs: list | None = opt(None, type=Epochs(), help="Epochs per stage (the recipe's if omitted).")
    recipe: str | None = opt(None, help="Recipe name or .json (default: scratch without weights, default with them).")
    # The synthetic validation split has ~70 images, so one flipped decision is 1.4 %: the demo gates int8 at
    # 90 % agreement (at most ~7 flips) instead of convert's 98 %, which is meant for real validation sets.
    min_agreement: float = opt(0.90, min=0, max=1,
                               help="int8 gate (the synthetic validation split is small: one flip is ~1.4 %).")
    bench_runs: int = 50


@dataclass
class DemoResult:
    """What ``melkit demo`` made, every path in it under the published folder: each step's result, and the
    artifacts listed at the end (name -> path: data, run, tflite, bench, android_demo where made)."""

    train: TrainResult
    convert: ConvertResult
    bench: BenchResult
    artifacts: dict


def run_demo(opts: DemoOptions, echo=print) -> DemoResult:
    """Run every step into a staging folder and publish it as ``--out`` (see the module's docstring); the
    returned results and artifacts name the published paths."""
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder")
    weights = opts.weights if opts.weights and Path(opts.weights).is_file() else None
    check_out_apart(out, read=[("the weights file", weights)], data=[("the data folder", opts.data_dir)])
    with exclusive(out):
        if out.exists() and any(out.iterdir()):
            raise BadInputError(f"{out} is not empty; choose another --out or remove it")
        t0 = time.time()
        with staging(out) as staged:
            forms = _path_forms(staged, out)
            results = _steps(opts, staged, out, _published_echo(echo, forms))
    results = _moved(results, forms)
    echo(f"\ndemo finished in {time.time() - t0:.0f} s; artifacts:")
    for name, path in results.artifacts.items():
        echo(f"  {name:13s} {path}")
    return results


def _steps(opts: DemoOptions, staged: Path, out: Path, echo) -> DemoResult:
    """The six steps, writing under ``staged``; the progress lines name where things will be (under ``out``)."""
    artifacts = {}
    data_dir = opts.data_dir
    if data_dir is None:
        data_dir = staged / "data"
        echo(f"[1/{STEPS}] synthetic ABCD data set -> {out / 'data'}")
        s = write_synth_dataset(data_dir, n_lesions=opts.lesions, seed=opts.seed)
        echo(f"      {s['n_images']} images, {s['n_lesions']} lesions ({s['n_mel']} mel images)")
        artifacts["data"] = data_dir
    else:
        echo(f"[1/{STEPS}] data: {data_dir}")
    # No ImageNet weights offline: the scratch recipe trains every layer of a small model.
    run_dir = staged / "run"
    train_opts = TrainOptions(data=str(data_dir), out=str(run_dir), weights=opts.weights, seed=opts.seed,
                              recipe=opts.recipe or ("scratch" if str(opts.weights).lower() == "none" else "default"),
                              epochs=opts.epochs)
    recipe = train_opts.recipe
    echo(f"[2/{STEPS}] train ({recipe.name} recipe, MobileNetV2 alpha {recipe.alpha}, {recipe.image_size} px) "
         f"-> {out / 'run'}")
    try:
        result = run_train(train_opts, echo=echo)
    except QualityGateError as e:  # train keeps such a run for a look; the demo keeps nothing unfinished
        raise QualityGateError(f"{str(e).split('; the run is kept')[0]}; the demo wrote nothing to {out}") from None
    print_train_summary(_moved(result, _path_forms(staged, out)), echo)
    artifacts["run"] = result.out_dir

    tflite_dir = staged / "tflite"
    echo(f"\n[3/{STEPS}] convert: float32 (parity reference) + int8 -> {out / 'tflite'}")
    conv = run_convert(result.out_dir, ConvertOptions(variants=["float32", "int8"], out=str(tflite_dir),
                                                      min_agreement=opts.min_agreement, seed=opts.seed), echo=echo)
    echo(conv.table)
    if conv.failed:
        raise QualityGateError(f"int8 self-check failed (agreement < {opts.min_agreement}); see the table above; "
                               f"the demo wrote nothing to {out}")
    models = conv.models
    artifacts["tflite"] = tflite_dir

    bench_dir = staged / "bench"
    echo(f"\n[4/{STEPS}] bench: Keras vs float32 vs int8 on the test split -> {out / 'bench'}")
    bench = run_bench(BenchOptions(models=[str(result.out_dir), str(models["float32"]), str(models["int8"])],
                                   out=str(bench_dir), runs=opts.bench_runs, warmup=5, sweep_max_threads=0,
                                   n_boot=500, seed=opts.seed), echo=echo)
    echo(bench.table)
    artifacts["bench"] = bench_dir / "report.md"

    split = read_split_csv(result.out_dir / "split.csv")
    test = [r for r in read_dataset(data_dir).records if split.get(r.image_id) == "test"]
    image = min(test, key=lambda r: r.image_id).path if test else None
    echo(f"\n[5/{STEPS}] predict one test image with the int8 model")
    if image is not None:
        echo(text(run_predict(models["int8"], [image])))
    else:
        echo("      (no test image found on disk; skipped)")

    echo(f"\n[6/{STEPS}] bundle the int8 model into a copy of android_demo")
    app = _app_copy(staged)
    if app is None:
        echo("      android_demo/ is not beside the package (not a checkout); skipped")
    else:
        b = _moved(run_bundle(models["int8"], app), _path_forms(staged, out))
        echo(f"      {b.model} (+ card, labels.txt); {b.images} golden vectors in {b.golden}")
        artifacts["android_demo"] = app
    return DemoResult(train=result, convert=conv, bench=bench, artifacts=artifacts)


def _path_forms(staged: Path, out: Path) -> list:
    """(staging path, published path) pairs, in the forms a step may print or return a path in: resolved,
    absolute and as given. The staging folder is named ``<out>.partial``, so no published path contains one
    of these."""
    resolved = staged.resolve()
    pairs = {(str(resolved), str(resolved.parent / out.name)),
             (os.path.abspath(staged), os.path.abspath(out)),
             (str(staged), str(out))}
    return sorted(pairs, key=lambda p: -len(p[0]))  # longest first: an absolute path before its relative tail


def _replaced(text: str, pairs: list) -> str:
    """``text`` with each pair's first form replaced by its second, in the pairs' order."""
    for a, b in pairs:
        text = text.replace(a, b)
    return text


def _published_echo(echo, forms: list):
    """``echo`` that writes the staging folder's paths in each line as the published ones (``forms``: see
    _path_forms): the progress lines of the steps themselves (bench's, predict's) name where files will be."""
    def published(line=""):
        echo(_replaced(str(line), forms))

    return published


def _moved(value, forms: list):
    """``value`` with every path (Path or str) under the staging folder mapped to the same place under the
    published one (``forms``: see _path_forms): what run_demo returns and prints names the published files,
    not the removed staging folder."""
    if isinstance(value, dict):
        return {k: _moved(v, forms) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, forms) for v in value)
    if isinstance(value, (str, Path)):
        for a, b in forms:
            if str(value) == a or str(value).startswith(a + os.sep):
                moved = b + str(value)[len(a):]
                return Path(moved) if isinstance(value, Path) else moved
        return value
    if hasattr(value, "__dataclass_fields__"):
        return replace(value, **{name: _moved(getattr(value, name), forms)
                                 for name, f in value.__dataclass_fields__.items() if f.init})
    return value
