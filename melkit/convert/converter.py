"""``melkit convert``: a train run in, checked TFLite models with metadata and cards out.

    RUN/tflite/<name>_<variant>.tflite   the model, metadata embedded, labels.txt appended (zip)
    RUN/tflite/<name>_<variant>.json     its card (melkit/core/card.py)
    RUN/tflite/labels.txt                nv, mel

:func:`run_convert` is the list of passes. The shared ones prepare the float model once (calibration
set, range equalisation, weight rounding); the per-variant ones turn it into a checked .tflite (QAT,
conversion, decision grid, metadata, self-check). Each pass returns its part of the card's
``conversion`` record, so the card says exactly what was done.

``--domain-guard`` adds one shared pass (fit the guard on the training split, build it into the export model
as a second output) and, per variant, two flatbuffer passes (outputs in order, the int8 guard's ranges) and
the guard's own self-check, which goes into the card's ``domain_guard`` record (domain_guard.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from melkit.convert import borderline as borderlines
from melkit.convert import domain_guard as guards
from melkit.convert import qat as qat_training
from melkit.convert.contract_version import config_for_cards
from melkit.convert.decision_grid import align_to_threshold
from melkit.convert.equalize import equalize_activation_ranges
from melkit.convert.export import with_two_scores
from melkit.convert.fold import fold_threshold
from melkit.convert.metadata import ModelInfo, add_metadata
from melkit.convert.options import ConvertOptions
from melkit.convert.provenance import Provenance
from melkit.convert.representative import representative_images
from melkit.convert.rounding import round_pointwise_weights
from melkit.convert.selfcheck import Check, compare, table
from melkit.convert.variants import VARIANTS, check_input_quantization, convert, debug_report
from melkit.core import card as cards
from melkit.core import likelihood
from melkit.core.card_build import make_card
from melkit.core.litert import io_details, load_interpreter, predict_p_mel, predict_with_domain
from melkit.core.metrics import roc_auc
from melkit.core.probability import unfold
from melkit.core.run import RunConfig, load_run, load_trained_model, predict_outputs, predict_proba, split_records
from melkit.data.pipeline import load_images
from melkit.data.records import LABELS
from melkit.util.errors import BadInputError
from melkit.util.files import atomic_writer, check_out_apart, exclusive, keep_the_rest, read_json, staging
from melkit.util.fmt import num

DESCRIPTION = ("Dermoscopy nevus-vs-melanoma classifier (MobileNetV2, melkit). Research use only: "
               "not a medical device, gives no diagnosis.")


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


@dataclass
class Source:
    """What every variant is converted from and checked against: the run's model on its validation split."""

    run_dir: Path
    config: RunConfig
    metrics: dict
    name: str
    export: object  # Keras: image -> [P(nv), P(mel)]
    val_images: np.ndarray
    val_labels: np.ndarray
    p_keras: np.ndarray  # the float Keras model's P(mel) on val, what every variant must agree with
    val_records: list  # the validation images' records (label, source: the guard's groups)
    contract_change: dict | None = None  # --contract-version: the card's record of the change (contract.py)
    provenance: Provenance | None = None  # licence, author, versions: what the metadata and cards state
    guard: guards.DomainGuard | None = None  # --domain-guard: fitted, and built into ``export``
    guard_keras: np.ndarray | None = None  # the float Keras guard's scores on val

    @property
    def threshold(self) -> float:
        return self.metrics["threshold"]

    @property
    def image_size(self) -> int:
        return self.config.image_size


@dataclass
class Prepared:
    """The float models the quantized variants start from, and the card parts of the passes that made them."""

    rep: np.ndarray | None = None  # representative images (uint8 q), only when a variant is calibrated
    equalized: object = None  # after range equalisation (or the export model itself)
    rounded: object = None  # after compensated rounding (or ``equalized``)
    n_equalized: int = 0
    n_rounded: int = 0


@dataclass
class Built:
    variant: str
    data: bytes
    io: dict
    check: Check
    conversion: dict  # the card's record of how this file was made
    guard: dict | None = None  # the card's domain_guard record
    fold: dict | None = None  # the card's threshold_fold record, when the threshold was folded in
    borderline: dict | None = None  # the card's borderline record (every variant but float32)
    likelihood_ratios: dict | None = None  # the card's risk bands


