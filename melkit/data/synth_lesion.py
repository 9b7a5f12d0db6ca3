"""The lesion model of ``melkit data synth``: a lesion's parameters, drawn after the ABCD rule, and its texture.

Nevi (``nv``) are mostly symmetric, smooth-bordered, one-coloured and small; melanomas (``mel``) mostly
asymmetric, irregular/notched, multi-coloured (black, blue-grey veil, red, white regression) and larger.
Both classes are driven by one hidden "atypia" score whose class distributions overlap, so the task is
learnable but not trivial.

A lesion is rendered once in its own coordinate frame, as a small texture (pigment transmittance, overlay
colour and opacity) that each image of the lesion warps onto new skin (``melkit.data.synth``). Every step
draws from the lesion's own generators in a fixed order: the same parameters give the same texture, bit for
bit, and a step's draws never move another's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["TWO_PI", "draw_lesion", "render_lesion_texture", "smoothstep"]

TWO_PI = 2.0 * math.pi

# Overlay colours (linear-ish RGB in [0, 1]) for melanoma-type structures.
_COLOURS = {
    "black": np.array([0.13, 0.10, 0.11]),
    "bluegrey": np.array([0.42, 0.47, 0.57]),
    "red": np.array([0.80, 0.40, 0.44]),
    "white": np.array([0.90, 0.87, 0.86]),
}
_DOT_COLOUR = np.array([0.17, 0.11, 0.09])


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _fourier_field(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, n: int,
                   k_lo: float, k_hi: float) -> np.ndarray:
    """Smooth random field (sum of ``n`` plane waves, wave numbers in [k_lo, k_hi]), std ~1."""
    ang = rng.uniform(0.0, TWO_PI, n)
    k = rng.uniform(k_lo, k_hi, n)
    ph = rng.uniform(0.0, TWO_PI, n)
    amp = rng.uniform(0.5, 1.0, n)
    norm = math.sqrt(float(np.sum(amp ** 2)) / 2.0)
    f = np.zeros(u.shape, dtype=np.float32)
    for i in range(n):  # float32 keeps np.cos vectorised (SIMD) and cheap
        f += np.float32(amp[i] / norm) * np.cos(np.float32(k[i] * math.cos(ang[i])) * u
                                                + np.float32(k[i] * math.sin(ang[i])) * v
                                                + np.float32(ph[i]))
    return f


# --------------------------------------------------------------------------------------------
# the lesion's parameters
# --------------------------------------------------------------------------------------------
def draw_lesion(rng: np.random.Generator, is_mel: bool) -> dict:
    """Random lesion parameters. Lengths are in reference pixels (image height 150)."""
    # Hidden atypia score: overlapping class distributions make the task non-trivial.
    a = float(rng.beta(6.0, 2.5) if is_mel else rng.beta(2.0, 5.5))
    p: dict = {"a": a, "is_mel": is_mel}
    # Diameter: melanomas larger on average, heavy overlap.
    p["R"] = float(np.clip(150.0 * (0.15 + 0.12 * a) * math.exp(rng.normal(0.0, 0.2)), 12.0, 62.0))
    _draw_shape(rng, a, p)
    _draw_colour(rng, a, p)
    # Skin (same patient for all images of the lesion).
    t = float(rng.beta(1.3, 2.6))
    light = np.array([0.95, 0.79, 0.71])
    dark = np.array([0.50, 0.33, 0.24])
    p["skin"] = np.clip((1.0 - t) * light + t * dark + rng.normal(0.0, 0.018, 3), 0.05, 1.0)
    # Lesion position on the image (per-lesion offset, each image adds a small shift).
    p["offset"] = rng.normal(0.0, 1.0, 2) * np.array([10.0, 8.0])
    p["tex_seed"] = int(rng.integers(0, 2 ** 62))
    return p


def _draw_shape(rng: np.random.Generator, a: float, p: dict) -> None:
    """A and B: elongation, low-order asymmetry, high-order border irregularity, notches, border sharpness."""
    p["elong"] = float(rng.uniform(0.0, 0.22))
    p["elong_phase"] = float(rng.uniform(0.0, math.pi))
    asym = (0.015 + 0.17 * a ** 1.3) * rng.uniform(0.5, 1.5)
    w_asym = rng.uniform(0.2, 1.0, 3)
    p["asym_amp"] = asym * w_asym / math.sqrt(float(np.sum(w_asym ** 2)))
    p["asym_ph"] = rng.uniform(0.0, TWO_PI, 3)
    border = (0.008 + 0.11 * a ** 1.6) * rng.uniform(0.5, 1.5)
    ks = np.arange(4, 22)
    w_b = rng.rayleigh(1.0, ks.size) / ks ** rng.uniform(0.6, 1.1)
    p["border_k"] = ks
    p["border_amp"] = border * w_b / math.sqrt(float(np.sum(w_b ** 2)))
    p["border_ph"] = rng.uniform(0.0, TWO_PI, ks.size)
    n_notch = int(rng.poisson(3.5 * a ** 2))
    p["notches"] = [(float(rng.uniform(-math.pi, math.pi)), float(rng.uniform(0.08, 0.28)),
                     float(rng.uniform(0.06, 0.25))) for _ in range(n_notch)]
    # Border sharpness: nevi fade out gradually, melanomas tend to stop abruptly.
    p["edge_w"] = float((1.5 + 5.0 * (1.0 - a)) * rng.uniform(0.7, 1.3))


def _draw_colour(rng: np.random.Generator, a: float, p: dict) -> None:
    """C and D: pigment density, hue and patchiness; extra colours; pigment network; dots and globules."""
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


# --------------------------------------------------------------------------------------------
# the lesion's texture
# --------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    """The lesion's own coordinate frame: texel grid, border and the fields every step reads."""

    th: np.ndarray  # angles of the border lookup table
    rlut: np.ndarray  # border radius at each of them
    u: np.ndarray  # texel coordinates in reference pixels
    v: np.ndarray
    un: np.ndarray  # the same, in lesion radii
    vn: np.ndarray
    q: np.ndarray  # normalised radius (1 at the border)
    alpha: np.ndarray  # lesion coverage, a soft edge
    inside: np.ndarray


