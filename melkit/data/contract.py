"""THE preprocessing contract: the one definition of how an image becomes a model input.

Training, int8 calibration, bench, predict and the Android core (``ContractPreprocessor.java``) implement exactly
this, step by step, so the phone sees the same numbers the model was trained on:

1. Decode to RGB, 8 bits per channel (see :mod:`melkit.data.imageio` for odd modes).
2. Resize to ``size x size`` by stretching (no crop, aspect ratio not kept), bilinear with half-pixel
   centres and no antialiasing, computed in float32 (same formulas as TensorFlow's ``ResizeBilinear``).
3. Round half up, ``q = floor(v + 0.5)``, clamped to [0, 255], stored as uint8.
4. Scale ``x = (q - 128) / 128``, so x is in [-1, 127/128].

Step 4 is why a uint8 TFLite input with scale 1/128 and zero point 128 equals the resized pixel ``q``.

Optional step 3b, ``color_constancy = "shades_of_gray:p=6"`` (a contract field, so a card says whether its
model needs it): Shades of Gray colour constancy on ``q`` (see :func:`shades_of_gray`). Each dermatoscope
lights and white-balances differently; dividing out the image's estimated illuminant removes much of that.
Cards without the field keep the steps above exactly.

Contract v2 (``melkit-v2``, :data:`CONTRACT_V2`) adds step 2a before the resize, for phone photos (a 12-MP
photo resized by step 2 alone samples a few pixels per output pixel: aliasing, P(mel) unstable):

2a. If the upright image's short side is more than ``2 * size``, reduce it by an integer box filter of
    ``k = short_side // size`` (so k >= 2 and the short side becomes ``size .. 2*size - 1``): the output is
    ``(H // k) x (W // k)``, each pixel the mean of a k x k block in integers, round half up,
    ``(sum + (k*k) // 2) // (k*k)`` per channel; the last ``H % k`` rows and ``W % k`` columns (bottom and
    right of the upright image) are dropped. See :func:`box_reduce`.

Steps 2-4 and 3b then run exactly as in v1, so v2 equals v1 on every image whose short side is at most
``2 * size`` (HAM 200x150 and ISIC 2017 256x256 at size 224, for example). For JPEGs, v2 clients may decode
with the decoder's DCT scaling (1/2, 1/4, 1/8) as long as the decoded short side stays at least ``2 * size``
(:func:`melkit.data.imageio.read_rgb` with ``contract=``): step 1 then gives a smaller image, which
step 2a reduces further. :data:`CONTRACT` stays v1: 1.x cards and runs behave exactly as before.

v2 keeps v1's stretch rather than cropping to the centre square: with the 1.1.0 int8 model on the 798 ISIC
2016 images (~600x450, ``benchmarks/stretch_vs_crop.py``) the AUC is 0.7456 stretched vs 0.7479 cropped
under v1 (difference -0.002, 95 % paired bootstrap CI [-0.016, +0.014]) and 0.7407 vs 0.7499 under v2
(-0.009 [-0.025, +0.007]): no significant difference, so the geometry the training images were given
(HAM10000 200x150, stretched) stays, and no part of the photo is thrown away. (v2 - v1 there, stretched:
-0.005 [-0.015, +0.005]; ISIC 2016's 600x450 images are just over ``2 * 224`` tall, so v2 boxes them by 2.)

The float32 arithmetic below is written out operation by operation (no fused multiply-add, fixed order)
so Java's float arithmetic reproduces it bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

V1_RESIZE = "stretch, bilinear, half-pixel centres, no antialias, float32"
V2_RESIZE = ("if short side > 2*size: integer box k = short // size, block mean (sum + k*k//2) // (k*k), "
             "remainder rows/columns dropped at bottom/right; then " + V1_RESIZE)


@dataclass(frozen=True)
class Contract:
    """The contract as data: written into every run's config and every model card, read back by clients.

    ``name`` carries the version (``melkit-v1``); ``image_size`` is set once a model's input size is known.
    """

    name: str = "melkit-v1"
    color: str = "RGB"
    resize: str = V1_RESIZE
    rounding: str = "floor(v + 0.5), clamp [0, 255] -> uint8 q"
    scale: str = "x = (q - 128) / 128"
    mean: float = 128.0
    std: float = 128.0
    input_quantization: dict = field(default_factory=lambda: {"dtype": "uint8", "scale": 1.0 / 128.0,
                                                              "zero_point": 128})
    image_size: int | None = None
    # None, or the optional colour-constancy step 3b: "shades_of_gray:p=6" (see shades_of_gray()).
    color_constancy: str | None = None

    @property
    def version(self) -> int:
        return int(self.name.rsplit("-v", 1)[1])

    def for_size(self, image_size: int) -> "Contract":
        return replace(self, image_size=int(image_size))

    def with_color_constancy(self, on: bool) -> "Contract":
        return replace(self, color_constancy=SHADES_OF_GRAY if on else None)

    def with_version(self, version: int) -> "Contract":
        """The implemented contract ``version`` (1 or 2) with this one's image size and colour constancy."""
        if version not in CONTRACTS:
            raise ValueError(f"contract version {version} is not one this melkit implements "
                             f"({', '.join(map(str, CONTRACTS))})")
        return replace(CONTRACTS[version], image_size=self.image_size, color_constancy=self.color_constancy)

    @property
    def decode_min_short_side(self) -> int | None:
        """The short side a v2 decoder may reduce a JPEG to (DCT scaling) before step 2a; None for v1."""
        return 2 * self.image_size if self.version >= 2 and self.image_size else None

    def to_json(self) -> dict:
        d = asdict(self)
        for key in ("image_size", "color_constancy"):  # absent when unset: v1 cards stay byte for byte
            if d[key] is None:
                d.pop(key)
        return d

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Steps 2-3 (2a for v2, 3b when set) on one decoded HxWx3 uint8 RGB image: the uint8 ``q`` the model takes."""
        if self.image_size is None:
            raise ValueError("the contract has no image_size yet (use for_size)")
        if self.version >= 2:
            rgb = box_reduce(rgb, self.image_size)
        q = resize_uint8(rgb, self.image_size)
        return shades_of_gray(q, SHADES_OF_GRAY_P) if self.color_constancy else q

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
        if contract.color_constancy not in (None, SHADES_OF_GRAY):
            raise ValueError(f"preprocessing: color_constancy {contract.color_constancy!r} is not one this melkit "
                             f"implements ({SHADES_OF_GRAY})")
        known = {c.name: c for c in CONTRACTS.values()}
        if replace(contract, image_size=None, color_constancy=None) != known.get(contract.name):
            raise ValueError(f"preprocessing: contract {contract.name!r} is not the one this melkit implements "
                             f"({' or '.join(known)})")
        return contract


SHADES_OF_GRAY_P = 6
SHADES_OF_GRAY = f"shades_of_gray:p={SHADES_OF_GRAY_P}"
CONTRACT = Contract()  # v1: what every 1.x card and run states
CONTRACT_V2 = Contract(name="melkit-v2", resize=V2_RESIZE)
CONTRACTS = {1: CONTRACT, 2: CONTRACT_V2}  # every contract this melkit implements, by version
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


def box_factor(height: int, width: int, size: int) -> int:
    """Step 2a's k: ``short_side // size`` when the short side is more than ``2 * size``, else 1 (no box)."""
    short = min(height, width)
    return short // size if short > 2 * size else 1


