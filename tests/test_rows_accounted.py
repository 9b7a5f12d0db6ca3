"""Every row of the metadata (and every file of a class folder) is accounted for: used, or refused with its
reason and counted. An image the metadata lists and no file holds is bad input (exit 2) unless the user says
to leave such images out (--skip-unreadable, as for unreadable ones); a quote never closed is refused with its
line, never the rest of the file read as one field; a .gif in a class folder is read, as predict reads it.

No training: the committed release models (tflite_models/) run on hand-made copies of the session's
synthetic set; train is checked up to its data preparation.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import REPO, cli, one_line_error, tiny_recipe
from conftest import class_copy as copy_classes
from PIL import Image

from melkit.data.readers import read_dataset
from melkit.data.sources import write_metadata_from_ground_truth
from melkit.train import trainer
from melkit.train.trainer import TrainOptions
from melkit.util.errors import BadInputError

FLOAT = REPO / "tflite_models" / "melkit_mnv2_1_224_float32.tflite"
INT8 = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
GHOSTS = ["GHOST_1", "GHOST_2", "GHOST_3"]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("MELKIT_QUIET", "1")  # no progress bars in the captured stderr


def rows_of(synth_dir) -> list:
    with open(synth_dir / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def ham_copy(synth_dir, dest, extra=(), text=None):
    """A HAM10000-style copy of the synthetic set (images linked) whose metadata also lists ``extra`` rows,
    or is ``text`` as given."""
    rows = rows_of(synth_dir)
    dest.mkdir(parents=True)
    (dest / "images").symlink_to(synth_dir / "images")
    if text is not None:
        (dest / "metadata.csv").write_text(text)
        return dest
    with open(dest / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        for image_id, dx in extra:
            w.writerow({**rows[0], "lesion_id": f"L_{image_id}", "image_id": image_id, "dx": dx})
    return dest


def bench_args(data, out, model=FLOAT):
    return ["bench", model, "--reference", model, "--data", data, "--no-latency", "--bootstrap", "20", "--out", out]


def test_bench_refuses_images_the_metadata_lists_but_no_file_holds_and_counts_them_when_told(synth_dir, tmp_path):
    d = ham_copy(synth_dir, tmp_path / "d", [(g, "mel") for g in GHOSTS] + [("OTHER_1", "bcc")])
    out = tmp_path / "bench"
    r = cli(*bench_args(d, out))
    one_line_error(r, "3 image(s)", "GHOST_1", "not found", "--skip-unreadable")
    assert not out.exists() and not (tmp_path / "bench.lock").exists()

    r = cli(*bench_args(d, out), "--skip-unreadable")
    assert r.exit_code == 0, r.output
    images = json.loads((out / "report.json").read_text())["images"]
    listed = len(rows_of(synth_dir))
    # every row accounted for: used, skipped with its reason, or another diagnosis counted
    assert images["n"] == listed
    assert sorted(s["image_id"] for s in images["skipped"]) == GHOSTS
    assert all("not found" in s["reason"] for s in images["skipped"])
    assert images["other_dx_left_out"] == {"bcc": 1}
    md = (out / "report.md").read_text()
    assert "3 image(s) could not be read and were left out" in md and "bcc 1" in md


def test_calibrate_refuses_a_listed_image_that_is_missing(synth_dir, tmp_path):
    d = ham_copy(synth_dir, tmp_path / "d", [("GHOST_1", "nv")])
    out = tmp_path / "out"
    one_line_error(cli("calibrate", INT8, "--data", d, "--out", out), "1 image(s)", "GHOST_1", "calibrate leaves no image out")
    assert not out.exists()


def test_a_quote_never_closed_is_refused_with_its_line_not_read_as_the_rest_of_the_file(synth_dir, tmp_path):
    rows = rows_of(synth_dir)
    lines = ["lesion_id,image_id,dx"] + [f"{r['lesion_id']},{r['image_id']},{r['dx']}" for r in rows]
    lines[3] = lines[3].replace(",", ',"', 1)  # line 4: a quote opened, never closed
    d = ham_copy(synth_dir, tmp_path / "d", text="\n".join(lines) + "\n")
    with pytest.raises(BadInputError, match=r"metadata.csv: line 4: a field runs over \d+ lines"):
        read_dataset(d)
    out = tmp_path / "bench"
    one_line_error(cli(*bench_args(d, out)), "line 4", "never closed")
    assert not out.exists()
    # the same file with the quote closed is read whole
    lines[3] = lines[3].replace(',"', ",", 1)
    (d / "metadata.csv").write_text("\n".join(lines) + "\n")
    assert len(read_dataset(d).records) == len(rows)


def test_a_row_with_more_fields_than_the_header_is_refused_with_its_line(tmp_path):
    d = tmp_path / "d"
    (d / "images").mkdir(parents=True)
    (d / "metadata.csv").write_text("lesion_id,image_id,dx\nL1,I1,nv\n\nL2,I2,mel,oops\n")
    with pytest.raises(BadInputError, match="line 4 has 4 fields, the header 3"):
        read_dataset(d)


def test_a_ground_truth_table_with_a_quote_never_closed_is_refused(tmp_path):
    src = tmp_path / "truth.csv"
    src.write_text('image_id,dx\nA,nv\n"B,mel\nC,nv\n')
    with pytest.raises(BadInputError, match="line 3"):
        write_metadata_from_ground_truth(src, tmp_path / "metadata.csv")
    assert not (tmp_path / "metadata.csv").exists()


def class_copy(synth_dir, dest, per_class=6):
    """conftest's, 6 of each class by default."""
    return copy_classes(synth_dir, dest, per_class)


