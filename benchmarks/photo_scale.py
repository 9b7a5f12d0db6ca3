"""The same lesion as a phone photo: contract v1 against v2 (box step + JPEG draft decoding).

(a) Stability. ISIC 2016 dermoscopy images (~600x450) are upscaled 6x (bicubic, to ~3600x2700, what a
    clip-on dermatoscope on a 12-MP phone gives), sensor-like Gaussian noise is added (seeded per image)
    and the result is saved as a JPEG (quality 90). P(mel) of a release model on the photo is compared with
    its P(mel) on the original under the same contract: the share of lesions with |dP| <= 0.05 (and the
    median and largest |dP|), for v1 and for v2. For scale, the model's own noise floor: the original
    merely re-saved as a JPEG (quality 90, same size), and the mean |dq| (the contract's uint8 input)
    between each pair.
(b) Cost. ``melkit predict``'s decode + contract (``melkit.bench.predict.contract_images``) on 12-MP
    JPEGs (4000x3000): time per image and the process's peak resident memory (Linux ``VmHWM``, reset
    before the work, in a fresh process per contract), v1 (full decode) against v2 (draft decode).

    .venv/bin/python benchmarks/photo_scale.py [--lesions 60] [--timing-images 8]

Prints one small table per part. Not a test: the numbers depend on the host (and on what else runs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.05


def photo_like(src: Path, dest: Path, factor: float, noise: float, seed: int, size=None) -> Path:
    """``src`` upscaled by ``factor`` (or to ``size``), bicubic, plus Gaussian noise (sigma ``noise``), as a
    quality-90 JPEG."""
    with Image.open(src) as img:
        rgb = img.convert("RGB")
    size = size or (round(rgb.width * factor), round(rgb.height * factor))
    big = np.asarray(rgb.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for row in range(0, big.shape[0], 256):  # in bands: never a full-size float64 noise array
        band = big[row:row + 256]
        band += rng.standard_normal(band.shape, dtype=np.float32) * np.float32(noise)
    Image.fromarray(np.clip(np.rint(big), 0, 255).astype(np.uint8)).save(dest, quality=90)
    return dest


def lesions(data: Path, n: int):
    rows = [r for r in csv.DictReader(open(data / "metadata.csv", newline="")) if r["dx"] in ("nv", "mel")]
    rows = rows[::max(1, len(rows) // n)][:n]  # spread over the set
    return [next((data / "images").glob(r["image_id"] + ".*")) for r in rows]


def stability(args, card, interp, tmp: Path) -> None:
    from melkit.bench.predict import contract_images
    from melkit.core.litert import predict_p_mel
    from melkit.core.probability import shown_p_mel

    originals = lesions(Path(args.data), args.lesions)
    photos = [photo_like(p, tmp / f"photo_{i}.jpg", args.factor, args.noise, seed=i) for i, p in enumerate(originals)]
    resaved = [photo_like(p, tmp / f"resaved_{i}.jpg", 1, 0, seed=i) for i, p in enumerate(originals)]
    with Image.open(photos[0]) as img:
        shape = f"{img.width}x{img.height}"
    p, q = {}, {}
    for version in (1, 2):
        contract = card.preprocessing.with_version(version)
        for kind, paths in (("original", originals), ("photo", photos), ("re-saved", resaved)):
            q[version, kind] = contract_images(paths, contract).astype(np.int16)
            # the P(mel) shown to a person (a folded card's output is unfolded first)
            raw = predict_p_mel(interp, q[version, kind], p_mel_index=card.p_mel_index)
            p[version, kind] = shown_p_mel(card, raw)
    print(f"\n(a) {len(originals)} ISIC 2016 lesions, original (~600x450) vs photo ({shape}, {args.factor:g}x bicubic, "
          f"noise sigma {args.noise:g}, JPEG q90); {card.name} {card.version} {card.variant}")
    print(f"{'input':<9} {'under':<10} {'vs original':<12} {'|dP|<=0.05':>10} {'median |dP|':>11} {'max |dP|':>9} "
          f"{'mean |dq|':>9}")
    for kind, version, ref in (("photo", 1, 1), ("photo", 2, 2), ("photo", 2, 1), ("re-saved", 1, 1), ("re-saved", 2, 2)):
        d = np.abs(p[version, kind] - p[ref, "original"])
        dq = np.abs(q[version, kind] - q[ref, "original"]).mean()
        print(f"{kind:<9} {'melkit-v%d' % version:<10} {'melkit-v%d' % ref:<12} {np.mean(d <= TOLERANCE):>10.1%} "
              f"{np.median(d):>11.4f} {d.max():>9.4f} {dq:>9.2f}")


def _status_mb(key: str) -> float:
    line = next(line for line in open("/proc/self/status") if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def _cost_child(contract, paths: list) -> dict:
    """In a fresh process: decode + contract of each path, as ``melkit predict`` does; times and peak RSS."""
    from melkit.bench.predict import contract_images

    contract_images(paths[:1], contract)  # warm-up (first-call costs)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    start = _status_mb("VmRSS")
    times = []
    for path in paths:
        t0 = time.perf_counter()
        contract_images([path], contract)
        times.append(time.perf_counter() - t0)
    return {"times": times, "rss_start_mb": start, "peak_mb": _status_mb("VmHWM")}


def cost(args, card, tmp: Path) -> None:
    sources = lesions(Path(args.data), args.timing_images)
    paths = [str(photo_like(p, tmp / f"12mp_{i}.jpg", 0, args.noise, seed=100 + i, size=(4000, 3000)))
             for i, p in enumerate(sources)]
    print(f"\n(b) melkit predict's decode + contract, {len(paths)} JPEGs of 4000x3000 (12 MP), one process each")
    print(f"{'contract':<10} {'decode':<11} {'ms/image mean':>13} {'min':>6} {'peak RSS MB':>11} {'above start':>11}")
    spawn = multiprocessing.get_context("spawn")
    for version, decode in ((1, "full"), (2, "JPEG draft")):
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
            r = pool.submit(_cost_child, card.preprocessing.with_version(version), paths).result()
        t = np.array(r["times"]) * 1000
        print(f"{'melkit-v%d' % version:<10} {decode:<11} {t.mean():>13.1f} {t.min():>6.1f} {r['peak_mb']:>11.0f} "
              f"{r['peak_mb'] - r['rss_start_mb']:>11.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"))
    p.add_argument("--data", default=str(ROOT / "../shared/data/isic2016-nv-mel"))
    p.add_argument("--lesions", type=int, default=60)
    p.add_argument("--factor", type=float, default=6.0)
    p.add_argument("--noise", type=float, default=4.0, help="Gaussian sensor noise, sigma in 8-bit levels")
    p.add_argument("--timing-images", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from melkit.core.card import load_card
    from melkit.core.litert import load_interpreter

    card = load_card(args.model)
    interp = load_interpreter(args.model, num_threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.lesions:
            stability(args, card, interp, Path(tmp))
        if args.timing_images:
            cost(args, card, Path(tmp))


if __name__ == "__main__":
    main()