def box_reduce(rgb: np.ndarray, size: int) -> np.ndarray:
    """Step 2a (contract v2): the k x k block means of an HxWx3 uint8 image, k = :func:`box_factor`, in
    integers with round half up; the last ``H % k`` rows and ``W % k`` columns are dropped. The image
    itself when k = 1."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    k = box_factor(h, w, size)
    if k == 1:
        return rgb
    bh, bw = h // k, w // k
    wide = np.uint32 if k * k * 255 < 2 ** 32 else np.uint64
    kept = rgb[:bh * k, :bw * k]
    rows = kept[0::k].astype(wide)  # k strided whole-image adds per axis: fast, and exact in integers
    for i in range(1, k):
        rows += kept[i::k]
    sums = rows[:, 0::k].copy()
    for j in range(1, k):
        sums += rows[:, j::k]
    return ((sums + wide(k * k // 2)) // wide(k * k)).astype(np.uint8)


def _root(m: float, p: int) -> float:
    """The p-th root of m in [0, 256) by 64 bisection steps: only +, *, compare, so Java gets the same bits
    (library pow/cbrt may differ in the last bit between platforms)."""
    lo, hi = 0.0, 256.0
    for _ in range(64):
        mid = (lo + hi) * 0.5
        t = mid
        for _ in range(p - 1):
            t = t * mid
        if t <= m:
            lo = mid
        else:
            hi = mid
    return lo


def shades_of_gray(q: np.ndarray, p: int = SHADES_OF_GRAY_P) -> np.ndarray:
    """Step 3b: Shades of Gray colour constancy (Finlayson & Trezzi 2004) on a uint8 HxWx3 image.

    The illuminant of channel c is the Minkowski p-mean ``e_c = (mean(q_c ** p)) ** (1/p)``; each channel is
    scaled by ``gain_c = mean(e) / e_c`` so the illuminant becomes grey at the same overall level, then
    rounded half up and clamped to uint8. Defined in float64 operation by operation so the Java core
    (``ContractPreprocessor.shadesOfGray``) reproduces it bit for bit:
      ``S_c = sum over v = 0..255, in that order, of count_c[v] * v**p`` (v**p exact for p <= 6);
      ``m_c = S_c / (H*W)``; ``e_c`` = :func:`_root` (bisection); ``mean(e) = (e_R + e_G + e_B) / 3``;
      ``lut_c[v] = min(255, floor(v * gain_c + 0.5))``, the output is ``lut_c[q]``.
    A channel that is all zero leaves the image unchanged (no illuminant to estimate).
    """
    if q.dtype != np.uint8 or q.ndim != 3 or q.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8, got {q.dtype} {q.shape}")
    if not 1 <= p <= 6:
        raise ValueError(f"p must be 1..6 (v**p exact in float64), got {p}")
    n = float(q.shape[0] * q.shape[1])
    powers = np.arange(256, dtype=np.float64) ** p
    e = []
    for c in range(3):
        counts = np.bincount(q[..., c].ravel(), minlength=256).astype(np.float64)
        total = float(np.cumsum(counts * powers)[-1])  # cumsum adds left to right, as Java's loop does
        e.append(_root(total / n, p))
    if min(e) == 0.0:
        return q.copy()
    grey = (e[0] + e[1] + e[2]) / 3.0
    v = np.arange(256, dtype=np.float64)
    luts = [np.minimum(np.floor(v * (grey / e_c) + 0.5), 255.0).astype(np.uint8) for e_c in e]
    return np.stack([luts[c][q[..., c]] for c in range(3)], axis=-1)


def normalize(q):
    """Step 4 on a uint8 array or tensor: ``(q - 128) / 128`` in float32 (works for numpy and TF)."""
    if isinstance(q, np.ndarray):
        return (q.astype(np.float32) - MEAN) / STD
    from melkit.util.tf import tf  # TF tensors inside tf.data / the model

    return (tf.cast(q, tf.float32) - 128.0) / 128.0


def contract_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """All steps on one decoded RGB image: the float32 model input (size x size x 3)."""
    return normalize(resize_uint8(rgb, size))
