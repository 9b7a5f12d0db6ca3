"""The command line in-process (click's CliRunner): exit codes 0 / 2 and clear messages."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_recipe
from PIL import Image

from melkit.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


TINY = ["--weights", "none", "--alpha", "0.35", "--image-size", "32", "--epochs", "1,1", "--batch-size", "16"]


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0 and "train" in r.output and "demo" in r.output and "data" in r.output


def test_train_cli_end_to_end_with_a_corrupt_image(synth_dir, tmp_path):
    # Copy the synthetic set and corrupt one image: it is skipped and reported, the run completes.
    import shutil

    data = tmp_path / "d"
    shutil.copytree(synth_dir, data)
    victim = sorted((data / "images").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])
    r = run("train", "--data", data, "--out", tmp_path / "run", *TINY, "--threshold-policy", "sensitivity:0.9")
    assert r.exit_code == 0, r.output
    assert "skipped 1 unreadable" in r.output and "AUC" in r.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["skipped"][0]["image_id"] == victim.stem
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["threshold_policy"] == "sensitivity:0.9" and m["val"]["sensitivity"] >= 0.9
    # the same output again: refused, nothing touched
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    r = run("train", "--data", data, "--out", tmp_path / "run", *TINY)
    assert r.exit_code == 2 and "already holds a melkit run" in r.output
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent"], "data directory not found"),
    (["--recipe", "fancy"], "unknown recipe"),
    (["--epochs", "1"], "one number per stage"),
    (["--epochs", "a,b"], "comma-separated"),
    (["--threshold-policy", "magic"], "youden"),
    (["--weights", "/no/such.h5"], "weights file not found"),
    (["--image-size", "8"], "8"),
])
def test_train_bad_usage_exits_2(synth_dir, tmp_path, args, message):
    base = {"--data": str(synth_dir), "--out": str(tmp_path / "o"), "--weights": "none"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [x for kv in base.items() for x in kv] + [a for a in args if a.startswith("--") and a not in base]
    r = run("train", *flat)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_missing_columns_exit_2(tmp_path):
    (tmp_path / "d").mkdir()  # the data beside the output: an output inside its data folder is refused first
    (tmp_path / "d" / "metadata.csv").write_text("lesion,img,diagnosis\n")
    r = run("train", "--data", tmp_path / "d", "--out", tmp_path / "o", "--weights", "none")
    assert r.exit_code == 2 and "missing column" in r.output


def test_class_folders_with_an_empty_class_exit_2(tmp_path):
    d = tmp_path / "d"  # the data beside the output: an output inside its data folder is refused first
    (d / "nv").mkdir(parents=True)
    (d / "mel").mkdir()
    for i in range(5):
        Image.fromarray(np.full((20, 20, 3), i * 40, np.uint8)).save(d / "nv" / f"n{i}.jpg")
    r = run("train", "--data", d, "--out", tmp_path / "o", *TINY)
    assert r.exit_code == 2 and "no readable mel images" in r.output


def test_data_synth_cli(tmp_path):
    r = run("data", "synth", tmp_path / "s", "--lesions", "12", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s" / "metadata.csv").exists() and "12 lesions" in r.output
    r = run("data", "synth", tmp_path / "s", "--lesions", "12")
    assert r.exit_code == 2 and "melkit: error:" in r.output


def test_demo_small(tmp_path):
    # The README's main command at its smallest: synth, train, convert, bench, predict, bundle; offline. What
    # is tested is the pipeline and its one-rename publication, not what the model learns (the session's tiny
    # run does that): 40 lesions, a 2-epoch 32-px scratch recipe whose BatchNorm uses the last batch's
    # statistics (momentum 0: not a constant model after 2 epochs) and a fixed threshold, as
    # benchmarks/reliability.py's demo. `melkit demo` itself is timed in the README.
    from melkit.core.recipe import Stage
    from melkit.demo import APP_TEMPLATE
    from melkit.release.bundle import ASSETS

    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(tiny_recipe(stages=[Stage("scratch", "all", 2, 2e-3)], image_size=32,
                                             bn_momentum=0.0, threshold_policy="fixed:0.5").to_dict()))
    repo_assets = sorted((p.name, p.stat().st_mtime_ns) for p in (APP_TEMPLATE / ASSETS).glob("*"))
    r = run("demo", "--out", tmp_path / "demo", "--lesions", "40", "--weights", "none", "--recipe", recipe,
            "--min-agreement", "0.01")
    assert r.exit_code == 0, r.output
    demo = tmp_path / "demo"
    for name in ("data/metadata.csv", "run/model.keras", "run/metrics.json", "tflite/melkit_mnv2_0.35_32_int8.tflite",
                 "tflite/melkit_mnv2_0.35_32_int8.json", "bench/report.md", "bench/report.json",
                 "android_demo/app/src/main/assets/melkit_mnv2_0.35_32_int8.tflite"):
        assert (demo / name).exists(), name
    assert "demo finished" in r.output and "AUC" in r.output and "P(mel)" in r.output
    assert "demo.partial" not in r.output  # what it prints names the published files
    # The bundled copy is the demo's model; the repository's own app is untouched.
    assert (demo / "android_demo" / ASSETS / "melkit_mnv2_0.35_32_int8.tflite").read_bytes() == \
        (demo / "tflite" / "melkit_mnv2_0.35_32_int8.tflite").read_bytes()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (APP_TEMPLATE / ASSETS).glob("*")) == repo_assets
    # Built in demo.partial and published with one rename: what the steps recorded, relative to where they
    # recorded it, names the published folder without a rewrite.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "tiny.json"]
    assert json.loads((demo / "run" / "config.json").read_text())["data"]["dir"] == "../data"
    report = json.loads((demo / "bench" / "report.json").read_text())
    assert [m["path"] for m in report["models"]] == ["../run"] + [f"../tflite/melkit_mnv2_0.35_32_{v}.tflite"
                                                                 for v in ("float32", "int8")]
    assert not [p for p in demo.rglob("*") if p.suffix in (".json", ".md", ".csv") and b"demo.partial" in p.read_bytes()]
    r = run("demo", "--out", tmp_path / "demo")
    assert r.exit_code == 2 and "not empty" in r.output
