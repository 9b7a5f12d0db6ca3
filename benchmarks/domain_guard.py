"""How well a --domain-guard model tells dermoscopic lesion images from everything else, and what it costs.

(a) In-domain rate on real dermoscopy: every image of each shared set (HAM10000, ISIC 2016, ISIC 2017; the
    model may have been fitted on some of them, not on the others), by class.
(b) Flagged rate on inputs that show no lesion: generated noise, flat colours (skin tones and greys among
    them), gradients, text pages and screenshots, checkerboards and stripes (melkit/bench/ood.py), and
    natural photographs: the sample images scikit-image ships (no download) with crops and a downscale.
    scikit-image is for this benchmark only (``.venv/bin/pip install scikit-image``); without it that group
    is skipped.
(c) Latency: the guard model against the same model converted without the guard (``--baseline``), LiteRT
    interpreter, one image per invoke, alternating blocks of runs so both see the same machine load; and
    whether the classifier's P(mel) is unchanged by the guard (on ISIC 2016).

    .venv/bin/python benchmarks/domain_guard.py MODEL.tflite [--baseline PLAIN.tflite] [--threads 2]
        [--runs 50] [--data DIR ...] [--json OUT.json]

Targets (the issue): >= 97 % of the images of every real set in-domain; >= 99 % of the non-dermoscopy inputs
flagged. Prints one table per part. Not a test: the latency numbers depend on the host and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from melkit.bench.inputs import open_tflite  # noqa: E402
from melkit.bench.ood import GROUPS, generated  # noqa: E402
from melkit.core.litert import (  # noqa: E402
    load_interpreter,
    predict_p_mel,
    predict_with_domain,
    to_input,
)
from melkit.core.probability import shown_p_mel  # noqa: E402
from melkit.data.pipeline import load_images  # noqa: E402
from melkit.data.readers import read_sources  # noqa: E402

SHARED = Path(os.environ.get("MELKIT_SHARED", ROOT.parent / "shared")) / "data"
SETS = ("ham10000-nv-mel", "isic2016-nv-mel", "isic2017-nv-mel")


def scores_of(model, interp, images_q):
    card = model.card
    return predict_with_domain(interp, images_q, p_mel_index=card.p_mel_index, output=card.output.name,
                               domain_output=card.guard_output.name)


def natural_photographs() -> list:
    """(name, rgb) of scikit-image's bundled sample images (those in its package, no download), each whole,
    three square crops (centre, top-left, bottom-right; half the short side) and a quarter-size downscale."""
    try:
        import skimage.data
        import skimage.io
    except ImportError:
        return []
    from PIL import Image

    out = []
    for f in sorted(Path(skimage.data.__file__).parent.iterdir()):
        if f.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        im = np.asarray(skimage.io.imread(f))
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        if im.ndim != 3 or im.shape[2] < 3:
            continue
        im = im[..., :3]
        if im.dtype != np.uint8:
            im = np.clip(im / max(1, im.max()) * 255, 0, 255).astype(np.uint8)
        im = np.ascontiguousarray(im)
        h, w = im.shape[:2]
        out.append((f.stem, im))
        c = min(h, w) // 2
        if c >= 32:
            out += [(f"{f.stem}_centre", np.ascontiguousarray(im[(h - c) // 2:(h + c) // 2, (w - c) // 2:(w + c) // 2])),
                    (f"{f.stem}_topleft", np.ascontiguousarray(im[:c, :c])),
                    (f"{f.stem}_bottomright", np.ascontiguousarray(im[h - c:, w - c:]))]
        if min(h, w) >= 128:
            small = Image.fromarray(im).resize((w // 4, h // 4), Image.Resampling.BILINEAR)
            out.append((f"{f.stem}_quarter", np.asarray(small)))
    return out


def real_sets(model, interp, dirs) -> dict:
    rows = {}
    for d in dirs:
        records = read_sources([d]).records
        arr = load_images(records, model.contract, desc=Path(d).name)
        _, score = scores_of(model, interp, arr.images)
        inside = model.card.in_domain(score)
        labels = arr.labels
        rows[Path(d).name] = {
            "n": int(len(score)), "in_domain": float(inside.mean()), "n_out": int((~inside).sum()),
            "in_domain_nv": float(inside[labels == 0].mean()) if (labels == 0).any() else None,
            "in_domain_mel": float(inside[labels == 1].mean()) if (labels == 1).any() else None,
            "score_p50": float(np.median(score)), "score_p99": float(np.quantile(score, 0.99)),
            "worst": [arr.records[i].image_id for i in np.argsort(-score)[:5]],
            "images": arr.images if Path(d).name == "isic2016-nv-mel" else None,
        }
    return rows


def non_lesion(model, interp) -> dict:
    contract = model.contract
    items = [(g, n, rgb) for g, n, rgb in generated()] + [("photo", n, rgb) for n, rgb in natural_photographs()]
    q = np.stack([contract.apply(rgb) for _, _, rgb in items])
    _, score = scores_of(model, interp, q)
    flagged = ~model.card.in_domain(score)
    groups = {}
    for g in (*GROUPS, "photo"):
        idx = [i for i, (grp, _, _) in enumerate(items) if grp == g]
        if not idx:
            continue
        groups[g] = {"n": len(idx), "flagged": float(flagged[idx].mean()),
                     "missed": [items[i][1] for i in idx if not flagged[i]],
                     "lowest_score_over_threshold": float(score[idx].min() / model.card.guard_threshold)}
    groups["all"] = {"n": len(items), "flagged": float(flagged.mean()),
                     "missed": [f"{items[i][0]}/{items[i][1]}" for i in np.flatnonzero(~flagged)]}
    return groups


def latency(model_path, baseline_path, image_q, threads, runs, blocks=5):
    """Mean ms per invoke of each model, measured in alternating blocks (same load for both)."""
    interps = {}
    for name, path in (("guard", model_path), ("baseline", baseline_path)):
        it = load_interpreter(path, num_threads=threads)
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], to_input(image_q[None], d))
        for _ in range(10):
            it.invoke()
        interps[name] = it
    times = {name: [] for name in interps}
    per_block = max(1, runs // blocks)
    for _ in range(blocks):
        for name, it in interps.items():
            for _ in range(per_block):
                t0 = time.perf_counter()
                it.invoke()
                times[name].append((time.perf_counter() - t0) * 1e3)
    out = {name: {"mean_ms": float(np.mean(t)), "p50_ms": float(np.median(t)), "n": len(t)} for name, t in times.items()}
    out["ratio_mean"] = out["guard"]["mean_ms"] / out["baseline"]["mean_ms"]
    out["ratio_p50"] = out["guard"]["p50_ms"] / out["baseline"]["p50_ms"]
    out["threads"] = threads
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="A .tflite converted with --domain-guard (its card beside it).")
    ap.add_argument("--baseline", type=Path, help="The same run converted without --domain-guard (latency, P(mel)).")
    ap.add_argument("--data", type=Path, action="append", help="Real dermoscopy sets (default: the shared ones).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", type=Path, help="Write every number here too.")
    args = ap.parse_args()

    model = open_tflite(args.model)
    if model.card.domain_guard is None:
        sys.exit(f"{args.model} has no domain guard (convert with --domain-guard)")
    interp = load_interpreter(args.model, num_threads=args.threads)
    dirs = args.data or [SHARED / s for s in SETS if (SHARED / s).is_dir()]
    t0 = time.perf_counter()
    real = real_sets(model, interp, dirs)
    other = non_lesion(model, interp)
    result = {"model": str(args.model), "threshold": model.card.guard_threshold,
              "card": {k: model.card.domain_guard.get(k) for k in ("layers", "components", "shrinkage", "fitted_on",
                                                                    "threshold_policy", "val_in_domain",
                                                                    "val_in_domain_float", "agreement",
                                                                    "score_mean_abs_diff")},
              "real": {k: {kk: vv for kk, vv in v.items() if kk != "images"} for k, v in real.items()},
              "non_lesion": other}
    print(f"{args.model} ({model.card.variant}), domain threshold {model.card.guard_threshold:.4g} "
          f"({model.card.domain_guard.get('threshold_policy')})")
    print("\n(a) real dermoscopy: in-domain rate (target >= 97 %)")
    print(f"{'set':<18} {'n':>6} {'in-domain':>10} {'nv':>7} {'mel':>7} {'out':>5}  {'score p50':>9} {'p99':>7}")
    for name, r in result["real"].items():
        pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
        print(f"{name:<18} {r['n']:>6} {pct(r['in_domain']):>10} {pct(r['in_domain_nv']):>7} "
              f"{pct(r['in_domain_mel']):>7} {r['n_out']:>5}  {r['score_p50']:>9.3f} {r['score_p99']:>7.3f}")
    print("\n(b) inputs that show no lesion: flagged rate (target >= 99 %)")
    print(f"{'group':<10} {'n':>5} {'flagged':>8}  missed")
    for g, r in other.items():
        missed = ", ".join(r["missed"][:8]) + (" ..." if len(r["missed"]) > 8 else "")
        print(f"{g:<10} {r['n']:>5} {100 * r['flagged']:>7.1f}%  {missed}")
    if "photo" not in other:
        print("(natural photographs skipped: pip install scikit-image into .venv to include them)")
    if args.baseline:
        base = open_tflite(args.baseline)
        i16 = real.get("isic2016-nv-mel", {}).get("images")
        if i16 is not None:
            p_guard, _ = scores_of(model, interp, i16)
            p_base = predict_p_mel(load_interpreter(args.baseline, num_threads=args.threads), i16,
                                   p_mel_index=base.card.p_mel_index, output=base.card.output.name)
            # On the scale shown to a person: the same whether or not either card folds its threshold in.
            shown_guard, shown_base = shown_p_mel(model.card, p_guard), shown_p_mel(base.card, p_base)
            result["p_mel_vs_baseline"] = {"n": len(i16),
                                           "max_abs_diff": float(np.max(np.abs(shown_guard - shown_base))),
                                           "same_decision": float(np.mean((p_guard >= model.threshold)
                                                                          == (p_base >= base.threshold)))}
            print(f"\nP(mel) vs the model without guard (ISIC 2016, {len(i16)} images): max |dP| "
                  f"{result['p_mel_vs_baseline']['max_abs_diff']:.6f}, same decision "
                  f"{100 * result['p_mel_vs_baseline']['same_decision']:.1f}%")
        sample = next(v["images"] for v in real.values() if v.get("images") is not None) if i16 is not None else \
            load_images(read_sources([dirs[0]]).records[:1], model.contract).images
        lat = latency(args.model, args.baseline, sample[0], args.threads, args.runs)
        result["latency"] = lat
        print(f"\n(c) latency, LiteRT interpreter, {args.threads} thread(s), {lat['guard']['n']} runs each, "
              f"alternating blocks:")
        print(f"  with guard {lat['guard']['mean_ms']:.2f} ms mean ({lat['guard']['p50_ms']:.2f} p50), without "
              f"{lat['baseline']['mean_ms']:.2f} ms ({lat['baseline']['p50_ms']:.2f} p50): x{lat['ratio_mean']:.3f} "
              f"mean, x{lat['ratio_p50']:.3f} p50")
    result["seconds"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