def test_a_gif_in_a_class_folder_is_read_and_other_files_are_counted(synth_dir, tmp_path):
    d = class_copy(synth_dir, tmp_path / "d")
    first = sorted((d / "mel").iterdir())[0]
    Image.open(first).convert("P").save(d / "mel" / "as_gif.gif")
    ds = read_dataset(d)
    assert "as_gif" in {r.image_id for r in ds.records if r.dx == "mel"} and len(ds.records) == 13
    assert ds.skipped == []
    (d / "mel" / "notes.txt").write_text("seen by the dermatologist\n")
    (d / "mel" / ".DS_Store").write_bytes(b"\0")  # hidden: not the data set's
    ds = read_dataset(d)
    assert [s[0] for s in ds.skipped] == ["mel/notes.txt"] and "not an image file" in ds.skipped[0][1]

    out = tmp_path / "bench"
    one_line_error(cli(*bench_args(d, out)), "1 image(s)", "notes.txt", "--skip-unreadable")
    r = cli(*bench_args(d, out), "--skip-unreadable")
    assert r.exit_code == 0, r.output
    images = json.loads((out / "report.json").read_text())["images"]
    assert images["n"] == 13 and images["n_mel"] == 7 and [s["image_id"] for s in images["skipped"]] == ["mel/notes.txt"]


def test_train_refuses_a_missing_image_unless_told_to_skip_it(synth_dir, tmp_path):
    d = ham_copy(synth_dir, tmp_path / "d", [("GHOST_1", "mel")])
    opts = TrainOptions(data=str(d), out=str(tmp_path / "run"), recipe=tiny_recipe(), weights=None)
    with pytest.raises(BadInputError, match="GHOST_1.*--skip-unreadable"):
        trainer._prepare_data(opts, opts.recipe, tmp_path / "run", echo=lambda m: None)
    # an external test set is held to the same rule
    opts = TrainOptions(data=str(synth_dir), external=[str(d)], recipe=tiny_recipe(), weights=None)
    with pytest.raises(BadInputError, match="GHOST_1"):
        trainer._prepare_data(opts, opts.recipe, tmp_path / "run", echo=lambda m: None)

    said = []
    opts = TrainOptions(data=str(d), out=str(tmp_path / "run"), recipe=tiny_recipe(), weights=None,
                        skip_unreadable=True)
    summary = trainer._prepare_data(opts, opts.recipe, tmp_path / "run", echo=said.append).summary
    assert [s["image_id"] for s in summary["skipped"]] == ["GHOST_1"] and "not found" in summary["skipped"][0]["reason"]
    assert summary["counts"]["images"] == len(rows_of(synth_dir)) and any("skipped 1" in m for m in said)
