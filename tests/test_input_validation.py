"""Bad data is refused up front, named in one line (exit 2), and nothing is left behind: duplicate image files,
split files with leaks or contradicting labels, text that is not UTF-8, missing lesion ids recorded honestly,
the CLI's one error boundary for what the machine throws (no space, read-only), and a degenerate threshold."""

import csv
import errno
import shutil

import pytest
from click.testing import CliRunner
from conftest import tiny_recipe

from melkit.cli import main
from melkit.data import split as splitting
from melkit.data.readers import read_dataset
from melkit.train import trainer
from melkit.train.trainer import TrainOptions, run_train
from melkit.util.errors import BadInputError, QualityGateError


def copy_set(src, dest, edit_rows=None, encoding="utf-8"):
    """A copy of a HAM10000-style set (images linked), its metadata rows passed through ``edit_rows``."""
    rows = list(csv.DictReader(open(src / "metadata.csv", newline="")))
    rows = edit_rows(rows) if edit_rows else rows
    dest.mkdir(parents=True)
    (dest / "images").symlink_to(src / "images")
    with open(dest / "metadata.csv", "w", newline="", encoding=encoding) as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return dest


def test_two_files_for_one_image_id_are_refused(synth_dir, tmp_path):
    d = copy_set(synth_dir, tmp_path / "d")
    first = sorted((synth_dir / "images").iterdir())[0]
    (d / "extra").mkdir()
    shutil.copy(first, d / "extra" / (first.stem + ".jpg"))  # same id, another file: which one is trained on?
    with pytest.raises(BadInputError, match=rf"image id {first.stem} has two files"):
        read_dataset(d)
    (d / "extra" / (first.stem + ".jpg")).unlink()
    (d / "extra" / "again").symlink_to(synth_dir / "images")  # the same files through a link are not duplicates
    assert len(read_dataset(d).records) == len(read_dataset(synth_dir).records)


def test_missing_lesion_ids_are_counted_and_the_split_mode_says_image(synth_dir, tmp_path):
    def drop_lesions(rows):
        return [{k: v for k, v in r.items() if k != "lesion_id"} for r in rows]

    d = copy_set(synth_dir, tmp_path / "d", drop_lesions)
    ds = read_dataset(d)
    assert ds.without_lesion_id == len(ds.records) > 0
    assert read_dataset(synth_dir).without_lesion_id == 0
    opts = TrainOptions(data=str(d), out=str(tmp_path / "run"), recipe=tiny_recipe(), weights=None)
    with pytest.warns(UserWarning, match="have no lesion_id"):
        summary = trainer._prepare_data(opts, opts.recipe, tmp_path / "run", echo=lambda m: None).summary
    assert summary["split"]["mode"] == "image" and summary["split"]["images_without_lesion_id"] == len(ds.records)
    summary = trainer._prepare_data(TrainOptions(data=str(synth_dir), recipe=tiny_recipe()), tiny_recipe(),
                                    tmp_path / "run2", echo=lambda m: None).summary
    assert summary["split"]["mode"] == "lesion" and summary["split"]["images_without_lesion_id"] == 0


def _split_file(synth_dir, tmp_path, edit):
    records = read_dataset(synth_dir).records
    splits = splitting.split_by_lesion(records, 0.2, 0.2, seed=0)
    path = tmp_path / "split.csv"
    splitting.write_split_csv(path, records, splits)
    rows = list(csv.DictReader(open(path, newline="")))
    edit(rows, records)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return records, path


def test_a_split_file_with_a_leak_is_refused_unless_asked_for(synth_dir, tmp_path):
    def leak(rows, records):
        by_lesion = {}
        for r in rows:
            by_lesion.setdefault(r["lesion_id"], []).append(r)
        two = next(v for v in by_lesion.values() if len(v) > 1)
        two[1]["split"] = next(s for s in splitting.SPLITS if s != two[0]["split"])

    records, path = _split_file(synth_dir, tmp_path, leak)
    with pytest.raises(BadInputError, match=r"lesion .* is in two splits .*a leak"):
        splitting.apply_split_csv(records, splitting.read_split_csv(path))
    assert len(splitting.apply_split_csv(records, splitting.read_split_csv(path), allow_leak=True)) == len(records)


