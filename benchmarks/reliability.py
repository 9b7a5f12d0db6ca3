"""Reliability under kill -9: run each writing melkit command many times, SIGKILL it at a random moment, and
classify what its output holds afterwards. Not a test: it takes minutes and prints counts (issue #16).

Each command writes over a previous complete output of the other of two configurations (a seed, a version,
a model...), so the output after a kill tells which run it came from:

  old     the previous complete output, byte for byte
  new     a complete, self-consistent output of the killed run (it got past its publication)
  absent  nothing published (only where the command never overwrites: train, data synth, data fetch; the
          target is cleared before each of their runs, an unfinished ``.partial`` is resumed)
  mixed   anything else: files of two runs, a file missing, a model whose sha256 is not its card's, a torn
          JSON, goldens of another model. Must be 0.

A run the random kill does not reach completes: after a kill it is the rerun (resume) that must succeed and
publish ``new``; the last kill of each command is always followed by one. A publication journal a kill left
(``*.swap``) is rolled forward with ``recover`` before the check, as the command's next run would do; the
``journal`` column counts those. Kill times are uniform between the moment the command first touches its
output's folder (lock or staging folder, measured once) and 1.1x its full duration.

    .venv/bin/python benchmarks/reliability.py --kills 50 [--commands train convert ...] [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from melkit.core.files import recover  # noqa: E402 (after the path set-up above)

MELKIT = [sys.executable, "-m", "melkit.cli"]
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CI": "true", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}
STATES = ("old", "new", "absent", "mixed")


class Mixed(Exception):
    """The output is neither the previous complete one nor a complete new one."""


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(paths) -> dict:
    """relative path -> sha256 of every file under ``paths`` (a missing path contributes nothing)."""
    snap = {}
    for root in paths:
        root = Path(root)
        if root.is_file():
            snap[root.name] = sha(root)
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    snap[f"{root.name}/{p.relative_to(root)}"] = sha(p)
    return snap


def load_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise Mixed(f"{Path(path).name}: {e}") from None


def need(cond, why):
    if not cond:
        raise Mixed(why)


def png_ok(path: Path) -> bool:
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    return data.startswith(b"\x89PNG") and data.rstrip(b"\0").endswith(b"IEND\xaeB`\x82")


def csv_rows(path: Path) -> list:
    need(Path(path).is_file(), f"{Path(path).name} missing")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def melkit(args, log: Path, check=True):
    with open(log, "w") as f:
        r = subprocess.run(MELKIT + [str(a) for a in args], stdout=f, stderr=subprocess.STDOUT, env=ENV)
    if check and r.returncode:
        raise SystemExit(f"setup failed: melkit {' '.join(map(str, args))}\n{log.read_text()[-3000:]}")
    return r.returncode


# --------------------------------------------------------------------------- commands


class Command:
    """One writing command: its two configurations (tags), its argv, the paths it publishes, and the check
    that returns the tag of a complete output (None when nothing is published) or raises Mixed."""

    name = ""
    tags = ("a", "b")
    fresh_target = False  # the command never overwrites: the target is cleared before each run

    def __init__(self, work: Path, base: dict):
        self.work, self.base = work / self.name.replace(" ", "_"), base
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs = work / "logs" / self.work.name  # outside the watched folders
        self.logs.mkdir(parents=True, exist_ok=True)
        self.refs = {}

    def outputs(self) -> list:
        raise NotImplementedError

    def watch(self) -> list:
        return sorted({p.parent for p in self.outputs()})

    def journals(self) -> list:
        return [p.with_name(p.name + ".swap") for p in self.outputs()]

    def argv(self, tag, resume=False) -> list:
        raise NotImplementedError

    def check(self):
        raise NotImplementedError

    def resumable(self) -> bool:
        return False

    def clear(self):
        for p in self.outputs():
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def check_by_reference(self):
        """For byte-deterministic commands: the output must equal one configuration's complete output."""
        snap = snapshot(self.outputs())
        if not snap:
            return None
        for tag, ref in self.refs.items():
            if snap == ref:
                return tag
        raise Mixed("matches neither configuration's complete output")

    def make_references(self):
        """Nothing by default: the check reads the output's own cross-references."""

    def make_byte_references(self):
        for tag in self.tags:
            self.clear()
            melkit(self.argv(tag), self.logs / "ref.log")
            self.refs[tag] = snapshot(self.outputs())
        self.clear()


