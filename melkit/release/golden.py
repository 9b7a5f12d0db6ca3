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

For a model with a domain guard (``melkit convert --domain-guard``) each image also records the guard
output's raw values, its ``domain_score`` and ``in_domain``, and the decision is "not assessed" when the
image is out of the model's domain; the default set then adds out-of-domain images
(:func:`out_of_domain_images`: noise and a page of text).

For a model whose card has a ``borderline`` band (melkit/convert/borderline.py) each image also records
``borderline`` (assessed and its raw P(mel) in the band) and ``meaning``, the decision as shown:
"borderline: nevus-like", "borderline: melanoma-suspicious", else the decision itself (Prediction.meaning()).

For a model whose card has risk bands (``likelihood_ratios``, melkit/core/likelihood.py) each image also records
``risk_band`` (the band's index, null when not assessed), that band's ``likelihood_ratio`` (null likewise, or
where the card has none) and ``post_test``: the probability of melanoma after the result at each of the
index's ``risk_bands.prevalences`` (what the app shows; null without a likelihood ratio).

Contract goldens (:func:`write_contract_goldens`) need no model: generated images and the contracts' (v1
and v2) ``q`` for them, plain and with colour constancy, at small sizes; committed under
``android_demo/app/src/test/resources/contract`` (regenerate with ``python -m melkit.release.golden DIR``).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from melkit.core.card import ModelCard, sha256, write_card
from melkit.core.litert import output_index, to_input
from melkit.core.probability import post_test_probability, shown_p_mel
from melkit.data.contract import CONTRACTS, SHADES_OF_GRAY, SHADES_OF_GRAY_P, _root, box_factor
from melkit.data.imageio import UnreadableImage, read_rgb
from melkit.data.synth import write_synth_dataset
from melkit.util.errors import BadInputError
from melkit.util.files import exclusive, staging, write_json

FORMAT = "melkit-golden-1"
DECISIONS = ("nevus-like", "melanoma-suspicious")
NOT_ASSESSED = "not assessed"  # the decision for an out-of-domain image (Prediction.NOT_ASSESSED in Java)
BORDERLINE = "borderline: "  # the meaning's prefix for an image in the card's band (Prediction.BORDERLINE in Java)
PREVALENCES = (0.05, 0.15, 0.40)  # where the app shows the post-test probability (MainActivity.PREVALENCES)
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


