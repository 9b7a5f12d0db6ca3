"""``melkit bench``: the reference and every .tflite on the same images, then latency, then the report.

Order matters for honest numbers: all accuracy work happens first in this process; each latency
measurement then runs in its own fresh child process (see latency.py), and Keras latency is measured
here, in the process that already holds TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from melkit.bench import evaluate, host, inputs, latency, litert_tool, parity, plots
from melkit.bench import report as reporting
from melkit.core.metrics import N_BOOT, reliability_curve
from melkit.core.probability import shown_p_mel
from melkit.data.pipeline import load_images
from melkit.data.split import SPLITS
from melkit.util.errors import BadInputError
from melkit.util.files import check_out_apart, exclusive, keep_the_rest, staging
from melkit.util.options import SEED, check, opt


@dataclass
class BenchOptions:
    # Run directories and .tflite files, in the order the report shows them.
    models: list = opt(default_factory=list, argument=True, nargs=-1, type=click.Path())
    reference: str | None = opt(None, type=click.Path(), help="Run dir or float32 .tflite to compare against "
                                                              "(default: the run dir among MODELS).")
    split: str = opt("test", choices=SPLITS, help="Which split of the run (or of --split-csv) to evaluate on.")
    # One directory per source (repeatable, as for melkit train); a str is taken as one directory.
    data: list = opt(default_factory=list, type=click.Path(), multiple=True,
                     help="Images: a HAM10000-style or class-folder directory; repeat for several sources.")
    split_csv: str | None = opt(None, type=click.Path(dir_okay=False),
                                help="image_id,...,split over --data (e.g. RUN/split.csv).")
    out: str | None = opt(None, type=click.Path(file_okay=False),  # or ./melkit-bench without a run
                          help="Report directory (default RUN/bench).")
    runs: int = opt(100, min=1, max=100000, help="Timed runs per model.")
    warmup: int = opt(10, min=0, max=10000)
    threads: int | None = opt(None, type=int, min=1, max=1024, help="LiteRT threads (default: every usable core).")
    sweep_max_threads: int | None = opt(None, flag="--sweep-threads", type=int, min=0, max=1024,
                                        help="Thread sweep 1..N (default: every usable core; 0: no sweep).")
    xnnpack_off: bool = opt(True, flag="--no-xnnpack-off", help="Skip the XNNPACK-off (builtin kernels) measurement.")
    latency: bool = opt(True, flag="--no-latency", help="Accuracy and parity only.")
    keras_batch: int = opt(32, min=1, max=4096, help="Batch size of the batched Keras latency.")
    litert_benchmark: bool = opt(False, help="Also run LiteRT's own benchmark_litert_model on each model, "
                                             "for comparison.")
    max_auc_drop: float | None = opt(None, type=float, min=0, max=1,
                                     help="Gate: exit 1 if a model's AUC drops more.")
    min_agreement: float | None = opt(None, type=float, min=0, max=1,
                                      help="Gate: exit 1 if decision agreement is lower.")
    n_boot: int = opt(N_BOOT, flag="--bootstrap", min=1, max=100000,
                      help="Bootstrap resamples (lesions) for the AUC CI.")
    seed: int = opt(SEED)
    skip_unreadable: bool = opt(False, help="Leave unreadable images, and images the metadata lists but no file "
                                            "holds, out (counted in the report) instead of exiting 2.")

    def __post_init__(self):
        self.data = [self.data] if isinstance(self.data, (str, Path)) else list(self.data or [])

    def validate(self):
        if not self.models and not self.reference:
            raise BadInputError("nothing to benchmark: give a run directory and/or .tflite models")
        check(self)
        if self.litert_benchmark and not litert_tool.available():
            raise BadInputError(f"--litert-benchmark: {litert_tool.MODULE} is not in the installed ai-edge-litert")
        return self


@dataclass
class BenchResult:
    report: dict
    out_dir: Path
    table: str
    written: list = field(default_factory=list)

    @property
    def failures(self) -> list:
        return self.report["gates"]["failures"]


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _open_models(opts: BenchOptions):
    """(reference, models in report order with the reference first, the run dir or None)."""
    models = [inputs.open_model(p) for p in opts.models]
    reference = None
    if opts.reference:
        reference = next((m for m in models if _same(m.path, Path(opts.reference))), None)
        if reference is None:
            reference = inputs.open_model(opts.reference)
            models.insert(0, reference)
    else:
        reference = next((m for m in models if m.kind == "keras"), None)
        if reference is None:
            raise BadInputError("no reference: give the run directory the models came from, or --reference "
                                "with a float32 .tflite")
    runs = [m for m in models if m.kind == "keras"]
    if len(runs) > 1:
        raise BadInputError("one run directory at a time (its Keras model is the reference)")
    run = runs[0] if runs else None
    if run is not None and not any(m.kind == "tflite" for m in models):
        # Just a run: bench it against the models convert wrote beside it.
        found = sorted((run.path / "tflite").glob("*.tflite"))
        if not found:
            raise BadInputError(f"no .tflite models given and none in {run.path / 'tflite'}; run melkit convert")
        models += [inputs.open_tflite(p) for p in found]
    models.remove(reference)
    models.insert(0, reference)
    inputs.unique_names(models)
    return reference, models, run


def _load_images(source, contracts: dict, echo, skip_unreadable=False):
    """uint8 images per model input (ModelRef.input_key -> its contract), the same records for every input
    (decode failures do not depend on the size)."""
    arrays = {}
    for key, contract in sorted(contracts.items(), key=lambda kv: str(kv[0])):
        arrays[key] = load_images(source.records, contract, desc=f"images {contract.image_size}px")
    first = next(iter(arrays.values()))
    if not first.records:
        raise BadInputError(f"none of the {len(source.records)} images could be read")
    if first.skipped and not skip_unreadable:
        raise BadInputError(f"{len(first.skipped)} of {len(source.records)} images cannot be read, e.g. "
                            f"{first.skipped[0][1]}; fix or remove them, or measure without them with "
                            f"--skip-unreadable")
    if first.skipped:
        echo(f"skipped {len(first.skipped)} unreadable image(s), e.g. {first.skipped[0][1]}")
    return arrays


def _check_out(out: Path, opts: BenchOptions, models: list, run) -> None:
    """OUT apart from every input (melkit.util.files.check_out_apart): the models, their cards, the split file
    and the data folders read. RUN/bench, inside the run directory, is fine."""
    read = [("the run directory" if m.kind == "keras" else "the model", m.path) for m in models]
    read += [("the model card", m.path.with_suffix(".json")) for m in models if m.kind == "tflite"]
    read.append(("the split file", opts.split_csv))
    dirs = opts.data or (run.config.data_dirs if run else [])
    check_out_apart(out, read=read, data=[("the data folder", d) for d in dirs])


def run_bench(opts: BenchOptions, echo=print) -> BenchResult:

    opts.validate()
    timings = {}
    t_start = time.perf_counter()
    reference, models, run = _open_models(opts)
    if reference.kind == "tflite" and reference.card.variant != "float32":
        echo(f"note: the reference {reference.path.name} is not a float32 model; Δ are relative to it")
    out = Path(opts.out or (run.path / "bench" if run else "melkit-bench"))
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder")
    _check_out(out, opts, models, run)
    source = inputs.select_records(run.path if run else None, run.config if run else None, opts.split,
                                   opts.data, opts.split_csv, folder=out)
    if not opts.skip_unreadable:
        source.refuse_skipped("fix the data, or measure without them with --skip-unreadable")
    elif source.skipped:
        echo(f"skipped {len(source.skipped)} listed image(s) that cannot be used, e.g. {source.skipped[0][1]}")
    arrays = _load_images(source, {m.input_key: m.contract for m in models}, echo, opts.skip_unreadable)
    records = arrays[reference.input_key].records
    labels = np.array([r.label for r in records], int)
    image_ids = [r.image_id for r in records]
    lesion_ids = [r.lesion_id for r in records]
    image_sources = [parity.record_source(r) for r in records]  # per-source guard, band, risk and metrics
    timings["images_s"] = time.perf_counter() - t_start
    echo(f"{len(records)} images ({int(labels.sum())} mel) from {source.description}")

    probs, domain, keras_model = {}, {}, None
    t0 = time.perf_counter()
    for m in models:
        images = arrays[m.input_key].images
        t = time.perf_counter()
        if m.kind == "keras":
            keras_model = evaluate.load_keras(m)
            probs[m.name] = evaluate.keras_probs(keras_model, images, desc=m.name)
        else:
            probs[m.name], score = evaluate.tflite_outputs(m, images, threads=latency.usable_cores())
            if score is not None:  # a --domain-guard model: how many of these images it would assess
                domain[m.name] = reporting.domain_summary(m.card, score, image_ids, labels,
                                                          image_sources)
        timings[f"eval_{m.name}_s"] = time.perf_counter() - t
    timings["evaluation_s"] = time.perf_counter() - t0

    names = [m.name for m in models]
    thresholds = {m.name: m.threshold for m in models}
    # Decisions on the raw outputs at each card's threshold; calibration on what a person is shown.
    shown = {m.name: shown_p_mel(m.card, probs[m.name]) for m in models}
    results = parity.evaluate(names, probs, thresholds, labels, lesion_ids, image_ids, reference.name,
                              n_boot=opts.n_boot, seed=opts.seed, shown=shown)
    groups = parity.subgroups(records, names, probs, thresholds, labels, reference.name)
    sources = parity.by_source(image_sources, names, probs, thresholds, labels,
                               lesion_ids, image_ids, reference.name, n_boot=opts.n_boot, seed=opts.seed,
                               shown=shown)
    for m in models:  # a folded (or tempered) card: its threshold on the scale of the P(mel) shown, too
        if m.card is not None and (m.card.threshold_fold or (m.card.calibration or {}).get("temperature")):
            results[m.name]["metrics"]["threshold_shown"] = float(shown_p_mel(m.card, [m.threshold])[0])
    failures = parity.gate_failures(results, reference.name, opts.max_auc_drop, opts.min_agreement)
    borderline = {m.name: parity.borderline_summary(m.card, probs[m.name], m.threshold, probs[reference.name],
                                                    reference.threshold, image_sources)
                  for m in models if m.card is not None and m.card.borderline and m is not reference}
    risk = {m.name: parity.risk_bands_summary(m.card, probs[m.name], labels, image_sources)
            for m in models if m.card is not None and m.card.likelihood_ratios}

    lat = _latency(opts, models, arrays, keras_model, echo, out) if opts.latency else None
    timings["latency_s"] = lat.pop("seconds") if lat else 0.0

    report = reporting.build(reporting.ReportInputs(
        models=models, reference=reference, source=source, records=records, labels=labels,
        skipped=source.skipped + arrays[reference.input_key].skipped, results=results, subgroups=groups,
        latency=lat, host=host.host_info(with_tensorflow=keras_model is not None), opts=opts, failures=failures,
        timings=timings, by_source=sources, domain=domain, borderline=borderline, risk=risk, folder=out))
    # Plots and reports are staged and published together (under a lock): never plots without a report, and a
    # full disk or a crash leaves the previous report. Files already in OUT that this bench does not write stay.
    with exclusive(out), staging(out) as staged:
        written = _plots(staged, report, labels, probs, {n: reliability_curve(labels, shown[n]) for n in names})
        report["plots"] = [p.name for p in written]
        report["timings_s"]["total_s"] = time.perf_counter() - t_start
        written = [out / p.name for p in reporting.write(staged, report, records, shown) + written]
        keep_the_rest(out, staged)
    return BenchResult(report, out, reporting.terminal_table(report), written)


def _latency(opts, models, arrays, keras_model, echo, folder) -> dict:
    t0 = time.perf_counter()
    cores = latency.usable_cores()
    threads = opts.threads or cores
    top = cores if opts.sweep_max_threads is None else opts.sweep_max_threads
    sweep = list(range(1, top + 1))
    per_model, litert = {}, {}
    for m in (m for m in models if m.kind == "tflite"):
        echo(f"latency {m.name}: {opts.runs} runs at {threads} thread(s)"
             + (f", sweep 1..{top}" if sweep else "") + (", XNNPACK off" if opts.xnnpack_off else ""))
        sample = arrays[m.input_key].images[0]
        # the bytes checked against the card, not the path again (it may hold another model by now)
        per_model[m.name] = latency.measure_in_child(m.path, sample, threads, opts.runs, opts.warmup, sweep,
                                                     opts.xnnpack_off, data=m.data)
        if opts.litert_benchmark:
            litert[m.name] = litert_tool.run(m.path, threads, opts.runs, opts.warmup, data=m.data)
    keras = None
    if keras_model is not None:
        echo(f"latency keras: {opts.runs} single-image runs, batches of {opts.keras_batch}")
        keras_key = next(m.input_key for m in models if m.kind == "keras")
        keras = latency.measure_keras(keras_model, arrays[keras_key].images[0], opts.runs, opts.warmup,
                                      opts.keras_batch)
    tflite_files = [m.path for m in models if m.kind == "tflite"]
    return {"settings": {"threads": threads, "runs": opts.runs, "warmup": opts.warmup, "sweep": sweep,
                         "xnnpack_off": opts.xnnpack_off},
            "tflite": per_model, "keras": keras, "litert_benchmark": litert or None,
            "phone_commands": host.phone_commands(tflite_files, threads, opts.runs, opts.warmup, folder=folder),
            "seconds": time.perf_counter() - t0}


def _plots(out, report, labels, probs, curves) -> list:

    written = []
    aucs = {m["name"]: m["metrics"]["auc"] for m in report["models"]}
    if plots.roc_plot(out / "roc.png", labels, probs, aucs):
        written.append(out / "roc.png")
    plots.reliability_plot(out / "reliability.png", curves)
    written.append(out / "reliability.png")
    lat = report.get("latency")
    if lat:
        runs = {}
        for name, r in lat["tflite"].items():
            runs[f"{name} ({r['threads']} thr)"] = r["timed"]["runs_ms"]
            if r.get("xnnpack_off"):
                runs[f"{name}, XNNPACK off"] = r["xnnpack_off"]["runs_ms"]
        if lat.get("keras"):
            runs["keras, 1 image"] = lat["keras"]["single"]["runs_ms"]
        if plots.latency_plot(out / "latency.png", runs):
            written.append(out / "latency.png")
    return written