def test_a_split_file_whose_labels_contradict_the_data_is_refused(synth_dir, tmp_path):
    def swap(rows, records):
        rows[3]["label"] = "mel" if rows[3]["label"] == "nv" else "nv"

    records, path = _split_file(synth_dir, tmp_path, swap)
    with pytest.raises(BadInputError, match=r"1 label\(s\) contradict the data"):
        splitting.apply_split_csv(records, splitting.read_split_csv(path))


def test_latin1_metadata_and_split_files_exit_2_in_one_line_and_leave_no_partial(synth_dir, tmp_path):
    def accent(rows):
        rows[0]["localization"] = "tête"  # not ASCII: latin-1 bytes are not UTF-8
        return rows

    d = copy_set(synth_dir, tmp_path / "d", accent, encoding="latin-1")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(d), "--out", str(out), "--weights", "none",
                                       "--recipe", "scratch", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output and "Traceback" not in result.output
    assert len([l for l in result.output.splitlines() if "error" in l]) == 1
    assert not out.exists() and not (tmp_path / "run.partial").exists()

    bad_split = tmp_path / "split.csv"
    bad_split.write_bytes("image_id,split\nISIC_caf\xe9,train\n".encode("latin-1"))
    with pytest.raises(BadInputError, match="not UTF-8"):
        splitting.read_split_csv(bad_split)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_the_cli_turns_what_the_machine_throws_into_one_line_and_exit_2(monkeypatch, tmp_path, err):
    import os

    import melkit.cli as cli

    def fail(*a, **k):
        raise OSError(err, os.strerror(err), str(tmp_path / "out" / "x"))

    monkeypatch.setattr(cli, "write_synth_dataset", fail)
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("melkit: error")]
    assert errors == [f"melkit: error: {os.strerror(err)}: {tmp_path / 'out' / 'x'}"] and "Traceback" not in result.output


def test_a_run_whose_threshold_is_0_or_1_is_not_written(synth_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "choose_threshold", lambda *a, **k: 1.0)
    recipe = tiny_recipe()
    from dataclasses import replace

    recipe = replace(recipe, stages=[replace(recipe.stages[0], epochs=1)])
    with pytest.raises(QualityGateError, match="threshold on validation is 1"):
        run_train(TrainOptions(data=str(synth_dir), out=str(tmp_path / "run"), recipe=recipe, weights=None, n_boot=10))
    assert not (tmp_path / "run").exists()  # no finished run: convert would refuse it minutes later


def test_checks_on_a_run_need_all_of_its_validation_images(tiny_run, tiny_data, tmp_path):
    """convert --data DIR once self-checked 8 of a run's 73 validation images and its card said n=8."""
    from melkit.core.run import load_run, split_records

    config = load_run(tiny_run.out_dir)
    val = {r["image_id"] for r in csv.DictReader(open(tiny_run.out_dir / "split.csv")) if r["split"] == "val"}
    assert {r.image_id for r in split_records(tiny_run.out_dir, config, "val")} == val
    dropped = sorted(val)[:3]
    d = copy_set(tiny_data, tmp_path / "moved", lambda rows: [r for r in rows if r["image_id"] not in dropped])
    with pytest.raises(BadInputError, match=rf"3 of {len(val)} val images of run .* are not in .*{dropped[0]}"):
        split_records(tiny_run.out_dir, config, "val", data_dir=d)


