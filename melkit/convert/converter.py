"""``melkit convert``: a train run in, checked TFLite models with metadata and cards out.

    RUN/tflite/<name>_<variant>.tflite   the model, metadata embedded, labels.txt appended (zip)
    RUN/tflite/<name>_<variant>.json     its card (see card.py)
    RUN/tflite/labels.txt                nv, mel
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from melkit.core import card as cards
from melkit.convert.calibration import representative_images
from melkit.core.run import split_records
from melkit.convert.selfcheck import compare, table
from melkit.convert.options import FULL_INTEGER, INT8_LIKE, ROUNDED, ConvertOptions
from melkit.convert.variants import check_input_quantization, convert, debug_report
from melkit.core.metrics import roc_auc
from melkit.data.pipeline import load_images
from melkit.data.records import LABELS
from melkit.core.errors import BadInputError
from melkit.core.files import atomic_writer, read_json, writable_dir, write_json
from melkit.convert.export import with_two_scores
from melkit.core.run import load_trained_model
from melkit.core.litert import io_details, load_interpreter, predict_p_mel
from melkit.core.run import predict_outputs, predict_proba
from melkit.convert.equalize import equalize_activation_ranges
from melkit.convert.rounding import round_pointwise_weights
from melkit.convert.decision_grid import align_to_threshold
from melkit.convert.qat import quantization_aware_model
from melkit.core.recipe import Recipe

@dataclass
class ConvertResult:
    checks: list
    written: list
    table: str
    skipped_qat: str = ""
    models: dict = field(default_factory=dict)  # variant -> written .tflite path

    @property
    def failed(self):
        return [c for c in self.checks if not c.passed]


def convert_run(run_dir, opts: ConvertOptions, echo=print) -> ConvertResult:
    from melkit.convert.metadata import ModelInfo, add_metadata  # imports TensorFlow: imported when first needed

    opts.validate()
    logit_model, config = load_trained_model(run_dir)
    metrics = read_json(Path(run_dir) / "metrics.json")
    out = None if opts.report_only else writable_dir(opts.out or Path(run_dir) / "tflite")
    size = config["preprocessing"]["image_size"]
    name = opts.name or f"melkit_mnv2_{config['model']['alpha']:g}_{size}"
    threshold = metrics["threshold"]
    export = with_two_scores(logit_model)

    val = load_images(split_records(run_dir, config, "val", opts.data_dir), size, desc="val images")
    p_keras = predict_proba(logit_model, val.images)
    rep = None
    if set(opts.variants) & set(INT8_LIKE):
        rep = representative_images(run_dir, config, opts.calibration_images, opts.seed, opts.data_dir)
        echo(f"calibration: {len(rep)} images from the training split (one full-range)")
    quant_source, n_equalized = export, 0
    if rep is not None and opts.equalize_margin is not None:

        quant_source, n_equalized = equalize_activation_ranges(export, rep, opts.equalize_margin)
        echo(f"range equalisation: {n_equalized} ReLU6 outputs rescaled (margin {opts.equalize_margin:g})")
    rounded_source, n_rounded = quant_source, 0
    if rep is not None and opts.weight_rounding == "compensated" and set(opts.variants) & set(ROUNDED):

        rounded_source, n_rounded = round_pointwise_weights(quant_source, rep, seed=opts.seed)
        echo(f"weight rounding: {n_rounded} 1x1 convolutions rounded to int8 with error compensation")

    info = ModelInfo(
        name=name, version=opts.version,
        description="Dermoscopy nevus-vs-melanoma classifier (MobileNetV2, melkit). Research use only: "
                    "not a medical device, gives no diagnosis.",
        author="melkit", license="Apache-2.0 (model code); trained on data under its own licence, see card",
        labels=list(LABELS), image_size=size,
    )
    built, checks = {}, []
    order = sorted(opts.variants, key=lambda v: (v == "qat", VARIANTS.index(v)))  # QAT last: compares to int8
    for variant in order:
        echo(f"converting {variant} ...")
        model_for = rounded_source if variant in ROUNDED else quant_source if variant in INT8_LIKE else export
        if variant == "qat":
            model_for = _qat_model(run_dir, config, export, quant_source, rep, opts, echo)
            # The fake-quantized Keras model on the same images, next to its TFLite conversion below.
            p_qat_keras = predict_outputs(model_for, val.images)[:, 1]
            echo(f"qat: Keras-QAT validation AUC {roc_auc(val.labels, p_qat_keras):.4f} "
                 f"(float Keras {roc_auc(val.labels, p_keras):.4f})")
        io_types = (opts.input_type, opts.output_type) if variant in FULL_INTEGER else ("float32", "float32")
        data = convert(model_for, variant, rep, *io_types, float_layers=opts.float_layers)
        grid = None
        if variant in INT8_LIKE and opts.align_threshold:

            data, grid = align_to_threshold(data, threshold)
            if grid:
                echo(f"decision grid: scores' scale {grid['scale_before']:.5f} -> {grid['scale_after']:.5f}, "
                     f"threshold logit {grid['threshold_logit']:.3f} now halfway between two outputs")
        data = add_metadata(data, info)  # input stats follow the converted input type
        interp = load_interpreter(data)
        io = io_details(interp)
        if variant in FULL_INTEGER:
            check_input_quantization(io, io_types[0])
        p = predict_p_mel(interp, val.images)
        check = compare(variant, p_keras, p, val.labels, threshold, len(data), opts.min_agreement)
        checks.append(check)
        built[variant] = (data, io, check, grid)
    skipped_qat = ""
    if "qat" in built and not opts.report_only:
        ptq = built["int8"][2] if "int8" in built else None
        if ptq is not None and built["qat"][2].agreement <= ptq.agreement:
            skipped_qat = (f"qat not written: agreement {built['qat'][2].agreement:.4f} does not beat "
                           f"int8 PTQ's {ptq.agreement:.4f}")
            built.pop("qat")
    text = table(checks)
    written, models = [], {}
    if not opts.report_only:
        (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
        for variant, (data, io, check, grid) in built.items():
            if not check.passed:
                continue
            paths = _write(out, f"{name}_{variant}", data, variant, io, config, metrics, run_dir, name,
                           opts, check, n_equalized, n_rounded, grid)
            models[variant] = paths[0]
            written += paths
    if opts.debug and rep is not None and out is not None:
        debug_report(rounded_source, rep, out / f"{name}_int8_debug.csv")
        written.append(out / f"{name}_int8_debug.csv")
    return ConvertResult(checks, written, text, skipped_qat, models)


def _write(out, stem, data, variant, io, config, metrics, run_dir, name, opts, check, n_equalized=0,
           n_rounded=0, grid=None) -> list:
    model_path, card_path = out / f"{stem}.tflite", out / f"{stem}.json"
    card = cards.make_card(model_path.name, data, variant, io, config, metrics, run_dir, name, opts.version,
                           check.to_dict(), extra={"conversion": {
                               "calibration_images": opts.calibration_images if variant in INT8_LIKE else 0,
                               "calibration_split": "train", "seed": opts.seed,
                               "float_layers": list(opts.float_layers) if variant == "int8-mixed" else [],
                               "range_equalization": ({"margin": opts.equalize_margin, "layers": n_equalized}
                                                      if variant in INT8_LIKE and n_equalized else None),
                               "weight_rounding": ({"method": "compensated", "layers": n_rounded}
                                                   if variant in ROUNDED and n_rounded else
                                                   {"method": "nearest"} if variant in INT8_LIKE else None),
                               "decision_grid": grid,
                               **({"qat": {"epochs": opts.qat_epochs, "learning_rate": opts.qat_learning_rate,
                                           "target": opts.qat_target}} if variant == "qat" else {})}})
    with atomic_writer(model_path, "wb") as f:
        f.write(data)
    write_json(card_path, card)
    return [model_path, card_path]


def _qat_model(run_dir, config, export, student, rep, opts, echo):

    recipe = Recipe.from_dict(config["recipe"])
    train = load_images(split_records(run_dir, config, "train", opts.data_dir), recipe.image_size,
                        desc="qat train images")
    return quantization_aware_model(export, train.images, train.labels, rep, epochs=opts.qat_epochs,
                                    learning_rate=opts.qat_learning_rate, batch_size=recipe.batch_size,
                                    augment=recipe.augment, seed=opts.seed,
                                    use_class_weights=recipe.class_weights, target=opts.qat_target,
                                    student=student, echo=echo)