class Synth(Command):
    name, tags, fresh_target = "data synth", (1, 2), True

    def outputs(self):
        return [self.work / "data"]

    def argv(self, tag, resume=False):
        return ["data", "synth", self.outputs()[0], "--lesions", 30, "--seed", tag]

    def check(self):
        return self.check_by_reference()

    def make_references(self):
        self.make_byte_references()


class Card(Command):
    name, tags = "card", ("MIT", "Apache-2.0")

    def outputs(self):
        return [self.work / "MODEL_CARD.md"]

    def argv(self, tag, resume=False):
        return ["card", self.base["float32"], "--out", self.outputs()[0], "--license", tag]

    def check(self):
        return self.check_by_reference()

    def make_references(self):
        self.make_byte_references()


class Train(Command):
    name, tags, fresh_target = "train", (2, 3), True  # seeds whose lesion split of the 40 lesions has both classes

    def outputs(self):
        return [self.work / "run"]

    def resumable(self):
        return (self.work / "run.partial").exists()

    def clear(self):
        super().clear()
        shutil.rmtree(self.work / "run.partial", ignore_errors=True)

    def argv(self, tag, resume=False):
        return ["train", "--data", self.base["data"], "--out", self.outputs()[0], "--recipe", "scratch",
                "--epochs", 1, "--alpha", 0.35, "--image-size", 32, "--batch-size", 16, "--weights", "none",
                "--threshold-policy", "fixed:0.5", "--seed", tag] + (["--resume"] if resume else [])

    def check(self):
        return check_run(self.outputs()[0])


def check_run(run: Path):
    """A published run is one run's: config complete, the split the fingerprint names, predictions and metrics
    of that split's val/test images, a loadable model of the configured input size, history and curves."""
    if not run.exists():
        return None
    from melkit.train.rundir import RUN_FILES, _digest

    need(sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES), f"files {sorted(p.name for p in run.iterdir())}")
    config, fp, metrics = (load_json(run / n) for n in ("config.json", "fingerprint.json", "metrics.json"))
    need(config.get("status") == "complete", "config status is not complete")
    need(fp["seed"] == config["seed"], "fingerprint of another seed than config")
    split = csv_rows(run / "split.csv")
    need(_digest(f"{r['image_id']}\t{r['split']}" for r in split) == fp["split"], "split.csv is not the fingerprint's")
    held_out = {(r["image_id"], r["split"]) for r in split if r["split"] in ("val", "test")}
    preds = csv_rows(run / "predictions.csv")
    need({(r["image_id"], r["split"]) for r in preds} == held_out, "predictions of another split")
    for name in ("val", "test"):
        need(metrics[name]["n"] == sum(s == name for _, s in held_out), f"{name} metrics of another split")
    with zipfile.ZipFile(run / "model.keras") as z:
        need(z.testzip() is None, "model.keras corrupt")
        size = config["model"]["image_size"]
        need(f"[null, {size}, {size}, 3]" in z.read("config.json").decode(), "model of another input size")
    need(len(csv_rows(run / "history.csv")) >= 1 and png_ok(run / "curves.png"), "history or curves torn")
    return config["seed"]


class Convert(Command):
    name, tags = "convert", ("1.0.0", "2.0.0")

    def outputs(self):
        return [self.work / "tflite"]

    def argv(self, tag, resume=False):
        return ["convert", self.base["run"], "--float32", "--out", self.outputs()[0], "--min-agreement", 0.5,
                "--calibration-images", 16, "--model-version", tag]

    def check(self):
        out = self.outputs()[0]
        if not out.exists():
            return None
        names = sorted(p.name for p in out.iterdir())
        need(names == sorted(["labels.txt", f"{self.base['stem']}_float32.json", f"{self.base['stem']}_float32.tflite"]),
             f"files {names}")
        need((out / "labels.txt").read_text() == "nv\nmel\n", "labels.txt torn")
        versions = set()
        for model in out.glob("*.tflite"):
            card = load_json(model.with_suffix(".json"))
            need(card["sha256"] == sha(model), f"{model.name}: sha256 is not its card's")
            versions.add(card["version"])
        need(len(versions) == 1, f"cards of several conversions {versions}")
        return versions.pop()


