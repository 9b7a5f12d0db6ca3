"""Issue 24's read-once race: predict and bench on a model that another writer keeps replacing, with its card,
by another model of the same run. No answer may come from a model other than the one whose card was checked."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

import numpy as np
from _reliability_common import ENV, MELKIT, csv_rows, load_json

from melkit.util.paths import read_path

__all__ = ["race", "RACE_IMAGES"]

RACE_IMAGES = 24  # predict's images: decoding them is the window between the card check and the model's use


def put(src: Path, dest: Path) -> None:
    """``dest`` becomes a copy of ``src`` by one atomic rename, as ``melkit bundle`` or a careful copy would."""
    tmp = dest.with_name(f".{dest.name}.swapping")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def race_answer(command: str, r: subprocess.CompletedProcess, out: Path, target: Path):
    """(variant of the card the command checked, P(mel) per image it answered) from its JSON or report."""
    if command == "predict":
        result = json.loads(r.stdout)
        return result["variant"], [p["p_mel"] for p in result["predictions"]]
    report = load_json(out / "report.json")
    # the report stores each model's path relative to its own folder
    entry = next(m for m in report["models"] if read_path(m["path"], out) == str(Path(target).resolve()))
    return entry["variant"], [float(row[f"p_mel_{entry['name']}"]) for row in csv_rows(out / "predictions.csv")]


def race(base: dict, work: Path, runs: int, seed: int, say) -> dict:
    """``predict`` and ``bench`` on RACE.tflite while a thread of this process replaces it and its card, by
    atomic renames in random order at random moments, with the float32 or the dynamic-range model of the same
    run (different outputs, different cards). An answer (exit 0) whose P(mel) are not those of the model its
    card names (its ``variant``) ran a model that was not checked: ``wrong``. Exit 2 is ``refused`` (the model
    did not match its card when read); any other exit is ``other`` (a crash: also a failure)."""
    folder = work / "race"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (work / "logs").mkdir(exist_ok=True)
    target, out = folder / "RACE.tflite", folder / "bench"
    models = {v: base[v] for v in ("float32", "dynamic")}
    images = sorted(Path(base["data"]).rglob("*.jpg"))[:RACE_IMAGES]  # data synth writes JPEGs
    argv = {"predict": ["predict", target, *images, "--json"],
            # the run as reference: the raced model's bench name (its card's variant) never collides with it
            "bench": ["bench", target, "--reference", base["run"], "--data", base["data"], "--out", out,
                      "--no-latency", "--bootstrap", 20]}

    def call(command):
        with open(work / "logs" / f"race-{command}.log", "w") as log:
            return subprocess.run(MELKIT + [str(a) for a in argv[command]], stdout=subprocess.PIPE, stderr=log,
                                  text=True, env=ENV)

    refs = {}
    for command in argv:
        for variant, model in models.items():
            put(model, target)
            put(model.with_suffix(".json"), target.with_suffix(".json"))
            r = call(command)
            if r.returncode:
                raise SystemExit(f"race: {command} on the {variant} model failed (exit {r.returncode})")
            refs[command, variant] = np.array(race_answer(command, r, out, target)[1])
        if np.abs(refs[command, "float32"] - refs[command, "dynamic"]).max() < 1e-4:
            raise SystemExit(f"race: {command} cannot tell the two models apart")
    stop, rng = threading.Event(), random.Random(f"{seed}:race")

    def swapper():  # another writer of the model's folder, e.g. a `melkit bundle` into it
        current = "float32"
        while not stop.is_set():
            current = "dynamic" if current == "float32" else "float32"
            pair = [(models[current], target), (models[current].with_suffix(".json"), target.with_suffix(".json"))]
            for src, dest in rng.sample(pair, 2):
                put(src, dest)
                stop.wait(rng.uniform(0, 0.05))
            stop.wait(rng.uniform(0, 0.2))

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    res = {}
    try:
        for command in argv:
            counts = res[command] = Counter(runs=0, right=0, wrong=0, refused=0, other=0)
            for _ in range(runs):
                r = call(command)
                counts["runs"] += 1
                if r.returncode:
                    counts["refused" if r.returncode == 2 else "other"] += 1
                    continue
                variant, p = race_answer(command, r, out, target)
                counts["right" if np.abs(np.array(p) - refs[command, variant]).max() < 5e-6 else "wrong"] += 1
            say(f"race: {command} {dict(counts)}")
    finally:
        stop.set()
        thread.join()
    return res