def render_lesion_texture(p: dict, res: float = 1.0) -> list:
    """Render the lesion in its own frame (``res`` texels per reference pixel).

    Returns 6 float32 (mode "F") n x n PIL images K (3) and P (3) such that a view of the lesion
    is ``skin * K + P`` (see _composite); P channels are None when the lesion has no overlays.
    """
    rng = np.random.default_rng(p["tex_seed"])
    f = _frame(p, res)
    dens = _base_density(rng, p, f)
    if p["network"]:
        dens = dens * _network(rng, p, f)
    overlays = []
    for kind in p["extras"]:
        if kind == "dark":
            dens = dens + _dark_blob(rng, p["a"], f)
        else:
            overlays.append(_overlay(rng, kind, f))
    if p["n_dots"]:
        overlays.append(_dots(rng, p["n_dots"], f))
    return _composite(p, f, dens, overlays)


def _border(p: dict) -> tuple:
    """The border radius as a function of angle: (angles, radii), a lookup table of 1024 entries."""
    th = np.linspace(-math.pi, math.pi, 1024, endpoint=False)
    mod = p["elong"] * np.cos(2.0 * (th - p["elong_phase"]))
    for k in range(3):
        mod = mod + p["asym_amp"][k] * np.cos((k + 1) * th + p["asym_ph"][k])
    mod = mod + np.sum(p["border_amp"][:, None]
                       * np.cos(p["border_k"][:, None] * th[None] + p["border_ph"][:, None]), axis=0)
    for centre, depth, width in p["notches"]:
        d = np.angle(np.exp(1j * (th - centre)))
        mod = mod - depth * np.exp(-0.5 * (d / width) ** 2)
    return th, p["R"] * np.maximum(1.0 + mod, 0.35)


def _frame(p: dict, res: float) -> _Frame:
    th, rlut = _border(p)
    R, w_edge = p["R"], p["edge_w"]
    half = int(math.ceil((rlut.max() + w_edge + 4) * res))
    ax = np.arange(-half, half + 1, dtype=np.float32) / np.float32(res)
    u, v = np.meshgrid(ax, ax)
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    rb = np.interp(theta, th, rlut, period=TWO_PI).astype(np.float32)
    alpha = smoothstep((rb - rho) / w_edge + 0.5)
    q = np.clip(rho / rb, 0.0, 1.5)
    return _Frame(th=th, rlut=rlut, u=u, v=v, un=u / R, vn=v / R, q=q, alpha=alpha, inside=alpha > 0.5)


def _base_density(rng: np.random.Generator, p: dict, f: _Frame) -> np.ndarray:
    """Pigment density: radial profile, patchiness, fine mottling."""
    dens = p["d0"] * (1.0 - p["center_dark"] * (f.q ** 2 - 0.4))
    dens = dens * np.exp(p["patch_amp"] * _fourier_field(rng, f.un, f.vn, 6, 3.0, 9.0))
    return dens * (1.0 + 0.03 * _fourier_field(rng, f.un, f.vn, 8, 12.0, 30.0))


