"""Training time: melkit's frozen-base recipe vs a tutorial-style Keras pipeline, in one run.

(A) melkit: ``train()`` with one head-only stage (the paper recipe): decode + resize once in threads,
    run the frozen base once to cache features, then fit only the head. Timed end to end, so it also
    pays for the split, the val/test predictions, the threshold and the bootstrap metrics.
(B) tutorial: ``image_dataset_from_directory`` -> map to [-1, 1] -> prefetch -> ``model.fit`` on the
    same MobileNetV2 with a frozen base. Every epoch decodes the JPEGs and runs the frozen base again,
    which is the cost melkit avoids. Only ``fit`` is timed.

Both train on the same images (melkit's train split, read back from its split.csv), at the same size,
for the same epochs and batch size. Usage: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# One line per epoch from Keras and rare tqdm redraws; must be set before melkit reads it.
os.environ.setdefault("CI", "true")

import numpy as np  # noqa: E402

from melkit.core.model import build_model, set_trainable  # noqa: E402
from melkit.core.recipe import paper_recipe  # noqa: E402
from melkit.data.readers import read_dataset  # noqa: E402
from melkit.train.trainer import TrainOptions, run_train  # noqa: E402
from melkit.util.tf import keras, tf  # noqa: E402  (sets TF_USE_LEGACY_KERAS=1 first)

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description="Training time: melkit frozen recipe vs a tutorial Keras pipeline.")
    p.add_argument("--data", default=str(ROOT / "../shared/data/ham10000-nv-mel"))
    p.add_argument("--weights", default=str(ROOT / "../shared/weights/mobilenet_v2_1.0_224_imagenet_no_top.h5"),
                   help="MobileNetV2 no-top .h5 matching --alpha")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-images", type=int, default=1000, help="stratified subset; 0 = all")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def host() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "?")
    gpus = [g.name for g in tf.config.list_physical_devices("GPU")]
    return (f"host: {cpu}, {len(os.sched_getaffinity(0))} usable cores (of {os.cpu_count()}), "
            f"GPU: {', '.join(gpus) or 'none'}, TF {tf.__version__}, tf_keras {keras.__version__}")


def subset_dir(data: Path, max_images: int, seed: int, tmp: Path) -> Path:
    """A HAM10000-style dir with a stratified subset of metadata.csv and a symlink to the images.

    melkit's train() splits on its own, so it must see only the subset; its reader follows the link.
    """
    meta = next(data / n for n in ("HAM10000_metadata.csv", "metadata.csv") if (data / n).is_file())
    with open(meta, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, sorted(reader, key=lambda r: r["image_id"])
    rows = [r for r in rows if r["dx"].strip().lower() in ("nv", "mel")]
    if max_images and max_images < len(rows):
        rng = np.random.default_rng(seed)
        keep = []
        for dx in ("nv", "mel"):  # same class ratio as the full data
            idx = [i for i, r in enumerate(rows) if r["dx"].strip().lower() == dx]
            keep += rng.permutation(idx)[: round(max_images * len(idx) / len(rows))].tolist()
        rows = [rows[i] for i in sorted(keep)]
    out = tmp / "data"
    out.mkdir()
    with open(out / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    # Link every image folder of the source (HAM10000 ships images/ or two part_N folders).
    for sub in data.iterdir():
        if sub.is_dir():
            (out / sub.name).symlink_to(sub.resolve(), target_is_directory=True)
    return out


def class_folders(records, train_ids: set, tmp: Path) -> Path:
    """The paper/tutorial layout: nv/ and mel/ holding symlinks to melkit's training images."""
    root = tmp / "folders"
    for r in records:
        if r.image_id in train_ids:
            d = root / r.dx
            d.mkdir(parents=True, exist_ok=True)
            (d / Path(r.path).name).symlink_to(Path(r.path).resolve())
    return root


def main():
    args = parse_args()
    print(host())
    recipe = paper_recipe()  # one stage: frozen base, head only, no augmentation -> feature cache
    recipe = replace(recipe, image_size=args.image_size, alpha=args.alpha,
                     stages=[replace(s, epochs=args.epochs) for s in recipe.stages])
    stage = recipe.stages[0]

    with tempfile.TemporaryDirectory(prefix="melkit-bench-") as tmp:
        tmp = Path(tmp)
        data = subset_dir(Path(args.data), args.max_images, args.seed, tmp)

        # (A) melkit, end to end.
        print(f"\n== (A) melkit train(): recipe {recipe.name}, stage {stage.name} ({stage.trainable}) ==")
        t0 = time.perf_counter()
        res = run_train(TrainOptions(data=str(data), out=str(tmp / "run"), recipe=recipe,
                                 weights=args.weights, seed=args.seed))
        t_melkit = time.perf_counter() - t0
        with open(res.out_dir / "split.csv", newline="") as f:
            train_ids = {r["image_id"] for r in csv.DictReader(f) if r["split"] == "train"}

        # (B) the tutorial, on melkit's training images. train() left the seed, op determinism and the
        # precision policy set, so both sides run under the same TF settings.
        print(f"\n== (B) tutorial: image_dataset_from_directory + fit, {len(train_ids)} images ==")
        folders = class_folders(read_dataset(data).records, train_ids, tmp)
        ds = keras.utils.image_dataset_from_directory(
            folders, image_size=(args.image_size, args.image_size), batch_size=recipe.batch_size,
            label_mode="binary", class_names=["nv", "mel"], seed=args.seed)  # melkit's label order
        ds = ds.map(lambda x, y: (x / 127.5 - 1.0, y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        keras.utils.set_random_seed(args.seed)
        model = build_model(args.alpha, args.image_size, args.weights, recipe.dropout)
        set_trainable(model, "head", recipe.bn_inference)
        # Compiled as melkit's stages._compile does: the stage's optimizer, BCE on the logit, AUC.
        opt = keras.optimizers.RMSprop if stage.optimizer == "rmsprop" else keras.optimizers.Adam
        model.compile(optimizer=opt(stage.learning_rate), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                      metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
        t0 = time.perf_counter()
        model.fit(ds, epochs=args.epochs, verbose=2)
        t_tutorial = time.perf_counter() - t0

    n = len(train_ids)
    work = n * args.epochs
    print(f"\n== {n} training images x {args.epochs} epochs, {args.image_size} px, alpha {args.alpha:g}, "
          f"batch {recipe.batch_size} ==")
    print(host())
    print(f"(A) melkit:   {t_melkit:8.1f} s  {work / t_melkit:8.1f} images*epochs/s"
          "  (end to end: decode, split, features, fit, val/test predict, threshold, bootstrap metrics)")
    print(f"(B) tutorial: {t_tutorial:8.1f} s  {work / t_tutorial:8.1f} images*epochs/s"
          "  (model.fit only: JPEG decode + frozen base every epoch; no validation, no metrics)")
    print(f"ratio tutorial / melkit: {t_tutorial / t_melkit:.2f}x")


if __name__ == "__main__":
    main()
