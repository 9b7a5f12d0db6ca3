"""``melkit demo``: the main job end to end on the embedded synthetic data set, offline.

Steps grow with the project (synth + train now; convert, bench, predict and bundle as they land).
"""

from __future__ import annotations

import time
from pathlib import Path

from melkit.errors import BadInputError


def run_demo(out, data_dir=None, weights="none", seed=0, lesions=240, epochs=None, echo=print):
    from melkit.report import print_train_summary
    from melkit.train.recipe import default_recipe, scratch_recipe
    from melkit.train.trainer import TrainOptions, train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out} is not empty; choose another --out or remove it")
    t0 = time.time()
    if data_dir is None:
        from melkit.data.synth import write_synth_dataset

        data_dir = out / "data"
        echo(f"[1/2] synthetic ABCD data set -> {data_dir}")
        s = write_synth_dataset(data_dir, n_lesions=lesions, seed=seed)
        echo(f"      {s['n_images']} images, {s['n_lesions']} lesions ({s['n_mel']} mel images)")
    # No ImageNet weights offline: the scratch recipe trains every layer of a small model.
    recipe = scratch_recipe() if str(weights).lower() == "none" else default_recipe()
    if epochs:
        recipe = recipe.with_epochs(epochs)
    echo(f"[2/2] train ({recipe.name} recipe, MobileNetV2 alpha {recipe.alpha}, {recipe.image_size} px) -> {out / 'run'}")
    result = train(TrainOptions(data=str(data_dir), out=str(out / "run"), recipe=recipe, weights=weights, seed=seed),
                   echo=echo)
    print_train_summary(result, echo)
    echo(f"\ndemo finished in {time.time() - t0:.0f} s; artifacts:")
    for name in ("model.keras", "metrics.json", "curves.png", "split.csv", "config.json"):
        echo(f"  {result.out_dir / name}")
    return result
