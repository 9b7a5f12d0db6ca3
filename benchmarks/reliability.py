"""Reliability under kill -9: run each writing melkit command many times, SIGKILL it at a random moment, and
classify what its output holds afterwards. Not a test: it takes minutes and prints counts (issue #16).

Each command writes over a previous complete output of the other of two configurations (a seed, a version,
a model...), so the output after a kill tells which run it came from:

  old     the previous complete output, byte for byte
  new     a complete, self-consistent output of the killed run (it got past its publication)
  absent  nothing published (only where the command never overwrites: train, data synth, data fetch, demo;
          the target is cleared before each of their runs, an unfinished ``.partial`` or ``.part`` download
          is resumed, or removed by the next run)
  mixed   anything else: files of two runs, a file missing, a model whose sha256 is not its card's, a torn
          JSON, goldens of another model, a fetched metadata table (which melkit's readers take for a data
          set) beside missing images. Must be 0.

A run the random kill does not reach completes: after a kill it is the rerun (resume) that must succeed and
publish ``new``; the last kill of each command is always followed by one. A publication journal a kill left
(``*.swap``) is rolled forward with ``recover`` before the check, as the command's next run would do; the
``journal`` column counts those. Kill times are uniform between the moment the command first touches its
output's folder (lock or staging folder, measured once) and 1.1x its full duration; SIGKILL goes to the
command's whole process group, so its child processes die with it.

``data fetch`` downloads from tests/test_fetch.py's stand-in Dataverse server, started here on 127.0.0.1, whose
answers trickle (SLOW_CHUNK bytes per SLOW_EVERY_S) so that kills land during transfers too; runs alternate
between its two sets. ``demo`` runs the whole pipeline at its smallest (12 lesions, a one-epoch 32-px recipe):
about a minute per run, so ``--minutes`` may cap its kills.

    .venv/bin/python benchmarks/reliability.py --kills 50 [--commands train convert ...] [--seed 0] [--jobs 2]
        [--minutes M]

Two more checks of issue 24, no kills: ``--race RUNS`` runs predict and bench RUNS times each while another
writer replaces their model and its card with another model of the same run (no answer may come from a model
other than the one whose card was checked), and ``--out-cases`` runs each writing command with its output equal
to, inside or holding one of its inputs (refused with exit 2, every input intact). Given alone, they run alone:

    .venv/bin/python benchmarks/reliability.py --race 20 --out-cases [--work DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
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
from collections import Counter
from pathlib import Path

import numpy as np

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
    alternate = False  # a fresh-target command whose runs alternate between its tags (both are measured)
    needs_base = True  # reads setup()'s tiny data set, run or models

    def __init__(self, work: Path, base: dict):
        self.work, self.base = work / self.name.replace(" ", "_"), base
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs = work / "logs" / self.work.name  # outside the watched folders
        self.logs.mkdir(parents=True, exist_ok=True)
        self.refs = {}
        self.notes = Counter()  # what a check saw that is no state of its own, printed with the counts
        self._turn = 0

    def next_tag(self, published):
        """The configuration of the next run that resumes nothing: the other one than the published output's
        (or, for ``alternate``, the one after the previous run's)."""
        if self.alternate:
            self._turn += 1
            return self.tags[self._turn % len(self.tags)]
        return next(t for t in self.tags if t != published)

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
        card = check_bundled(self.assets, self.golden)
        return None if card is None else card["variant"]


def check_bundled(assets: Path, golden: Path):
    """The card of the one model bundled into an app's ``assets`` with its goldens in ``golden``; None if none."""
    models = sorted(assets.glob("*.tflite"))
    if not models:
        need(not golden.exists(), "goldens without a bundled model")
        return None
    need(len(models) == 1, f"models {[p.name for p in models]}")
    card = load_json(models[0].with_suffix(".json"))
    need(card["sha256"] == sha(models[0]), "bundled model's sha256 is not its card's")
    need((assets / "labels.txt").is_file(), "labels.txt missing")
    index = load_json(golden / "index.json")
    need(index["model_sha256"] == card["sha256"], "goldens of another model than the bundled one")
    need(load_json(golden / "card.json")["sha256"] == card["sha256"], "golden card of another model")
    return card


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
        return check_bench(out)["options"]["seed"]


def check_bench(out: Path) -> dict:
    """A bench report folder of one run: its files, plots whole, predictions and report.md of that report."""
    report = load_json(out / "report.json")
    names = sorted(p.name for p in out.iterdir())
    need(names == sorted(["report.json", "report.md", "predictions.csv"] + report["plots"]), f"files {names}")
    need(all(png_ok(out / p) for p in report["plots"]), "a plot is torn")
    need(len(csv_rows(out / "predictions.csv")) == report["images"]["n"], "predictions of another run")
    need(f"Created {report['created']}." in (out / "report.md").read_text(), "report.md of another run")
    return report


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


# The stand-in Dataverse's answers trickle: SLOW_CHUNK bytes, then a pause of SLOW_EVERY_S, so that a fetch spends
# most of its time receiving (about 1 s per ~210-kB archive of FETCH_IMAGES 16x16 JPEGs) and random kills land there.
FETCH_IMAGES = 300
SLOW_CHUNK, SLOW_EVERY_S = 4096, 0.02
FETCH_IDS = {"ham10000": {3172585, 3172584, 4338392}, "isic2018-test": {3855824, 6924466}}  # the files each set takes


def fetch_server():
    """tests/test_fetch.py's stand-in Dataverse, on 127.0.0.1 in a thread of this process, serving a HAM10000 and
    an ISIC 2018 test set of FETCH_IMAGES per archive (no faults on purpose: the kills are the faults), each
    answer trickling. Returns the server and, per set, {relative path: bytes} of the complete fetched folder
    (marker aside) and of the files downloaded on the way (archives in downloads/, tables beside the images)."""
    import test_fetch as tf
    from melkit.data.sources import write_metadata_from_ground_truth

    class Trickle(tf._Handler):
        trickle_chunk, trickle_every_s = SLOW_CHUNK, SLOW_EVERY_S

    def entry(name):  # a fixed date: the same archives, byte for byte, in every invocation
        info = zipfile.ZipInfo(name, date_time=(2018, 1, 1, 0, 0, 0))
        info.external_attr = (0o40755 << 16) | 0x10 if name.endswith("/") else 0o100644 << 16
        return info

    n = FETCH_IMAGES
    ham_ids = [f"ISIC_{24306 + i:07d}" for i in range(2 * n)]
    ham_images = {i: tf.jpeg(k) for k, i in enumerate(ham_ids)}
    meta = ("lesion_id,image_id,dx,dx_type,age,sex,localization\n"
            + "".join(f"HAM_{k // 2:07d},{i},{('nv', 'mel', 'bkl')[k % 3]},histo,50.0,male,back\n"
                      for k, i in enumerate(ham_ids))).encode()
    part_1 = tf.zip_of([(entry(f"{i}.jpg"), ham_images[i]) for i in ham_ids[:n]])
    part_2 = tf.zip_of([(entry(f"{i}.jpg"), ham_images[i]) for i in ham_ids[n:]])
    test_ids = [f"ISIC_{34524 + i:07d}" for i in range(n)]
    test_images = {i: tf.jpeg(100_000 + k) for k, i in enumerate(test_ids)}
    test_zip = tf.zip_of([(entry("ISIC2018_Task3_Test_Images/"), b"")]
                         + [(entry(f"ISIC2018_Task3_Test_Images/{i}.jpg"), test_images[i]) for i in test_ids])
    gt = ("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n"
          + "".join(f"{i},{','.join('1.0' if c == k % 3 else '0.0' for c in (0, 1, 2, 3, 4, 5, 6))}\n"
                    for k, i in enumerate(test_ids))).encode()
    dv = tf.Dataverse([
        tf.StoredFile(3172585, "HAM10000_images_part_1.zip", part_1, redirect=True),
        tf.StoredFile(3172584, "HAM10000_images_part_2.zip", part_2),
        tf.StoredFile(4338392, "HAM10000_metadata.tab", meta, tab=meta.replace(b",", b"\t"),
                      original_name="HAM10000_metadata"),
        tf.StoredFile(3855824, "ISIC2018_Task3_Test_Images.zip", test_zip),
        tf.StoredFile(6924466, "ISIC2018_Task3_Test_GroundTruth.tab", gt, tab=gt.replace(b",", b"\t"),
                      original_name="ISIC2018_Task3_Test_GroundTruth.csv"),
    ])
    dv.server.RequestHandlerClass = Trickle
    dv.server.handle_error = lambda request, client_address: None  # a killed client is no error here
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gt.csv").write_bytes(gt)
        write_metadata_from_ground_truth(Path(tmp) / "gt.csv", Path(tmp) / "metadata.csv")
        derived = (Path(tmp) / "metadata.csv").read_bytes()
    complete = {
        "ham10000": {"HAM10000_metadata.csv": meta,
                     **{f"HAM10000_images_part_{1 + (k >= n)}/{i}.jpg": ham_images[i] for k, i in enumerate(ham_ids)}},
        "isic2018-test": {"ISIC2018_Task3_Test_GroundTruth.csv": gt, "metadata.csv": derived,
                          **{f"ISIC2018_Task3_Test_Images/{i}.jpg": test_images[i] for i in test_ids}},
    }
    downloaded = {
        # tables wait in downloads/ until the images are extracted, then move beside them
        "ham10000": {"downloads/HAM10000_images_part_1.zip": part_1, "downloads/HAM10000_images_part_2.zip": part_2,
                     "downloads/HAM10000_metadata.csv": meta, "HAM10000_metadata.csv": meta},
        "isic2018-test": {"downloads/ISIC2018_Task3_Test_Images.zip": test_zip,
                          "downloads/ISIC2018_Task3_Test_GroundTruth.csv": gt, "ISIC2018_Task3_Test_GroundTruth.csv": gt},
    }
    return dv, complete, downloaded


class Fetch(Command):
    """``melkit data fetch`` of both sets in turn from the trickling stand-in server. absent: no data set a reader
    would take (no metadata table melkit's readers look for) and no marker; what is there is what a resumed
    fetch builds on, each file checked: a ``.part`` a prefix of what the server serves, a download or extracted
    file under its final name byte for byte the served one, unfinished ``.NAME.partial`` extractions and temp
    files of atomic writes. new: every file of the set as served and extracted, byte for byte, with or without
    the marker (counted apart: ``complete, not yet marked``)."""

    name, tags, fresh_target, alternate, needs_base = "data fetch", ("ham10000", "isic2018-test"), True, True, False

    def __init__(self, work, base):
        super().__init__(work, base)
        self.server, self.complete, self.downloaded = fetch_server()
        self.current = self.tags[0]

    def outputs(self):
        return [self.work / "set"]

    def next_tag(self, published):
        # Leftovers of a set (a failed run's) are that set's to finish: another set's check would call them mixed.
        return self.current if self.resumable() else super().next_tag(published)

    def resumable(self):
        return self.outputs()[0].exists()

    def argv(self, tag, resume=False):
        self.current = tag  # the check judges leftovers by the set being fetched
        return ["data", "fetch", tag, "--to", self.outputs()[0], "--base-url", self.server.url]

    def check(self):
        from melkit.core.files import is_temp
        from melkit.data.extract import read_marker
        from melkit.data.readers import find_metadata

        root, name = self.outputs()[0], self.current
        if not root.exists():
            return None
        complete, downloaded = self.complete[name], self.downloaded[name]
        marker_name = f".melkit-fetch-{name}.json"
        leftovers, unfinished, torn = set(), [], []
        for p in sorted(root.rglob("*")):
            if not p.is_file():
                continue
            parts = p.relative_to(root).parts
            rel = "/".join(parts)
            data = p.read_bytes()
            if rel in complete or rel in downloaded:
                need(data == complete.get(rel, downloaded.get(rel)), f"{rel}: not the bytes served")
            elif rel.endswith(".part") and rel[:-5] in downloaded:
                need(downloaded[rel[:-5]].startswith(data), f"{rel}: not a prefix of what the server sends")
            elif len(parts) > 1 and parts[0].startswith(".") and parts[0].endswith(".partial"):
                leftovers.add("an unfinished extraction left")  # the next extraction of that archive removes it
                unfinished.append(rel)
                if data != complete.get("/".join((parts[0][1:-len(".partial")],) + parts[1:])):
                    torn.append(rel)  # the member being written when the kill came
            elif rel == marker_name:
                pass
            elif is_temp(p.name):
                leftovers.add("a temp file of an atomic write left")
            else:
                raise Mixed(f"{rel}: a file no fetch of {name} writes")
        self.notes.update(leftovers)
        missing = sorted(rel for rel in complete if not (root / rel).is_file())
        marker = read_marker(root, name)
        if marker is not None:
            need(not missing, f"marked complete without {len(missing)} file(s), e.g. {missing[0]}" if missing else "")
            need({f["id"] for f in marker["files"]} == FETCH_IDS[name], "the marker lists other files")
        elif find_metadata(root) is not None:
            if missing:
                raise Mixed(f"{find_metadata(root).name} published without a marker, beside "
                            f"{sum(rel.endswith('.jpg') for rel in complete if rel not in missing)} of "
                            f"{sum(rel.endswith('.jpg') for rel in complete)} images (missing e.g. {missing[0]}) and "
                            f"{len(unfinished)} in an unfinished extraction ({len(torn)} torn"
                            f"{': ' + ', '.join(torn) if torn else ''}); "
                            + reader_view(root))
            self.notes["complete, not yet marked"] += 1
        else:
            return None
        if (root / "downloads").exists():
            self.notes["complete, verified archives still in downloads/"] += 1
        return name


def reader_view(root: Path) -> str:
    """What ``melkit train --data root`` would read there."""
    from melkit.core.errors import BadInputError
    from melkit.data.readers import read_dataset

    try:
        ds = read_dataset(root)
    except BadInputError as e:
        return f"melkit's reader refuses it ({e})"
    hidden = sum(any(part.startswith(".") for part in Path(r.path).relative_to(root).parts) for r in ds.records)
    return (f"melkit's reader takes it for a set of {len(ds.records)} nv/mel images, {hidden} of them in hidden "
            f"folders, {len(ds.skipped)} listed images not found")


class Demo(Command):
    """``melkit demo`` at its smallest: 12 lesions, a one-epoch 32-px alpha-0.35 recipe whose BatchNorm moving
    statistics are the last batch's (momentum 0: a model that is not constant in inference mode after one
    epoch, which convert's self-check would refuse) and a fixed threshold, --min-agreement 0.01. new: OUT with the
    synthetic set byte for byte ``melkit data synth``'s, a complete run trained on it, float32 and int8 models
    whose sha256 are their cards', a bench report of that run, the int8 model bundled with its goldens into
    OUT's android_demo copy, and no text naming the staging folder."""

    name, tags, fresh_target, needs_base = "demo", (0, 1), True, False
    recipe = {"name": "demo-tiny", "stages": [{"name": "scratch", "trainable": "all", "epochs": 1,
                                               "learning_rate": 2e-3}],
              "image_size": 32, "alpha": 0.35, "batch_size": 16, "pretrained": False, "bn_inference": False,
              "bn_momentum": 0.0, "threshold_policy": "fixed:0.5"}
    lesions = 12

    def __init__(self, work, base):
        super().__init__(work, base)
        self.recipe_path = self.logs.parent / "demo-recipe.json"
        self.recipe_path.write_text(json.dumps(self.recipe))

    def outputs(self):
        return [self.work / "out"]

    def argv(self, tag, resume=False):
        return ["demo", "--out", self.outputs()[0], "--lesions", self.lesions, "--recipe", self.recipe_path,
                "--weights", "none", "--seed", tag, "--min-agreement", 0.01]

    def make_references(self):
        for tag in self.tags:
            data = self.logs / f"ref-{tag}" / "data"
            shutil.rmtree(data, ignore_errors=True)
            melkit(["data", "synth", data, "--lesions", self.lesions, "--seed", tag], self.logs / "ref.log")
            self.refs[tag] = snapshot([data])

    def check(self):
        from melkit.bundle import ASSETS, GOLDEN

        out = self.outputs()[0]
        if not out.exists():
            return None
        names = sorted(p.name for p in out.iterdir())
        need(names == ["android_demo", "bench", "data", "run", "tflite"], f"files {names}")
        seed = check_run(out / "run")
        need(snapshot([out / "data"]) == self.refs[seed], "data of another seed, or torn")
        config = load_json(out / "run" / "config.json")
        need(config["data"]["dir"] == str((out / "data").resolve()), f"run of data {config['data']['dir']}")
        stem = f"melkit_mnv2_{self.recipe['alpha']}_{self.recipe['image_size']}"
        tflite = out / "tflite"
        names = sorted(p.name for p in tflite.iterdir())
        want = ["labels.txt"] + [f"{stem}_{v}.{e}" for v in ("float32", "int8") for e in ("json", "tflite")]
        need(names == sorted(want), f"tflite files {names}")
        for v in ("float32", "int8"):
            need(load_json(tflite / f"{stem}_{v}.json")["sha256"] == sha(tflite / f"{stem}_{v}.tflite"),
                 f"{stem}_{v}.tflite: sha256 is not its card's")
        report = check_bench(out / "bench")
        need(report["options"]["seed"] == seed, "bench of another seed")
        card = check_bundled(out / "android_demo" / ASSETS, out / "android_demo" / GOLDEN)
        need(card is not None and card["sha256"] == sha(tflite / f"{stem}_int8.tflite"),
             "the bundled model is not the demo's int8 model")
        staged = f"{out.name}.partial".encode()
        need(not [p for p in out.rglob("*") if p.suffix in (".json", ".md", ".csv") and staged in p.read_bytes()],
             "text naming the staging folder")
        return seed


COMMANDS = {c.name: c for c in (Train, Convert, Bench, Bundle, Calibrate, Card, Synth, Fetch, Demo)}


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


def run_command(cmd: Command, kills: int, seed: int, say, minutes=None) -> dict:
    """Measure, then kill ``kills`` runs (fewer if ``minutes``, counted from here, run out first; the rerun after
    the last kill still runs) and classify the output after each run."""
    started = time.monotonic()
    rng = random.Random(f"{seed}:{cmd.name}")
    cmd.clear()
    cmd.make_references()
    first, total = measure(cmd, cmd.tags[0])
    if cmd.fresh_target:
        cmd.clear()
    first2, total2 = measure(cmd, cmd.tags[1]) if not cmd.fresh_target or cmd.alternate else (first, total)
    if cmd.fresh_target:
        cmd.clear()
    first, total = (min(first, first2) if cmd.alternate else first), max(total, total2)
    say(f"{cmd.name}: first touch of its output at {first:.2f} s, full run {total:.2f} s")
    res = {"runs": 2, "kills": 0, "journal": 0, "reruns": 0, "reruns_ok": 0, "problems": [], "full_s": total,
           **{s: 0 for s in STATES}}
    published = cmd.check()
    pending = None  # the tag of an unfinished run to resume
    killed_last = False
    while True:
        enough = res["kills"] >= kills or (minutes is not None and time.monotonic() - started > 60 * minutes)
        if enough and not killed_last:
            break
        if cmd.fresh_target and published is not None:
            cmd.clear()
            published = None
        before_snap, before_tag = snapshot(cmd.outputs()), published
        resume = cmd.resumable()
        tag = pending if resume and pending is not None else cmd.next_tag(published)
        no_kill = enough  # the rerun after the last kill runs to its end
        deadline = None if no_kill else rng.uniform(0.9 * first, 1.1 * total)
        log = cmd.logs / "run.log"
        with open(log, "w") as f:
            # A session of its own: the kill takes the command's children too (demo's latency processes), as a
            # crash would, instead of leaving them running beside the next run.
            p = subprocess.Popen(MELKIT + [str(a) for a in cmd.argv(tag, resume)], stdout=f,
                                 stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
            try:
                p.wait(timeout=deadline)
                killed = False
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it ended just now, children and all
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                killed = True
            except BaseException:  # Ctrl-C reaches only this process now: take the command down with it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                raise
        res["runs"] += 1
        state, why, rolled = classify(cmd, tag, before_snap, before_tag)
        res[state] += 1
        res["journal"] += rolled
        if state == "mixed":
            lines = [x for x in log.read_text(errors="replace").replace("\r", "\n").splitlines() if x.strip()]
            when = f"killed at {deadline:.2f} s" if killed else "completed"
            res["problems"].append(f"run {res['runs']} ({tag}, {when}): {why}"
                                   + (f" [its log's last line: {lines[-1][-200:]}]" if lines else ""))
            keep = cmd.work.parent / "mixed" / f"{cmd.work.name}-run{res['runs']}"  # for a look (with --work)
            for out in cmd.outputs():
                if out.is_dir():
                    shutil.copytree(out, keep / out.name, symlinks=True)
                elif out.exists():
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(out, keep / out.name)
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
    res["minutes"] = (time.monotonic() - started) / 60
    res["notes"] = dict(cmd.notes)
    say(f"{cmd.name}: done in {res['minutes']:.1f} min, {res['runs']} runs, {res['kills']} kills, {res['mixed']} mixed"
        + "".join(f"; {what}: {n}" for what, n in sorted(cmd.notes.items())))
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


# --------------------------------------------------------------------------- issue 24: read-once race, --out vs inputs

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
    entry = next(m for m in report["models"] if m["path"] == str(target))
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


def table(results: dict) -> str:
    return plain(["command", "runs", "kills", "old", "new", "absent", "mixed", "journal", "reruns ok"],
                 [[name, r["runs"], r["kills"], r["old"], r["new"], r["absent"], r["mixed"], r["journal"],
                   f"{r['reruns_ok']}/{r['reruns']}"] for name, r in results.items()])


def plain(head, rows, left=1) -> str:
    """A plain-text table, its first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills per command (default 50)")
    ap.add_argument("--commands", nargs="+", choices=list(COMMANDS), metavar="CMD",
                    help=f"some of: {', '.join(repr(c) for c in COMMANDS)} (default: all, unless --race or "
                         f"--out-cases is given)")
    ap.add_argument("--race", type=int, default=0, metavar="RUNS",
                    help="runs of predict and of bench while their model is replaced (issue 24's read-once race)")
    ap.add_argument("--out-cases", action="store_true",
                    help="each writing command with its output equal to, inside or holding one of its inputs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--jobs", type=int, default=1, help="commands benchmarked at once (default 1)")
    ap.add_argument("--minutes", type=float, help="stop killing a command once this many minutes have passed since "
                                                  "its start (the rerun after its last kill still runs); the kills "
                                                  "column says how many were done")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end); "
                                              "a given one keeps its base run between invocations")
    args = ap.parse_args(argv)
    if args.commands is None:
        args.commands = [] if args.race or args.out_cases else list(COMMANDS)
    work = args.work or Path(tempfile.mkdtemp(prefix="melkit-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    # Temp folders of killed runs (demo's latency processes make some) stay in the working folder.
    ENV["TMPDIR"] = str(work / "tmp")
    (work / "tmp").mkdir(exist_ok=True)
    lock = threading.Lock()

    def say(msg):
        with lock:
            print(msg, flush=True)

    try:
        needs_base = args.race or args.out_cases or any(COMMANDS[n].needs_base for n in args.commands)
        base = setup(work, say) if needs_base else {}
        raced = race(base, work, args.race, args.seed, say) if args.race else {}
        cases = out_vs_inputs(base, work, say) if args.out_cases else []
        cmds = [COMMANDS[n](work, base) for n in args.commands]
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {c.name: pool.submit(run_command, c, args.kills, args.seed, say, args.minutes) for c in cmds}
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
    wrong = sum(c["wrong"] + c["other"] for c in raced.values()) + sum(not c["ok"] for c in cases)
    if raced:
        print("\n" + plain(["command", "runs", "right", "wrong", "refused", "other"],
                           [[name, *(c[k] for k in ("runs", "right", "wrong", "refused", "other"))]
                            for name, c in raced.items()]))
    if cases:
        print("\n" + plain(["command", "case", "exit", "inputs intact", "ok"],
                           [[c["command"], c["case"], c["exit"], "yes" if c["intact"] else "NO", "yes" if c["ok"]
                             else "NO"] for c in cases], left=2))
        for c in cases:
            if not c["ok"]:
                print(f"{c['command']}, {c['case']}: {c['said']}")
    if not results:
        print(f"\nwrong answers or crashes in the race, and cases not refused with their inputs intact: {wrong} "
              f"(must be 0)")
        return 1 if wrong else 0
    print()
    print(table(results))
    for name, r in results.items():
        if "minutes" in r:
            print(f"{name}: one full run {r['full_s']:.1f} s; {r['minutes']:.1f} min in all"
                  + "".join(f"; {what}: {n}" for what, n in sorted(r["notes"].items())))
    for name, r in results.items():
        for p in r["problems"][:10]:
            print(f"{name}: {p}")
        if len(r["problems"]) > 10:
            print(f"{name}: ... and {len(r['problems']) - 10} more")
    mixed = sum(r["mixed"] for r in results.values())
    failed = sum(r["reruns"] - r["reruns_ok"] for r in results.values())
    print(f"\nmixed states: {mixed} (must be 0); failed reruns: {failed}")
    return 1 if mixed or failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
