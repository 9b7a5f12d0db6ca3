"""Images that show no skin lesion at all, for checking a model's input-domain guard.

Each generator returns ``(group, name, rgb)`` triples (``rgb``: H x W x 3 uint8, any size: the contract
resizes) and is seeded, so a benchmark or test sees the same images every time. The groups:

- ``noise``: uniform and Gaussian noise (colour and grey), salt and pepper, smooth (blurred) noise;
- ``flat``: one colour everywhere: black, white, greys, skin tones, saturated colours;
- ``gradient``: linear (horizontal, vertical, diagonal) and radial gradients, between greys, skin tones and
  colours (a dark centre on a skin tone included);
- ``text``: pages of text and screenshot-like layouts drawn with PIL's ImageDraw;
- ``pattern``: checkerboards and stripes.

Natural photographs are not generated here: ``benchmarks/domain_guard.py`` takes them from scikit-image's
sample images when it is installed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SKIN_TONES = ((255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 103), (161, 102, 72),
              (112, 68, 48), (234, 170, 150), (205, 150, 125))
COLOURS = ((0, 0, 0), (255, 255, 255), (128, 128, 128), (64, 64, 64), (192, 192, 192), (220, 40, 40),
           (40, 160, 60), (40, 70, 200), (250, 220, 40), (120, 60, 30), (90, 40, 90), (20, 120, 140))
GROUPS = ("noise", "flat", "gradient", "text", "pattern")
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua settings battery wifi bluetooth camera gallery share delete photo album 12:45 "
         "melanoma nevus report patient id date notes total price invoice").split()


def _size(rng) -> tuple[int, int]:
    """A height and width as cameras, screenshots and scans give them."""
    return [(224, 224), (450, 600), (600, 450), (480, 640), (1280, 720), (300, 300), (96, 128)][rng.integers(7)]


def noise_images(rng) -> list:
    out = []
    for i in range(6):
        h, w = _size(rng)
        out.append(("noise", f"uniform_rgb_{i}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    for i in range(3):
        h, w = _size(rng)
        g = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
        out.append(("noise", f"uniform_grey_{i}", np.repeat(g, 3, axis=2)))
    for i, (mean, sd) in enumerate(((128, 40), (128, 80), (200, 20), (60, 30), (170, 50))):
        h, w = _size(rng)
        out.append(("noise", f"gaussian_{i}", np.clip(rng.normal(mean, sd, (h, w, 3)), 0, 255).astype(np.uint8)))
    for i, tone in enumerate(SKIN_TONES[:4]):  # a skin tone with sensor-like noise
        h, w = _size(rng)
        noisy = np.asarray(tone, float) + rng.normal(0, 12, (h, w, 3))
        out.append(("noise", f"skin_noise_{i}", np.clip(noisy, 0, 255).astype(np.uint8)))
    for i in range(3):
        h, w = _size(rng)
        sp = np.full((h, w, 3), 128, np.uint8)
        r = rng.random((h, w))
        sp[r < 0.1] = 0
        sp[r > 0.9] = 255
        out.append(("noise", f"salt_pepper_{i}", sp))
    for i in range(5):  # smooth noise: random blobs at a few scales
        h, w = _size(rng)
        small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
        out.append(("noise", f"smooth_{i}", np.asarray(img)))
    return out


def flat_images(rng) -> list:
    out = []
    for i, c in enumerate(COLOURS + SKIN_TONES):
        h, w = _size(rng)
        out.append(("flat", f"flat_{i}_{c[0]}_{c[1]}_{c[2]}", np.full((h, w, 3), c, np.uint8)))
    return out


def _ramp(h, w, kind) -> np.ndarray:
    """0..1 over the image: horizontal, vertical, diagonal, radial (0 at the centre) or radial reversed."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = y / max(1, h - 1), x / max(1, w - 1)
    if kind == "horizontal":
        return x
    if kind == "vertical":
        return y
    if kind == "diagonal":
        return (x + y) / 2
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2) / np.sqrt(0.5)
    return r if kind == "radial" else 1 - r


