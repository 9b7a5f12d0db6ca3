"""Procedural "ABCD" dermoscopy-like data set in the HAM10000 layout.

This is melkit's embedded default data (offline demo, tests). ``write_synth_dataset`` writes::

    out_dir/metadata.csv          lesion_id,image_id,dx,dx_type,age,sex,localization,dataset[,split]
    out_dir/images/<image_id>.jpg RGB JPEG (quality 90), width x height = image_size

Several sources (multi-source training tests): ``source`` names the ``dataset`` column, ``id_prefix``
keeps the ids of two sets apart, ``split_fractions`` adds a ``split`` column (whole lesions, per class),
and ``colour_cast`` / ``vignette`` give a source its own "device" look (a fixed per-channel gain and a
fixed dark ring toward the corners on every image). Left at their defaults they change nothing: the
files are byte-identical to a set written without them.

Each lesion is a nevus (``nv``) or a melanoma (``mel``) drawn after the dermoscopic ABCD rule:
nevi are mostly symmetric, smooth-bordered, one-coloured and small; melanomas mostly asymmetric,
irregular/notched, multi-coloured (black, blue-grey veil, red, white regression) and larger.
Both classes are driven by one hidden "atypia" score whose class distributions overlap, plus
independent nuisance factors (skin tone, size, position, lighting, hair, vignetting), so the task is
learnable but not trivial.

A lesion is rendered once in its own coordinate frame (a small texture holding pigment
transmittance, overlay colour/opacity and coverage); each of its images warps that texture with a
new rotation, shift and scale onto a new skin patch with new lighting, hair and noise, so images of
one lesion show the same lesion again. Only numpy and Pillow are used; everything is vectorised.

Output is deterministic: the same arguments and seed give byte-identical files (for a given
numpy/Pillow build). The data set is built in ``out_dir + ".partial"`` and moved into place with
``os.replace`` at the end, so an interrupted run never leaves a complete-looking ``out_dir``; the next run
(holding ``out_dir``'s lock, as every writer does) removes what a killed one left in the staging folder.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from melkit.core.errors import BadInputError
from melkit.core.files import exclusive

__all__ = ["write_synth_dataset", "METADATA_COLUMNS"]

METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset")
LOCALIZATIONS = ("back", "lower extremity", "trunk", "upper extremity", "face", "abdomen", "chest")
_LOC_P_NV = np.array([0.25, 0.22, 0.18, 0.12, 0.06, 0.10, 0.07])
_LOC_P_MEL = np.array([0.30, 0.18, 0.14, 0.16, 0.10, 0.05, 0.07])

_JPEG_QUALITY = 90
_TWO_PI = 2.0 * math.pi

# Overlay colours (linear-ish RGB in [0, 1]) for melanoma-type structures.
_COLOURS = {
    "black": np.array([0.13, 0.10, 0.11]),
    "bluegrey": np.array([0.42, 0.47, 0.57]),
    "red": np.array([0.80, 0.40, 0.44]),
    "white": np.array([0.90, 0.87, 0.86]),
}


# --------------------------------------------------------------------------------------------
# small numeric helpers
# --------------------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _fourier_field(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, n: int,
                   k_lo: float, k_hi: float) -> np.ndarray:
    """Smooth random field (sum of ``n`` plane waves, wave numbers in [k_lo, k_hi]), std ~1."""
    ang = rng.uniform(0.0, _TWO_PI, n)
    k = rng.uniform(k_lo, k_hi, n)
    ph = rng.uniform(0.0, _TWO_PI, n)
    amp = rng.uniform(0.5, 1.0, n)
    norm = math.sqrt(float(np.sum(amp ** 2)) / 2.0)
    f = np.zeros(u.shape, dtype=np.float32)
    for i in range(n):  # float32 keeps np.cos vectorised (SIMD) and cheap
        f += np.float32(amp[i] / norm) * np.cos(np.float32(k[i] * math.cos(ang[i])) * u
                                                + np.float32(k[i] * math.sin(ang[i])) * v
                                                + np.float32(ph[i]))
    return f


def _lowfreq_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Smooth noise image (h, w), std ~1, by bicubic upsampling of a coarse random grid."""
    gh = max(2, cells)
    gw = max(2, int(round(cells * w / h)))
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# lesion model
# --------------------------------------------------------------------------------------------
def _draw_lesion(rng: np.random.Generator, is_mel: bool) -> dict:
    """Random lesion parameters. Lengths are in reference pixels (image height 150)."""
    # Hidden atypia score: overlapping class distributions make the task non-trivial.
    a = float(rng.beta(6.0, 2.5) if is_mel else rng.beta(2.0, 5.5))
    p: dict = {"a": a, "is_mel": is_mel}

    # Diameter: melanomas larger on average, heavy overlap.
    p["R"] = float(np.clip(150.0 * (0.15 + 0.12 * a) * math.exp(rng.normal(0.0, 0.2)), 12.0, 62.0))

    # Shape (A, B): elongation, low-order asymmetry, high-order border irregularity, notches.
    p["elong"] = float(rng.uniform(0.0, 0.22))
    p["elong_phase"] = float(rng.uniform(0.0, math.pi))
    asym = (0.015 + 0.17 * a ** 1.3) * rng.uniform(0.5, 1.5)
    w_asym = rng.uniform(0.2, 1.0, 3)
    p["asym_amp"] = asym * w_asym / math.sqrt(float(np.sum(w_asym ** 2)))
    p["asym_ph"] = rng.uniform(0.0, _TWO_PI, 3)
    border = (0.008 + 0.11 * a ** 1.6) * rng.uniform(0.5, 1.5)
    ks = np.arange(4, 22)
    w_b = rng.rayleigh(1.0, ks.size) / ks ** rng.uniform(0.6, 1.1)
    p["border_k"] = ks
    p["border_amp"] = border * w_b / math.sqrt(float(np.sum(w_b ** 2)))
    p["border_ph"] = rng.uniform(0.0, _TWO_PI, ks.size)
    n_notch = int(rng.poisson(3.5 * a ** 2))
    p["notches"] = [(float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(0.08, 0.28)),
                     float(rng.uniform(0.06, 0.25))) for _ in range(n_notch)]
    # Border sharpness: nevi fade out gradually, melanomas tend to stop abruptly.
    p["edge_w"] = float((1.5 + 5.0 * (1.0 - a)) * rng.uniform(0.7, 1.3))

    # Colour (C): base pigment density and hue; radial profile; patchiness.
    p["d0"] = float(rng.uniform(0.45, 1.45) + 0.55 * a)
    p["absorb"] = np.array([0.60, 0.86, 0.98]) * rng.uniform(0.9, 1.1, 3)
    p["center_dark"] = float(rng.uniform(-0.1, 0.35))
    p["patch_amp"] = float((0.03 + 0.6 * a ** 1.3) * rng.uniform(0.6, 1.4))

    # Extra colour components; nevi mostly none (sometimes a darker centre: two-toned).
    n_extra = int(np.clip(round(3.4 * a + rng.normal(0.0, 0.6) - 0.7), 0, 3))
    kinds = ["dark", "black", "bluegrey", "red", "white"]
    wts = np.array([1.6 * (1.0 - a) + 0.3, 0.25 + 1.0 * a, 0.05 + 1.0 * a, 0.15 + 0.6 * a, 0.05 + 0.9 * a])
    p["extras"] = list(rng.choice(kinds, size=n_extra, replace=False, p=wts / wts.sum())) if n_extra else []

    # Pigment network: regular and faint in nevi, irregular (warped, thick/thin) in melanomas.
    p["network"] = bool(rng.random() < 0.75 - 0.35 * a)
    p["net_period"] = float(rng.uniform(6.0, 9.0))
    p["net_strength"] = float(rng.uniform(0.06, 0.18))
    p["net_irreg"] = float(a * rng.uniform(0.3, 1.0))

    # Irregular dark dots/globules.
    p["n_dots"] = int(rng.poisson(10.0 * a ** 2.5))

    # Skin (same patient for all images of the lesion).
    t = float(rng.beta(1.3, 2.6))
    light = np.array([0.95, 0.79, 0.71])
    dark = np.array([0.50, 0.33, 0.24])
    p["skin"] = np.clip((1.0 - t) * light + t * dark + rng.normal(0.0, 0.018, 3), 0.05, 1.0)

    # Lesion position on the image (per-lesion offset, each image adds a small shift).
    p["offset"] = rng.normal(0.0, 1.0, 2) * np.array([10.0, 8.0])
    p["tex_seed"] = int(rng.integers(0, 2 ** 62))
    return p


