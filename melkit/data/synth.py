"""Procedural "ABCD" dermoscopy-like data set in the HAM10000 layout.

This is melkit's embedded default data (offline demo, tests). ``write_synth_dataset`` writes::

    out_dir/metadata.csv          lesion_id,image_id,dx,dx_type,age,sex,localization,dataset[,split]
    out_dir/images/<image_id>.jpg RGB JPEG (quality 90), width x height = image_size

Several sources (multi-source training tests): ``source`` names the ``dataset`` column, ``id_prefix``
keeps the ids of two sets apart, ``split_fractions`` adds a ``split`` column (whole lesions, per class),
and ``colour_cast`` / ``vignette`` give a source its own "device" look (a fixed per-channel gain and a
fixed dark ring toward the corners on every image). Left at their defaults they change nothing: the
files are byte-identical to a set written without them.

Each lesion is a nevus (``nv``) or a melanoma (``mel``) drawn after the dermoscopic ABCD rule and
rendered once in its own frame (``melkit.data.synth_lesion``); each of its images warps that texture with a
new rotation, shift and scale onto a new skin patch with new lighting, hair and noise (here), so images of
one lesion show the same lesion again, and independent nuisance factors (skin tone, size, position,
lighting, hair, vignetting) keep the task from being trivial. Only numpy and Pillow are used; everything
is vectorised.

Output is deterministic: the same arguments and seed give byte-identical files (for a given
numpy/Pillow build). The data set is built in ``out_dir + ".partial"`` and published by
``melkit.util.files.staging`` at the end, so an interrupted run never leaves a complete-looking ``out_dir``;
the next run (holding ``out_dir``'s lock, as every writer does) removes what a killed one left in the
staging folder.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import click
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from melkit.data.synth_lesion import TWO_PI, draw_lesion, render_lesion_texture, smoothstep
from melkit.util.errors import BadInputError
from melkit.util.files import exclusive, staging
from melkit.util.options import default_of, opt

__all__ = ["write_synth_dataset", "SynthOptions", "METADATA_COLUMNS"]

METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset")
LOCALIZATIONS = ("back", "lower extremity", "trunk", "upper extremity", "face", "abdomen", "chest")
_LOC_P_NV = np.array([0.25, 0.22, 0.18, 0.12, 0.06, 0.10, 0.07])
_LOC_P_MEL = np.array([0.30, 0.18, 0.14, 0.16, 0.10, 0.05, 0.07])

_JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------
# one image of a lesion
# --------------------------------------------------------------------------------------------
def _lowfreq_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Smooth noise image (h, w), std ~1, by bicubic upsampling of a coarse random grid."""
    gh = max(2, cells)
    gw = max(2, int(round(cells * w / h)))
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _hair_mask(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Anti-aliased mask (h, w) in [0, 1] with a few thin curved hairs."""
    ss = 3
    canvas = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(canvas)
    n = 1 + int(rng.poisson(2.5))
    for _ in range(n):
        x = rng.uniform(-0.1, 1.1) * w * ss
        y = rng.uniform(-0.1, 1.1) * h * ss
        ang = rng.uniform(0.0, TWO_PI)
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
    ring = 1.0 - np.float32(vignette) * smoothstep((cv.d - np.float32(0.45)) / np.float32(0.55))
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
    rot = rng.uniform(0.0, TWO_PI)
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
    vig = (1.0 - np.float32(strength) * smoothstep((cv.d - np.float32(r0)) / np.float32(soft))) * cv.falloff

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
# the data set: arguments, plan, files
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


@dataclass
class _Plan:
    """The whole data set, decided before the first image: each lesion's class, image count, random stream
    and split."""

    is_mel: np.ndarray
    n_imgs: np.ndarray
    child_seeds: list  # a SeedSequence per lesion
    splits: Optional[list]  # a split name per lesion; None without split_fractions

    @property
    def total(self) -> int:
        return int(self.n_imgs.sum())

    @property
    def columns(self) -> tuple:
        return METADATA_COLUMNS + (("split",) if self.splits is not None else ())


def _plan(n_lesions: int, mel_fraction: float, lo: int, hi: int, seed: int, split_fractions) -> _Plan:
    """Exactly ``round(n_lesions * mel_fraction)`` melanomas in a random order, ``lo..hi`` images each."""
    rng = np.random.default_rng(seed)
    is_mel = np.zeros(n_lesions, dtype=bool)
    is_mel[:int(round(n_lesions * float(mel_fraction)))] = True
    rng.shuffle(is_mel)
    n_imgs = rng.integers(lo, hi + 1, size=n_lesions)
    splits = _plan_splits(is_mel, split_fractions, seed) if split_fractions is not None else None
    return _Plan(is_mel, n_imgs, np.random.SeedSequence(seed).spawn(n_lesions), splits)


def _patient(seed: np.random.SeedSequence, mel: bool) -> tuple:
    """(age, sex, localization) of a lesion's patient, from a stream of its own: melanoma patients older,
    more often male."""
    rng = np.random.default_rng(seed)
    age = int(np.clip(round(rng.normal(62.0 if mel else 44.0, 15.0) / 5.0) * 5, 5, 85))
    sex = "male" if rng.random() < (0.58 if mel else 0.5) else "female"
    loc = LOCALIZATIONS[int(rng.choice(len(LOCALIZATIONS), p=_LOC_P_MEL if mel else _LOC_P_NV))]
    return age, sex, loc


def _write_images(images: Path, plan: _Plan, canvas: _Canvas, look, id_prefix: str, source: str,
                  progress) -> list:
    """Render and save every image into ``images``, lesion by lesion; the metadata rows, in image order."""
    rows = []
    for li in range(len(plan.is_mel)):
        mel = bool(plan.is_mel[li])
        lrng = np.random.default_rng(plan.child_seeds[li])
        lesion = (f"{id_prefix}_{li + 1:07d}", "mel" if mel else "nv", "synthetic",
                  *_patient(plan.child_seeds[li].spawn(1)[0], mel), source)
        split = (plan.splits[li],) if plan.splits is not None else ()
        params = draw_lesion(lrng, mel)
        tex = render_lesion_texture(params, canvas.tex_res)
        for _ in range(int(plan.n_imgs[li])):
            image_id = f"{id_prefix}_IMG_{len(rows) + 1:07d}"
            _save_jpeg(_render_image(lrng, params, tex, canvas, look), images / f"{image_id}.jpg")
            rows.append(lesion[:1] + (image_id,) + lesion[1:] + split)
            if progress is not None:
                progress(len(rows), plan.total)
    return rows


def _save_jpeg(img: Image.Image, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=_JPEG_QUALITY)
    path.write_bytes(buf.getvalue())


def _write_metadata(path: Path, columns: tuple, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def _check_out(out: Path) -> None:
    """BadInputError unless ``out`` is missing or an empty folder (which the set then replaces)."""
    if out.exists():
        if not out.is_dir():
            raise BadInputError(f"output path exists and is not a directory: {out}")
        if any(out.iterdir()):
            raise BadInputError(f"output directory exists and is not empty: {out}")


def _clear_non_folder(path: Path) -> None:
    """A file or link where the staging folder goes is removed (staging itself clears a stale folder)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()


def _summary(rows: list, plan: _Plan, out: Path) -> dict:
    n_mel = sum(row[2] == "mel" for row in rows)
    summary = {"n_images": len(rows), "n_lesions": len(plan.is_mel), "n_nv": len(rows) - n_mel, "n_mel": n_mel,
               "path": str(out)}
    if plan.splits is not None:
        counts = Counter(row[-1] for row in rows)
        summary["splits"] = {name: counts[name] for name in ("train", "val", "test")}
    return summary


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
        _check_out(out)
        plan = _plan(n_lesions, mel_fraction, lo, hi, seed, split_fractions)
        canvas = _Canvas(width, height)
        look = _device_look(canvas, colour_cast, vignette)
        _clear_non_folder(out.with_name(out.name + ".partial"))
        with staging(out) as staged:
            (staged / "images").mkdir()
            rows = _write_images(staged / "images", plan, canvas, look, id_prefix, source, progress)
            _write_metadata(staged / "metadata.csv", plan.columns, rows)
    return _summary(rows, plan, out)


@dataclass
class SynthOptions:
    """``melkit data synth``: the keywords of ``write_synth_dataset``, with its defaults."""

    out_dir: str = opt(argument=True, type=click.Path(file_okay=False))
    n_lesions: int = opt(default_of(write_synth_dataset, "n_lesions"), flag="--lesions", min=4, max=100000,
                         help="Number of lesions.")
    mel_fraction: float = opt(default_of(write_synth_dataset, "mel_fraction"), min=0.05, max=0.95)
    seed: int = opt(default_of(write_synth_dataset, "seed"))