def load_source(run_dir, logit_model, config: RunConfig, metrics: dict, opts: ConvertOptions) -> Source:
    size = config.image_size
    name = opts.name or f"melkit_mnv2_{config.alpha:g}_{size}"
    export = with_two_scores(logit_model)
    val = load_images(split_records(run_dir, config, "val", opts.data_dir), config.preprocessing, desc="val images")
    return Source(Path(run_dir), config, metrics, name, export, val.images, val.labels,
                  predict_proba(logit_model, val.images), val.records)


def guard_pass(source: Source, opts: ConvertOptions, echo) -> None:
    """--domain-guard: fit the guard on the training split's pooled features (threshold on val) and build it
    into the export model, before any variant is made from it."""
    if not opts.domain_guard:
        return
    train = load_images(split_records(source.run_dir, source.config, "train", opts.data_dir),
                        source.config.preprocessing, desc="guard: train images")
    balance = opts.domain_guard_balance
    guard = guards.fit_on_images(source.export, train.images, source.val_images, opts.domain_guard_components,
                                 opts.domain_guard_shrinkage, opts.domain_guard_quantile,
                                 train_groups=guards.group_names(train.records, balance),
                                 val_groups=guards.group_names(source.val_records, balance), balance=balance)
    source.export = guards.with_domain_guard(source.export, guard)
    source.guard = guard
    _, source.guard_keras = guards.keras_outputs(source.export, source.val_images)
    echo(f"domain guard: {guard.components} components of {'+'.join(guard.layers)} fitted on {guard.n_fit} "
         f"training images; threshold {guard.threshold:.4g} keeps {100 * guard.val_in_domain:.1f}% of validation")


def prepare(source: Source, opts: ConvertOptions, echo) -> Prepared:
    """Shared passes for the calibrated variants: calibration set, range equalisation, weight rounding."""
    wanted = [VARIANTS[v] for v in opts.variants]
    prep = Prepared(equalized=source.export, rounded=source.export)
    if not any(v.calibrated for v in wanted):
        return prep
    prep.rep = representative_images(source.run_dir, source.config, opts.calibration_images, opts.seed,
                                     opts.data_dir, sources=opts.calibration_sources)
    echo(f"calibration: {len(prep.rep)} images from the training split ({opts.calibration_sources}; one full-range)")
    if opts.equalize_margin is not None:
        prep.equalized, prep.n_equalized = equalize_activation_ranges(source.export, prep.rep, opts.equalize_margin)
        echo(f"range equalisation: {prep.n_equalized} ReLU6 outputs rescaled (margin {opts.equalize_margin:g})")
    prep.rounded = prep.equalized
    if opts.weight_rounding == "compensated" and any(v.rounded for v in wanted):
        prep.rounded, prep.n_rounded = round_pointwise_weights(prep.equalized, prep.rep, seed=opts.seed)
        echo(f"weight rounding: {prep.n_rounded} 1x1 convolutions rounded to int8 with error compensation")
    return prep


def conversion_record(variant: str, prep: Prepared, opts: ConvertOptions) -> dict:
    """The card's ``conversion`` record of the shared passes, as they apply to ``variant``."""
    v = VARIANTS[variant]
    return {
        "calibration_images": opts.calibration_images if v.calibrated else 0,
        "calibration_split": "train",
        **({"calibration_sources": opts.calibration_sources} if opts.calibration_sources != "pooled" else {}),
        "seed": opts.seed,
        "float_layers": list(opts.float_layers) if variant == "int8-mixed" else [],
        "range_equalization": ({"margin": opts.equalize_margin, "layers": prep.n_equalized}
                               if v.calibrated and prep.n_equalized else None),
        "weight_rounding": ({"method": "compensated", "layers": prep.n_rounded} if v.rounded and prep.n_rounded
                            else {"method": "nearest"} if v.calibrated else None),
    }


def model_for(variant: str, source: Source, prep: Prepared, opts: ConvertOptions, echo):
    """The Keras model a variant is converted from (QAT trains its own from the equalised model)."""
    v = VARIANTS[variant]
    if variant == "qat":
        return qat_pass(source, prep, opts, echo)
    return prep.rounded if v.rounded else prep.equalized if v.calibrated else source.export


