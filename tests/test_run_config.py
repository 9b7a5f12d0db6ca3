"""The typed run config and preprocessing contract: what train writes is what the later stages read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LOOSE

import melkit.core.run
from melkit.cli import main
from melkit.core.run import RunConfig, load_run, split_records
from melkit.data.contract import CONTRACT, Contract
from melkit.util.errors import BadInputError


def test_contract_json_round_trip_and_version():
    d = CONTRACT.for_size(96).to_json()
    assert d["image_size"] == 96 and list(d)[0] == "name" and "image_size" not in CONTRACT.to_json()
    assert Contract.from_json(d) == CONTRACT.for_size(96)
    assert CONTRACT.version == 1


@pytest.mark.parametrize("change, message", [
    ({"resize": "stretch, bicubic"}, "not the one this melkit implements"),
    ({"gamma": 2.2}, "unknown field"),
])
def test_contract_from_json_refuses_other_contracts(change, message):
    with pytest.raises(ValueError, match=message):
        Contract.from_json({**CONTRACT.for_size(32).to_json(), **change})


def test_run_config_schema_accepts_what_train_writes(tiny_run):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(melkit.core.run.__file__).with_name("run_config.schema.json")).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    written = json.loads((tiny_run.out_dir / "config.json").read_text())
    jsonschema.validate(written, schema)
    for key in schema["required"]:
        broken = {k: v for k, v in written.items() if k != key}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
        with pytest.raises(BadInputError):
            RunConfig.from_json(broken)


def test_run_config_reads_back_exactly_what_train_wrote(tiny_run, tiny_data):
    written = json.loads((tiny_run.out_dir / "config.json").read_text())
    config = load_run(tiny_run.out_dir)
    assert config.to_json() == written and list(config.to_json()) == list(written)
    assert config.status == "complete" and config.image_size == written["preprocessing"]["image_size"]
    assert config.recipe.to_dict() == written["recipe"]
    # The data directory is stored relative to the run folder and read back as where it is.
    assert written["data"]["dir"] == Path(os.path.relpath(tiny_data.resolve(), tiny_run.out_dir.resolve())).as_posix()
    assert config.data_dirs == [str(tiny_data.resolve())] and config.data_dir == str(tiny_data.resolve())
    assert tiny_run.config.with_status("complete") == config and tiny_run.config.data_dirs == config.data_dirs


def _moved(tiny_run, tiny_data, to: Path) -> tuple:
    """(run, data): copies of the session's run and of its data under ``to``, laid out as they were relative to
    each other."""
    built = tiny_run.out_dir.resolve().parents[1]  # the folder that holds both fixtures' folders
    run, data = (to / p.resolve().relative_to(built) for p in (tiny_run.out_dir, tiny_data))
    shutil.copytree(tiny_run.out_dir, run)
    shutil.copytree(tiny_data, data)
    return run, data.resolve()


def test_a_run_moved_with_its_data_reads_its_split_from_any_working_directory(tiny_run, tiny_data, tmp_path,
                                                                             monkeypatch):
    run, data = _moved(tiny_run, tiny_data, tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = Path("..") / run.relative_to(tmp_path)  # as a person in another folder names it
    config = load_run(run)
    assert config.data_dirs == [str(data)]  # the copy, not the session's data it was trained on
    original = {r.image_id: r for r in split_records(tiny_run.out_dir, load_run(tiny_run.out_dir), "val")}
    for split in ("train", "val", "test"):
        records = split_records(run, config, split)
        assert records and all(Path(r.path).is_relative_to(data) and Path(r.path).is_file() for r in records)
        if split == "val":
            assert sorted(r.image_id for r in records) == sorted(original)
    # convert checks the copy on its validation images, bench measures it on its test images
    r = CliRunner().invoke(main, ["convert", str(run), "--float32", "--min-agreement", str(LOOSE)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["bench", str(run), "--no-latency", "--bootstrap", "20", "--out", "b"])
    assert r.exit_code == 0, r.output
    report = json.loads(Path("b/report.json").read_text())
    assert report["images"]["n"] == len(split_records(run, config, "test"))
    # each model as the report's folder reaches it
    assert [(Path("b") / m["path"]).resolve() for m in report["models"]] == \
        [run.resolve()] + sorted(p.resolve() for p in (run / "tflite").glob("*.tflite"))


def test_a_run_of_an_older_melkit_with_an_absolute_data_dir_still_reads(tiny_run, tiny_data, tmp_path, monkeypatch):
    run = tmp_path / "old"
    shutil.copytree(tiny_run.out_dir, run)
    d = json.loads((run / "config.json").read_text())
    d["data"]["dir"] = str(tiny_data.resolve())
    (run / "config.json").write_text(json.dumps(d))
    monkeypatch.chdir(tmp_path)
    config = load_run("old")
    assert config.data_dirs == [str(tiny_data.resolve())]
    assert split_records("old", config, "val")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(melkit_run=7), "not a melkit run config"),
    (lambda d: d.pop("recipe"), "missing recipe"),
    (lambda d: d["recipe"].update(colour="blue"), "unknown recipe field"),
    (lambda d: d["preprocessing"].update(scale="x = q / 255"), "not the one this melkit implements"),
])
def test_run_config_refuses_bad_configs_with_one_line(tiny_run, edit, message):
    d = json.loads((tiny_run.out_dir / "config.json").read_text())
    edit(d)
    with pytest.raises(BadInputError, match=message) as e:
        RunConfig.from_json(d)
    assert "\n" not in str(e.value)
