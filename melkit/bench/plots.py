"""The report's pictures: ROC curves of all models on one chart, a reliability diagram, latency spreads.

matplotlib's Agg backend: no display is needed (CI, servers). Each PNG is written atomically.
"""

from __future__ import annotations

from sklearn.metrics import roc_curve

from melkit.util.files import atomic_path


def _pyplot():
    import matplotlib  # matplotlib: imported when first needed

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: imported when first needed

    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(fig)


def roc_plot(path, labels, probs: dict, aucs: dict) -> bool:
    """One curve per model; False (nothing written) when the images hold one class (no ROC exists)."""
    if len(set(int(v) for v in labels)) < 2:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, (name, p) in enumerate(probs.items()):
        fpr, tpr, _ = roc_curve(labels, p)
        # Line styles vary too: a float32 .tflite lies exactly on the Keras curve and would hide it.
        ax.plot(fpr, tpr, lw=1.4, ls=("-", "--", "-.", ":")[i % 4], label=f"{name} (AUC {aucs[name]:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.set(xlabel="1 - specificity (nevi called melanoma)", ylabel="sensitivity (melanomas found)",
           title="ROC, same images for every model", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return True


def reliability_plot(path, curves: dict) -> None:
    """``curves``: name -> metrics.reliability_curve rows. A calibrated model lies on the diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="perfectly calibrated")
    for name, rows in curves.items():
        ax.plot([r["mean_p"] for r in rows], [r["frac_pos"] for r in rows], marker="o", ms=3, lw=1.2, label=name)
    ax.set(xlabel="mean predicted P(mel) in bin", ylabel="observed melanoma fraction", title="Reliability (10 bins)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def latency_plot(path, runs: dict) -> bool:
    """``runs``: label -> list of per-inference milliseconds; a box per label, log scale (ms span decades)."""
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(runs) + 1.5))
    labels = list(runs)
    ax.boxplot([runs[k] for k in labels], vert=False, showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="milliseconds per image (log scale)", title="Single-image latency, timed runs")
    _save(fig, path)
    return True
