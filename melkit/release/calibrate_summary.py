"""What ``melkit calibrate`` prints: the threshold's move, the temperature's verdict and, for each set, the
rates before and after with their 95 % CIs (calibration.json keeps every number; this is only its text).
"""

from __future__ import annotations

from melkit.core.card import ModelCard
from melkit.release.calibrate_sets import RATES
from melkit.util.fmt import auc_ci, pct, pct_ci

__all__ = ["NOTE", "set_table", "text"]

NOTE = "Research model, not a medical device: it gives no diagnosis."


def set_table(title: str, m: dict) -> list[str]:
    """One set's before/after table (``m``: calibrate_sets.measure of the set)."""
    b, a, ch = m["before"], m["after"], m["change"]
    lines = [f"{title}: {m['n']} images ({m['n_mel']} mel, {m['n_nv']} nv) from {m['description']}",
             f"  {'(%, 95 % CI)':<19}{'before (' + format(b['threshold'], '.4f') + ')':<24}"
             f"{'after (' + format(a['threshold'], '.4f') + ')':<24}change (paired CI)"]
    for k, label in zip(RATES, ("sensitivity", "specificity", "balanced accuracy")):
        before, after = f"{pct(b[k])} {pct_ci(b[k + '_ci'])}", f"{pct(a[k])} {pct_ci(a[k + '_ci'])}"
        lines.append(f"  {label:<19}{before:<24}{after:<24}{100 * ch[k]:+.1f} {pct_ci(ch[k + '_ci'], signed=True)}")
    raw, sh = m["probability"]["raw"], m["probability"]["shown"]
    lines.append(f"  AUC {auc_ci(m)} (any threshold); {m['decisions_changed']} decision(s) change")
    lines.append(f"  probability: NLL {raw['nll']:.4f}, ECE {raw['ece']:.4f}"
                 + ("" if sh is None else f"; shown (temperature): NLL {sh['nll']:.4f}, ECE {sh['ece']:.4f}"))
    return lines


def text(report: dict, card: ModelCard) -> str:
    """The terminal summary of a calibration (``report``: what calibration.json holds, ``card``: the new card)."""
    th, grid, temp = report["threshold"], report["threshold"]["grid"], report["temperature"]
    lines = [f"{report['model']} ({report['variant']}): threshold {th['before']:.4f} -> {th['after']:.4f} "
             f"({card.threshold_policy})"]
    if grid is not None and grid["halfway"]:
        lines.append(f"  the policy chose {th['chosen']:.4f}; moved {grid['moved']:+.4f} to halfway between the "
                     f"outputs {grid['below']:.4f} and {grid['above']:.4f} (output step {grid['output_step']:.6g})")
    elif grid is None:
        lines.append("  float output: the threshold is the policy's choice as is")
    if temp is None:
        lines.append("  temperature: not fitted (--no-temperature)")
    else:
        verdict = (f"kept, the shown P(mel) is sigmoid(logit(P) / {temp['fitted']:.3f}); decisions use the raw P"
                   if temp["kept"] else f"not kept ({temp['reason']})")
        lines.append(f"  temperature {temp['fitted']:.3f}: NLL {temp['nll_before']:.4f} -> {temp['nll_after']:.4f}, "
                     f"ECE {temp['ece_before']:.4f} -> {temp['ece_after']:.4f}: {verdict}")
    lines.append("")
    lines += set_table("calibration set (the threshold was chosen on it: optimistic)", report["calibration_set"])
    if report["evaluation_set"]:
        lines.append("")
        lines += set_table("evaluation set", report["evaluation_set"])
    lines.append(NOTE)
    return "\n".join(lines)
