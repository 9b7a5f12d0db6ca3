"""The writing commands benchmarks/reliability.py kills, each with its two configurations and the check of its
output (fetch's is in _reliability_fetch.py): train, convert, bench, bundle, calibrate, card, data synth, demo."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from _reliability_common import (
    REPO,
    Command,
    csv_rows,
    load_json,
    melkit,
    need,
    png_ok,
    sha,
    snapshot,
)

__all__ = ["Synth", "Card", "Train", "Convert", "Bundle", "Bench", "Calibrate", "Demo", "check_run", "check_bundled",
           "check_bench"]


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
        stem = f"{self.base['stem']}_float32"
        need(names == sorted(["labels.txt", f"{stem}.json", f"{stem}.tflite"]), f"files {names}")
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
        from melkit.release.bundle import ASSETS, GOLDEN

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
        from melkit.release.bundle import ASSETS, GOLDEN
        from melkit.util.paths import read_path

        out = self.outputs()[0]
        if not out.exists():
            return None
        names = sorted(p.name for p in out.iterdir())
        need(names == ["android_demo", "bench", "data", "run", "tflite"], f"files {names}")
        seed = check_run(out / "run")
        need(snapshot([out / "data"]) == self.refs[seed], "data of another seed, or torn")
        config = load_json(out / "run" / "config.json")
        data_dir = read_path(config["data"]["dir"], out / "run")  # stored relative to the run's folder
        need(data_dir == str((out / "data").resolve()), f"run of data {config['data']['dir']}")
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
