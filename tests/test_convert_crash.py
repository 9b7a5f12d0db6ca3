"""melkit convert publishes its output folder in one step, under a lock: a crash keeps the previous models and
cards (a kill between model and card used to destroy the previous good model), what an earlier conversion
wrote and this one does not replace stays, and two converts into one folder never mix."""

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import LOOSE

from melkit.cli import main
from melkit.convert import converter
from melkit.convert.converter import ConvertOptions, run_convert
from melkit.core.card import sha256
from melkit.util.files import exclusive, recover


def consistent(out):
    """Every model in ``out`` has its card, and the card describes exactly that file."""
    names = sorted(p.name for p in out.iterdir())
    for model in out.glob("*.tflite"):
        card = json.loads(model.with_suffix(".json").read_text())
        assert card["sha256"] == sha256(model.read_bytes()), model.name
    return names


def test_a_crash_keeps_the_previous_conversion_and_later_ones_keep_the_rest(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "tflite"
    run_convert(tiny_run.out_dir, ConvertOptions(variants=["float32"], out=str(out), calibration_images=8,
                                                 min_agreement=LOOSE))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = converter.write_variant

    def crash_after_the_model(staged, b, source, opts):
        paths = real(staged, b, source, opts)
        paths[1].unlink()  # as if killed between the model and its card
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(converter, "write_variant", crash_after_the_model)
    with pytest.raises(KeyboardInterrupt):
        run_convert(tiny_run.out_dir, ConvertOptions(variants=["float32"], out=str(out), calibration_images=8,
                                                     min_agreement=LOOSE, version="9.9.9"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous good model and card
    assert not (tmp_path / "tflite.partial").exists()
    monkeypatch.setattr(converter, "write_variant", real)
    run_convert(tiny_run.out_dir, ConvertOptions(variants=["dynamic"], out=str(out), calibration_images=8,
                                                 min_agreement=LOOSE))
    names = consistent(out)
    assert any(n.endswith("_float32.tflite") for n in names) and any(n.endswith("_dynamic.tflite") for n in names)
    assert (out / next(n for n in names if n.endswith("_float32.tflite"))).read_bytes() == next(
        v for k, v in before.items() if k.endswith("_float32.tflite"))


def test_a_second_convert_into_the_same_folder_exits_2(tiny_run, tmp_path):
    out = tmp_path / "tflite"
    with exclusive(out):
        r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--float32", "--out", str(out)])
    assert r.exit_code == 2 and "being written by another melkit process" in r.output, r.output
    assert not out.exists()  # nothing created, not even an empty folder


# Runs the CLI with os.replace wrapped to kill -9 the process in the middle of publishing: the previous
# output has just been renamed aside (``<out>.old``), the new one is not in place yet.
KILL_MID_SWAP = r'''
import os, signal, sys
real = os.replace
def replace(src, dst):
    real(src, dst)
    if str(dst).endswith(".old"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from melkit.cli import main
main(sys.argv[1:], prog_name="melkit")
'''


def conversion_state(out):
    """The version every card in ``out`` states, after the recovery the next convert would do first; fails on
    a model whose sha256 is not its card's, cards of two conversions, or a missing file."""
    recover(out.with_name(out.name + ".swap"))
    names = consistent(out)
    assert (out / "labels.txt").read_text() == "nv\nmel\n" and len(names) == 3, names
    versions = {json.loads(p.read_text())["version"] for p in out.glob("*.json")}
    assert len(versions) == 1, versions
    return versions.pop()


def test_kill_9_mid_publication_rolls_forward(tiny_run, tmp_path):
    """A real ``melkit convert`` subprocess killed with SIGKILL between the two renames of its publication: the
    journal rolls the staged conversion forward, and the next convert completes. (Kills at random moments are
    benchmarks/reliability.py's: 50 of them per command, too slow for CI.)"""
    out = tmp_path / "tflite"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CI": "true", "CUDA_VISIBLE_DEVICES": ""}
    args = ["convert", str(tiny_run.out_dir), "--float32", "--out", str(out), "--calibration-images", "8",
            "--min-agreement", str(LOOSE), "--model-version"]
    cli = [sys.executable, "-m", "melkit.cli"]
    assert subprocess.run(cli + args + ["1.0.0"], capture_output=True, env=env).returncode == 0
    r = subprocess.run([sys.executable, "-c", KILL_MID_SWAP] + args + ["2.0.0"], capture_output=True, env=env)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert not out.exists() and (tmp_path / "tflite.swap").exists()  # the moment the journal is for
    assert conversion_state(out) == "2.0.0"  # rolled forward: the staged folder was complete
    assert subprocess.run(cli + args + ["3.0.0"], capture_output=True, env=env).returncode == 0
    assert conversion_state(out) == "3.0.0"
