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

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


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


def read_rgb(path, exif_transpose: bool = True) -> np.ndarray:
    """Decode ``path`` to an HxWx3 uint8 RGB array.

    16-bit PNGs with colour (mode RGB;16) are decoded by Pillow to 8 bits already. EXIF orientation is
    applied so a phone photo is upright, as the Android core does.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableImage(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
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
