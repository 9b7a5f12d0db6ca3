"""``melkit convert``'s options: which variants to build and how, each option declared once."""

from __future__ import annotations

from dataclasses import dataclass

import click

from melkit.convert.provenance import DEFAULT_AUTHOR, check_text
from melkit.convert.variants import FULL_INTEGER, IO_TYPES, VARIANTS
from melkit.util.errors import BadInputError
from melkit.util.options import SEED, check, opt

WEIGHT_ROUNDING = ("compensated", "nearest")
QAT_TARGETS = ("teacher", "labels")


@dataclass
class ConvertOptions:
    variants: list = opt(switches={name: v.help for name, v in VARIANTS.items()})
    out: str | None = opt(None, type=click.Path(file_okay=False), help="Output directory (default RUN/tflite).")
    calibration_images: int = opt(300, min=2, help="Representative images from the training split.")
    calibration_sources: str = opt("pooled", choices=("pooled", "balanced"),
                                   help="Draw the representative images from the training split as it is "
                                        "(pooled) or equally from each of its sources (balanced).")
    input_type: str = opt("uint8", choices=IO_TYPES)
    output_type: str = opt("uint8", choices=IO_TYPES)
    min_agreement: float = opt(0.98, min=0, max=1, min_open=True,
                               help="Gate: decision agreement with Keras on the validation split.")
    report_only: bool = opt(False, help="Print the self-check table; write nothing, no gate.")
    debug: bool = opt(False, help="Write a per-layer int8 quantization error report (CSV).")
    float_layers: list = opt(default_factory=list, flag="--float-layer", multiple=True,
                             help="TFLite tensor name kept in float (--int8-mixed).")
    qat_epochs: int = opt(1, min=1, max=100)
    qat_learning_rate: float = opt(1e-5)
    qat_target: str = opt("teacher", choices=QAT_TARGETS,
                          help="QAT fits the float model's scores (distillation) or the labels.")
    equalize_margin: float | None = opt(
        1.5, min=1.0, help="ReLU6 range equalisation before int8: headroom over the calibration maximum.",
        off=("--no-equalize", "Quantize the model as trained (no range equalisation)."))
    weight_rounding: str = opt("compensated", choices=WEIGHT_ROUNDING,
                               help="int8 weights of the 1x1 convolutions: error-compensating (GPTQ-style) or the "
                                    "converter's nearest rounding.")
    # The int8 scores' grid placed around the threshold (decision_grid.py).
    align_threshold: bool = opt(True, flag="--no-align-threshold",
                                help="Keep the converter's scale for the int8 scores instead of placing the "
                                     "threshold halfway between two of their values.")
    # The threshold folded into the model, where that is exact (fold.py): top category == melkit's decision.
    fold_threshold: bool = opt(True, flag="--no-fold-threshold",
                               help="Keep the trained threshold in the card instead of folding it into the model "
                                    "(folded: the model's top category is melkit's decision, the card's threshold "
                                    "0.5, the calibrated P(mel) recovered from the card's threshold_fold).")
    # The borderline band around the threshold of every quantized variant (borderline.py).
    borderline_quantile: float = opt(0.995, min=0.5, max=1.0,
                                     help="The borderline band's half-width: this quantile of the logit "
                                          "difference to the float model on validation (at least the farthest "
                                          "disagreement's distance from the threshold).")
    # The input-domain guard (domain_guard.py): a second output and the card's domain_guard record.
    domain_guard: bool = opt(False, help="Add a second output, domain_score: images that do not look like "
                                         "dermoscopic lesion images are 'not assessed' (fitted on the training "
                                         "split, threshold on validation).")
    domain_guard_quantile: float = opt(0.995, min=0.5, max=1.0,
                                       help="The guard's threshold: this quantile of the validation split's scores.")
    domain_guard_balance: str = opt("class-source", choices=("none", "class", "class-source"),
                                    help="What the guard's fit weights alike: every training image (none), each "
                                         "class, or each class of each source; the threshold then keeps the "
                                         "quantile of every group's validation images (so melanomas are not "
                                         "the lesions it drops).")
    domain_guard_components: int | None = opt(None, type=int, min=1,
                                              help="Principal components the guard whitens (default: all features).")
    domain_guard_shrinkage: float = opt(0.1, min=0.0, max=10.0,
                                        help="Ridge added to the guard's covariance, times its mean eigenvalue.")
    name: str | None = opt(None, help="Model name (default melkit_mnv2_<alpha>_<size>).")
    version: str = opt("1.0.0", flag="--model-version")
    # Stated in every model's TFLite metadata and card (provenance.py).
    license: str | None = opt(None, help="Licence the models' metadata and cards state (default: the training "
                                         "data's, e.g. CC BY-NC 4.0 for HAM10000).")
    author: str = opt(DEFAULT_AUTHOR, help="Author the models' metadata and cards state.")
    contract_version: int | None = opt(
        None, type=int, min=1, max=2,
        help="Preprocessing contract the cards state (default: the run's). 2 (melkit-v2: box filter before the "
             "resize, for large photos) only if no training/validation image has a short side over 2x the size.")
    data_dir: str | None = opt(None, flag="--data", type=click.Path(), help="The run's data directory, if it moved.")
    seed: int = opt(SEED)

    def validate(self):
        if not self.variants:
            raise BadInputError("choose at least one variant: " + " ".join(f"--{name}" for name in VARIANTS))
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise BadInputError(f"unknown variant(s) {bad}: {', '.join(VARIANTS)}")
        check(self)
        if self.license is not None:
            check_text("--license", self.license)
        check_text("--author", self.author)
        if (self.input_type, self.output_type) != ("uint8", "uint8") and not set(self.variants) & set(FULL_INTEGER):
            raise BadInputError("--input-type/--output-type apply to --int8 or --qat only")
        if self.float_layers and "int8-mixed" not in self.variants:
            raise BadInputError("--float-layer needs --int8-mixed")
        if self.domain_guard and "qat" in self.variants:
            raise BadInputError("--domain-guard does not support --qat (QAT trains on the probabilities only)")
        tuned = [f for f, default in (("quantile", 0.995), ("components", None), ("shrinkage", 0.1),
                                      ("balance", "class-source"))
                 if getattr(self, f"domain_guard_{f}") != default]
        if tuned and not self.domain_guard:
            raise BadInputError(f"--domain-guard-{tuned[0]} needs --domain-guard")
        return self