def _render_lesion_texture(p: dict, res: float = 1.0) -> list:
    """Render the lesion in its own frame (``res`` texels per reference pixel).

    Returns 6 float32 (mode "F") n x n PIL images K (3) and P (3) such that a view of the lesion
    is ``skin * K + P`` (see below); P channels are None when the lesion has no overlays.
    """
    rng = np.random.default_rng(p["tex_seed"])
    R = p["R"]
    a = p["a"]

    # Border radius as a function of angle (lookup table).
    th = np.linspace(-math.pi, math.pi, 1024, endpoint=False)
    mod = p["elong"] * np.cos(2.0 * (th - p["elong_phase"]))
    for k in range(3):
        mod = mod + p["asym_amp"][k] * np.cos((k + 1) * th + p["asym_ph"][k])
    mod = mod + np.sum(p["border_amp"][:, None]
                       * np.cos(p["border_k"][:, None] * th[None] + p["border_ph"][:, None]), axis=0)
    for centre, depth, width in p["notches"]:
        d = np.angle(np.exp(1j * (th - centre)))
        mod = mod - depth * np.exp(-0.5 * (d / width) ** 2)
    rlut = R * np.maximum(1.0 + mod, 0.35)

    w_edge = p["edge_w"]
    half = int(math.ceil((rlut.max() + w_edge + 4) * res))
    ax = np.arange(-half, half + 1, dtype=np.float32) / np.float32(res)
    u, v = np.meshgrid(ax, ax)
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    rb = np.interp(theta, th, rlut, period=_TWO_PI).astype(np.float32)
    alpha = _smoothstep((rb - rho) / w_edge + 0.5)
    q = np.clip(rho / rb, 0.0, 1.5)  # normalised radius (1 at the border)
    un, vn = u / R, v / R
    inside = alpha > 0.5

    # Base pigment density: radial profile, patchiness.
    dens = p["d0"] * (1.0 - p["center_dark"] * (q ** 2 - 0.4))
    dens = dens * np.exp(p["patch_amp"] * _fourier_field(rng, un, vn, 6, 3.0, 9.0))
    dens = dens * (1.0 + 0.03 * _fourier_field(rng, un, vn, 8, 12.0, 30.0))  # fine mottling

    # Pigment network.
    if p["network"]:
        P = p["net_period"]
        kn = _TWO_PI / P * 2.0 / math.sqrt(3.0)
        phi0 = rng.uniform(0.0, _TWO_PI)
        irr = p["net_irreg"]
        wu = u + irr * 0.5 * P * _fourier_field(rng, un, vn, 5, 4.0, 10.0)
        wv = v + irr * 0.5 * P * _fourier_field(rng, un, vn, 5, 4.0, 10.0)
        h = np.zeros_like(u)
        for i in range(3):
            ang = phi0 + i * math.pi / 3.0
            h += np.cos(kn * (wu * math.cos(ang) + wv * math.sin(ang)))
        thick = 0.4 + irr * 0.9 * _fourier_field(rng, un, vn, 4, 3.0, 8.0)
        lines = _smoothstep((thick - h) / 2.0 + 0.25)
        fade = np.clip(1.2 - q, 0.0, 1.0) if irr < 0.3 else np.clip(1.0 + 0.3 * _fourier_field(
            rng, un, vn, 4, 2.0, 6.0) - 0.5 * q, 0.0, 1.0)
        dens = dens * (1.0 + p["net_strength"] * 2.0 * (lines - 0.5) * fade)

    overlays = []
    for kind in p["extras"]:
        if kind == "dark":
            # Darker blob: central and round when atypia is low, eccentric and ragged otherwise.
            ecc = a * rng.uniform(0.0, 0.6)
            ang = rng.uniform(0.0, _TWO_PI)
            cu, cv = ecc * math.cos(ang), ecc * math.sin(ang)
            sb = rng.uniform(0.25, 0.45)
            rr = np.hypot(un - cu, vn - cv) / sb
            rr = rr * np.exp(0.5 * a * _fourier_field(rng, un, vn, 5, 3.0, 8.0) / 2.0)
            dens = dens + rng.uniform(0.5, 1.3) * np.exp(-0.5 * rr ** 2)
            continue
        col = _COLOURS[kind].copy()
        if kind == "bluegrey":
            f = _fourier_field(rng, un, vn, 5, 2.0, 5.0)
            cover, op = rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.75)
        elif kind == "black":
            f = _fourier_field(rng, un, vn, 6, 4.0, 10.0)
            cover, op = rng.uniform(0.12, 0.3), rng.uniform(0.75, 0.95)
        elif kind == "red":
            f = _fourier_field(rng, un, vn, 6, 3.0, 8.0) + 0.8 * q  # rather peripheral
            cover, op = rng.uniform(0.12, 0.3), rng.uniform(0.35, 0.65)
        else:  # white regression
            f = _fourier_field(rng, un, vn, 6, 3.0, 8.0)
            cover, op = rng.uniform(0.1, 0.25), rng.uniform(0.55, 0.85)
        col = col * rng.uniform(0.9, 1.1)
        thr = float(np.quantile(f[inside], 1.0 - cover)) if inside.any() else 1.0
        m = _smoothstep((f - thr) / 1.1 + 0.5) * op * np.clip((1.05 - q) / 0.25, 0.0, 1.0)
        overlays.append((m, col))

    # Irregular dots / globules.
    if p["n_dots"]:
        n = p["n_dots"]
        ang = rng.uniform(0.0, _TWO_PI, n)
        rad = np.sqrt(rng.uniform(0.05, 0.85, n))
        r_at = np.interp(ang, th, rlut, period=_TWO_PI)
        cx, cy = rad * r_at * np.cos(ang), rad * r_at * np.sin(ang)
        sz = rng.uniform(0.8, 2.2, n)
        m = np.zeros_like(u)
        for i in range(n):
            m = np.maximum(m, np.exp(-0.5 * ((u - cx[i]) ** 2 + (v - cy[i]) ** 2) / sz[i] ** 2))
        overlays.append((m * 0.85, np.array([0.17, 0.11, 0.09])))

    # Composite in premultiplied form: image = skin * K + P with
    #   K = 1 - alpha + alpha * T * (1 - M),  P = alpha * O
    # (T: pigment transmittance, O/M: overlay colour/opacity), so each view only warps 6 channels.
    lum_scale = 0.6 + 0.4 * float(np.mean(p["skin"])) / 0.8  # overlays follow the skin's brightness
    O = [np.zeros_like(u) for _ in range(3)]
    M = np.zeros_like(u)
    for m, col in overlays:
        m = m.astype(np.float32)
        for c in range(3):
            O[c] = O[c] * (1.0 - m) + m * np.float32(col[c] * lum_scale)
        M = 1.0 - (1.0 - M) * (1.0 - m)
    chans = []
    for c in range(3):
        T = np.exp(-dens * np.float32(p["absorb"][c]))
        chans.append(1.0 - alpha + alpha * T * (1.0 - M))
    chans += [alpha * O[c] if overlays else None for c in range(3)]
    return [None if ch is None else Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32), mode="F")
            for ch in chans]


