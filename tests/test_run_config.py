"""The typed run config and preprocessing contract: what train writes is what the later stages read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import melkit.core.run
from melkit.core.errors import BadInputError
from melkit.core.run import RunConfig, load_run
from melkit.data.preprocess import CONTRACT, Contract


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


def test_run_config_reads_back_exactly_what_train_wrote(tiny_run):
    written = json.loads((tiny_run.out_dir / "config.json").read_text())
    config = load_run(tiny_run.out_dir)
    assert config.to_json() == written and list(config.to_json()) == list(written)
    assert config.status == "complete" and config.image_size == written["preprocessing"]["image_size"]
    assert config.recipe.to_dict() == written["recipe"] and config.data_dir == written["data"]["dir"]
    assert tiny_run.config.with_status("complete") == config


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
