"""The model card JSON beside each .tflite: the one contract bench, bundle and the Android app read.

It says how to feed the model (the preprocessing contract, input/output dtypes, shapes, quantization),
how to read it (labels, the decision threshold chosen on validation), where it came from (run, data,
split, versions) and which file it describes (sha256).

In Python the card is a :class:`ModelCard` (frozen): :meth:`ModelCard.from_json` validates a card's JSON
(a one-line :class:`BadInputError` naming the bad field) and :meth:`ModelCard.to_json` gives back exactly
the JSON the converter writes (same keys, order and values). ``model_card.schema.json`` beside this file
is the same contract as a JSON Schema (tests/test_card.py keeps the two in step; the Android app's
ModelCard.java reads every field it requires). Free-form parts (where the model came from, metrics, the
self-check, versions, the conversion settings) stay plain dicts. The tensors' types and the reader of each field
are in melkit/core/card_parts.py; the card a conversion writes is built by melkit/core/card_build.py.

``license`` and ``author`` (one line each) say under which terms the model may be used (by default its
training data's) and who made it; ``versions`` then holds the package versions of the training run and of
the conversion, each named (:attr:`ModelCard.versions_by_step`). The model's TFLite metadata states the
same (melkit/convert/provenance.py). Cards of older releases have neither field and a flat ``versions``
(the training run's); they load unchanged.

One optional field, ``calibration``, is added by ``melkit calibrate`` when a user re-fits the threshold on
their own labelled images (melkit/release/calibrate.py): the card then says on which set the threshold
was chosen, and may carry a temperature that maps the probability shown to a person. The decision always
compares the model's raw P(mel) with ``threshold``; cards without the field are unchanged byte for byte.

``threshold_fold`` (optional) is written by ``melkit convert`` when it folded the decision threshold into
the model (melkit/convert/fold.py): the model's top category is then melkit's decision, ``threshold`` is
0.5 and the record keeps the original ``threshold`` and its ``logit`` zt, so the calibrated P(mel) is
``sigmoid(logit(output) + zt)`` (melkit/core/probability.py). The decision still compares the raw output
with ``threshold``.

``borderline`` (optional) is written by ``melkit convert`` for a quantized variant (melkit/convert/borderline.py):
the band ``[low, high]`` of the model's raw output around ``threshold`` within which it and the float model it
came from were seen to disagree on validation. The decision stays binary; a reader shows an image in the band
as "borderline: nevus-like" or "borderline: melanoma-suspicious" (:meth:`ModelCard.is_borderline`).

``likelihood_ratios`` (optional) is written by ``melkit convert`` (melkit/core/likelihood.py): risk bands of
the raw output, contiguous from 0 to 1 with an edge at ``threshold``, each with the likelihood ratio
P(band | melanoma) / P(band | nevus) measured on validation. The P(mel) a model outputs is not a probability on a
device whose prevalence differs from training's; the band's LR holds whatever the prevalence
(:meth:`ModelCard.risk_band`, melkit.core.probability.post_test_probability).

Another optional field, ``domain_guard``, is written by ``melkit convert --domain-guard``
(melkit/convert/domain_guard.py): the model then has a second output, a score of how far the image is from
the dermoscopic images it was trained on, and the record says which output (``output``: its tensor spec and
``index``) and the ``threshold`` above which the image is "not assessed" (no melanoma score is given).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from melkit.core.card_parts import (
    _IMPLEMENTED,
    TensorSpec,
    _borderline,
    _calibration,
    _domain_guard,
    _get,
    _items,
    _json_type,
    _likelihood_ratios,
    _one_line,
    _preprocessing,
    _threshold_fold,
)
from melkit.core.litert import io_details
from melkit.core.probability import band_of
from melkit.data.contract import Contract
from melkit.util.errors import BadInputError
from melkit.util.files import read_json, write_json

CARD_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("model_card.schema.json")
TENSOR_DTYPES = ("uint8", "int8", "float32")  # what the contract's feeding (and the app) handles

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FREE_FORM = ("source_run", "training_data", "validation", "selfcheck", "versions")
# calibration and domain_guard: absent from the cards a plain melkit convert writes; license and author: absent
# from the cards of releases made before melkit convert stated them (2.0.0 and older), which still load.
OPTIONAL_FIELDS = ("calibration", "domain_guard", "license", "author", "threshold_fold", "borderline",
                   "likelihood_ratios")
NOT_ASSESSED = "not assessed: this does not look like a dermoscopic image of a skin lesion"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelCard:
    """One model card (see the module docstring). ``extra`` holds further top-level keys (``conversion``)."""

    name: str
    version: str
    variant: str
    model_file: str
    sha256: str
    size_bytes: int
    labels: tuple[str, ...]
    labels_file: str
    threshold: float
    threshold_policy: str
    decision: str
    preprocessing: Contract  # with the model's image_size
    input: TensorSpec
    output: TensorSpec
    source_run: dict
    training_data: dict
    validation: dict
    selfcheck: dict
    versions: dict
    not_a_medical_device: str
    # Set by melkit calibrate: where the threshold (and an optional display temperature) were re-fitted.
    calibration: dict | None = None
    # Set by melkit convert --domain-guard: the second output that says whether an image is in the model's domain.
    domain_guard: dict | None = None
    # Set by melkit convert (--license, default the training data's; --author): one line each, as in the metadata.
    license: str | None = None
    author: str | None = None
    # Set by melkit convert when the threshold was folded into the model (threshold is then 0.5).
    threshold_fold: dict | None = None
    # Set by melkit convert for a quantized variant: the raw outputs around the threshold where it and the
    # float model were seen to disagree on validation (the decision stays binary; the band is shown with it).
    borderline: dict | None = None
    # Set by melkit convert: risk bands of the raw output with the likelihood ratio of each (what an output means
    # whatever the prevalence of melanoma where the model is used).
    likelihood_ratios: dict | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, d) -> ModelCard:
        """A card from its JSON, validated; BadInputError (one line, naming the field) if it is not one."""
        if not isinstance(d, dict):
            raise BadInputError(f"a model card is a JSON object, not {_json_type(d)}")
        if d.get("melkit_card") != CARD_VERSION or isinstance(d.get("melkit_card"), bool):
            raise BadInputError(f"not a melkit model card (version {d.get('melkit_card')})")
        def s(key, non_empty=False):
            value = _get(d, key, "", "a string")
            if non_empty and not value:
                raise BadInputError(f"model card field {key!r} is empty")
            return value

        digest = s("sha256")
        if not _SHA256.match(digest):
            raise BadInputError("model card field 'sha256' must be 64 lowercase hex digits")
        size = _get(d, "size_bytes", "", "an integer")
        if size < 0:
            raise BadInputError(f"model card field 'size_bytes' must not be negative, not {size}")
        labels = _items(_get(d, "labels", "", "an array"), "labels", "a string")
        if not labels:
            raise BadInputError("model card field 'labels' is empty")
        threshold = _get(d, "threshold", "", "a number")
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            # 0 or 1 calls every image one class (melkit train fails such a run's gate): no reader may use it
            raise BadInputError(f"model card field 'threshold' must be a probability strictly between 0 and 1 "
                                f"(0 or 1 calls every image one class), not {threshold}")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"} | {"melkit_card"}
        return cls(
            name=s("name", True), version=s("version", True), variant=s("variant"), model_file=s("model_file", True),
            sha256=digest, size_bytes=size, labels=labels, labels_file=s("labels_file"), threshold=threshold,
            threshold_policy=s("threshold_policy"), decision=s("decision"),
            preprocessing=_preprocessing(_get(d, "preprocessing", "", "an object")),
            input=TensorSpec.from_json(_get(d, "input", "", "an object"), "input"),
            output=TensorSpec.from_json(_get(d, "output", "", "an object"), "output", with_meaning=True),
            **{k: copy.deepcopy(_get(d, k, "", "an object")) for k in _FREE_FORM},
            not_a_medical_device=s("not_a_medical_device"),
            license=_one_line(d, "license") if "license" in d else None,
            author=_one_line(d, "author") if "author" in d else None,
            calibration=_calibration(_get(d, "calibration", "", "an object")) if "calibration" in d else None,
            domain_guard=_domain_guard(_get(d, "domain_guard", "", "an object")) if "domain_guard" in d else None,
            threshold_fold=(_threshold_fold(_get(d, "threshold_fold", "", "an object")) if "threshold_fold" in d
                            else None),
            borderline=(_borderline(_get(d, "borderline", "", "an object"), threshold) if "borderline" in d
                        else None),
            likelihood_ratios=(_likelihood_ratios(_get(d, "likelihood_ratios", "", "an object"), threshold)
                               if "likelihood_ratios" in d else None),
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in known},
        )

    def to_json(self) -> dict:
        """The card's JSON, exactly as melkit convert writes it (a fresh dict: mutating it changes nothing)."""
        return {
            "melkit_card": CARD_VERSION,
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "labels": list(self.labels),
            "labels_file": self.labels_file,
            "threshold": self.threshold,
            **({} if self.threshold_fold is None else {"threshold_fold": copy.deepcopy(self.threshold_fold)}),
            "threshold_policy": self.threshold_policy,
            "decision": self.decision,
            **({} if self.borderline is None else {"borderline": copy.deepcopy(self.borderline)}),
            **({} if self.likelihood_ratios is None else {"likelihood_ratios": copy.deepcopy(self.likelihood_ratios)}),
            "preprocessing": self.preprocessing.to_json(),
            "input": self.input.to_json(),
            "output": self.output.to_json(),
            **{k: copy.deepcopy(getattr(self, k)) for k in _FREE_FORM},
            "not_a_medical_device": self.not_a_medical_device,
            **{k: getattr(self, k) for k in ("license", "author") if getattr(self, k) is not None},
            **({} if self.calibration is None else {"calibration": copy.deepcopy(self.calibration)}),
            **({} if self.domain_guard is None else {"domain_guard": copy.deepcopy(self.domain_guard)}),
            **copy.deepcopy(self.extra),
        }

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    @property
    def p_mel_index(self) -> int:
        """Where P(mel) is in the model's output: the position of "mel" in the labels."""
        if "mel" not in self.labels:
            raise BadInputError(f"the card's labels {list(self.labels)} have no 'mel'")
        return self.labels.index("mel")

    @property
    def conversion(self) -> dict | None:
        return self.extra.get("conversion")

    @property
    def versions_by_step(self) -> dict:
        """{step: {package: version}}: a card from melkit convert with provenance has ``versions`` as
        {"training": ..., "conversion": ...}; an older card's flat record is its training run's."""
        v = self.versions
        if v and all(isinstance(x, dict) for x in v.values()):
            return copy.deepcopy(v)
        return {"training": copy.deepcopy(v)} if v else {}

    @property
    def guard_output(self) -> TensorSpec | None:
        """The domain guard's output tensor as the card promises it; None without a guard."""
        if self.domain_guard is None:
            return None
        return TensorSpec.from_json(self.domain_guard["output"], "domain_guard.output")

    @property
    def guard_index(self) -> int | None:
        return None if self.domain_guard is None else int(self.domain_guard["output"]["index"])

    @property
    def trained_threshold(self) -> float:
        """The threshold on the calibrated P(mel) scale (the Keras model's, before a fold): ``threshold`` for an
        unfolded card, the folded one for a card whose threshold sits at 0.5 of the model's output."""
        return self.threshold if self.threshold_fold is None else float(self.threshold_fold["threshold"])

    @property
    def guard_threshold(self) -> float | None:
        return None if self.domain_guard is None else float(self.domain_guard["threshold"])

    def in_domain(self, scores):
        """Whether each domain score is in the model's domain (at most the guard's threshold; NaN is not)."""
        return np.asarray(scores, float) <= self.guard_threshold

    def is_borderline(self, p_raw):
        """Whether each raw output lies in the card's borderline band (``low <= p <= high``); all False for a
        card without one."""
        p = np.asarray(p_raw, float)
        if self.borderline is None:
            return np.zeros(p.shape, bool)
        return (p >= float(self.borderline["low"])) & (p <= float(self.borderline["high"]))

    @property
    def risk_edges(self) -> list | None:
        """The risk bands' edges on the raw output, from 0 to 1; None without ``likelihood_ratios``."""
        if self.likelihood_ratios is None:
            return None
        bands = self.likelihood_ratios["bands"]
        return [float(bands[0]["low"])] + [float(b["high"]) for b in bands]

    def risk_band(self, p_raw) -> np.ndarray:
        """The index of each raw output's risk band (melkit.core.probability.band_of)."""
        return band_of(p_raw, self.risk_edges)

    def check_against(self, interpreter, model_path=None) -> None:
        """Check that a loaded LiteRT interpreter is the model this card describes; BadInputError if not.

        Input and output dtype, shape and quantization (scale within QUANT_TOLERANCE); the contract; image
        size vs the input shape [1, S, S, 3]; labels vs the output shape (one score per label, "mel" among
        them); the threshold a probability. With a ``domain_guard``, the model must have the guard output at
        its index (name, dtype, shape and quantization as the card says); without one, only the probabilities.
        Bench, predict and bundle all use this one check, as strict as the Android app's own (ModelCard.java),
        so nothing is measured that the phone would refuse.
        """
        where = f"{model_path}: " if model_path is not None else ""
        actual = io_details(interpreter)
        more = actual.get("more_outputs", [])
        wanted = 1 if self.domain_guard is None else 1 + self.guard_index
        if 1 + len(more) != wanted:
            raise BadInputError(f"{where}card says the model has {wanted} output(s) ("
                                + ("probabilities and domain score" if self.domain_guard else "probabilities")
                                + f"), the model has {1 + len(more)}")
        sides = [("input", self.input, actual["input"]), ("output", self.output, actual["output"])]
        if self.domain_guard is not None:
            got = more[self.guard_index - 1]
            if got["name"] != self.guard_output.name:
                raise BadInputError(f"{where}card says domain_guard.output is {self.guard_output.name!r}, the model's "
                                    f"output {self.guard_index} is {got['name']!r}")
            sides.append(("domain_guard.output", self.guard_output, got))
        for side, want, got in sides:
            for key, promised in (("dtype", want.dtype), ("shape", list(want.shape))):
                if promised != got[key]:
                    raise BadInputError(f"{where}card says {side} {key} {promised}, the model has {got[key]}")
            q = want.quantization
            if (q is None) != (got["quantization"] is None) or (q is not None and not q.matches(got["quantization"])):
                raise BadInputError(f"{where}card says {side} quantization {q and q.to_json()}, "
                                    f"the model has {got['quantization']}")
            if got["dtype"] not in TENSOR_DTYPES:
                raise BadInputError(f"{where}{side} dtype {got['dtype']} is not supported (one of "
                                    f"{', '.join(TENSOR_DTYPES)})")
            if got["dtype"] != "float32" and got["quantization"] is None:
                raise BadInputError(f"{where}{side} is {got['dtype']} without quantization")
        p = self.preprocessing
        known = _IMPLEMENTED.get(p.name)
        if known is None or (p.mean, p.std) != (known.mean, known.std):
            raise BadInputError(f"{where}card preprocessing {p.name} (mean {p.mean}, std {p.std}) is not a "
                                f"contract this melkit implements ({' or '.join(_IMPLEMENTED)})")
        size, shape_in, shape_out = p.image_size, actual["input"]["shape"], actual["output"]["shape"]
        if shape_in != [1, size, size, 3]:
            raise BadInputError(f"{where}card image_size {size} does not fit input shape {shape_in}")
        if "mel" not in self.labels or shape_out[-1] != len(self.labels) or math.prod(shape_out) != len(self.labels):
            raise BadInputError(f"{where}labels {list(self.labels)} do not fit output shape {shape_out}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise BadInputError(f"{where}card threshold {self.threshold} is not a probability strictly between 0 "
                                f"and 1")


