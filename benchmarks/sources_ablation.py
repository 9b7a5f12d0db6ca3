"""What more sources buy on other dermatoscopes: one training change at a time, per-source AUC with CIs.

Trains the same recipe on the same seed as
  ham            HAM10000 only
  ham+isic17     HAM10000 + ISIC 2017 train/val (its challenge split kept)
  ham+isic17+bal the same, each training batch drawn equally from both sources (--source-balance)
then, one change at a time on top of ham+isic17+bal: Shades of Gray colour constancy (a contract step),
camera augmentation (AugmentParams.camera(): hue, saturation, gamma, colour temperature, blur, JPEG, noise,
vignetting), fine-tuning from block 10 instead of 13, label smoothing 0.1,
and reports, for each, AUC [95 % CI, lesion bootstrap] and balanced accuracy at the run's one threshold on
the validation splits (HAM10000 val, ISIC 2017 val) and on ISIC 2016 (never trained on: --external), which
is what recipes are chosen on. Test splits (HAM10000 test, ISIC 2017 test) are left out on purpose: they
are evaluated once, for a release. The ham run sees ISIC 2017 val as an external set (a view of the set
holding only its val rows), so every arm is measured on the same images.

    python benchmarks/sources_ablation.py --out runs/ablation [--alpha 0.35 --image-size 96 --epochs 3,2]

Needs ../shared (data and the ImageNet backbone). Prints a markdown table and writes OUT/ablation.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from dataclasses import replace  # noqa: E402

from melkit.core.recipe import default_recipe  # noqa: E402
from melkit.data.augment import AugmentParams  # noqa: E402
from melkit.train.trainer import TrainOptions, run_train  # noqa: E402
from melkit.util.files import write_json  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
WEIGHTS = {1.0: SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5",
           0.35: SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_no_top.h5"}


def isic2017_val_only(out: Path) -> Path:
    """A view of ISIC 2017 holding only its challenge val split (images linked, metadata filtered)."""
    src = DATA / "isic2017-nv-mel"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        (out / "images").symlink_to(src / "images")
    rows = list(csv.DictReader(open(src / "metadata.csv", newline="")))
    with open(out / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(r for r in rows if r["split"] == "val")
    return out


def _recipe_with(**changes):
    """The default recipe with some fields changed; ``finetune_from`` moves the fine-tuning stage's start."""
    recipe = default_recipe()
    start = changes.pop("finetune_from", None)
    if start:
        recipe = replace(recipe, stages=[replace(s, trainable=f"from:{start}") if s.trainable.startswith("from:")
                                         else s for s in recipe.stages])
    return replace(recipe, **changes)


def arms(out: Path) -> dict:
    """Sources first (ham, +isic17, +balance), then one recipe change at a time on top of ham+isic17+bal."""
    ham, isic17, isic16 = DATA / "ham10000-nv-mel", DATA / "isic2017-nv-mel", DATA / "isic2016-nv-mel"
    both = dict(data=[ham, isic17], external=[isic16], source_balance=True)
    return {
        "ham": dict(data=[ham], external=[isic16, isic2017_val_only(out / "isic2017-val")]),
        "ham+isic17": dict(data=[ham, isic17], external=[isic16]),
        "ham+isic17+bal": both,
        "+shades-of-gray": dict(both, recipe=_recipe_with(color_constancy=True)),
        "+camera-aug": dict(both, recipe=_recipe_with(augment=AugmentParams.camera())),
        "+unfreeze-block10": dict(both, recipe=_recipe_with(finetune_from="block_10_expand")),
        "+label-smoothing-0.1": dict(both, recipe=_recipe_with(label_smoothing=0.1)),
        # the single changes that helped ISIC 2016 without costing validation, together
        "+sog+block10+ls": dict(both, recipe=_recipe_with(color_constancy=True, finetune_from="block_10_expand",
                                                          label_smoothing=0.1)),
        "+sog+block10+ls+camera": dict(both, recipe=_recipe_with(
            color_constancy=True, finetune_from="block_10_expand", label_smoothing=0.1,
            augment=AugmentParams.camera())),
    }


def rows_of(metrics: dict) -> dict:
    """set -> validation or external metrics, from a run's metrics.json (test splits left out)."""
    out = {f"{source} val": per_split["val"] for source, per_split in metrics.get("sources", {}).items()}
    if "sources" not in metrics:  # one source: the pooled val split is that source's
        out["ham10000 val"] = metrics["val"]
    for name, m in metrics.get("external", {}).items():
        # the only external ISIC 2017 here is its val split (the ham arm's view of it)
        out["isic2017 val" if name == "isic2017" else f"{name} (external)"] = m
    return out


def fmt(m: dict | None) -> str:
    if not m or m.get("auc") is None:
        return "-"
    lo, hi = m["auc_ci"]
    return f"{m['auc']:.3f} [{lo:.3f}, {hi:.3f}] / {m['balanced_accuracy']:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--alpha", type=float, default=0.35, choices=sorted(WEIGHTS))
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--epochs", default="3,2", help="epochs per stage of the default recipe")
    ap.add_argument("--arm", action="append", help="run only these arms (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"{DATA} not found: this benchmark needs ../shared", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, arm in arms(args.out).items():
        run = args.out / name
        if args.arm and name not in args.arm:  # not asked for: reported if an earlier call trained it
            if (run / "metrics.json").is_file():
                results[name] = rows_of(json.loads((run / "metrics.json").read_text()))
            continue
        if not (run / "metrics.json").is_file():
            run_train(TrainOptions(data=[str(d) for d in arm["data"]], external=[str(d) for d in arm["external"]],
                               out=str(run), weights=str(WEIGHTS[args.alpha]), alpha=args.alpha,
                               image_size=args.image_size, epochs=[int(e) for e in args.epochs.split(",")],
                               source_balance=arm.get("source_balance"), seed=args.seed,
                               recipe=arm.get("recipe", "default")))
        results[name] = rows_of(json.loads((run / "metrics.json").read_text()))
    sets = sorted({s for r in results.values() for s in r})
    print(f"AUC [95% CI] / balanced accuracy at each run's threshold; MobileNetV2 alpha {args.alpha}, "
          f"{args.image_size} px, default recipe with epochs {args.epochs}, seed {args.seed}\n")
    print("| set | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for s in sets:
        print(f"| {s} | " + " | ".join(fmt(r.get(s)) for r in results.values()) + " |")
    write_json(args.out / "ablation.json", {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