class Bundle(Command):
    name, tags = "bundle", ("float32", "dynamic")

    def __init__(self, work, base):
        super().__init__(work, base)
        from melkit.bundle import ASSETS, GOLDEN

        self.app = self.work / "android_demo"
        if not self.app.exists():
            shutil.copytree(REPO / "android_demo", self.app,
                            ignore=shutil.ignore_patterns(".toolchain", "build", ".gradle"))
        self.assets, self.golden = self.app / ASSETS, self.app / GOLDEN
        self.assets.mkdir(parents=True, exist_ok=True)
        (self.assets / "about.html").write_text("the app's own asset")

    def outputs(self):
        return [self.assets, self.golden]

    def watch(self):
        return [self.app, self.assets.parent, self.golden.parent]

    def journals(self):
        return [self.assets.with_name(self.assets.name + ".swap"), self.golden.with_name(self.golden.name + ".swap")]

    def clear(self):
        shutil.rmtree(self.golden, ignore_errors=True)
        shutil.rmtree(self.assets, ignore_errors=True)
        self.assets.mkdir(parents=True)
        (self.assets / "about.html").write_text("the app's own asset")

    def argv(self, tag, resume=False):
        return ["bundle", self.base[tag], "--app", self.app]

    def check(self):
        need((self.assets / "about.html").read_text() == "the app's own asset", "the app's own asset lost")
        models = sorted(self.assets.glob("*.tflite"))
        if not models:
            need(not self.golden.exists(), "goldens without a bundled model")
            return None
        need(len(models) == 1, f"models {[p.name for p in models]}")
        card = load_json(models[0].with_suffix(".json"))
        need(card["sha256"] == sha(models[0]), "bundled model's sha256 is not its card's")
        need((self.assets / "labels.txt").is_file(), "labels.txt missing")
        index = load_json(self.golden / "index.json")
        need(index["model_sha256"] == card["sha256"], "goldens of another model than the bundled one")
        need(load_json(self.golden / "card.json")["sha256"] == card["sha256"], "golden card of another model")
        return card["variant"]


class Bench(Command):
    name, tags = "bench", (1, 2)

    def outputs(self):
        return [self.work / "bench"]

    def argv(self, tag, resume=False):
        return ["bench", self.base["dynamic"], "--reference", self.base["float32"], "--data", self.base["data"],
                "--out", self.outputs()[0], "--no-latency", "--bootstrap", 20, "--seed", tag]

    def check(self):
        out = self.outputs()[0]
        if not out.exists():
            return None
        report = load_json(out / "report.json")
        names = sorted(p.name for p in out.iterdir())
        need(names == sorted(["report.json", "report.md", "predictions.csv"] + report["plots"]), f"files {names}")
        need(all(png_ok(out / p) for p in report["plots"]), "a plot is torn")
        need(len(csv_rows(out / "predictions.csv")) == report["images"]["n"], "predictions of another run")
        need(f"Created {report['created']}." in (out / "report.md").read_text(), "report.md of another run")
        return report["options"]["seed"]


class Calibrate(Command):
    name, tags = "calibrate", ("youden", "sensitivity:0.9")

    def outputs(self):
        return [self.work / "calibrated"]

    def argv(self, tag, resume=False):
        return ["calibrate", self.base["float32"], "--data", self.base["data"], "--out", self.outputs()[0],
                "--force", "--bootstrap", 20, "--policy", tag]

    def check(self):
        out = self.outputs()[0]
        if not out.exists():
            return None
        stem = f"{self.base['stem']}_float32"
        names = sorted(p.name for p in out.iterdir())
        need(names == sorted([f"{stem}.tflite", f"{stem}.json", "labels.txt", "calibration.json", "predictions.csv"]),
             f"files {names}")
        report, card = load_json(out / "calibration.json"), load_json(out / f"{stem}.json")
        need(sha(out / f"{stem}.tflite") == card["sha256"] == report["sha256"], "model, card and report differ")
        need(abs(card["threshold"] - report["threshold"]["after"]) < 1e-9, "card threshold of another calibration")
        for r in csv_rows(out / "predictions.csv"):
            need((float(r["p_mel"]) >= round(report["threshold"]["after"], 6) - 1e-6) == (r["decision_after"] == "mel")
                 or abs(float(r["p_mel"]) - report["threshold"]["after"]) < 1e-5,
                 "predictions of another threshold")
        return report["policy"]