def write_card(path, card: ModelCard) -> None:
    """Write ``card`` as JSON to ``path`` (atomically)."""
    write_json(path, card.to_json())


def load_card(model_path) -> ModelCard:
    """The card of a .tflite (``<model>.json``), validated and checked against the file's sha256."""
    return read_model(model_path)[0]


def read_model(model_path) -> tuple[ModelCard, bytes]:
    """The card of a .tflite and the model's bytes, read once and checked against the card's sha256.

    Whoever runs, measures or copies the model uses these bytes, never the path again: a file replaced after
    this check (a ``melkit bundle`` or a copy into the same folder) could otherwise run under the old card."""
    model_path = Path(model_path)
    card_path = model_path.with_suffix(".json")
    if not card_path.is_file():
        raise BadInputError(f"no model card {card_path} beside {model_path}")
    try:
        d = read_json(card_path)
    except ValueError as e:
        raise BadInputError(f"{card_path}: not valid JSON ({e})") from None
    try:
        card = ModelCard.from_json(d)
    except BadInputError as e:
        raise BadInputError(f"{card_path}: {e}") from None
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:  # its card is there: the model was removed (or never copied beside it)
        raise BadInputError(f"model file not found: {model_path} (its card is there: was the model removed?)"
                            ) from None
    except OSError as e:
        raise BadInputError(f"cannot read the model {model_path}: {e.strerror or e}") from None
    if sha256(data) != card.sha256:
        raise BadInputError(f"{model_path} does not match its card (sha256 differs)")
    return card, data
