"""Which input-domain guard fit drops the fewest melanomas while still flagging what is not dermoscopy.

The guard (melkit/convert/domain_guard.py) is fitted on a run's training split with each ``--domain-guard-balance``
(none: every image alike; class; class-source: each class of each source alike) and the same quantile, all
from one pass of pooled features of the run's float Keras model, and reports for each fit:

- the share of melanomas and of nevi *not assessed* on every source's validation split and on every
  ``--external`` set (never trained on), the quantity the screening issue bounds (melanomas <= 3 % and <= the
  nevi's rate + 1 point on each set);
- the share of generated non-dermoscopy inputs flagged (noise, flat frames, gradients, text, patterns:
  melkit/bench/ood.py).

Float scores (the Keras model's features and numpy's distance): the int8 model's guard follows them to about
1 % of the threshold (README, "domain_guard.py"). Test splits are left out on purpose (a release's).

    .venv/bin/python benchmarks/guard_balance.py RUN_DIR [--external DIR ...] [--quantile 0.995] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from melkit.bench.ood import generated  # noqa: E402
from melkit.convert import domain_guard as guards  # noqa: E402
from melkit.convert.export import with_two_scores  # noqa: E402
from melkit.core.run import load_trained_model, split_records  # noqa: E402
from melkit.data.pipeline import load_images  # noqa: E402
from melkit.data.readers import read_dataset  # noqa: E402


def features(model, records, contract, desc):
    arr = load_images(records, contract, desc=desc)
    return guards.pooled_features(model, arr.images, desc=desc), arr.records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--external", action="append", default=[])
    ap.add_argument("--quantile", type=float, default=0.995)
    ap.add_argument("--json")
    args = ap.parse_args()

    logit, config = load_trained_model(args.run)
    model = with_two_scores(logit)
    contract = config.preprocessing
    dims = [int(model.get_layer(n).output.shape[-1]) for n in guards.LAYERS]
    train, train_rec = features(model, split_records(args.run, config, "train"), contract, "train")
    val, val_rec = features(model, split_records(args.run, config, "val"), contract, "val")
    sets = {f"{s} val": [i for i, r in enumerate(val_rec) if r.source == s]
            for s in sorted({r.source for r in val_rec})}
    held = {name: (val, val_rec) for name in sets}
    for d in args.external:
        f, rec = features(model, read_dataset(d).records, contract, Path(d).name)
        held[Path(d).name] = (f, rec)
        sets[Path(d).name] = list(range(len(rec)))
    ood = generated()
    ood_f = guards.pooled_features(model, np.stack([contract.apply(rgb) for _, _, rgb in ood]), desc="non-lesion")

    results = {}
    for balance in guards.BALANCES:
        guard = guards.fit(train, val, guards.LAYERS, dims, quantile=args.quantile,
                           train_groups=guards.group_names(train_rec, balance),
                           val_groups=guards.group_names(val_rec, balance), balance=balance)
        row = {"threshold": guard.threshold}
        for name, idx in sets.items():
            f, rec = held[name]
            out = guard.scores(f[idx]) > guard.threshold
            y = np.array([rec[i].label for i in idx])
            row[name] = {"mel": float(out[y == 1].mean()) if (y == 1).any() else None,
                         "nv": float(out[y == 0].mean()) if (y == 0).any() else None,
                         "n_mel": int((y == 1).sum()), "n_nv": int((y == 0).sum())}
        flagged = guard.scores(ood_f) > guard.threshold
        row["non-lesion flagged"] = {g: float(flagged[[k for k, (gg, _, _) in enumerate(ood) if gg == g]].mean())
                                     for g in sorted({g for g, _, _ in ood})}
        row["non-lesion flagged"]["all"] = float(flagged.mean())
        results[balance] = row

    names = list(sets)
    print(f"\nnot assessed, melanomas / nevi (%), quantile {args.quantile:g}; run {args.run}\n")
    print("| fit | " + " | ".join(names) + " | non-lesion flagged |")
    print("|---|" + "---|" * (len(names) + 1))
    for balance, row in results.items():
        cells = [f"{100 * row[n]['mel']:.1f} / {100 * row[n]['nv']:.1f}" for n in names]
        groups = ", ".join(f"{g} {100 * v:.0f}" for g, v in row["non-lesion flagged"].items() if g != "all")
        print(f"| {balance} | " + " | ".join(cells) + f" | {100 * row['non-lesion flagged']['all']:.1f} % ({groups}) |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
