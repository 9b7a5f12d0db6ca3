"""The typed parts of a model card and the readers that validate its JSON, field by field.

:class:`Quantization` and :class:`TensorSpec` are the card's input and output tensors as it promises them;
the readers (``_preprocessing``, ``_calibration``, ``_threshold_fold``, ``_domain_guard``, ``_borderline``,
``_likelihood_ratios``, ``_one_line``) each check one field of a card's JSON and hand back what
:meth:`melkit.core.card.ModelCard.from_json` keeps. Every failure is one :class:`BadInputError` line naming the
field (``_get``), so a hand-edited or truncated card says what is wrong with it; melkit/core/card.py describes
what each field means.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from melkit.data.contract import CONTRACTS, Contract
from melkit.util.errors import BadInputError

__all__ = ["Quantization", "TensorSpec", "QUANT_TOLERANCE"]

QUANT_TOLERANCE = 1e-6  # relative, on the scale

_KINDS = {
    "a string": lambda v: isinstance(v, str),
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "an object": lambda v: isinstance(v, dict),
    "an array": lambda v: isinstance(v, list),
}


def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, float):
        return "a number"
    for kind, test in _KINDS.items():
        if test(v):
            return kind
    return type(v).__name__


def _get(obj: dict, key: str, where: str, kind: str, nullable: bool = False):
    """``obj[key]``, checked to be of JSON ``kind``; BadInputError naming the field (``where`` + key)."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise BadInputError(f"model card field {name!r} is missing")
    value = obj[key]
    if value is None and nullable:
        return None
    if not _KINDS[kind](value):
        raise BadInputError(f"model card field {name!r} must be {kind}{' or null' if nullable else ''}, "
                            f"not {_json_type(value)}")
    return value


def _items(values: list, name: str, kind: str) -> tuple:
    for i, v in enumerate(values):
        if not _KINDS[kind](v):
            raise BadInputError(f"model card field '{name}[{i}]' must be {kind}, not {_json_type(v)}")
    return tuple(values)


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of an integer tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    @classmethod
    def from_json(cls, d: dict, where: str) -> Quantization:
        scale = _get(d, "scale", where, "a number")
        if not (math.isfinite(scale) and scale > 0):
            raise BadInputError(f"model card field '{where}.scale' must be positive, not {scale}")
        return cls(scale, _get(d, "zero_point", where, "an integer"))

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}

    def matches(self, actual: dict | None) -> bool:
        """Same as ``actual`` (io_details' form): zero point exactly, scale within QUANT_TOLERANCE."""
        return actual is not None and int(actual["zero_point"]) == int(self.zero_point) and \
            abs(float(actual["scale"]) - float(self.scale)) <= QUANT_TOLERANCE * abs(float(self.scale))


@dataclass(frozen=True)
class TensorSpec:
    """The model's input or output tensor as the card promises it (io_details' form, plus the output's meaning)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    meaning: str | None = None  # output only: how to read the scores

    @classmethod
    def from_json(cls, d: dict, where: str, with_meaning: bool = False) -> TensorSpec:
        q = _get(d, "quantization", where, "an object", nullable=True)
        shape = _items(_get(d, "shape", where, "an array"), f"{where}.shape", "an integer")
        if not shape or min(shape) < 0:
            raise BadInputError(f"model card field '{where}.shape' must be a non-empty list of sizes, "
                                f"not {list(shape)}")
        return cls(_get(d, "name", where, "a string"), shape,
                   _get(d, "dtype", where, "a string"),
                   None if q is None else Quantization.from_json(q, f"{where}.quantization"),
                   _get(d, "meaning", where, "a string") if with_meaning else None)

    def to_json(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
               "quantization": None if self.quantization is None else self.quantization.to_json()}
        if self.meaning is not None:
            out["meaning"] = self.meaning
        return out


_CONTRACT_TEXT = ("name", "color", "resize", "rounding", "scale")
_IMPLEMENTED = {c.name: c for c in CONTRACTS.values()}  # melkit-v1, melkit-v2


def _preprocessing(d: dict, where: str = "preprocessing") -> Contract:
    """The card's preprocessing: every field present and typed, and a contract this melkit implements."""
    for key in _CONTRACT_TEXT:
        _get(d, key, where, "a string")
    if d["name"] not in _IMPLEMENTED:
        raise BadInputError(f"model card field '{where}.name' is {d['name']!r}, not a contract this melkit "
                            f"implements ({' or '.join(_IMPLEMENTED)})")
    _get(d, "mean", where, "a number")
    _get(d, "std", where, "a number")
    iq = _get(d, "input_quantization", where, "an object")
    _get(iq, "dtype", f"{where}.input_quantization", "a string")
    Quantization.from_json(iq, f"{where}.input_quantization")
    size = _get(d, "image_size", where, "an integer")
    if size < 1:
        raise BadInputError(f"model card field '{where}.image_size' must be positive, not {size}")
    try:
        return Contract.from_json(copy.deepcopy(d))
    except (TypeError, ValueError) as e:
        raise BadInputError(f"model card {e}") from None