COMMANDS = {c.name: c for c in (Train, Convert, Bench, Bundle, Calibrate, Card, Synth)}


# --------------------------------------------------------------------------- the loop


def measure(cmd: Command, tag, resume=False):
    """Run to completion; seconds to the first change in the watched folders, and in all."""
    before = {d: sorted(os.listdir(d)) if d.is_dir() else None for d in cmd.watch()}
    log = cmd.logs / "run.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(MELKIT + [str(a) for a in cmd.argv(tag, resume)], stdout=f, stderr=subprocess.STDOUT,
                             env=ENV)
        first = None
        while p.poll() is None:
            if first is None and any((sorted(os.listdir(d)) if d.is_dir() else None) != b for d, b in before.items()):
                first = time.perf_counter() - t0
            time.sleep(0.01)
    total = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{cmd.name} failed when measured:\n{log.read_text()[-3000:]}")
    return (first if first is not None else 0.0), total


def classify(cmd: Command, tag, before_snap, before_tag):
    """The output's state after a run of configuration ``tag``; a journal left by a kill is finished first."""
    rolled = False
    for j in cmd.journals():
        rolled |= recover(j)
    try:
        got = cmd.check()
    except Mixed as e:
        return "mixed", str(e), rolled
    except (KeyError, TypeError, ValueError, OSError) as e:
        return "mixed", f"{type(e).__name__}: {e}", rolled
    if got is None:
        return ("absent", "", rolled) if before_tag is None else ("mixed", "the previous output vanished", rolled)
    if snapshot(cmd.outputs()) == before_snap:
        return "old", "", rolled
    if got == tag:
        return "new", "", rolled
    return "mixed", f"a complete output of {got!r} that is not the previous one", rolled


def run_command(cmd: Command, kills: int, seed: int, say) -> dict:
    rng = random.Random(f"{seed}:{cmd.name}")
    cmd.clear()
    cmd.make_references()
    first, total = measure(cmd, cmd.tags[0])
    _, total2 = measure(cmd, cmd.tags[1]) if not cmd.fresh_target else (None, total)
    if cmd.fresh_target:
        cmd.clear()
    total = max(total, total2)
    say(f"{cmd.name}: first touch of its output at {first:.2f} s, full run {total:.2f} s")
    res = {"runs": 2, "kills": 0, "journal": 0, "reruns": 0, "reruns_ok": 0, "problems": [],
           **{s: 0 for s in STATES}}
    published = cmd.check()
    pending = None  # the tag of an unfinished run to resume
    killed_last = False
    while res["kills"] < kills or killed_last:
        if cmd.fresh_target and published is not None:
            cmd.clear()
            published = None
        before_snap, before_tag = snapshot(cmd.outputs()), published
        resume = cmd.resumable()
        tag = pending if resume and pending is not None else next(t for t in cmd.tags if t != published)
        no_kill = res["kills"] >= kills  # the rerun after the last kill runs to its end
        deadline = None if no_kill else rng.uniform(0.9 * first, 1.1 * total)
        log = cmd.logs / "run.log"
        with open(log, "w") as f:
            p = subprocess.Popen(MELKIT + [str(a) for a in cmd.argv(tag, resume)], stdout=f,
                                 stderr=subprocess.STDOUT, env=ENV)
            try:
                p.wait(timeout=deadline)
                killed = False
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                killed = True
        res["runs"] += 1
        state, why, rolled = classify(cmd, tag, before_snap, before_tag)
        res[state] += 1
        res["journal"] += rolled
        if state == "mixed":
            res["problems"].append(f"run {res['runs']} ({'killed' if killed else 'completed'}): {why}")
        if killed:
            res["kills"] += 1
            pending = tag if state == "absent" else None
        else:
            if killed_last:
                res["reruns"] += 1
                ok = p.returncode == 0 and state == "new"
                res["reruns_ok"] += ok
                if not ok:
                    res["problems"].append(f"rerun {res['runs']} exit {p.returncode}, {state}: "
                                           + log.read_text()[-600:].replace("\n", " | "))
            pending = None
        if state in ("old", "new"):
            published = before_tag if state == "old" else tag
        elif state == "absent":
            published = None
        else:  # mixed: start over from a clean target so the count goes on
            cmd.clear()
            published = None
        killed_last = killed
    say(f"{cmd.name}: done, {res['runs']} runs, {res['kills']} kills, {res['mixed']} mixed")
    return res


