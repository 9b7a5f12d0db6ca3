"""melkit's command line: parse options, call the library, print. No logic lives here.

It imports each command's module itself, not the packages' public faces (``melkit.bench`` ...), which load
their modules on first use: through them every command started 0.2 s slower (measured on a 2-core host).

Exit codes: 0 ok, 1 a quality gate failed, 2 bad input or usage, 130 / 143 interrupted (SIGINT / SIGTERM).
"""

from __future__ import annotations

import contextlib
import csv
import json
import shlex
import signal
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import click

from melkit.bench.bench import BenchOptions, run_bench
from melkit.bench.predict import run_predict, text
from melkit.convert.converter import run_convert
from melkit.convert.options import ConvertOptions
from melkit.data.fetch import FetchOptions, fetch_set
from melkit.data.synth import SynthOptions, write_synth_dataset
from melkit.demo import DemoOptions, run_demo
from melkit.release.bundle import run_bundle, run_bundle_web, run_web
from melkit.release.calibrate import CalibrateOptions, run_calibrate
from melkit.release.card_document import CardOptions, run_card
from melkit.train.summary import print_train_summary
from melkit.train.trainer import TrainOptions, run_train
from melkit.util.errors import Interrupted, MelkitError, QualityGateError
from melkit.util.files import WRITE_ERRNOS
from melkit.util.options import click_options
from melkit.util.progress import progress_bar