def qat_pass(source: Source, prep: Prepared, opts: ConvertOptions, echo):
    recipe = source.config.recipe
    train = load_images(split_records(source.run_dir, source.config, "train", opts.data_dir),
                        source.config.preprocessing, desc="qat train images")
    model = qat_training.quantization_aware_model(
        source.export, train.images, train.labels, prep.rep, epochs=opts.qat_epochs,
        learning_rate=opts.qat_learning_rate, batch_size=recipe.batch_size, augment=recipe.augment, seed=opts.seed,
        use_class_weights=recipe.class_weights, target=opts.qat_target, student=prep.equalized, echo=echo)
    # The fake-quantized Keras model on the same images, next to its TFLite conversion.
    p_qat_keras = predict_outputs(model, source.val_images)[:, 1]
    echo(f"qat: Keras-QAT validation AUC {roc_auc(source.val_labels, p_qat_keras):.4f} "
         f"(float Keras {roc_auc(source.val_labels, source.p_keras):.4f})")
    return model


def io_types(variant: str, opts: ConvertOptions) -> tuple[str, str]:
    return (opts.input_type, opts.output_type) if VARIANTS[variant].integer_only else ("float32", "float32")


def grid_pass(variant: str, data: bytes, threshold: float, opts: ConvertOptions, echo) -> tuple[bytes, dict | None]:
    """Place the int8 scores' grid around the threshold (decision_grid.py); None when not applied."""
    if not (VARIANTS[variant].calibrated and opts.align_threshold):
        return data, None
    data, grid = align_to_threshold(data, threshold)
    if grid:
        echo(f"decision grid: scores' scale {grid['scale_before']:.5f} -> {grid['scale_after']:.5f}, "
             f"threshold logit {grid['threshold_logit']:.3f} now halfway between two outputs")
    return data, grid


def fold_pass(variant: str, data: bytes, threshold: float, grid: dict | None, opts: ConvertOptions,
              echo) -> tuple[bytes, dict | None, dict | None]:
    """Fold the threshold into the model (fold.py): (bytes, the card's threshold_fold record or None, the
    conversion record's note: None when switched off, else whether it was folded and why not)."""
    if not opts.fold_threshold:
        return data, None, None
    data, record = fold_threshold(data, threshold, grid)
    if not record.pop("folded"):
        echo(f"threshold fold ({variant}): not folded, {record['reason']}; generic clients' top category "
             f"(P(mel) > 0.5) is not melkit's decision (P(mel) >= {threshold:.4f})")
        return data, None, {"folded": False, **record}
    echo(f"threshold fold ({variant}): logit {record['logit']:.4f} folded in: the card's threshold is 0.5 and "
         "the model's top category is melkit's decision")
    return data, record, {"folded": True}


def guard_flatbuffer_pass(data: bytes, source: Source, echo) -> tuple[bytes, list | None]:
    """A guard model's outputs in order (probabilities first) and, for int8, the guard's ranges widened."""
    if source.guard is None:
        return data, None
    data = guards.order_outputs(data)
    data, ranges = guards.widen_ranges(data, source.guard.threshold)
    if ranges:
        echo(f"domain guard: int8 ranges of {len(ranges)} tensors set (score up to "
             f"{guards.SCORE_RANGE:g} x the threshold, components +-{guards.Z_RANGE:g})")
    return data, ranges


