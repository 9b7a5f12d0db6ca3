"""curves.png: train/val loss and AUC per epoch (the paper's Figure 1, for every stage)."""

from __future__ import annotations

import csv

from melkit.util.files import atomic_path


def _read_history(path):
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[(row["stage"], int(row["epoch"]))] = row  # a resumed epoch replaces its earlier row
    return sorted(rows.values(), key=lambda r: int(r["epoch"]))


def plot_curves(history_csv, out_png):
    import matplotlib  # matplotlib: imported when first needed

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: imported when first needed

    rows = _read_history(history_csv)
    epochs = [int(r["epoch"]) for r in rows]

    def col(name):
        return [float(r[name]) if r[name] not in ("", None) else float("nan") for r in rows]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in ((axes[0], "loss", "loss (BCE)"), (axes[1], "auc", "ROC AUC")):
        ax.plot(epochs, col(metric), "o-", label="train")
        ax.plot(epochs, col(f"val_{metric}"), "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        # Mark where each stage starts.
        for prev, row in zip(rows, rows[1:]):
            if row["stage"] != prev["stage"]:
                ax.axvline(int(row["epoch"]) - 0.5, color="grey", ls="--", lw=1)
                ax.text(int(row["epoch"]) - 0.4, ax.get_ylim()[1], row["stage"], va="top", fontsize=8, color="grey")
        ax.legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