def _one_line(e: BaseException) -> str:
    """What went wrong with the machine or a file, in one line (no traceback, no control characters)."""
    if isinstance(e, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
    elif isinstance(e, OSError) and e.strerror:
        # A copy that fails for want of space (shutil names source, then destination) names the destination.
        where = e.filename2 if e.filename2 and e.errno in WRITE_ERRNOS else e.filename
        text = e.strerror + (f": {where}" if where else "")
    else:
        text = f"{type(e).__name__}: {e}"
    return "".join(c if c.isprintable() else " " for c in text)[:300]


def _kept_run(e: BaseException) -> Path | None:
    """The unfinished train run ``e`` left for --resume, if it is still there (the demo removes its staging)."""
    run = getattr(e, "unfinished", None)
    return Path(run) if run is not None and Path(run).is_dir() else None


def _again(ctx, e: BaseException) -> str:
    """What to run next after a command stopped on ``e``: for an unfinished train run it kept (the library
    sets ``e.unfinished``), the same command line with ``--resume``; otherwise the same command line."""
    args = [a for a in ctx.meta.get("melkit.args", []) if a not in ("--resume", "--no-resume")]
    run = _kept_run(e)
    if run is not None:
        return f"the unfinished run is kept in {run}; continue it with: melkit {shlex.join(args + ['--resume'])}"
    return f"nothing half-written was published and the outputs are as they were; run it again with: " \
           f"melkit {shlex.join(args)}"


@contextlib.contextmanager
def _sigterm_interrupts(install: bool):
    """While a command runs, SIGTERM raises :class:`Interrupted` where Ctrl-C raises KeyboardInterrupt, so
    writers clean up the same way (their BaseException handlers) instead of the process dying mid-write."""
    if not install or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(signum)

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


class MelkitGroup(click.Group):
    """The one error boundary: MelkitError becomes a clear one-line message and its exit code (1 or 2); so do,
    with exit code 2, what the machine or a file can throw at any command: OSError (no space left, read-only,
    permission), undecodable text, malformed JSON or CSV. Writers stage their output and remove it on the way
    out, so nothing half-written is left (see melkit.util.files). Ctrl-C (SIGINT) and SIGTERM stop a command
    the same way, with one line that says what to run next, and exit 130 or 143 (128 + the signal's number)."""

    def parse_args(self, ctx, args):
        ctx.meta.setdefault("melkit.args", list(args))  # the top group's: the whole command line, for _again
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            with _sigterm_interrupts(ctx.parent is None):
                return super().invoke(ctx)
        except MelkitError as e:
            click.echo(f"melkit: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
            kept = f"; {_again(ctx, e)}" if _kept_run(e) is not None else ""
            click.echo(f"melkit: error: {_one_line(e)}{kept}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            click.echo(f"melkit: interrupted ({signal.Signals(signum).name}); {_again(ctx, e)}", err=True)
            ctx.exit(128 + signum)


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
@click_options(SynthOptions)
def data_synth(opts):
    """Write the procedural ABCD data set (HAM10000 layout) to OUT_DIR."""
    with progress_bar(desc="synth", unit="img") as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        summary = write_synth_dataset(**asdict(opts), progress=progress)
    _echo(f"wrote {summary['n_images']} images of {summary['n_lesions']} lesions "
          f"({summary['n_nv']} nv, {summary['n_mel']} mel) to {summary['path']}")


@data.command("fetch")
@click_options(FetchOptions)
def data_fetch(opts):
    """Download NAME (ham10000 or isic2018-test) from its Dataverse record: verified, resumable, extracted."""
    fetch_set(**asdict(opts), echo=_echo)


@main.command("train")
@click_options(TrainOptions)
def train_cmd(opts):
    """Fine-tune MobileNetV2 on nevus-vs-melanoma data; write a run directory with honest metrics."""
    result = run_train(opts, echo=_echo)
    print_train_summary(result, _echo)


@main.command("convert")
@click.argument("run_dir", type=click.Path())
@click_options(ConvertOptions)
def convert_cmd(run_dir, opts):
    """Convert a train run to TFLite models with metadata, gated on agreement with Keras."""
    result = run_convert(run_dir, opts, echo=_echo)
    _echo("")
    _echo(result.table)
    if result.skipped_qat:
        _echo(result.skipped_qat)
    for path in result.written:
        _echo(f"wrote {path}")
    if result.failed and not opts.report_only:
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
@click.option("--web", "web_dir", type=click.Path(file_okay=False),
              help="Instead of the app: a copy of the browser page (web_demo/) with MODEL and LiteRT.js in this new "
                   "folder; serve it with melkit web DIR.")
@click.pass_context
def bundle_cmd(ctx, model, app_dir, golden_dir, images, web_dir):
    """Copy MODEL (.tflite), its card and labels.txt into the Android app, and write golden vectors (or, with
    --web, into a copy of the browser page)."""
    if web_dir is not None:
        if golden_dir or images or ctx.get_parameter_source("app_dir") != click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--web makes the browser page: --app, --golden-dir and --image are for the app")
        r = run_bundle_web(model, web_dir)
        _echo(f"bundled {r.card.name} {r.card.version} ({r.card.variant}) with LiteRT.js {r.litertjs} "
              f"into {r.dir}; serve it with: melkit web {r.dir}")
        return
    r = run_bundle(model, app_dir, golden_dir=golden_dir, images=list(images) or None)
    card = r.card
    _echo(f"bundled {card.name} {card.version} ({card.variant}, {card.input.dtype} input, "
          f"threshold {card.threshold:.4f}) into {r.assets}")
    _echo(f"wrote {r.images} golden vectors to {r.golden}")


@main.command("web")
@click.argument("target", required=False, type=click.Path())
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default answers this machine only.")
def web_cmd(target, port, host):
    """Serve the browser page until Ctrl-C: TARGET a folder made by melkit bundle --web, or a .tflite with its
    card (bundled into a temporary folder first); default the released model in tflite_models/."""
    run_web(target, host=host, port=port, echo=_echo)


@main.command("demo")
@click_options(DemoOptions)
def demo_cmd(opts):
    """The whole job offline: synthetic data, train, convert to int8, bench, predict, bundle (into OUT)."""
    run_demo(opts, echo=_echo)


@main.command("bench")
@click_options(BenchOptions)
def bench_cmd(opts):
    """Parity, clinical metrics and latency of a run's Keras model and .tflite MODELS on the same images."""
    result = run_bench(opts, echo=_echo)
    _echo("")
    _echo(result.table)
    for path in result.written:
        _echo(f"wrote {path}")
    if result.failures:
        raise QualityGateError(f"{len(result.failures)} gate(s) failed: " + "; ".join(result.failures))


@main.command("card")
@click_options(CardOptions)
def card_cmd(opts):
    """MODEL_CARD.md from MODEL (a .tflite with its card, or the card .json) and --bench reports."""
    result = run_card(opts)
    _echo(f"{result.out}: {result.status}")


@main.command("calibrate")
@click_options(CalibrateOptions)
def calibrate_cmd(opts):
    """Re-fit MODEL's decision threshold (and a display temperature) on your own labelled images: a byte copy
    of MODEL with its new card in OUT."""
    result = run_calibrate(opts, echo=_echo)
    _echo("")
    _echo(result.text)
    for path in result.written:
        _echo(f"wrote {path}")


@main.command("predict")
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def predict_cmd(model, images, as_json):
    """P(melanoma) and the decision for IMAGES with MODEL (a .tflite with its card, or a run dir)."""
    result = run_predict(model, list(images))
    _echo(json.dumps(result.to_dict(), indent=2) if as_json else text(result))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
