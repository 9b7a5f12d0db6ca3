"""melkit convert publishes its output folder in one step, under a lock: a crash keeps the previous models and
cards (a kill between model and card used to destroy the previous good model), what an earlier conversion
wrote and this one does not replace stays, and two converts into one folder never mix."""

import json

import pytest
from click.testing import CliRunner

from conftest import LOOSE
from melkit.cli import main
from melkit.convert import converter
from melkit.convert.converter import ConvertOptions, convert_run
from melkit.core.card import sha256
from melkit.core.files import exclusive


def consistent(out):
    """Every model in ``out`` has its card, and the card describes exactly that file."""
    names = sorted(p.name for p in out.iterdir())
    for model in out.glob("*.tflite"):
        card = json.loads(model.with_suffix(".json").read_text())
        assert card["sha256"] == sha256(model.read_bytes()), model.name
    return names


def test_a_crash_keeps_the_previous_conversion_and_later_ones_keep_the_rest(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "tflite"
    convert_run(tiny_run.out_dir, ConvertOptions(variants=["float32"], out=str(out), calibration_images=8,
                                                 min_agreement=LOOSE))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = converter.write_variant

    def crash_after_the_model(staged, b, source, opts):
        paths = real(staged, b, source, opts)
        paths[1].unlink()  # as if killed between the model and its card
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(converter, "write_variant", crash_after_the_model)
    with pytest.raises(KeyboardInterrupt):
        convert_run(tiny_run.out_dir, ConvertOptions(variants=["float32"], out=str(out), calibration_images=8,
                                                     min_agreement=LOOSE, version="9.9.9"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous good model and card
    assert not (tmp_path / "tflite.partial").exists()
    monkeypatch.setattr(converter, "write_variant", real)
    convert_run(tiny_run.out_dir, ConvertOptions(variants=["dynamic"], out=str(out), calibration_images=8,
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