def _network(rng: np.random.Generator, p: dict, f: _Frame) -> np.ndarray:
    """The pigment network, as a factor on the density: a warped hexagonal mesh of lines."""
    period, irr = p["net_period"], p["net_irreg"]
    kn = TWO_PI / period * 2.0 / math.sqrt(3.0)
    phi0 = rng.uniform(0.0, TWO_PI)
    wu = f.u + irr * 0.5 * period * _fourier_field(rng, f.un, f.vn, 5, 4.0, 10.0)
    wv = f.v + irr * 0.5 * period * _fourier_field(rng, f.un, f.vn, 5, 4.0, 10.0)
    h = np.zeros_like(f.u)
    for i in range(3):
        ang = phi0 + i * math.pi / 3.0
        h += np.cos(kn * (wu * math.cos(ang) + wv * math.sin(ang)))
    thick = 0.4 + irr * 0.9 * _fourier_field(rng, f.un, f.vn, 4, 3.0, 8.0)
    lines = smoothstep((thick - h) / 2.0 + 0.25)
    fade = np.clip(1.2 - f.q, 0.0, 1.0) if irr < 0.3 else np.clip(1.0 + 0.3 * _fourier_field(
        rng, f.un, f.vn, 4, 2.0, 6.0) - 0.5 * f.q, 0.0, 1.0)
    return 1.0 + p["net_strength"] * 2.0 * (lines - 0.5) * fade


def _dark_blob(rng: np.random.Generator, a: float, f: _Frame) -> np.ndarray:
    """Extra density of a darker blob: central and round when atypia is low, eccentric and ragged otherwise."""
    ecc = a * rng.uniform(0.0, 0.6)
    ang = rng.uniform(0.0, TWO_PI)
    cu, cv = ecc * math.cos(ang), ecc * math.sin(ang)
    sb = rng.uniform(0.25, 0.45)
    rr = np.hypot(f.un - cu, f.vn - cv) / sb
    rr = rr * np.exp(0.5 * a * _fourier_field(rng, f.un, f.vn, 5, 3.0, 8.0) / 2.0)
    return rng.uniform(0.5, 1.3) * np.exp(-0.5 * rr ** 2)


def _overlay(rng: np.random.Generator, kind: str, f: _Frame) -> tuple:
    """One coloured structure (blue-grey veil, black, red or white regression): (opacity map, colour)."""
    col = _COLOURS[kind].copy()
    if kind == "bluegrey":
        field = _fourier_field(rng, f.un, f.vn, 5, 2.0, 5.0)
        cover, op = rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.75)
    elif kind == "black":
        field = _fourier_field(rng, f.un, f.vn, 6, 4.0, 10.0)
        cover, op = rng.uniform(0.12, 0.3), rng.uniform(0.75, 0.95)
    elif kind == "red":
        field = _fourier_field(rng, f.un, f.vn, 6, 3.0, 8.0) + 0.8 * f.q  # rather peripheral
        cover, op = rng.uniform(0.12, 0.3), rng.uniform(0.35, 0.65)
    else:  # white regression
        field = _fourier_field(rng, f.un, f.vn, 6, 3.0, 8.0)
        cover, op = rng.uniform(0.1, 0.25), rng.uniform(0.55, 0.85)
    col = col * rng.uniform(0.9, 1.1)
    thr = float(np.quantile(field[f.inside], 1.0 - cover)) if f.inside.any() else 1.0
    m = smoothstep((field - thr) / 1.1 + 0.5) * op * np.clip((1.05 - f.q) / 0.25, 0.0, 1.0)
    return m, col


def _dots(rng: np.random.Generator, n: int, f: _Frame) -> tuple:
    """``n`` irregular dark dots and globules inside the border: (opacity map, colour)."""
    ang = rng.uniform(0.0, TWO_PI, n)
    rad = np.sqrt(rng.uniform(0.05, 0.85, n))
    r_at = np.interp(ang, f.th, f.rlut, period=TWO_PI)
    cx, cy = rad * r_at * np.cos(ang), rad * r_at * np.sin(ang)
    sz = rng.uniform(0.8, 2.2, n)
    m = np.zeros_like(f.u)
    for i in range(n):
        m = np.maximum(m, np.exp(-0.5 * ((f.u - cx[i]) ** 2 + (f.v - cy[i]) ** 2) / sz[i] ** 2))
    return m * 0.85, _DOT_COLOUR


def _composite(p: dict, f: _Frame, dens: np.ndarray, overlays: list) -> list:
    """The six texture channels, in premultiplied form: image = skin * K + P with
    K = 1 - alpha + alpha * T * (1 - M),  P = alpha * O
    (T: pigment transmittance, O/M: overlay colour/opacity), so each view only warps 6 channels."""
    lum_scale = 0.6 + 0.4 * float(np.mean(p["skin"])) / 0.8  # overlays follow the skin's brightness
    O = [np.zeros_like(f.u) for _ in range(3)]
    M = np.zeros_like(f.u)
    for m, col in overlays:
        m = m.astype(np.float32)
        for c in range(3):
            O[c] = O[c] * (1.0 - m) + m * np.float32(col[c] * lum_scale)
        M = 1.0 - (1.0 - M) * (1.0 - m)
    chans = []
    for c in range(3):
        T = np.exp(-dens * np.float32(p["absorb"][c]))
        chans.append(1.0 - f.alpha + f.alpha * T * (1.0 - M))
    chans += [f.alpha * O[c] if overlays else None for c in range(3)]
    return [None if ch is None else Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32), mode="F")
            for ch in chans]
