"""Issue 24's --out cases: each writing command with its output equal to, inside or holding one of its inputs
must be refused up front (exit 2) with every input byte for byte intact."""

from __future__ import annotations

import shutil
from pathlib import Path

from _reliability_common import REPO, melkit, snapshot

__all__ = ["out_vs_inputs", "OUT_CASES"]

TRAIN_ARGS = ["--recipe", "scratch", "--epochs", 1, "--alpha", 0.35, "--image-size", 32, "--batch-size", 16,
              "--weights", "none"]
BENCH = ["--no-latency", "--bootstrap", 20]
CALIBRATE = ["--force", "--bootstrap", 20]  # --force: the case where a folder was deleted whole
# (command, the case, argv): {data} is a copy of the base data set at CASE/x/data, {run} of the base run at
# CASE/x/run, {model} of the float32 model (and card) at CASE/m/, {app} of android_demo at CASE/app; {x} and {m}
# are the folders that hold them.
OUT_CASES = [
    ("train", "out is the data", ["train", "--data", "{data}", "--out", "{data}", *TRAIN_ARGS]),
    ("train", "out inside the data", ["train", "--data", "{data}", "--out", "{data}/run", *TRAIN_ARGS]),
    ("train", "out holds the data", ["train", "--data", "{data}", "--out", "{x}", *TRAIN_ARGS]),
    ("convert", "out is the run", ["convert", "{run}", "--float32", "--out", "{run}", "--min-agreement", 0.5]),
    ("convert", "out holds the run", ["convert", "{run}", "--float32", "--out", "{x}", "--min-agreement", 0.5]),
    ("bench", "out is the data", ["bench", "--reference", "{model}", "--data", "{data}", "--out", "{data}", *BENCH]),
    ("bench", "out inside the data", ["bench", "--reference", "{model}", "--data", "{data}", "--out", "{data}/b",
                                      *BENCH]),
    ("bench", "out holds the data", ["bench", "--reference", "{model}", "--data", "{data}", "--out", "{x}", *BENCH]),
    ("bench", "out holds the model", ["bench", "--reference", "{model}", "--data", "{data}", "--out", "{m}", *BENCH]),
    ("calibrate", "out is the data", ["calibrate", "{model}", "--data", "{data}", "--out", "{data}", *CALIBRATE]),
    ("calibrate", "out inside the data", ["calibrate", "{model}", "--data", "{data}", "--out", "{data}/c", *CALIBRATE]),
    ("calibrate", "out holds the data", ["calibrate", "{model}", "--data", "{data}", "--out", "{x}", *CALIBRATE]),
    ("calibrate", "out holds the model", ["calibrate", "{model}", "--data", "{data}", "--out", "{m}", *CALIBRATE]),
    ("card", "out is the model", ["card", "{model}", "--out", "{model}"]),
    ("card", "out is its card", ["card", "{model}", "--out", "{card}"]),
    ("bundle", "goldens hold the model", ["bundle", "{model}", "--app", "{app}", "--golden-dir", "{m}"]),
]


def out_vs_inputs(base: dict, work: Path, say) -> list:
    """Each writing command with its output equal to, inside or holding one of its inputs, on fresh copies of
    the inputs: every input must be byte for byte intact afterwards and the exit code 2 (refused up front)."""
    rows = []
    (work / "logs").mkdir(exist_ok=True)
    for i, (command, case, template) in enumerate(OUT_CASES):
        c = work / "out-vs-inputs" / str(i)
        shutil.rmtree(c, ignore_errors=True)
        model = c / "m" / base["float32"].name
        places = {"data": c / "x" / "data", "run": c / "x" / "run", "model": model,
                  "card": model.with_suffix(".json"), "app": c / "app", "x": c / "x", "m": c / "m"}
        used = {k for k in places if any(f"{{{k}}}" in str(a) for a in template)}
        if used & {"model", "card"}:
            model.parent.mkdir(parents=True)
            for src in (base["float32"], base["float32"].with_suffix(".json")):
                shutil.copy2(src, model.parent / src.name)
        for k in used & {"data", "run"}:
            shutil.copytree(base[k], places[k], symlinks=True)
        if "app" in used:
            shutil.copytree(REPO / "android_demo", places["app"], ignore=shutil.ignore_patterns(".toolchain", "build",
                                                                                                 ".gradle"))
        inputs = [places[k] for k in ("data", "run", "model", "card") if k in used]  # the app is an output
        before = snapshot(inputs)
        log = work / "logs" / f"out-case-{i}.log"
        rc = melkit([str(a).format(**places) for a in template], log, check=False)
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
        intact = snapshot(inputs) == before
        rows.append({"command": command, "case": case, "exit": rc, "intact": intact,
                     "ok": rc == 2 and intact, "said": lines[-1][-160:] if lines else ""})
        say(f"out vs inputs: {command}, {case}: exit {rc}, inputs {'intact' if intact else 'CHANGED'}")
    return rows