def gradient_images(rng) -> list:
    out = []
    pairs = [((0, 0, 0), (255, 255, 255)), ((128, 128, 128), (255, 255, 255)), ((40, 70, 200), (250, 220, 40)),
             (SKIN_TONES[1], SKIN_TONES[5]), (SKIN_TONES[0], SKIN_TONES[3]), ((220, 40, 40), (40, 160, 60)),
             ((112, 68, 48), SKIN_TONES[2]), ((60, 30, 20), SKIN_TONES[6])]
    kinds = ("horizontal", "vertical", "diagonal", "radial", "radial_reversed")
    for i, (a, b) in enumerate(pairs):
        for kind in kinds:
            h, w = _size(rng)
            t = _ramp(h, w, kind)[..., None]
            img = np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t
            out.append(("gradient", f"{kind}_{i}", np.clip(np.rint(img), 0, 255).astype(np.uint8)))
    return out


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable default font
    except TypeError:
        return ImageFont.load_default()


def _line(rng, n_words) -> str:
    return " ".join(WORDS[k] for k in rng.integers(0, len(WORDS), n_words))


def text_images(rng) -> list:
    out = []
    schemes = [((255, 255, 255), (0, 0, 0)), ((250, 248, 240), (40, 40, 40)), ((30, 30, 30), (230, 230, 230)),
               ((255, 255, 255), (20, 60, 160)), ((240, 240, 245), (90, 90, 90))]
    for i, (bg, fg) in enumerate(schemes * 2):  # pages of text
        h, w = _size(rng)
        img = Image.new("RGB", (w, h), bg)
        draw = ImageDraw.Draw(img)
        size = int(rng.integers(10, 28))
        font = _font(size)
        for y in range(int(rng.integers(4, 20)), h - size, int(size * 1.4)):
            draw.text((int(rng.integers(4, 20)), y), _line(rng, int(rng.integers(3, 14))), fill=fg, font=font)
        out.append(("text", f"page_{i}", np.asarray(img)))
    for i in range(8):  # screenshot-like: a bar, buttons, list rows, a thumbnail
        h, w = [(1280, 720), (720, 1280), (640, 480), (600, 800)][i % 4]
        img = Image.new("RGB", (w, h), schemes[i % len(schemes)][0])
        draw = ImageDraw.Draw(img)
        accent = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.rectangle((0, 0, w, h // 12), fill=accent)
        draw.text((16, h // 40), _line(rng, 3), fill=(255, 255, 255), font=_font(h // 30))
        row = h // 10
        for k, y in enumerate(range(h // 8, h - row, row)):
            draw.line((0, y, w, y), fill=(200, 200, 200), width=1)
            if k % 3 == 0:
                draw.rectangle((12, y + 6, 12 + row - 12, y + row - 6), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            draw.text((row + 12, y + row // 3), _line(rng, int(rng.integers(2, 6))), fill=(30, 30, 30),
                      font=_font(max(10, row // 4)))
        draw.rounded_rectangle((w // 4, h - row, 3 * w // 4, h - row // 4), radius=row // 4, fill=accent)
        out.append(("text", f"screenshot_{i}", np.asarray(img)))
    return out


def pattern_images(rng) -> list:
    out = []
    for i, period in enumerate((2, 8, 16, 32, 64, 112)):
        h, w = _size(rng)
        y, x = np.mgrid[0:h, 0:w]
        board = ((y // period + x // period) % 2).astype(bool)
        a, b = COLOURS[i % len(COLOURS)], SKIN_TONES[i % len(SKIN_TONES)] if i % 2 else (255, 255, 255)
        img = np.where(board[..., None], np.asarray(a, np.uint8), np.asarray(b, np.uint8))
        out.append(("pattern", f"checkerboard_{period}", img.astype(np.uint8)))
    for i, period in enumerate((6, 20, 50)):
        h, w = _size(rng)
        x = np.arange(w)
        stripes = ((x // period) % 2).astype(np.uint8) * 255
        out.append(("pattern", f"stripes_{period}", np.repeat(np.tile(stripes, (h, 1))[..., None], 3, axis=2)))
    return out


def generated(seed: int = 0, groups=GROUPS) -> list:
    """Every generated non-lesion image of ``groups``, as (group, name, rgb)."""
    makers = {"noise": noise_images, "flat": flat_images, "gradient": gradient_images, "text": text_images,
              "pattern": pattern_images}
    out = []
    for g in groups:
        out += makers[g](np.random.default_rng([seed, GROUPS.index(g)]))
    return out