def _one_line(d: dict, key: str) -> str:
    """A top-level one-line text field (license, author): a non-empty string without a line break."""
    value = _get(d, key, "", "a string")
    if not value.strip() or "\n" in value or "\r" in value:
        raise BadInputError(f"model card field {key!r} must be one non-empty line of text")
    return value


def _calibration(d: dict) -> dict:
    """The optional record ``melkit calibrate`` adds: free-form, but its temperature is what a reader applies."""
    where = "calibration"
    for key in ("fitted_on", "policy"):
        _get(d, key, where, "a string")
    n = _get(d, "n", where, "an integer")
    if n < 1:
        raise BadInputError(f"model card field 'calibration.n' must be positive, not {n}")
    t = _get(d, "temperature", where, "a number", nullable=True)
    if t is not None and not (math.isfinite(t) and t > 0):
        raise BadInputError(f"model card field 'calibration.temperature' must be positive or null, not {t}")
    return copy.deepcopy(d)


def _finite(d: dict, key: str, where: str) -> float:
    """``d[key]``, a number that must be finite."""
    v = _get(d, key, where, "a number")
    if not math.isfinite(v):
        raise BadInputError(f"model card field '{where}.{key}' must be a finite number, not {v}")
    return v


def _with_method(d: dict, where: str) -> dict:
    """A copy of the optional record ``d`` once its free-form ``method`` is checked to be a string."""
    _get(d, "method", where, "a string")
    return copy.deepcopy(d)


def _threshold_fold(d: dict) -> dict:
    """The optional record of a threshold folded into the model: the original threshold (a probability
    strictly between 0 and 1) and the folded logit (finite) are what a reader applies; the rest is free-form."""
    where = "threshold_fold"
    t = _get(d, "threshold", where, "a number")
    if not (math.isfinite(t) and 0.0 < t < 1.0):
        raise BadInputError(f"model card field 'threshold_fold.threshold' must be in (0, 1), not {t}")
    _finite(d, "logit", where)
    return _with_method(d, where)


def _domain_guard(d: dict) -> dict:
    """The optional record ``melkit convert --domain-guard`` writes: the guard output's tensor spec and position,
    and the threshold; the rest (method, how it was fitted, its self-check) is free-form."""
    where = "domain_guard"
    out = _get(d, "output", where, "an object")
    spec = TensorSpec.from_json(out, f"{where}.output")
    index = _get(out, "index", f"{where}.output", "an integer")
    if index < 1:
        raise BadInputError(f"model card field '{where}.output.index' must be at least 1 (output 0 holds the "
                            f"probabilities), not {index}")
    if math.prod(spec.shape) != 1:
        raise BadInputError(f"model card field '{where}.output.shape' must hold one score, not {list(spec.shape)}")
    _finite(d, "threshold", where)
    return _with_method(d, where)


def _borderline(d: dict, threshold: float) -> dict:
    """The optional band around the threshold where rounding can still decide (melkit/convert/borderline.py):
    ``low <= threshold <= high``, on the model's raw output (the scale ``threshold`` is on); the rest free-form."""
    where = "borderline"
    low, high = (_get(d, k, where, "a number") for k in ("low", "high"))
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= threshold <= high <= 1.0):
        raise BadInputError(f"model card field 'borderline' must hold 0 <= low <= threshold <= high <= 1, not "
                            f"low {low}, threshold {threshold}, high {high}")
    return _with_method(d, where)


def _likelihood_ratios(d: dict, threshold: float) -> dict:
    """The optional risk bands (melkit/core/likelihood.py): contiguous bands of the raw output from 0 to 1,
    one edge at the threshold, each with a name and a likelihood ratio (positive, or null where it could not
    be measured); the rest free-form."""
    where = "likelihood_ratios"
    _get(d, "method", where, "a string")
    bands = _get(d, "bands", where, "an array")
    if len(bands) < 2:
        raise BadInputError(f"model card field '{where}.bands' must hold at least 2 bands, not {len(bands)}")
    edges = []
    for k, b in enumerate(bands):
        at = f"{where}.bands[{k}]"
        if not isinstance(b, dict):
            raise BadInputError(f"model card field '{at}' must be an object, not {_json_type(b)}")
        _get(b, "name", at, "a string")
        low, high = _get(b, "low", at, "a number"), _get(b, "high", at, "a number")
        lr = _get(b, "lr", at, "a number", nullable=True)
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            raise BadInputError(f"model card field '{at}.lr' must be a positive number or null, not {lr}")
        if edges and low != edges[-1]:
            raise BadInputError(f"model card field '{at}.low' must equal the band before's high ({edges[-1]}), "
                                f"not {low}")
        edges += [low] if not edges else []
        edges.append(high)
    if edges[0] != 0.0 or edges[-1] != 1.0 or any(b < a for a, b in zip(edges, edges[1:])):
        raise BadInputError(f"model card field '{where}.bands' must run from 0 to 1 in order, not {edges}")
    if threshold not in edges:
        raise BadInputError(f"model card field '{where}.bands' must have an edge at the threshold {threshold}")
    return copy.deepcopy(d)

