"""The decode sizes melkit predict uses, as the golden table the Android core's DecodePlan is tested against.

For each image size (as stored), format, model input size and contract: the JPEG draft scale
``melkit.data.imageio.read_rgb`` decodes with (``draft_scale`` and ``Contract.decode_min_short_side``), the
decoded size (libjpeg's DCT scaling rounds up), or its refusal over ``MAX_PIXELS`` in its words.
tests/test_android.py checks that the committed table is this script's output and, for the smaller rows,
that ``read_rgb`` on real files decodes to those sizes. Regenerate after changing the rule:

    .venv/bin/python tests/android/decode_golden.py > android_demo/app/src/test/resources/decode/sizes.json
"""

from __future__ import annotations

import json
import sys

from melkit.data import imageio
from melkit.data.contract import CONTRACTS

# (width, height) as stored: thresholds of each draft scale at size 224 (short side 448, 896, 1792, 3584 and
# one past), phone photos both ways round, odd sizes where the rounding up shows, panoramas, and sizes on
# both sides of Python's 50-Mpx limit.
SIZES = [(2, 2), (33, 34), (100, 80), (200, 150), (448, 448), (600, 449), (895, 672), (897, 673), (1001, 999),
         (1792, 1344), (1793, 1345), (2001, 1501), (3584, 2688), (3585, 2689), (4000, 3000), (3000, 4000),
         (4032, 3024), (8000, 6000), (10000, 1000), (20000, 700), (7071, 7071), (7072, 7072), (12000, 12000)]
IMAGE_SIZES = (17, 32, 224)
FORMATS = ("jpeg", "png")


def python_decode(width: int, height: int, fmt: str, image_size: int, version: int) -> dict:
    """What read_rgb decodes a ``width x height`` file of ``fmt`` to under the contract, or its refusal."""
    contract = CONTRACTS[version].for_size(image_size)
    scale = imageio.draft_scale(width, height, contract.decode_min_short_side) if fmt == "jpeg" else 1
    w, h = -(-width // scale), -(-height // scale)
    row = {"width": width, "height": height, "format": fmt, "image_size": image_size, "contract": contract.name,
           "scale": scale, "decoded": [w, h]}
    if w * h > imageio.MAX_PIXELS:  # read_rgb's message, after "<path>: "
        row["refused"] = (f"{w}x{h} is {w * h / 1e6:.1f} Mpx, over melkit's limit of {imageio.MAX_PIXELS / 1e6:g} "
                          f"Mpx per image; downscale it first")
    return row


def table() -> dict:
    rows = [python_decode(w, h, fmt, size, version) for w, h in SIZES for fmt in FORMATS for size in IMAGE_SIZES
            for version in sorted(CONTRACTS)]
    return {"format": "melkit-decode-golden-1", "generated_by": "tests/android/decode_golden.py",
            "python_max_pixels": imageio.MAX_PIXELS, "plans": rows}


def dumps(t: dict) -> str:
    """The table as JSON text, one plan per line (small diffs when the rule changes)."""
    head = json.dumps({k: v for k, v in t.items() if k != "plans"})[:-1]
    rows = ",\n".join("  " + json.dumps(r) for r in t["plans"])
    return f'{head}, "plans": [\n{rows}\n]}}\n'


if __name__ == "__main__":
    sys.stdout.write(dumps(table()))