def setup(work: Path, say) -> dict:
    """Tiny inputs: a 40-lesion synthetic set, a 48-px alpha-0.35 run trained on 160 lesions (the tests'
    tiny recipe, so its models pass convert's gate), its float32 and dynamic-range models."""
    from conftest import tiny_recipe

    base = {"data": work / "data", "run": work / "base-run", "tflite": work / "base-tflite"}
    if not base["data"].exists():
        melkit(["data", "synth", base["data"], "--lesions", 40], work / "setup.log")
    if not (base["run"] / "config.json").exists():
        say("setup: training the tiny base run (~30 s)")
        melkit(["data", "synth", work / "data160", "--lesions", 160, "--seed", 1], work / "setup.log")
        (work / "tiny.json").write_text(json.dumps(tiny_recipe().to_dict()))
        melkit(["train", "--data", work / "data160", "--out", base["run"], "--recipe", work / "tiny.json",
                "--weights", "none"], work / "setup.log")
    base["stem"] = "melkit_mnv2_0.35_48"
    for v in ("float32", "dynamic"):
        base[v] = base["tflite"] / f"{base['stem']}_{v}.tflite"
    if not base["dynamic"].exists():
        say("setup: converting it (~25 s)")
        melkit(["convert", base["run"], "--float32", "--dynamic", "--out", base["tflite"], "--min-agreement", 0.5,
                "--calibration-images", 16], work / "setup.log")
    return base


def table(results: dict) -> str:
    head = ["command", "runs", "kills", "old", "new", "absent", "mixed", "journal", "reruns ok"]
    rows = [[name, r["runs"], r["kills"], r["old"], r["new"], r["absent"], r["mixed"], r["journal"],
             f"{r['reruns_ok']}/{r['reruns']}"] for name, r in results.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills per command (default 50)")
    ap.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS), metavar="CMD",
                    help=f"some of: {', '.join(repr(c) for c in COMMANDS)}")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--jobs", type=int, default=1, help="commands benchmarked at once (default 1)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end); "
                                              "a given one keeps its base run between invocations")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="melkit-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def say(msg):
        with lock:
            print(msg, flush=True)

    try:
        base = setup(work, say)
        cmds = [COMMANDS[n](work, base) for n in args.commands]
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {c.name: pool.submit(run_command, c, args.kills, args.seed, say) for c in cmds}
            results = {}
            for name, f in futures.items():
                try:
                    results[name] = f.result()
                except (Exception, SystemExit) as e:  # one command's broken set-up: the others' counts still print
                    say(f"{name}: could not be benchmarked: {e}")
                    results[name] = {"runs": 0, "kills": 0, "journal": 0, "reruns": 1, "reruns_ok": 0,
                                     "problems": [str(e)[-600:]], **{s: 0 for s in STATES}}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    for name, r in results.items():
        for p in r["problems"][:5]:
            print(f"{name}: {p}")
    mixed = sum(r["mixed"] for r in results.values())
    failed = sum(r["reruns"] - r["reruns_ok"] for r in results.values())
    print(f"\nmixed states: {mixed} (must be 0); failed reruns: {failed}")
    return 1 if mixed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
