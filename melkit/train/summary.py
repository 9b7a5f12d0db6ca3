"""Terminal summaries of results (tables a person reads; the JSON files hold every number)."""

from __future__ import annotations

from melkit.util.fmt import auc_ci, pct


def _row(name: str, m: dict, width: int) -> str:
    return (f"{name:<{width}} {m['n']:>5} {m['n_pos']:>4}  {auc_ci(m):<22} {pct(m['balanced_accuracy']):>7} "
            f"{pct(m['sensitivity']):>6} {pct(m['specificity']):>6} {pct(m['accuracy_at_threshold']):>7} "
            f"{pct(m['accuracy_at_0_5']):>7} {pct(m['majority_baseline']):>8}")


def metrics_table(metrics: dict, splits=("val", "test")) -> str:
    """The pooled splits, then each source's val/test and each external set (when the run has them)."""
    rows = [(name, metrics[name]) for name in splits]
    for source, per_split in metrics.get("sources", {}).items():
        rows += [(f"{name}:{source}", m) for name, m in per_split.items()]
    rows += [(f"external:{name}", m) for name, m in metrics.get("external", {}).items() if m.get("n")]
    width = max(6, *(len(name) for name, _ in rows))
    head = f"{'split':<{width}} {'n':>5} {'mel':>4}  {'AUC [95% CI]':<22} {'bal.acc':>7} {'sens':>6} {'spec':>6} " \
           f"{'acc@thr':>7} {'acc@0.5':>7} {'majority':>8}"
    return "\n".join([head, "-" * len(head)] + [_row(name, m, width) for name, m in rows])


def print_train_summary(result, echo=print):
    m = result.metrics
    echo("")
    echo(f"run: {result.out_dir}")
    echo(f"threshold {m['threshold']:.3f} ({m['threshold_policy']}, chosen on val); percentages below")
    echo(metrics_table(m))
