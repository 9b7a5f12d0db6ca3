"""Leave-one-source-out: how a recipe does on a dermatoscope it has never seen, the screening issue's measure.

For each recipe arm and seed, trains on every source but one and scores the one left out (all of its images
but a release's test split: ISIC 2017's challenge test rows are left out of its view), with ISIC 2016 always
external (never trained on). Pooled validation measures the devices already in training; the left-out AUCs
estimate the next device. Recipes are compared on the **mean and the minimum** of the left-out AUCs, over
seeds (mean and spread reported), and on sensitivity / specificity of the left-out source at each run's own
threshold (chosen on the run's validation, by the recipe's policy).

    .venv/bin/python benchmarks/leave_one_source_out.py --out runs/loso [--arm multisource ...] [--seeds 0,1,2]
        [--alpha 0.35 --image-size 96 --epochs 3,6]

Runs already trained under OUT are reused (a rerun only adds what is missing). Needs ../shared. Prints a
markdown table and writes OUT/loso.json. Small size on 2 CPU cores: about 3-5 minutes a run, 3 runs an arm
and seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from dataclasses import replace  # noqa: E402

from melkit.core.recipe import multisource_recipe  # noqa: E402
from melkit.train.trainer import TrainOptions, run_train  # noqa: E402
from melkit.util.files import write_json  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
SOURCES = {"ham10000": DATA / "ham10000-nv-mel", "isic2017": DATA / "isic2017-nv-mel",
           "bcn20000": DATA / "bcn20000-nv-mel-84"}
ISIC2016 = DATA / "isic2016-nv-mel"
WEIGHTS = {1.0: SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.h5",
           0.35: SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_no_top.h5"}


def _multisource(finetune_from=None, **augment):
    """``multisource`` with its augmentation changed and/or its fine-tuning stage starting elsewhere."""
    recipe = multisource_recipe()
    recipe = replace(recipe, augment=replace(recipe.augment, **augment))
    if finetune_from:
        recipe = replace(recipe, stages=[replace(s, trainable=f"from:{finetune_from}") if s.name == "finetune" else s
                                         for s in recipe.stages])
    return recipe


# Recipe arms: train options beside the sources (a recipe name or object, and overrides).
ARMS = {
    "multisource": dict(recipe="multisource"),
    # each batch equal parts of each source's nevi and melanomas: a source's prior is no cue
    "multisource+oversample": dict(recipe="multisource", oversample=True),
    # the sharp sources sometimes as blurry as BCN's 84-px images, against "blur = melanoma"
    "multisource+lowres": dict(recipe=_multisource(lowres=84)),
    "multisource+oversample+lowres": dict(recipe=_multisource(lowres=84), oversample=True),
    # more of the backbone adapts to the sources (block 6 of 16, not 10)
    "multisource+oversample+block6": dict(recipe=_multisource("block_6_expand"), oversample=True),
}


def without_test_rows(name: str, out: Path) -> Path:
    """The left-out source as scored: a view without its release test split (rows whose ``split`` is test;
    sources without a split column are whole)."""
    src = SOURCES[name]
    rows = list(csv.DictReader(open(src / "metadata.csv", newline="")))
    if "split" not in rows[0]:
        return src
    view = out / f"{name}-no-test"
    view.mkdir(parents=True, exist_ok=True)
    if not (view / "images").exists():
        (view / "images").symlink_to(src / "images")
    with open(view / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows({**r, "dataset": r.get("dataset") or name} for r in rows if r["split"] != "test")
    return view


def left_out_metrics(run: Path, left_out: str) -> dict:
    """The left-out source's and ISIC 2016's metrics from a run's metrics.json."""
    external = json.loads((run / "metrics.json").read_text()).get("external", {})
    pick = {k: v for k, v in external.items() if v.get("n")}
    out = {}
    for name, m in pick.items():
        key = "isic2016" if "isic2016" in name else "left-out"
        out[key] = {k: m.get(k) for k in ("auc", "auc_ci", "sensitivity", "specificity", "balanced_accuracy",
                                          "specificity_at_90_sensitivity", "n")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arm", action="append", choices=sorted(ARMS), help="arms to run (default: all)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--alpha", type=float, default=0.35, choices=sorted(WEIGHTS))
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--epochs", default="3,6", help="epochs per stage")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"{DATA} not found: this benchmark needs ../shared", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    for arm in args.arm or list(ARMS):
        for seed in seeds:
            for left_out in SOURCES:
                run = args.out / arm / f"seed{seed}" / f"without-{left_out}"
                if not (run / "metrics.json").is_file():
                    run_train(TrainOptions(data=[str(p) for n, p in SOURCES.items() if n != left_out],
                                       external=[str(without_test_rows(left_out, args.out)), str(ISIC2016)],
                                       out=str(run), weights=str(WEIGHTS[args.alpha]), alpha=args.alpha,
                                       image_size=args.image_size, epochs=[int(e) for e in args.epochs.split(",")],
                                       seed=seed, **ARMS[arm]))
                results.setdefault(arm, {}).setdefault(seed, {})[left_out] = left_out_metrics(run, left_out)

    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")

    print(f"\nleft-out AUC (mean ± sd over seeds {args.seeds}); sensitivity / specificity at each run's threshold; "
          f"alpha {args.alpha}, {args.image_size} px, epochs {args.epochs}\n")
    print("| arm | " + " | ".join(f"without {s}: AUC, sens / spec" for s in SOURCES)
          + " | mean AUC | min AUC | ISIC 2016 AUC (mean of runs) |")
    print("|---|" + "---|" * (len(SOURCES) + 3))
    for arm, by_seed in results.items():
        cells, means, mins, isic16 = [], [], [], []
        for s in SOURCES:
            ms = [by_seed[seed][s].get("left-out", {}) for seed in by_seed]
            cells.append(f"{cell([m.get('auc') for m in ms])}, {cell([m.get('sensitivity') for m in ms])} / "
                         f"{cell([m.get('specificity') for m in ms])}")
            isic16 += [by_seed[seed][s].get("isic2016", {}).get("auc") for seed in by_seed]
        for seed in by_seed:
            aucs = [by_seed[seed][s].get("left-out", {}).get("auc") for s in SOURCES]
            means.append(statistics.mean(aucs))
            mins.append(min(aucs))
        print(f"| {arm} | " + " | ".join(cells) + f" | {cell(means)} | {cell(mins)} | {cell(isic16)} |")
    write_json(args.out / "loso.json", {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
