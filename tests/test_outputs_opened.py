"""Outputs other people open: a predictions.csv is safe in a spreadsheet (no id runs as a formula, one row per
image, the JSON outputs keep the true ids), and a convert whose every variant fails the gate publishes nothing."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from melkit.cli import main
from melkit.util.spreadsheet import FORMULA_START, SpreadsheetWriter, safe_cell

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"  # committed: no training needed
REFERENCE = MODEL.with_name("melkit_mnv2_1_224_float32.tflite")
HOSTILE = ['=HYPERLINK("x.invalid","click")', "=1+1", "+x", "-x", "@x", "\ttab-led", "\rcr-led", "in\rside",
           "in\nside", 'a,"quoted"', "-0.5"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def spreadsheet_safe(cell: str) -> bool:
    """What a spreadsheet will not run: no formula character first, or a plain number (data)."""
    return not cell.startswith(FORMULA_START) or cell == "-0.5"


@pytest.fixture(scope="module")
def hostile_set(tmp_path_factory):
    """Class folders of small noise PNGs, 21 per class (calibrate needs 20), some named as a hostile user would."""
    root = tmp_path_factory.mktemp("hostile") / "data"
    rng = np.random.default_rng(0)
    ids = {"mel": HOSTILE[::2], "nv": HOSTILE[1::2]}
    for label, names in ids.items():
        (root / label).mkdir(parents=True)
        for name in names + [f"{label}{i}" for i in range(21 - len(names))]:
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / label / f"{name}.png")
    return root


def test_safe_cell_neutralises_formula_text_and_keeps_numbers():
    for bad in ["=1+1", "+x", "-x", "@x", "\tx", "\rx", "\nx", "-1+2", "+-"]:
        assert safe_cell(bad) == "'" + bad
    for data in ["x", "a=1", "", "'=1", "-0.5", "+3", "1e-5", "0.123456", -0.5, 3, None]:
        assert safe_cell(data) == data
    buf = io.StringIO(newline="")
    w = SpreadsheetWriter(buf)
    w.writerow(["id", "p"])
    for name in HOSTILE:
        w.writerow([name, "-0.500000"])
    back = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert len(back) == 1 + len(HOSTILE)  # a CR or LF inside an id no longer splits its row
    assert [r[0] for r in back[1:]] == [safe_cell(n) for n in HOSTILE] and {r[1] for r in back[1:]} == {"-0.500000"}


def test_every_predictions_csv_writer_uses_the_spreadsheet_writer():
    writers = [p for p in (REPO / "melkit").rglob("*.py") if "predictions.csv" in p.read_text()
               and "atomic_writer(" in p.read_text()]
    assert {p.name for p in writers} >= {"report.py", "calibrate.py", "rundir.py"}
    for p in writers:
        assert "SpreadsheetWriter(f)" in p.read_text() and "csv.writer(" not in p.read_text(), p


def test_bench_predictions_csv_opens_safely_and_the_json_keeps_the_true_ids(hostile_set, tmp_path):
    broken = hostile_set / "mel" / "@broken.png"  # unreadable: its id goes into report.json's skipped list
    broken.write_bytes(b"not a png")
    try:
        r = run("bench", MODEL, "--reference", REFERENCE, "--data", hostile_set, "--out", tmp_path / "b",
                "--no-latency", "--bootstrap", "20", "--skip-unreadable")
    finally:
        broken.unlink()
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "b" / "predictions.csv")
    assert rows[0][0] == "image_id" and len(rows) == 1 + 42  # one row per image, whatever its name holds
    assert all(spreadsheet_safe(cell) for row in rows for cell in row)
    assert {row[0] for row in rows[1:]} >= {safe_cell(n) for n in HOSTILE}
    assert "'=1+1" in {row[0] for row in rows} and "-0.5" in {row[0] for row in rows}
    assert all(0 <= float(p) <= 1 for row in rows[1:] for p in row[3:])  # the numbers stay numbers
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [s["image_id"] for s in report["images"]["skipped"]] == ["@broken"]  # the true id, not '@broken

    r = run("predict", MODEL, hostile_set / "nv" / "=1+1.png", hostile_set / "mel" / "+x.png", "--json")
    assert r.exit_code == 0, r.output
    assert [Path(p["image"]).stem for p in json.loads(r.stdout)["predictions"]] == ["=1+1", "+x"]


def test_calibrate_predictions_csv_opens_safely(hostile_set, tmp_path):
    r = run("calibrate", MODEL, "--data", hostile_set, "--out", tmp_path / "c", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    rows = rows_of(tmp_path / "c" / "predictions.csv")
    assert rows[0][0] == "image_id" and len(rows) == 1 + 42
    assert all(spreadsheet_safe(cell) for row in rows for cell in row)
    assert {row[0] for row in rows[1:]} >= {safe_cell(n) for n in HOSTILE}


def constant_outputs(monkeypatch):
    """Every variant's LiteRT output a constant: its self-check fails (no AUC, decisions all one class)."""
    import melkit.convert.converter

    monkeypatch.setattr(melkit.convert.converter, "predict_p_mel",
                        lambda interp, q, progress=None, p_mel_index=-1: np.full(len(q), 0.3))


def test_a_convert_whose_every_variant_fails_publishes_nothing(tiny_run, tmp_path, monkeypatch):
    constant_outputs(monkeypatch)
    out = tmp_path / "tflite"
    r = run("convert", tiny_run.out_dir, "--float32", "--out", out)
    assert r.exit_code == 1 and "failed the self-check" in r.output, r.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []  # no labels.txt alone, no lock


def test_a_convert_whose_every_variant_fails_leaves_the_previous_conversion_as_it_was(tiny_run, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "tflite"
    r = run("convert", tiny_run.out_dir, "--float32", "--out", out, "--calibration-images", "8",
            "--min-agreement", "0.5")
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert any(name.endswith(".tflite") for name in before)
    constant_outputs(monkeypatch)
    r = run("convert", tiny_run.out_dir, "--float32", "--out", out)
    assert r.exit_code == 1 and "failed the self-check" in r.output, r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tflite"]
