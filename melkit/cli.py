"""melkit's command line: parse options, call the library, print. No logic lives here.

Exit codes: 0 ok, 1 a quality gate failed, 2 bad input or usage.
"""

from __future__ import annotations

import sys
import warnings

import click

from melkit.core.errors import MelkitError
from melkit.data.synth import write_synth_dataset
from melkit.core.progress import progress_bar
from melkit.data.fetch import fetch_set
from dataclasses import replace
from melkit.report import print_train_summary
from melkit.core.recipe import load_recipe
from melkit.train.trainer import TrainOptions, train
from melkit.convert.converter import ConvertOptions, convert_run
from melkit.core.errors import QualityGateError
from melkit.bundle import bundle
from melkit.demo import run_demo
from melkit.benchmark.bench import BenchOptions, run_bench
import json
from melkit.benchmark.predict import predict_files, text


class MelkitGroup(click.Group):
    """Turns MelkitError into a clear one-line message and its exit code (1 or 2)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MelkitError as e:
            click.echo(f"melkit: error: {e}", err=True)
            ctx.exit(e.exit_code)


def _echo(msg):
    click.echo(msg, err=False)


def _warn_line(message, category, filename, lineno, file=None, line=None):
    click.echo(f"melkit: warning: {message}", err=True)


@click.group(cls=MelkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="melkit")
def main():
    """melkit: train, convert, bench and bundle an on-device melanoma-vs-nevus classifier."""
    warnings.showwarning = _warn_line


@main.group(cls=MelkitGroup)
def data():
    """Data sets: the embedded synthetic default, and public ones to fetch."""


@data.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--lesions", default=240, show_default=True, type=click.IntRange(4, 100000), help="Number of lesions.")
@click.option("--mel-fraction", default=0.35, show_default=True, type=click.FloatRange(0.05, 0.95))
@click.option("--seed", default=0, show_default=True, type=int)
def data_synth(out_dir, lesions, mel_fraction, seed):
    """Write the procedural ABCD data set (HAM10000 layout) to OUT_DIR."""

    with progress_bar(desc="synth", unit="img") as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        summary = write_synth_dataset(out_dir, n_lesions=lesions, mel_fraction=mel_fraction, seed=seed,
                                      progress=progress)
    _echo(f"wrote {summary['n_images']} images of {summary['n_lesions']} lesions "
          f"({summary['n_nv']} nv, {summary['n_mel']} mel) to {summary['path']}")


@data.command("fetch")
@click.argument("name", default="ham10000")
@click.option("--to", "to", type=click.Path(file_okay=False), help="Target directory (default data/NAME).")
@click.option("--base-url", help="Dataverse server (default https://dataverse.harvard.edu, or $MELKIT_DATAVERSE_URL).")
@click.option("--retries", default=5, show_default=True, type=click.IntRange(0, 100),
              help="Further tries after a network failure, with doubling waits.")
@click.option("--keep-archives", is_flag=True, help="Keep the downloaded zip files after extracting them.")
def data_fetch(name, to, base_url, retries, keep_archives):
    """Download NAME (ham10000 or isic2018-test) from its Dataverse record: verified, resumable, extracted."""

    fetch_set(name, to, base_url=base_url, retries=retries, keep_archives=keep_archives, echo=_echo)


def _parse_epochs(value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter("comma-separated integers, one per stage, e.g. 15,10") from None


@main.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="HAM10000-style or class-folder directory.")
@click.option("--out", default="runs/melkit", show_default=True, type=click.Path(), help="Run directory to create.")
@click.option("--recipe", default="default", show_default=True, help="default, paper, scratch, or a recipe .json file.")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (downloads), none, or a local MobileNetV2 no-top .h5 (offline).")
@click.option("--alpha", type=float, help="MobileNetV2 width multiplier (recipe's if omitted).")
@click.option("--image-size", type=click.IntRange(32, 1024), help="Input size in pixels (recipe's if omitted).")
@click.option("--batch-size", type=click.IntRange(1, 4096))
@click.option("--epochs", help="Epochs per stage, comma-separated (e.g. 15,10).")
@click.option("--threshold-policy", help="youden, sensitivity:0.90, specificity:0.90 or fixed:0.5.")
@click.option("--oversample", is_flag=True, default=None, help="Balance classes by oversampling instead of class weights.")
@click.option("--split", "split_mode", type=click.Choice(["lesion", "image"]), default="lesion", show_default=True,
              help="lesion: honest grouped split; image: the paper's leaky split (measurement only).")
@click.option("--augment-before-split", is_flag=True, help="The paper's pre-split melanoma augmentation (measurement only).")
@click.option("--split-csv", type=click.Path(dir_okay=False), help="Reuse an existing split.csv.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--strategy", type=click.Choice(["auto", "mirrored", "multiworker"]), default="auto", show_default=True)
@click.option("--mixed-precision", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="auto: mixed float16 on a GPU only.")
@click.option("--resume", is_flag=True, help="Continue the unfinished run in OUT.partial.")
def train_cmd(data_dir, out, recipe, weights, alpha, image_size, batch_size, epochs, threshold_policy, oversample,
              split_mode, augment_before_split, split_csv, seed, strategy, mixed_precision, resume):
    """Fine-tune MobileNetV2 on nevus-vs-melanoma data; write a run directory with honest metrics."""


    r = load_recipe(recipe)
    overrides = {k: v for k, v in dict(alpha=alpha, image_size=image_size, batch_size=batch_size,
                                           threshold_policy=threshold_policy, oversample=oversample).items()
                 if v is not None}
    r = replace(r, **overrides)
    if epochs:
        r = r.with_epochs(_parse_epochs(epochs))
    opts = TrainOptions(data=data_dir, out=out, recipe=r, weights=weights, seed=seed, split=split_mode,
                        augment_before_split=augment_before_split, split_csv=split_csv, strategy=strategy,
                        mixed_precision=mixed_precision, resume=resume)
    result = train(opts, echo=_echo)
    print_train_summary(result, _echo)


@main.command("convert")
@click.argument("run_dir", type=click.Path())
@click.option("--float32", "v_float32", is_flag=True, help="Float32 TFLite (the parity reference).")
@click.option("--fp16", "v_fp16", is_flag=True, help="Float16 weights.")
@click.option("--dynamic", "v_dynamic", is_flag=True, help="Dynamic-range quantization (int8 weights).")
@click.option("--int8", "v_int8", is_flag=True, help="Full integer: int8 weights and activations, integer-only ops.")
@click.option("--qat", "v_qat", is_flag=True, help="Quantization-aware training, then full-integer conversion.")
@click.option("--int8-mixed", "v_mixed", is_flag=True, help="int8 with --float-layer ops kept in float.")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default RUN/tflite).")
@click.option("--calibration-images", default=300, show_default=True, type=int,
              help="Representative images from the training split.")
@click.option("--input-type", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True)
@click.option("--output-type", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True)
@click.option("--min-agreement", default=0.98, show_default=True, type=float,
              help="Gate: decision agreement with Keras on the validation split.")
@click.option("--report-only", is_flag=True, help="Print the self-check table; write nothing, no gate.")
@click.option("--debug", is_flag=True, help="Write a per-layer int8 quantization error report (CSV).")
@click.option("--float-layer", "float_layers", multiple=True, help="TFLite tensor name kept in float (--int8-mixed).")
@click.option("--qat-epochs", default=1, show_default=True, type=click.IntRange(1, 100))
@click.option("--qat-learning-rate", default=1e-5, show_default=True, type=float)
@click.option("--qat-target", type=click.Choice(["teacher", "labels"]), default="teacher", show_default=True,
              help="QAT fits the float model's scores (distillation) or the labels.")
@click.option("--equalize-margin", default=1.5, show_default=True, type=click.FloatRange(min=1.0),
              help="ReLU6 range equalisation before int8: headroom over the calibration maximum.")
@click.option("--no-equalize", is_flag=True, help="Quantize the model as trained (no range equalisation).")
@click.option("--weight-rounding", type=click.Choice(["compensated", "nearest"]), default="compensated",
              show_default=True, help="int8 weights of the 1x1 convolutions: error-compensating (GPTQ-style) "
                                      "or the converter's nearest rounding.")
@click.option("--no-align-threshold", is_flag=True,
              help="Keep the converter's scale for the int8 scores instead of placing the threshold halfway "
                   "between two of their values.")
@click.option("--name", help="Model name (default melkit_mnv2_<alpha>_<size>).")
@click.option("--model-version", "version", default="1.0.0", show_default=True)
@click.option("--data", "data_dir", type=click.Path(), help="The run's data directory, if it moved.")
@click.option("--seed", default=0, show_default=True, type=int)
def convert_cmd(run_dir, v_float32, v_fp16, v_dynamic, v_int8, v_qat, v_mixed, out, calibration_images, input_type,
                output_type, min_agreement, report_only, debug, float_layers, qat_epochs, qat_learning_rate,
                qat_target, equalize_margin, no_equalize, weight_rounding, no_align_threshold, name, version, data_dir,
                seed):
    """Convert a train run to TFLite models with metadata, gated on agreement with Keras."""

    flags = {"float32": v_float32, "fp16": v_fp16, "dynamic": v_dynamic, "int8": v_int8, "qat": v_qat,
             "int8-mixed": v_mixed}
    opts = ConvertOptions(variants=[k for k, v in flags.items() if v], out=out, calibration_images=calibration_images,
                          seed=seed, input_type=input_type, output_type=output_type, min_agreement=min_agreement,
                          report_only=report_only, debug=debug, float_layers=list(float_layers),
                          qat_epochs=qat_epochs, qat_learning_rate=qat_learning_rate, qat_target=qat_target,
                          equalize_margin=None if no_equalize else equalize_margin,
                          weight_rounding=weight_rounding, align_threshold=not no_align_threshold, name=name,
                          version=version, data_dir=data_dir)
    result = convert_run(run_dir, opts, echo=_echo)
    _echo("")
    _echo(result.table)
    if result.skipped_qat:
        _echo(result.skipped_qat)
    for path in result.written:
        _echo(f"wrote {path}")
    if result.failed and not report_only:
        raise QualityGateError(f"{len(result.failed)} variant(s) failed the self-check and were not written: "
                               + ", ".join(c.variant for c in result.failed))


@main.command("bundle")
@click.argument("model", type=click.Path())
@click.option("--app", "app_dir", default="android_demo", show_default=True, type=click.Path(file_okay=False),
              help="The Android project (android_demo/).")
@click.option("--golden-dir", type=click.Path(file_okay=False),
              help="Where golden vectors go (default: the app's JVM test resources).")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False),
              help="Make goldens from these images instead of the synthetic set (needs --golden-dir).")
def bundle_cmd(model, app_dir, golden_dir, images):
    """Copy MODEL (.tflite), its card and labels.txt into the Android app, and write golden vectors."""

    r = bundle(model, app_dir, golden_dir=golden_dir, images=list(images) or None)
    card = r["card"]
    _echo(f"bundled {card['name']} {card['version']} ({card['variant']}, {card['input']['dtype']} input, "
          f"threshold {card['threshold']:.4f}) into {r['assets']}")
    _echo(f"wrote {r['images']} golden vectors to {r['golden']}")


@main.command("demo")
@click.option("--out", default="melkit-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--data", "data_dir", type=click.Path(), help="Run the same pipeline on real data instead.")
@click.option("--weights", default="none", show_default=True, help="none (offline), imagenet or a local .h5.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--lesions", default=240, show_default=True, type=click.IntRange(12, 100000),
              help="Size of the synthetic data set.")
@click.option("--epochs", help="Epochs per stage (the recipe's if omitted).")
@click.option("--recipe", help="Recipe name or .json (default: scratch without weights, default with them).")
@click.option("--min-agreement", default=0.90, show_default=True, type=click.FloatRange(0, 1),
              help="int8 gate (the synthetic validation split is small: one flip is ~1.4 %).")
def demo_cmd(out, data_dir, weights, seed, lesions, epochs, recipe, min_agreement):
    """The whole job offline: synthetic data, train, convert to int8, bench, predict, bundle (into OUT)."""

    run_demo(out, data_dir=data_dir, weights=weights, seed=seed, lesions=lesions, epochs=_parse_epochs(epochs),
             recipe=recipe, min_agreement=min_agreement, echo=_echo)


@main.command("bench")
@click.argument("models", nargs=-1, type=click.Path())
@click.option("--reference", type=click.Path(),
              help="Run dir or float32 .tflite to compare against (default: the run dir among MODELS).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Which split of the run (or of --split-csv) to evaluate on.")
@click.option("--data", "data_dir", type=click.Path(), help="Images: a HAM10000-style or class-folder directory.")
@click.option("--split-csv", type=click.Path(dir_okay=False), help="image_id,...,split over --data (e.g. RUN/split.csv).")
@click.option("--out", type=click.Path(file_okay=False), help="Report directory (default RUN/bench).")
@click.option("--runs", default=100, show_default=True, type=click.IntRange(1, 100000), help="Timed runs per model.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(0, 10000))
@click.option("--threads", type=click.IntRange(1, 1024), help="LiteRT threads (default: every usable core).")
@click.option("--sweep-threads", type=click.IntRange(0, 1024),
              help="Thread sweep 1..N (default: every usable core; 0: no sweep).")
@click.option("--no-xnnpack-off", is_flag=True, help="Skip the XNNPACK-off (builtin kernels) measurement.")
@click.option("--no-latency", is_flag=True, help="Accuracy and parity only.")
@click.option("--keras-batch", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="Batch size of the batched Keras latency.")
@click.option("--litert-benchmark", is_flag=True,
              help="Also run LiteRT's own benchmark_litert_model on each model, for comparison.")
@click.option("--max-auc-drop", type=click.FloatRange(0, 1), help="Gate: exit 1 if a model's AUC drops more.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), help="Gate: exit 1 if decision agreement is lower.")
@click.option("--bootstrap", "n_boot", default=1000, show_default=True, type=click.IntRange(1, 100000),
              help="Bootstrap resamples (lesions) for the AUC CI.")
@click.option("--seed", default=0, show_default=True, type=int)
def bench_cmd(models, reference, split, data_dir, split_csv, out, runs, warmup, threads, sweep_threads,
              no_xnnpack_off, no_latency, keras_batch, litert_benchmark, max_auc_drop, min_agreement, n_boot, seed):
    """Parity, clinical metrics and latency of a run's Keras model and .tflite MODELS on the same images."""

    opts = BenchOptions(models=list(models), reference=reference, split=split, data=data_dir, split_csv=split_csv,
                        out=out, n_boot=n_boot, seed=seed, latency=not no_latency, runs=runs, warmup=warmup,
                        threads=threads, sweep_max_threads=sweep_threads, xnnpack_off=not no_xnnpack_off,
                        keras_batch=keras_batch, litert_benchmark=litert_benchmark, max_auc_drop=max_auc_drop,
                        min_agreement=min_agreement)
    result = run_bench(opts, echo=_echo)
    _echo("")
    _echo(result.table)
    for path in result.written:
        _echo(f"wrote {path}")
    if result.failures:
        raise QualityGateError(f"{len(result.failures)} gate(s) failed: " + "; ".join(result.failures))


@main.command("predict")
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def predict_cmd(model, images, as_json):
    """P(melanoma) and the decision for IMAGES with MODEL (a .tflite with its card, or a run dir)."""


    result = predict_files(model, list(images))
    _echo(json.dumps(result, indent=2) if as_json else text(result))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