def out_of_domain_images() -> list[tuple[str, bytes]]:
    """Two images that show no lesion (name, PNG bytes), for the goldens of a domain-guard model: integer
    hash noise and a page of black text on white."""

    def png(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    page = Image.new("RGB", (64, 48), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for k, y in enumerate(range(2, 44, 8)):
        draw.text((2, y), ["lorem ipsum", "dolor sit", "amet 12:45", "settings", "photo album", "notes"][k],
                  fill=(0, 0, 0))
    return [("ood_noise", png(Image.fromarray(_hash_noise(40, 56, 11)))), ("ood_text", png(page))]


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


def _read(interp, detail):
    raw = interp.get_tensor(detail["index"]).reshape(-1)
    scale, zero = detail["quantization"]
    return raw, (raw.astype(np.float64) - zero) * scale if scale else raw.astype(np.float64)


def _run(interp, tensor, card: ModelCard):
    """(raw, scores) of the probabilities output and, with a guard, of the guard output (else None, None),
    each read where the card says."""
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    interp.set_tensor(inp["index"], tensor)
    interp.invoke()
    raw, probs = _read(interp, outs[output_index(interp, card.output.name)])
    if card.domain_guard is None:
        return raw, probs, None, None
    guard_raw, guard = _read(interp, outs[output_index(interp, card.guard_output.name)])
    return raw, probs, guard_raw, guard


def golden_entry(name: str, data: bytes, suffix: str, card: ModelCard, interp, out_dir: Path) -> dict:

    src = out_dir / f"{name}{suffix}"
    src.write_bytes(data)
    try:
        rgb = read_rgb(src)  # the contract's step 1, EXIF applied
    except UnreadableImage as e:
        raise BadInputError(str(e)) from None
    rgba, orientation = _raw_rgba(data)
    q = card.preprocessing.apply(rgb)
    tensor = to_input(q[None], {"dtype": card.input.dtype})
    raw, probs, guard_raw, guard = _run(interp, tensor, card)
    (out_dir / f"{name}.rgba.bin").write_bytes(rgba.tobytes())
    (out_dir / f"{name}.input.bin").write_bytes(tensor.astype(tensor.dtype.newbyteorder("<")).tobytes())
    p_mel = float(probs[card.p_mel_index])
    entry = {"name": name, "source": src.name, "width": int(rgba.shape[1]), "height": int(rgba.shape[0]),
             "exif_orientation": orientation, "pixels": f"{name}.rgba.bin", "input": f"{name}.input.bin",
             "output_raw": raw.tolist(), "probabilities": probs.tolist(), "p_mel": p_mel,
             "decision": DECISIONS[p_mel >= float(card.threshold)]}
    if card.threshold_fold is not None or (card.calibration or {}).get("temperature") is not None:
        # what the app shows (Prediction.shownPMel); absent otherwise: the goldens of other models stay as they are
        entry["p_shown"] = float(shown_p_mel(card, [p_mel])[0])
    in_domain = True
    if guard is not None:
        in_domain = bool(card.in_domain(guard[0]))
        entry.update(domain_output_raw=guard_raw.tolist(), domain_score=float(guard[0]), in_domain=in_domain)
        if not in_domain:
            entry["decision"] = NOT_ASSESSED
    if card.borderline is not None:  # absent otherwise: the goldens of other models stay as they are
        borderline = in_domain and bool(card.is_borderline(p_mel))
        entry.update(borderline=borderline,
                     meaning=BORDERLINE + entry["decision"] if borderline else entry["decision"])
    if card.likelihood_ratios is not None:  # absent otherwise, as above
        band = int(card.risk_band([p_mel])[0]) if in_domain else None
        lr = None if band is None else card.likelihood_ratios["bands"][band]["lr"]
        entry.update(risk_band=band, likelihood_ratio=lr,
                     post_test=None if lr is None else [post_test_probability(lr, q) for q in PREVALENCES])
    return entry


def write_goldens(model_path, card: ModelCard, interp, golden_dir, images=None) -> dict:
    """Write the golden set for ``card``'s model into ``golden_dir`` (replaced whole); returns the index."""
    with staging(Path(golden_dir)) as staged:
        return fill_goldens(staged, model_path, card, interp, images)


def fill_goldens(staged: Path, model_path, card: ModelCard, interp, images=None) -> dict:
    """The golden set for ``card``'s model, written into the empty folder ``staged``; returns the index."""
    if images:
        for p in images:  # named as the user gave them: below they are decoded from copies in ``staged``
            try:
                read_rgb(p)
            except UnreadableImage as e:
                raise BadInputError(f"--image {e}") from None
        named = [(Path(p).stem, Path(p).read_bytes(), Path(p).suffix.lower()) for p in images]
        if len({n for n, _, _ in named}) != len(named):
            raise BadInputError("golden images need distinct file names")
    else:
        extra = out_of_domain_images() if card.domain_guard is not None else []
        named = [(n, d, ".png" if d[:4] == b"\x89PNG" else ".jpg") for n, d in synthetic_images() + extra]
    entries = [golden_entry(n, d, s, card, interp, staged) for n, d, s in named]
    index = {"format": FORMAT, "model_file": Path(model_path).name, "model_sha256": card.sha256,
             "card": "card.json", "image_size": card.image_size, "input": card.input.to_json(),
             "output": card.output.to_json(), "labels": list(card.labels), "threshold": card.threshold,
             "orientation_cases": orientation_cases(), "images": entries}
    if card.domain_guard is not None:  # absent otherwise: the goldens of other models stay as they are
        index["domain_output"] = card.guard_output.to_json()
        index["domain_threshold"] = card.guard_threshold
    if card.borderline is not None:
        index["borderline"] = {"low": float(card.borderline["low"]), "high": float(card.borderline["high"])}
    if card.likelihood_ratios is not None:
        index["risk_bands"] = {"edges": card.risk_edges, "lr": [b["lr"] for b in card.likelihood_ratios["bands"]],
                               "prevalences": list(PREVALENCES)}
    write_card(staged / "card.json", card)
    write_json(staged / "index.json", index)
    return index


# ---------------------------------------------------------------------------------------------------
# contract goldens: the preprocessing alone, independent of any model
# ---------------------------------------------------------------------------------------------------
CONTRACT_FORMAT = "melkit-contract-golden-2"
CONTRACT_SIZES = (32, 17)
CONTRACT_GOLDEN = Path("app", "src", "test", "resources", "contract")  # inside android_demo/


def _hash_noise(h: int, w: int, seed: int) -> np.ndarray:
    """H x W x 3 uint8 pseudo-random values from integer arithmetic only (a multiply-xorshift hash), so the
    bytes never depend on a numpy version's random streams or on a platform's float functions."""
    i = np.arange(h * w * 3, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B9)
    x = (i * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(29)
    x = (x * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(32)
    return (x >> np.uint64(56)).astype(np.uint8).reshape(h, w, 3)


def _skin_field(h: int, w: int, seed: int, glare: bool = False) -> np.ndarray:
    """A reddish dermoscopy-like field in integers only: a vignette (darker towards the corners), a brown
    lesion blob, a little noise and, if ``glare``, a few white specular spots (values that a gain > 1
    must cap at 255)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    d2 = (2 * y - h) ** 2 + (2 * x - w) ** 2  # distance from the centre, doubled, squared
    d2max = h * h + w * w
    base = np.array([212, 132, 118], dtype=np.int64)
    fall = np.array([70, 60, 55], dtype=np.int64)
    img = base - fall * d2[..., None] // d2max
    cy, cx, r = 2 * h * 9 // 20, 2 * w * 11 // 20, min(h, w) * 7 // 10  # blob, doubled coordinates
    b2 = (2 * y - cy) ** 2 + (2 * x - cx) ** 2
    inside = np.maximum(r * r - b2, 0) * 256 // (r * r)  # 256 at the blob's centre, 0 outside
    img = img - np.array([120, 95, 70], dtype=np.int64) * inside[..., None] // 256
    img = img + (_hash_noise(h, w, seed).astype(np.int64) % 7 - 3)
    if glare:
        for gy, gx in ((h // 5, w // 4), (h * 2 // 3, w * 4 // 5), (h // 2, w // 2)):
            img[gy:gy + 2, gx:gx + 3] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_image(h: int, w: int, seed: int) -> np.ndarray:
    """A phone-photo-like field: :func:`_skin_field` plus fine diagonal stripes (period 7 pixels, +-30), the
    detail a plain bilinear downscale aliases. Integers only: ContractGoldenTest.photoImage generates the
    same bytes in Java (checked through ``pixels_sha256``), so large images cost no committed pixels."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    stripes = ((3 * x + 5 * y) % 7 - 3) * 10
    return np.clip(_skin_field(h, w, seed).astype(np.int64) + stripes[..., None], 0, 255).astype(np.uint8)


# Generated in Java too (no pixel file): name -> (height, width, seed) of photo_image.
GENERATED = {"photo": (757, 1003, 5), "photo_medium": (77, 101, 6)}


def contract_images() -> list[tuple[str, np.ndarray]]:
    """Generated RGB images (name, H x W x 3 uint8) for the contract goldens: noise, a reddish colour cast,
    one channel all zero (colour constancy leaves it unchanged), a tiny 3x2 and a larger non-square image
    with glare (downscaled by non-integer factors, gains capped at 255); then photo-like images
    (:data:`GENERATED`) that v2's box step reduces with k >= 2 and a remainder to drop."""
    zero = _hash_noise(12, 20, 3)
    zero[..., 2] = 0
    tiny = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                     [[250, 128, 7], [1, 2, 3], [128, 128, 128]]], dtype=np.uint8)
    return [
        ("noise", _hash_noise(24, 32, 1)),
        ("reddish", _skin_field(36, 48, 2)),
        ("zero_blue", zero),
        ("tiny_3x2", tiny),
        ("wide_glare", _skin_field(80, 120, 4, glare=True)),
        *((name, photo_image(*shape)) for name, shape in GENERATED.items()),
    ]


# (golden name, image of contract_images, EXIF orientation of its pixels, contract versions): the photo stored
# sideways (orientation 6), so v2's blocks and dropped remainder are those of the upright image.
CONTRACT_CASES = (
    *((name, name, 1, (1, 2)) for name in ("noise", "reddish", "zero_blue", "tiny_3x2", "wide_glare", "photo")),
    ("photo_exif6", "photo", 6, (2,)),
    ("photo_medium", "photo_medium", 1, (2,)),
)


def upright(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels tagged with an EXIF orientation, made upright by Pillow (as read_rgb does)."""
    img = Image.fromarray(rgb)
    img.getexif()[_ORIENTATION] = orientation
    return np.asarray(ImageOps.exif_transpose(img))


def sog_illuminant(q: np.ndarray) -> list[float]:
    """The illuminant ``e_c`` that :func:`melkit.data.contract.shades_of_gray` divides out of ``q``,
    computed as it does (recorded in the goldens so the JVM test compares it bit for bit, not only the
    rounded ``q``; tests check that it reproduces ``shades_of_gray``)."""
    n = float(q.shape[0] * q.shape[1])
    powers = np.arange(256, dtype=np.float64) ** SHADES_OF_GRAY_P
    e = []
    for c in range(3):
        counts = np.bincount(q[..., c].ravel(), minlength=256).astype(np.float64)
        e.append(_root(float(np.cumsum(counts * powers)[-1]) / n, SHADES_OF_GRAY_P))
    return e


def write_contract_goldens(out_dir) -> dict:
    """Write the contract goldens into ``out_dir`` (replaced whole); returns the index.

    For each case of :data:`CONTRACT_CASES`: its stored pixels, ``<name>.rgba.bin`` (RGBA, alpha 255,
    row-major, as ``Bitmap.getPixels`` gives it after the ARGB packing), or for a :data:`GENERATED` image
    ``generated`` (the parameters of :func:`photo_image`) and the RGBA bytes' ``pixels_sha256``; its EXIF
    ``orientation``; and for each contract version, each size of :data:`CONTRACT_SIZES`, the contract's
    ``q`` of the upright image (uint8, size x size x 3) plain (``<name>.<size>[.v2].q.bin``) and with Shades
    of Gray (``.sog.q.bin``, with its ``illuminant`` in index.json: exact floats, JSON keeps every bit). A
    v2 output records its box factor ``box_k``; where k = 1 it is v1's file (v2 equals v1 there).
    """
    out_dir = Path(out_dir)
    images = dict(contract_images())
    with staging(out_dir) as staged:
        entries = []
        for name, image, orientation, versions in CONTRACT_CASES:
            stored = images[image]
            rgba = np.concatenate([stored, np.full(stored.shape[:2] + (1,), 255, np.uint8)], axis=-1)
            entry = {"name": name, "width": int(stored.shape[1]), "height": int(stored.shape[0]),
                     "orientation": orientation}
            if image in GENERATED:
                h, w, seed = GENERATED[image]
                entry["generated"] = {"kind": "photo_image", "height": h, "width": w, "seed": seed}
                entry["pixels_sha256"] = sha256(rgba.tobytes())
            else:
                entry["pixels"] = f"{name}.rgba.bin"
                (staged / entry["pixels"]).write_bytes(rgba.tobytes())
            rgb = upright(stored, orientation) if orientation != 1 else stored
            files = {}  # (size, colour constancy) -> v1's file, reused by v2 where k = 1
            outputs = []
            for version in versions:
                for size in CONTRACT_SIZES:
                    contract = CONTRACTS[version].for_size(size)
                    k = box_factor(rgb.shape[0], rgb.shape[1], size)
                    for cc, suffix in ((None, "q"), (SHADES_OF_GRAY, "sog.q")):
                        q = contract.with_color_constancy(cc is not None).apply(rgb)
                        out = {"contract": contract.name, "size": size, "color_constancy": cc}
                        if version == 2:
                            out["box_k"] = k
                        if version == 2 and k == 1 and (size, cc) in files:
                            out["q"] = files[size, cc]
                            assert (staged / out["q"]).read_bytes() == q.tobytes()
                        else:
                            out["q"] = f"{name}.{size}.{'v2.' if version == 2 else ''}{suffix}.bin"
                            (staged / out["q"]).write_bytes(q.tobytes())
                        files.setdefault((size, cc), out["q"])
                        if cc is not None:
                            out["illuminant"] = sog_illuminant(contract.apply(rgb))
                        outputs.append(out)
            entries.append({**entry, "outputs": outputs})
        index = {"format": CONTRACT_FORMAT, "contracts": [CONTRACTS[v].name for v in sorted(CONTRACTS)],
                 "sizes": list(CONTRACT_SIZES), "images": entries}
        write_json(staged / "index.json", index)
    return index


if __name__ == "__main__":  # python -m melkit.release.golden android_demo/app/src/test/resources/contract
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m melkit.release.golden OUT_DIR  (writes the contract goldens)")
    with exclusive(sys.argv[1]):  # as every writer of a folder: a second one exits, a killed one's staging goes
        written = write_contract_goldens(sys.argv[1])
    print(f"wrote {len(written['images'])} contract golden images to {sys.argv[1]}")