def _hair_mask(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Anti-aliased mask (h, w) in [0, 1] with a few thin curved hairs."""
    ss = 3
    canvas = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(canvas)
    n = 1 + int(rng.poisson(2.5))
    for _ in range(n):
        x = rng.uniform(-0.1, 1.1) * w * ss
        y = rng.uniform(-0.1, 1.1) * h * ss
        ang = rng.uniform(0.0, _TWO_PI)
        length = rng.uniform(0.4, 1.4) * w * ss
        steps = 30
        curv = rng.normal(0.0, 0.025)
        pts = [(x, y)]
        for _ in range(steps):
            ang += curv + rng.normal(0.0, 0.03)
            x += math.cos(ang) * length / steps
            y += math.sin(ang) * length / steps
            pts.append((x, y))
        width = max(1, int(round(int(rng.integers(2, 5)) * min(w, h) / 150.0)))
        draw.line(pts, fill=int(rng.integers(170, 256)), width=width, joint="curve")
    small = canvas.resize((w, h), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


_TEX_FILL = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)  # outside the lesion: K = 1, P = 0


class _Canvas:
    """Per-size constants shared by all images of one run."""

    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.unit = min(w, h) / 150.0  # image pixels per reference pixel
        self.tex_res = max(1.0, self.unit)  # lesion texels per reference pixel
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        # distance from the image centre, 1.0 = half the width
        self.d = np.hypot((xs - (w - 1) / 2.0) / (0.5 * w), (ys - (h - 1) / 2.0) / (0.5 * w))
        self.falloff = 1.0 - np.float32(0.12) * self.d ** 2  # mild optical falloff


def _device_look(cv: _Canvas, colour_cast, vignette: float):
    """Per-channel multipliers (h, w) of a source's "device": a colour cast and a fixed vignette; None for
    no look (the default, so the default images are unchanged)."""
    if colour_cast is None and not vignette:
        return None
    gains = np.ones(3) if colour_cast is None else np.asarray(colour_cast, dtype=np.float64)
    ring = 1.0 - np.float32(vignette) * _smoothstep((cv.d - np.float32(0.45)) / np.float32(0.55))
    return [np.float32(g) * ring for g in gains]


def _render_image(rng: np.random.Generator, p: dict, tex: list, cv: _Canvas, look=None) -> Image.Image:
    w, h, unit = cv.w, cv.h, cv.unit

    # Skin: base tone + smooth blotches (slight redness) + fine texture.
    blotch = _lowfreq_noise(rng, w, h, 4)
    redness = _lowfreq_noise(rng, w, h, 3)
    fine = _lowfreq_noise(rng, w, h, 40)
    base = p["skin"] * rng.uniform(0.97, 1.03)
    tex_skin = 0.035 * blotch + 0.02 * fine

    # Lesion placement for this view: new rotation, small shift and scale. The affine map takes
    # output pixel centres to lesion-texture coordinates.
    rot = rng.uniform(0.0, _TWO_PI)
    scale = rng.uniform(0.9, 1.1) * unit
    shift = p["offset"] * unit + rng.normal(0.0, 4.0, 2) * unit
    cx = (w - 1) / 2.0 + shift[0]
    cy = (h - 1) / 2.0 + shift[1]
    half = (tex[0].size[0] - 1) / 2.0
    cr, sr = math.cos(rot) / scale * cv.tex_res, math.sin(rot) / scale * cv.tex_res
    aff = (cr, sr, half - cr * cx - sr * cy, -sr, cr, half + sr * cx - cr * cy)
    warped = [np.float32(fill) if t is None else
              np.asarray(t.transform((w, h), Image.AFFINE, data=aff, resample=Image.BILINEAR, fillcolor=fill))
              for t, fill in zip(tex, _TEX_FILL)]  # None: a constant channel (no overlays)

    # Hair on some images.
    hm = None
    if rng.random() < 0.4:
        hm = _hair_mask(rng, w, h) * np.float32(rng.uniform(0.75, 0.95))
        hair_col = np.array([0.16, 0.11, 0.09]) * rng.uniform(0.6, 1.4)

    # Lighting (contrast, gain, colour cast) as one affine map per channel.
    contrast = rng.uniform(0.85, 1.15)
    gain = rng.uniform(0.86, 1.12) * np.exp(rng.normal(0.0, 0.035, 3))

    # Dermoscope vignetting: circular field of view with a dark falloff into the corners
    # (sometimes barely visible).
    r0 = rng.uniform(0.62, 1.1)
    soft = rng.uniform(0.08, 0.35)
    strength = rng.uniform(0.3, 0.97)
    vig = (1.0 - np.float32(strength) * _smoothstep((cv.d - np.float32(r0)) / np.float32(soft))) * cv.falloff

    noise_sd = rng.uniform(0.006, 0.02) * math.sqrt(12.0)
    out = []
    for c, rc in enumerate((0.010, -0.012, -0.010)):
        x = np.float32(base[c]) * (1.0 + tex_skin + np.float32(rc) * redness)  # skin
        x = x * warped[c] + warped[c + 3]  # lesion
        if hm is not None:
            x = x + hm * (np.float32(hair_col[c]) - x)
        x = x * np.float32(contrast * gain[c]) + np.float32((0.5 - 0.5 * contrast) * gain[c])
        if look is not None:  # the source's device (no random draws: the rest of the image is unchanged)
            x = x * look[c]
        x = x * vig + np.float32(noise_sd) * (rng.random((h, w), dtype=np.float32) - 0.5)
        out.append(Image.fromarray(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L"))
    pil = Image.merge("RGB", out)

    # Mild optical blur (sigma ~0.45-0.9 reference px); a 3x3 kernel is much cheaper than
    # ImageFilter.GaussianBlur and good enough at the default size.
    sigma = float(rng.uniform(0.45, 0.9) * unit)
    if sigma > 1.0:
        return pil.filter(ImageFilter.GaussianBlur(radius=sigma))
    g = math.exp(-0.5 / sigma ** 2)
    k = [g * g, g, g * g, g, 1.0, g, g * g, g, g * g]
    return pil.filter(ImageFilter.Kernel((3, 3), k, scale=sum(k)))


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_args(n_lesions, mel_fraction, images_per_lesion, image_size, seed, progress):
    def _is_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not _is_int(n_lesions) or n_lesions < 1:
        raise BadInputError(f"n_lesions must be a positive integer, got {n_lesions!r}")
    if isinstance(mel_fraction, bool) or not isinstance(mel_fraction, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(mel_fraction) <= 1.0:
        raise BadInputError(f"mel_fraction must be a number in [0, 1], got {mel_fraction!r}")
    try:
        lo, hi = images_per_lesion
    except (TypeError, ValueError):
        raise BadInputError(f"images_per_lesion must be a (min, max) pair, got {images_per_lesion!r}") from None
    if not (_is_int(lo) and _is_int(hi)) or lo < 1 or hi < lo:
        raise BadInputError(f"images_per_lesion must be integers 1 <= min <= max, got {images_per_lesion!r}")
    try:
        iw, ih = image_size
    except (TypeError, ValueError):
        raise BadInputError(f"image_size must be a (width, height) pair, got {image_size!r}") from None
    if not (_is_int(iw) and _is_int(ih)) or iw < 32 or ih < 32 or iw > 4096 or ih > 4096:
        raise BadInputError(f"image_size must be integers in [32, 4096], got {image_size!r}")
    if not _is_int(seed) or seed < 0:
        raise BadInputError(f"seed must be a non-negative integer, got {seed!r}")
    if progress is not None and not callable(progress):
        raise BadInputError("progress must be callable(done, total) or None")
    return int(lo), int(hi), int(iw), int(ih)


def _check_source_args(source, id_prefix, split_fractions, colour_cast, vignette):
    if not isinstance(source, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", source):
        raise BadInputError(f"source must be a plain name (letters, digits, '.', '_', '-'), got {source!r}")
    if not isinstance(id_prefix, str) or not re.fullmatch(r"[A-Za-z0-9]+", id_prefix):
        raise BadInputError(f"id_prefix must be letters and digits, got {id_prefix!r}")
    if split_fractions is not None:
        try:
            fr = [float(x) for x in split_fractions]
        except (TypeError, ValueError):
            fr = []
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise BadInputError(f"split_fractions must be (train, val, test) fractions summing to 1, "
                                f"got {split_fractions!r}")
    if colour_cast is not None:
        try:
            cc = [float(x) for x in colour_cast]
        except (TypeError, ValueError):
            cc = []
        if len(cc) != 3 or not all(0.0 < x <= 4.0 for x in cc):
            raise BadInputError(f"colour_cast must be three channel gains in (0, 4], got {colour_cast!r}")
    if isinstance(vignette, bool) or not isinstance(vignette, (int, float)) or not 0.0 <= vignette < 1.0:
        raise BadInputError(f"vignette must be a number in [0, 1), got {vignette!r}")


def _plan_splits(is_mel: np.ndarray, fractions, seed: int) -> list:
    """A split name per lesion: per class, round(n * val) lesions to val, round(n * test) to test, the rest
    to train. Its own random stream, so asking for splits changes no image."""
    rng = np.random.default_rng([seed, 0x5917])
    out = ["train"] * len(is_mel)
    for cls in (False, True):
        idx = rng.permutation(np.flatnonzero(is_mel == cls))
        n_val, n_test = (round(len(idx) * float(f)) for f in fractions[1:])
        for i in idx[:n_test]:
            out[i] = "test"
        for i in idx[n_test:n_test + n_val]:
            out[i] = "val"
    return out


def write_synth_dataset(out_dir, n_lesions: int = 240, mel_fraction: float = 0.35,
                        images_per_lesion=(1, 3), image_size=(200, 150), seed: int = 0,
                        progress: Optional[Callable[[int, int], object]] = None, *, source: str = "synth",
                        id_prefix: str = "SYN", split_fractions=None, colour_cast=None,
                        vignette: float = 0.0) -> dict:
    """Write a synthetic melanoma/nevus data set in the HAM10000 layout to ``out_dir``.

    ``images_per_lesion`` is an inclusive (min, max) range; ``image_size`` is (width, height);
    ``progress(done, total)`` is called after each image. Exactly ``round(n_lesions * mel_fraction)``
    lesions are melanomas. Returns ``{"n_images", "n_lesions", "n_nv", "n_mel", "path"}`` where
    ``n_nv``/``n_mel`` count images (plus ``"splits"``, images per split, with ``split_fractions``).
    Raises BadInputError for bad arguments or when ``out_dir`` exists and is not an empty directory.

    Keyword-only, for several sources: ``source`` (the ``dataset`` value), ``id_prefix`` (ids
    ``<prefix>_0000001`` and ``<prefix>_IMG_0000001``), ``split_fractions`` ((train, val, test): adds a
    ``split`` column, whole lesions, stratified by class), ``colour_cast`` ((r, g, b) gains) and ``vignette``
    (strength in [0, 1) of a fixed dark ring toward the corners).
    """
    lo, hi, width, height = _check_args(n_lesions, mel_fraction, images_per_lesion, image_size, seed, progress)
    _check_source_args(source, id_prefix, split_fractions, colour_cast, vignette)
    out = Path(os.path.abspath(os.fspath(out_dir)))
    # Under the lock of ``out``: a second writer exits 2 instead of removing this one's staging folder, and
    # the staging folder a killed run left (with any file it was writing) is this run's to remove.
    with exclusive(out):
        if out.exists():
            if not out.is_dir():
                raise BadInputError(f"output path exists and is not a directory: {out}")
            if any(out.iterdir()):
                raise BadInputError(f"output directory exists and is not empty: {out}")
        partial = out.with_name(out.name + ".partial")

        # Plan the whole data set up front (classes, image counts, metadata, per-lesion seeds).
        rng = np.random.default_rng(seed)
        n_mel_lesions = int(round(n_lesions * float(mel_fraction)))
        is_mel = np.zeros(n_lesions, dtype=bool)
        is_mel[:n_mel_lesions] = True
        rng.shuffle(is_mel)
        n_imgs = rng.integers(lo, hi + 1, size=n_lesions)
        child_seeds = np.random.SeedSequence(seed).spawn(n_lesions)
        total = int(n_imgs.sum())
        canvas = _Canvas(width, height)
        look = _device_look(canvas, colour_cast, vignette)
        lesion_split = _plan_splits(is_mel, split_fractions, seed) if split_fractions is not None else None
        columns = METADATA_COLUMNS + (("split",) if lesion_split is not None else ())
        split_images = {}

        try:
            if partial.exists() or partial.is_symlink():
                if partial.is_dir() and not partial.is_symlink():
                    shutil.rmtree(partial)
                else:
                    partial.unlink()
            (partial / "images").mkdir(parents=True)

            rows = []
            done = 0
            n_mel_images = 0
            for li in range(n_lesions):
                mel = bool(is_mel[li])
                lrng = np.random.default_rng(child_seeds[li])
                meta_rng = np.random.default_rng(child_seeds[li].spawn(1)[0])
                lesion_id = f"{id_prefix}_{li + 1:07d}"
                age = int(np.clip(round(meta_rng.normal(62.0 if mel else 44.0, 15.0) / 5.0) * 5, 5, 85))
                sex = "male" if meta_rng.random() < (0.58 if mel else 0.5) else "female"
                loc = LOCALIZATIONS[int(meta_rng.choice(len(LOCALIZATIONS), p=_LOC_P_MEL if mel else _LOC_P_NV))]

                params = _draw_lesion(lrng, mel)
                tex = _render_lesion_texture(params, canvas.tex_res)
                for _ in range(int(n_imgs[li])):
                    image_id = f"{id_prefix}_IMG_{done + 1:07d}"
                    img = _render_image(lrng, params, tex, canvas, look)
                    buf = io.BytesIO()
                    img.save(buf, format="JPEG", quality=_JPEG_QUALITY)
                    (partial / "images" / f"{image_id}.jpg").write_bytes(buf.getvalue())
                    row = (lesion_id, image_id, "mel" if mel else "nv", "synthetic", age, sex, loc, source)
                    if lesion_split is not None:
                        row += (lesion_split[li],)
                        split_images[lesion_split[li]] = split_images.get(lesion_split[li], 0) + 1
                    rows.append(row)
                    done += 1
                    n_mel_images += int(mel)
                    if progress is not None:
                        progress(done, total)

            with open(partial / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(columns)
                writer.writerows(rows)

            if out.exists():
                out.rmdir()  # checked empty above; os.replace onto an empty dir is not portable
            os.replace(partial, out)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise

        summary = {"n_images": total, "n_lesions": n_lesions, "n_nv": total - n_mel_images,
                   "n_mel": n_mel_images, "path": str(out)}
        if lesion_split is not None:
            summary["splits"] = {name: split_images.get(name, 0) for name in ("train", "val", "test")}
        return summary