def selfcheck_pass(variant: str, data: bytes, source: Source, opts: ConvertOptions,
                   ranges=None, fold: dict | None = None) -> tuple[dict, Check, dict | None, np.ndarray]:
    """Load the finished file in LiteRT, check its input quantization, compare it with Keras on val (and its
    guard's in-domain decisions with the float Keras guard's). A folded model's decisions are taken at 0.5 on
    its raw output, its probabilities compared once unfolded. Also returns the raw outputs on val."""
    interp = load_interpreter(data)
    io = io_details(interp)
    if VARIANTS[variant].integer_only:
        check_input_quantization(io, io_types(variant, opts)[0])
    decided_at = None if fold is None else 0.5

    def check_of(p):
        return compare(variant, source.p_keras, p, source.val_labels, source.threshold, len(data),
                       opts.min_agreement, decided_at, None if fold is None else unfold(p, fold["logit"]))

    if source.guard is None:
        p = predict_p_mel(interp, source.val_images, p_mel_index=LABELS.index("mel"))
        return io, check_of(p), None, p
    guard_io = io["more_outputs"][0]
    p, score = predict_with_domain(interp, source.val_images, p_mel_index=LABELS.index("mel"),
                                   output=io["output"]["name"], domain_output=guard_io["name"])
    check = check_of(p)
    record = guards.record(source.guard, guard_io, score, source.guard_keras, ranges)
    agreement = record["agreement"]
    if check.passed and not np.isfinite(score).all():
        check = replace(check, passed=False, reason="domain score has NaN/inf")
    elif check.passed and agreement < opts.min_agreement:
        check = replace(check, passed=False,
                        reason=f"domain guard agreement {agreement:.3f} < {opts.min_agreement}")
    return io, check, record, p


def borderline_pass(variant: str, p: np.ndarray, source: Source, fold: dict | None, opts: ConvertOptions,
                    echo) -> dict | None:
    """The band of this variant's raw output where it and the float model can disagree (borderline.py); none
    for float32, the reference itself."""
    if variant == "float32":
        return None
    band = borderlines.measure(source.p_keras, p, source.threshold, None if fold is None else 0.5,
                               groups=[r.source for r in source.val_records], quantile=opts.borderline_quantile)
    v = band["validation"]
    echo(f"borderline ({variant}): output in [{band['low']:.4f}, {band['high']:.4f}] holds {100 * v['share']:.1f}% "
         f"of validation and its {v['flips']} disagreement(s) with the float model")
    return band


def likelihood_pass(variant: str, p: np.ndarray, source: Source, fold: dict | None, echo) -> dict:
    """Risk bands of this variant's raw output and their likelihood ratios on validation (likelihood.py)."""
    record = likelihood.measure(p, source.val_labels, 0.5 if fold else source.threshold,
                                sources=[r.source for r in source.val_records])
    echo(f"risk bands ({variant}): likelihood ratios " + ", ".join(
        num(b["lr"], ".2f") for b in record["bands"]) + " on validation")
    return record


def build_variant(variant: str, source: Source, prep: Prepared, info: ModelInfo, opts: ConvertOptions,
                  echo) -> Built:
    echo(f"converting {variant} ...")
    model = model_for(variant, source, prep, opts, echo)
    data = convert(model, variant, prep.rep, *io_types(variant, opts), float_layers=opts.float_layers)
    data, ranges = guard_flatbuffer_pass(data, source, echo)
    data, grid = grid_pass(variant, data, source.threshold, opts, echo)
    data, fold, fold_note = fold_pass(variant, data, source.threshold, grid, opts, echo)
    if source.provenance is not None:  # a QAT model's versions add tensorflow-model-optimization
        info = replace(info, versions=source.provenance.versions(variant))
    data = add_metadata(data, info)  # input stats follow the converted input type
    io, check, guard, p = selfcheck_pass(variant, data, source, opts, ranges, fold)
    band = borderline_pass(variant, p, source, fold, opts, echo)
    ratios = likelihood_pass(variant, p, source, fold, echo)
    conversion = {**conversion_record(variant, prep, opts), "decision_grid": grid, "threshold_fold": fold_note}
    if source.contract_change:
        conversion["contract_change"] = source.contract_change
    if variant == "qat":
        conversion["qat"] = {"epochs": opts.qat_epochs, "learning_rate": opts.qat_learning_rate,
                             "target": opts.qat_target}
    return Built(variant, data, io, check, conversion, guard, fold, band, ratios)


def drop_unhelpful_qat(built: dict) -> str:
    """QAT is written only when it beats int8 PTQ's agreement (when both were built); says why if not."""
    if "qat" not in built or "int8" not in built:
        return ""
    qat, ptq = built["qat"].check, built["int8"].check
    if qat.agreement > ptq.agreement:
        return ""
    built.pop("qat")
    return f"qat not written: agreement {qat.agreement:.4f} does not beat int8 PTQ's {ptq.agreement:.4f}"