def test_published_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from melkit.util.files import FILE_MODE, atomic_path, atomic_writer, write_json

    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_writer(tmp_path / "b.bin", "wb") as f:
            f.write(b"1")
        with atomic_path(tmp_path / "c.png") as p:
            open(p, "wb").write(b"png")
    finally:
        os.umask(umask)
    for name in ("a.json", "b.bin", "c.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == FILE_MODE
    assert FILE_MODE & 0o044  # readable by group and others under the usual umask (was 0600)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from melkit.data import imageio
    from melkit.data.contract import CONTRACT_V2

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100_000)  # 400x300 = 120,000 pixels
    with pytest.raises(imageio.UnreadableImage, match=r"400x300 is 0.1 Mpx, over melkit.s limit of 0.1 Mpx"):
        imageio.read_rgb(path)
    jpeg = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((600, 800, 3), np.uint8)).save(jpeg)
    # a v2 contract decodes a JPEG reduced (draft): 800x600 at 1/2 is 400x300, still over; at 64 px it is
    # 1/4 = 200x150 and under the limit, so it is read
    assert imageio.read_rgb(jpeg, contract=CONTRACT_V2.for_size(64)).shape[:2] == (150, 200)
    with pytest.raises(imageio.UnreadableImage, match="limit"):
        imageio.read_rgb(jpeg)


def test_a_second_writer_of_the_same_output_exits_2_at_once(synth_dir, tmp_path):
    from melkit.util.files import exclusive

    out = tmp_path / "run"
    with exclusive(out):  # as if another `melkit train --out run` were running
        result = CliRunner().invoke(main, ["train", "--data", str(synth_dir), "--out", str(out), "--weights", "none",
                                           "--recipe", "scratch", "--epochs", "1"])
        assert result.exit_code == 2, result.output
        assert f"{out} is being written by another melkit process (pid " in result.output
        assert not (tmp_path / "run.partial").exists()
    with exclusive(out):  # released: the next one gets it, and no lock file is left behind afterwards
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_0_byte_weights_file_is_refused_before_the_run_starts(synth_dir, tmp_path):
    empty = tmp_path / "w.h5"
    empty.write_bytes(b"")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(synth_dir), "--out", str(out), "--weights", str(empty)])
    assert r.exit_code == 2 and "is not a Keras .h5 weights file (0 bytes" in r.output, r.output
    assert not out.exists() and not (tmp_path / "run.partial").exists()  # used to block the rerun


def test_weights_auto_follows_the_recipe_and_offline_imagenet_is_one_line(monkeypatch):
    from tf_keras.src.utils import data_utils

    from melkit.core.model import build_model

    assert TrainOptions(data="D", recipe="scratch").weights == "none"  # scratch never needs ImageNet
    assert TrainOptions(data="D", recipe="default").weights == "imagenet"
    assert TrainOptions(data="D", recipe="scratch", weights="imagenet").weights == "imagenet"

    def offline(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(BadInputError, match=r"cannot download the ImageNet weights \(offline\?\)"):
        build_model(0.35, 96, "imagenet")


def test_convert_on_a_run_with_a_torn_metrics_json_exits_2_naming_it(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.out_dir, run)
    (run / "metrics.json").write_text('{"threshold": 0.4, "val": ')
    r = CliRunner().invoke(main, ["convert", str(run), "--float32", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and f"{run / 'metrics.json'}: not valid JSON" in r.output, r.output
    assert not (tmp_path / "t").exists()


def test_bench_refuses_unreadable_images_unless_asked_and_predict_names_a_folder(converted, synth_dir, tmp_path):
    model = converted[1] / "melkit_mnv2_0.35_48_float32.tflite"
    d = copy_set(synth_dir, tmp_path / "d")
    (d / "images").unlink()
    shutil.copytree(synth_dir / "images", d / "images")
    victim = sorted((d / "images").iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    out = tmp_path / "bench"
    args = ["bench", str(model), "--reference", str(model), "--data", str(d), "--no-latency", "--bootstrap", "20",
            "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "1 of" in r.output and "--skip-unreadable" in r.output, r.output
    assert not out.exists()
    r = CliRunner().invoke(main, args + ["--skip-unreadable"])
    assert r.exit_code == 0, r.output
    assert "1 image(s) could not be read and were left out" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bench")) == ["bench"]  # no .partial/.lock
    r = CliRunner().invoke(main, ["predict", str(model), str(d)])
    assert r.exit_code == 2 and "a folder, not an image file" in r.output, r.output
