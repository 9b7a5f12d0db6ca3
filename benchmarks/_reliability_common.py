"""What benchmarks/reliability.py's checks share: how melkit is run, the vocabulary of a check (``need``,
``Mixed``, snapshots of files), the ``Command`` every writing command's kill loop drives, and the tiny base
inputs (data set, run, models) the commands read."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from melkit.core.recipe import tiny_recipe

__all__ = ["REPO", "MELKIT", "ENV", "STATES", "Mixed", "sha", "snapshot", "load_json", "need", "png_ok", "csv_rows",
           "melkit", "Command", "setup"]

REPO = Path(__file__).resolve().parents[1]
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


def setup(work: Path, say) -> dict:
    """Tiny inputs: a 40-lesion synthetic set, a 48-px alpha-0.35 run trained on 160 lesions (melkit's
    tiny recipe, so its models pass convert's gate), its float32 and dynamic-range models."""
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