def write_variant(out: Path, b: Built, source: Source, opts: ConvertOptions) -> list:
    stem = f"{source.name}_{b.variant}"
    model_path, card_path = out / f"{stem}.tflite", out / f"{stem}.json"
    card = make_card(model_file=model_path.name, data=b.data, variant=b.variant, io=b.io,
                     config=source.config, metrics=source.metrics, run_dir=source.run_dir,
                     name=source.name, version=opts.version,
                     selfcheck=b.check.to_dict(), extra={"conversion": b.conversion}, domain_guard=b.guard,
                     threshold_fold=b.fold, borderline=b.borderline, likelihood_ratios=b.likelihood_ratios,
                     **({} if source.provenance is None else source.provenance.card_fields(b.variant)))
    with atomic_writer(model_path, "wb") as f:
        f.write(b.data)
    cards.write_card(card_path, card)
    return [model_path, card_path]


def run_convert(run_dir, opts: ConvertOptions, echo=print) -> ConvertResult:
    """Convert a run. The output folder is built in a staging folder and published in one step, under a lock:
    a crash keeps the previous models and cards, a second convert into the same folder exits 2."""
    opts.validate()
    config = load_run(run_dir)  # a missing or unfinished run is named before the lock creates anything beside it
    if opts.report_only:
        return _convert(run_dir, opts, None, echo)
    out = Path(opts.out or Path(run_dir) / "tflite")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file, not a folder")
    # RUN/tflite (inside the run) is the default; the run itself, or a folder holding it or a data folder, is not
    check_out_apart(out, read=[("the run directory", run_dir)],
                    data=[("the data folder", d) for d in ([opts.data_dir] if opts.data_dir else config.data_dirs)])
    with exclusive(out):
        return _convert(run_dir, opts, out, echo)


def _convert(run_dir, opts: ConvertOptions, out: Path | None, echo) -> ConvertResult:
    # The contract the cards will state, checked before any model is loaded: a refusal comes at once.
    config, contract_change = config_for_cards(run_dir, load_run(run_dir), opts.contract_version, opts.data_dir)
    logit_model, _ = load_trained_model(run_dir)
    if contract_change:
        echo(f"contract: {contract_change['from']} -> {config.preprocessing.name} (no training/validation image "
             f"affected: {contract_change['checked_images']} checked)")
    metrics = read_json(Path(run_dir) / "metrics.json")
    source = load_source(run_dir, logit_model, config, metrics, opts)
    source.contract_change = contract_change
    source.provenance = Provenance.of(config, opts.license, opts.author, opts.data_dir)
    guard_pass(source, opts, echo)
    prep = prepare(source, opts, echo)
    info = ModelInfo(name=source.name, version=opts.version, description=DESCRIPTION,
                     author=source.provenance.author, license=source.provenance.license, labels=list(LABELS),
                     image_size=source.image_size)
    order = sorted(opts.variants, key=lambda v: (v == "qat", list(VARIANTS).index(v)))  # QAT last: vs int8
    built = {v: build_variant(v, source, prep, info, opts, echo) for v in order}
    checks = [b.check for b in built.values()]
    skipped_qat = "" if opts.report_only else drop_unhelpful_qat(built)
    written, models = [], {}
    # Every variant failed the gate: nothing to publish (a folder of labels.txt alone looked like a conversion),
    # and a previous conversion in ``out`` stays exactly as it was.
    if out is not None and any(b.check.passed for b in built.values()):
        with staging(out) as staged:
            (staged / "labels.txt").write_text("\n".join(LABELS) + "\n")
            for b in built.values():
                if b.check.passed:
                    paths = write_variant(staged, b, source, opts)
                    models[b.variant], written = out / paths[0].name, written + [out / p.name for p in paths]
            if opts.debug and prep.rep is not None:
                debug_report(prep.rounded, prep.rep, staged / f"{source.name}_int8_debug.csv")
                written.append(out / f"{source.name}_int8_debug.csv")
            keep_the_rest(out, staged)  # what an earlier conversion wrote here and this one does not replace
    return ConvertResult(checks, written, table(checks), skipped_qat, models)
