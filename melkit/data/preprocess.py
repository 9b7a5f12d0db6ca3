"""THE preprocessing contract: the one definition of how an image becomes a model input.

Training, int8 calibration, bench, predict and the Android core (``ContractPreprocessor.java``) implement exactly
this, step by step, so the phone sees the same numbers the model was trained on:

1. Decode to RGB, 8 bits per channel (see :mod:`melkit.data.imageio` for odd modes).
2. Resize to ``size x size`` by stretching (no crop, aspect ratio not kept), bilinear with half-pixel
   centres and no antialiasing, computed in float32 (same formulas as TensorFlow's ``ResizeBilinear``).
3. Round half up, ``q = floor(v + 0.5)``, clamped to [0, 255], stored as uint8.
4. Scale ``x = (q - 128) / 128``, so x is in [-1, 127/128].

Step 4 is why a uint8 TFLite input with scale 1/128 and zero point 128 equals the resized pixel ``q``.

The float32 arithmetic below is written out operation by operation (no fused multiply-add, fixed order)
so Java's float arithmetic reproduces it bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np


@dataclass(frozen=True)
class Contract:
    """The contract as data: written into every run's config and every model card, read back by clients.

    ``name`` carries the version (``melkit-v1``); ``image_size`` is set once a model's input size is known.
    """

    name: str = "melkit-v1"
    color: str = "RGB"
    resize: str = "stretch, bilinear, half-pixel centres, no antialias, float32"
    rounding: str = "floor(v + 0.5), clamp [0, 255] -> uint8 q"
    scale: str = "x = (q - 128) / 128"
    mean: float = 128.0
    std: float = 128.0
    input_quantization: dict = field(default_factory=lambda: {"dtype": "uint8", "scale": 1.0 / 128.0,
                                                              "zero_point": 128})
    image_size: int | None = None

    @property
    def version(self) -> int:
        return int(self.name.rsplit("-v", 1)[1])

    def for_size(self, image_size: int) -> "Contract":
        return replace(self, image_size=int(image_size))

    def to_json(self) -> dict:
        d = asdict(self)
        if self.image_size is None:
            d.pop("image_size")
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Contract":
        """The contract a card or run config states; only contracts this code implements are accepted."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing: expected an object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"preprocessing: unknown field(s) {unknown}")
        contract = cls(**d)
        if replace(contract, image_size=None) != CONTRACT:
            raise ValueError(f"preprocessing: contract {contract.name!r} is not the one this melkit implements "
                             f"({CONTRACT.name})")
        return contract


CONTRACT = Contract()
MEAN = np.float32(128.0)
STD = np.float32(128.0)


def _axis_weights(in_size: int, out_size: int):
    """Source indices and weights along one axis (TF's half-pixel scaler, in float32)."""
    scale = np.float32(in_size) / np.float32(out_size)
    centers = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centers)
    lo = np.maximum(floor, 0).astype(np.int64)
    hi = np.minimum(np.ceil(centers), in_size - 1).astype(np.int64)
    frac = (centers - floor).astype(np.float32)
    return lo, hi, frac


def resize_uint8(rgb: np.ndarray, size: int) -> np.ndarray:
    """Steps 2-3: resize an HxWx3 uint8 RGB array to size x size x 3 uint8 per the contract."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    y0, y1, fy = _axis_weights(h, size)
    x0, x1, fx = _axis_weights(w, size)
    img = rgb.astype(np.float32)
    fx = fx[None, :, None]
    fy = fy[:, None, None]
    # Horizontal pass on the two source rows, then vertical: top + (bottom - top) * fy.
    top_l, top_r = img[y0][:, x0], img[y0][:, x1]
    bot_l, bot_r = img[y1][:, x0], img[y1][:, x1]
    top = top_l + (top_r - top_l) * fx
    bottom = bot_l + (bot_r - bot_l) * fx
    value = top + (bottom - top) * fy
    q = np.floor(value + np.float32(0.5))
    return np.clip(q, 0, 255).astype(np.uint8)


def normalize(q):
    """Step 4 on a uint8 array or tensor: ``(q - 128) / 128`` in float32 (works for numpy and TF)."""
    if isinstance(q, np.ndarray):
        return (q.astype(np.float32) - MEAN) / STD
    from melkit.core.tf import tf  # TF tensors inside tf.data / the model

    return (tf.cast(q, tf.float32) - 128.0) / 128.0


def contract_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """All steps on one decoded RGB image: the float32 model input (size x size x 3)."""
    return normalize(resize_uint8(rgb, size))
