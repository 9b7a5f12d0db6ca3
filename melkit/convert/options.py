"""``melkit convert``'s options: which variants to build and how, each option declared once."""

from __future__ import annotations

from dataclasses import dataclass, field

from melkit.convert.variants import IO_TYPES, VARIANTS
from melkit.core.errors import BadInputError

INT8_LIKE = ("int8", "qat", "int8-mixed")  # calibrated on the representative set
FULL_INTEGER = ("int8", "qat")  # integer-only, with the contract's uint8/int8 I/O
WEIGHT_ROUNDING = ("compensated", "nearest")
ROUNDED = ("int8", "int8-mixed")  # QAT learns its own weights: compensated rounding would be undone


@dataclass
class ConvertOptions:
    variants: list
    out: str | None = None  # default RUN/tflite
    calibration_images: int = 300
    seed: int = 0
    input_type: str = "uint8"
    output_type: str = "uint8"
    min_agreement: float = 0.98
    report_only: bool = False
    debug: bool = False
    float_layers: list = field(default_factory=list)
    qat_epochs: int = 1
    qat_learning_rate: float = 1e-5
    qat_target: str = "teacher"  # fit the float model's scores (distillation) or the labels
    equalize_margin: float | None = 1.5  # ReLU6 range equalisation before int8 conversion; None: off
    weight_rounding: str = "compensated"  # 1x1 conv weights for int8 / int8-mixed: compensated or nearest
    align_threshold: bool = True  # int8 scores' grid placed around the threshold (decision_grid.py)
    name: str | None = None
    version: str = "1.0.0"
    data_dir: str | None = None  # where the run's images are now, if moved

    def validate(self):
        if not self.variants:
            raise BadInputError("choose at least one variant: --float32 --fp16 --dynamic --int8 --qat --int8-mixed")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise BadInputError(f"unknown variant(s) {bad}: {', '.join(VARIANTS)}")
        if self.input_type not in IO_TYPES or self.output_type not in IO_TYPES:
            raise BadInputError(f"input/output type must be one of {', '.join(IO_TYPES)}")
        if (self.input_type, self.output_type) != ("uint8", "uint8") and not set(self.variants) & set(FULL_INTEGER):
            raise BadInputError("--input-type/--output-type apply to --int8 or --qat only")
        if self.float_layers and "int8-mixed" not in self.variants:
            raise BadInputError("--float-layer needs --int8-mixed")
        if not 0 < self.min_agreement <= 1:
            raise BadInputError("--min-agreement must be in (0, 1]")
        if self.equalize_margin is not None and self.equalize_margin < 1:
            raise BadInputError("--equalize-margin must be at least 1")
        if self.weight_rounding not in WEIGHT_ROUNDING:
            raise BadInputError(f"weight rounding must be one of {', '.join(WEIGHT_ROUNDING)}")
        if self.calibration_images < 2:
            raise BadInputError("--calibration-images must be at least 2")
        return self
