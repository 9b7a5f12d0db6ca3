"""Peak memory of ``melkit predict`` against the number of images (issue 24: at most 300 MB for 10,000).

Writes N synthetic PNG photos into a temp folder (the largest N, once: UNIQUE distinct photos, the rest hard
links to them under their own names, each decoded on its own; smaller runs take the first ones), then runs ``melkit predict MODEL IMAGES... --json`` once per count in a fresh process and reads that
process's own peak resident memory (``ru_maxrss`` from ``os.wait4``: this one child's, not the largest of all
children as RUSAGE_CHILDREN would give). This script imports neither TensorFlow nor LiteRT, so the child does
not inherit a large peak from it. Prints one row per count: images, peak RSS, wall time, images/s.

    .venv/bin/python benchmarks/predict_memory.py                         # 1, 500, 2000 images, release int8
    .venv/bin/python benchmarks/predict_memory.py --counts 1 500 2000 10000 [--model M.tflite] [--size 600x450]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
UNIQUE = 100  # distinct photos written; more files are links to them (writing 10,000 PNGs takes minutes)


def write_images(folder: Path, n: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """``n`` PNGs of a smooth skin-coloured field with a darker blob, each a little different (cheap to make)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(n):
        path = folder / f"photo_{i:05d}.png"
        if i >= UNIQUE:
            os.link(paths[i % UNIQUE], path)
            paths.append(path)
            continue
        cx, cy, r = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height, rng.uniform(0.1, 0.3) * height
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        skin = np.array([200, 150, 130], np.float32) + rng.normal(0, 6, 3)
        lesion = np.array([90, 60, 50], np.float32) + rng.normal(0, 10, 3)
        rgb = np.clip(skin * (1 - blob) + lesion * blob + rng.normal(0, 4, (height, width, 1)), 0, 255)
        Image.fromarray(rgb.astype(np.uint8)).save(path, compress_level=1)
        paths.append(path)
    return paths


def peak_rss_of(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one child process running ``cmd``."""
    env = {**os.environ, "MELKIT_QUIET": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr_tail = b""
    while True:  # drain stderr so the child never blocks on a full pipe, then reap it with its own rusage
        chunk = proc.stderr.read(65536)
        if not chunk:
            break
        stderr_tail = (stderr_tail + chunk)[-4000:]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(stderr_tail.decode(errors="replace"))
    peak_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, KB elsewhere
    return peak_mb, wall, proc.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=MODEL, help="A .tflite with its card (default: release int8).")
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 500, 2000], help="Numbers of images (≤ 10000).")
    ap.add_argument("--size", default="600x450", help="WIDTHxHEIGHT of the synthetic photos (default 600x450).")
    ap.add_argument("--work", type=Path, help="Folder for the images (default: a temp folder, removed after).")
    args = ap.parse_args(argv)
    if max(args.counts) > 10000 or min(args.counts) < 1:
        ap.error("--counts between 1 and 10000")
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="melkit-predict-memory-", dir=args.work) as tmp:
        t0 = time.perf_counter()
        images = write_images(Path(tmp), max(args.counts), width, height)
        print(f"{len(images)} synthetic {width}x{height} PNGs written in {time.perf_counter() - t0:.0f} s; "
              f"model {args.model}")
        print(f"{'images':>7} {'peak RSS MB':>12} {'wall s':>8} {'images/s':>9}")
        failed = 0
        for n in sorted(args.counts):
            cmd = [sys.executable, "-m", "melkit.cli", "predict", str(args.model), *map(str, images[:n]), "--json"]
            peak, wall, code = peak_rss_of(cmd)
            failed += code != 0
            print(f"{n:>7} {peak:>12.0f} {wall:>8.1f} {n / wall:>9.1f}" + ("" if code == 0 else f"  exit {code}"),
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
