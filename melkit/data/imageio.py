"""Decoding image files to 8-bit RGB (step 1 of the preprocessing contract).

Real collections hold odd files: grayscale, palette, RGBA screenshots, CMYK JPEGs from print workflows,
16-bit PNGs from scientific cameras, truncated downloads. Each is either converted the one defined way
or rejected with :class:`UnreadableImage`, which readers turn into a skip-and-report.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# A truncated JPEG must fail, not decode half grey: never let Pillow pad it silently.
from PIL import Image, ImageFile, ImageOps

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own warnings (large images under the bomb limit, palette transparency, odd EXIF) say nothing a user
# can act on. Filtered once here: warnings.catch_warnings() is not thread-safe, and images are decoded in
# threads, where it once left an "ignore everything" filter behind that silenced melkit's own warnings.
warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# The most pixels melkit decodes for one image (after JPEG draft reduction): 50 Mpx is a 8660x5770 photo, about
# 150 MB as RGB. Larger files are refused with a clear message instead of taking gigabytes (a 144-Mpx image
# took 2.6 GB). Pillow's own bomb check stays in force above it.
MAX_PIXELS = 50_000_000

# What the readers take as images; melkit predict decodes any file it is given. GIF: its first frame.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class UnreadableImage(Exception):
    """The file is missing, corrupt, truncated or not an image."""


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grey: scale to 8 bits. Pillow's convert("RGB") would clip at 255 instead.
        a = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16).astype(np.float64)
        peak = 65535.0 if mode != "I" or a.max() > 255 else 255.0
        g = np.clip(np.floor(a * (255.0 / peak) + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels have no colour: composite over black, as a dermatoscope frame would be.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8)
    if mode == "F":
        raise UnreadableImage("floating-point images are not supported")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)  # L, P, CMYK, YCbCr, RGB


JPEG_DRAFT_SCALES = (8, 4, 2)  # the reductions libjpeg's DCT scaling gives (Pillow's draft mode)


def draft_scale(width: int, height: int, min_short_side: int | None) -> int:
    """The largest JPEG draft reduction (8, 4 or 2) whose decoded short side, ``ceil(short / s)``, is still at
    least ``min_short_side``; 1 (full decode) if none is, or if ``min_short_side`` is None."""
    if not min_short_side:
        return 1
    short = min(width, height)
    return next((s for s in JPEG_DRAFT_SCALES if -(-short // s) >= min_short_side), 1)


def read_rgb(path, exif_transpose: bool = True, contract=None) -> np.ndarray:
    """Decode ``path`` to an HxWx3 uint8 RGB array.

    16-bit PNGs with colour (mode RGB;16) are decoded by Pillow to 8 bits already. EXIF orientation is
    applied so a phone photo is upright, as the Android core does.

    ``contract`` (a :class:`melkit.data.contract.Contract` with its image size): for a v2 contract, a
    JPEG larger than needed is decoded already reduced by libjpeg's DCT scaling (Pillow's draft mode), the
    largest of 1/2, 1/4, 1/8 that keeps the short side at least ``2 * size`` (so contract step 2a still
    box-filters after it, and a 12-MP photo is never decoded in full). v1 contracts and None: full decode,
    exactly as before.
    """
    path = Path(path)
    if path.is_dir():
        raise UnreadableImage(f"{path}: a folder, not an image file (give the images; bench --data DIR measures "
                              f"a folder)")
    if not path.is_file():
        # A FIFO, socket or device named x.jpg is there but never opened: reading a FIFO would wait forever.
        raise UnreadableImage(f"{path}: not a regular file (a pipe, socket or device), not an image file"
                              if path.exists() else f"{path}: file not found")
    min_short = contract.decode_min_short_side if contract is not None else None
    try:
        with Image.open(path) as img:
            # MPO: a phone's multi-picture JPEG (its first picture is the photo)
            scale = draft_scale(*img.size, min_short) if img.format in ("JPEG", "MPO") else 1
            if scale > 1:
                # Pillow picks the largest scale s in (8, 4, 2) with s <= size // requested: this gives ``scale``.
                img.draft(img.mode, (img.width // scale, img.height // scale))
            if img.width * img.height > MAX_PIXELS:  # the header's size (after draft): nothing decoded yet
                raise UnreadableImage(f"{img.width}x{img.height} is {img.width * img.height / 1e6:.1f} Mpx, over "
                                      f"melkit's limit of {MAX_PIXELS / 1e6:g} Mpx per image; downscale it first")
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except UnreadableImage as e:
        raise UnreadableImage(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"{path}: cannot decode ({e})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise UnreadableImage(f"{path}: image too small ({rgb.shape[1]}x{rgb.shape[0]})")
    return rgb
