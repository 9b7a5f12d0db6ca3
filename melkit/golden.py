"""Golden vectors: what Python computes for a few images, for the Android core's JVM tests to reproduce.

For each image ``index.json`` lists, and ``<name>.*`` files hold:

- ``source``: the image file itself (the Java EXIF reader parses it);
- ``pixels``: the pixels as a decoder that ignores EXIF gives them (Android's BitmapFactory does), RGBA,
  4 bytes per pixel, row-major, before orientation and alpha handling;
- ``input``: the exact model input tensor (little-endian, as LiteRT's buffers on a phone), made by
  :func:`melkit.data.imageio.read_rgb` + the contract + :func:`melkit.core.litert.to_input`;
- the model's raw output from the LiteRT interpreter, its dequantized scores, P(mel) and the decision.

``orientation_cases`` is a tiny image after Pillow's ``exif_transpose`` for each EXIF orientation 1-8.
The committed set (default) is synthetic: see :func:`synthetic_images`.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from melkit.core.card import ModelCard, write_card
from melkit.core.errors import BadInputError
from melkit.core.files import staging, write_json
from melkit.core.litert import to_input
from melkit.data.imageio import UnreadableImage, read_rgb
from melkit.data.preprocess import resize_uint8
from melkit.data.synth import write_synth_dataset

FORMAT = "melkit-golden-1"
DECISIONS = ("nevus-like", "melanoma-suspicious")
_ORIENTATION = 0x0112


def synthetic_images() -> list[tuple[str, bytes]]:
    """A few small synthetic lesion images (name, file bytes) covering what the decoder path must handle:
    a JPEG that is not square, a lossless PNG, a JPEG with an EXIF orientation tag and a transparent PNG."""

    with tempfile.TemporaryDirectory() as tmp:
        write_synth_dataset(Path(tmp) / "d", n_lesions=2, images_per_lesion=(1, 1), image_size=(56, 40), seed=7)
        a, b = (Image.open(p).convert("RGB") for p in sorted((Path(tmp) / "d" / "images").glob("*.jpg")))
        a.load()
        b.load()

    def encode(img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[_ORIENTATION] = 6  # stored sideways: 90 degrees clockwise makes it upright
    rgba = b.crop((4, 0, 44, 36)).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgba.width).astype(np.uint8), (rgba.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    return [
        ("synth_wide", encode(a, "JPEG", quality=90)),
        ("synth_square", encode(b.crop((8, 0, 48, 40)), "PNG")),
        ("synth_exif6", encode(a.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())),
        ("synth_alpha", encode(rgba, "PNG")),
    ]


def _raw_rgba(data: bytes) -> tuple[np.ndarray, int]:
    """Pixels as Android decodes them (EXIF ignored), RGBA, and the EXIF orientation tag (1 if none)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        rgba = img.convert("RGBA") if has_alpha else img.convert("RGB").convert("RGBA")
        return np.asarray(rgba, dtype=np.uint8), orientation


def orientation_cases() -> dict:
    """A 3x2 image of distinct pixels after Pillow's exif_transpose, for each orientation 1-8."""
    src = np.arange(3 * 2 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    cases = {}
    for o in range(1, 9):
        img = Image.fromarray(src)
        img.getexif()[_ORIENTATION] = o
        out = np.asarray(ImageOps.exif_transpose(img))
        cases[str(o)] = {"width": out.shape[1], "height": out.shape[0], "rgb": out.reshape(-1).tolist()}
    return {"width": 3, "height": 2, "rgb": src.reshape(-1).tolist(), "results": cases}


def _run(interp, tensor):
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], tensor)
    interp.invoke()
    raw = interp.get_tensor(out["index"]).reshape(-1)
    scale, zero = out["quantization"]
    probs = (raw.astype(np.float64) - zero) * scale if scale else raw.astype(np.float64)
    return raw, probs


def golden_entry(name: str, data: bytes, suffix: str, card: ModelCard, interp, out_dir: Path) -> dict:

    src = out_dir / f"{name}{suffix}"
    src.write_bytes(data)
    try:
        rgb = read_rgb(src)  # the contract's step 1, EXIF applied
    except UnreadableImage as e:
        raise BadInputError(str(e)) from None
    rgba, orientation = _raw_rgba(data)
    q = resize_uint8(rgb, card.image_size)
    tensor = to_input(q[None], {"dtype": card.input.dtype})
    raw, probs = _run(interp, tensor)
    (out_dir / f"{name}.rgba.bin").write_bytes(rgba.tobytes())
    (out_dir / f"{name}.input.bin").write_bytes(tensor.astype(tensor.dtype.newbyteorder("<")).tobytes())
    p_mel = float(probs[card.p_mel_index])
    return {"name": name, "source": src.name, "width": int(rgba.shape[1]), "height": int(rgba.shape[0]),
            "exif_orientation": orientation, "pixels": f"{name}.rgba.bin", "input": f"{name}.input.bin",
            "output_raw": raw.tolist(), "probabilities": probs.tolist(), "p_mel": p_mel,
            "decision": DECISIONS[p_mel >= float(card.threshold)]}


def write_goldens(model_path, card: ModelCard, interp, golden_dir, images=None) -> dict:
    """Write the golden set for ``card``'s model into ``golden_dir`` (replaced whole); returns the index."""
    if images:
        named = [(Path(p).stem, Path(p).read_bytes(), Path(p).suffix.lower()) for p in images]
        if len({n for n, _, _ in named}) != len(named):
            raise BadInputError("golden images need distinct file names")
    else:
        named = [(n, d, ".png" if d[:4] == b"\x89PNG" else ".jpg") for n, d in synthetic_images()]
    golden_dir = Path(golden_dir)
    with staging(golden_dir) as staged:
        entries = [golden_entry(n, d, s, card, interp, staged) for n, d, s in named]
        index = {"format": FORMAT, "model_file": Path(model_path).name, "model_sha256": card.sha256,
                 "card": "card.json", "image_size": card.image_size, "input": card.input.to_json(),
                 "output": card.output.to_json(), "labels": list(card.labels), "threshold": card.threshold,
                 "orientation_cases": orientation_cases(), "images": entries}
        write_card(staged / "card.json", card)
        write_json(staged / "index.json", index)
    return index
