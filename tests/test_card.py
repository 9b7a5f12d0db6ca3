"""The model card contract: ModelCard (melkit/core/card.py) and its JSON Schema (model_card.schema.json).

Every committed card validates against the schema and round-trips through ModelCard byte for byte; a card
missing a required field, or with a field of the wrong type, is refused by both, naming the field; the
schema and ModelCard list the same fields; the card is checked against a real interpreter. No training:
the committed release models are enough (the Android side is in test_android.py).
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO

from melkit.core.card import OPTIONAL_FIELDS, SCHEMA_PATH, ModelCard, load_card, make_card, write_card
from melkit.core.errors import BadInputError
from melkit.core.recipe import default_recipe
from melkit.core.run import RunConfig
from melkit.data.preprocess import Contract

jsonschema = pytest.importorskip("jsonschema")

CARDS = sorted([*REPO.glob("tflite_models/*.json"), *REPO.glob("android_demo/app/src/main/assets/*.json"),
                REPO / "android_demo" / "app" / "src" / "test" / "resources" / "golden" / "card.json"])
RELEASE = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
RELEASE_V1 = REPO / "tflite_models" / "previous-1.1.0" / "melkit_mnv2_1_224_int8.tflite"  # a contract-v1 card


@pytest.fixture(scope="module")
def schema():
    s = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return s


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def card_json(path=CARDS[0]) -> dict:
    return json.loads(path.read_text())


def required_paths(schema) -> list[tuple[str, ...]]:
    """Every required field, top-level and nested (through $ref), as a key path; the golden card's values."""

    def resolve(node):
        if "$ref" in node:
            target = schema
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            merged = resolve(target)
            return {**merged, "required": merged.get("required", []) + node.get("required", []),
                    "properties": {**merged.get("properties", {}), **node.get("properties", {})}}
        if "anyOf" in node:  # nullable: the object branch
            return resolve(next(b for b in node["anyOf"] if b.get("type") != "null"))
        return node

    out = []

    def walk(node, prefix):
        node = resolve(node)
        for key in node.get("required", []):
            out.append((*prefix, key))
            sub = node.get("properties", {}).get(key)
            if sub is not None:
                walk(sub, (*prefix, key))

    walk(schema, ())
    return out


def without(d: dict, path: tuple) -> dict:
    d = copy.deepcopy(d)
    holder = d
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return d


def replaced(d: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(d)
    holder = d
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return d


def test_there_are_committed_cards():
    assert len(CARDS) >= 3 and all(p.is_file() for p in CARDS)


@pytest.mark.parametrize("path", CARDS, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_card_validates_and_round_trips_byte_for_byte(path, validator, tmp_path):
    d = card_json(path)
    validator.validate(d)
    card = ModelCard.from_json(d)
    assert card.to_json() == d and json.dumps(card.to_json()) == json.dumps(d)  # same keys, order, values
    write_card(tmp_path / "card.json", card)
    assert (tmp_path / "card.json").read_bytes() == path.read_bytes()
    assert card.labels[card.p_mel_index] == "mel" and card.image_size == d["preprocessing"]["image_size"]
    # what `melkit bundle` prints (cli.py)
    assert (card.name, card.version, card.variant, card.input.dtype, card.threshold) == (
        d["name"], d["version"], d["variant"], d["input"]["dtype"], d["threshold"])


def test_to_json_is_a_copy():
    card = ModelCard.from_json(card_json())
    d = card.to_json()
    d["input"]["shape"][0] = 7
    d["conversion"]["seed"] = 99
    d["preprocessing"]["input_quantization"]["zero_point"] = 0
    assert card.to_json() == card_json()


def test_schema_and_model_card_list_the_same_fields(schema):
    fields = {f for f in ModelCard.__dataclass_fields__ if f != "extra"} | {"melkit_card"}
    assert set(schema["required"]) == fields - set(OPTIONAL_FIELDS)
    assert set(schema["properties"]) == fields | {"conversion"}


def test_every_required_field_missing_is_refused_by_schema_and_from_json(schema, validator):
    d = card_json()
    paths = required_paths(schema)
    assert ("input", "quantization", "scale") in paths and ("output", "meaning") in paths
    assert ("preprocessing", "image_size") in paths and len(paths) > 40
    for path in paths:
        bad = without(d, path)
        assert not validator.is_valid(bad), path
        with pytest.raises(BadInputError) as e:
            ModelCard.from_json(bad)
        message = str(e.value)
        assert "\n" not in message
        if path != ("melkit_card",):
            assert f"'{'.'.join(path)}' is missing" in message, (path, message)


@pytest.mark.parametrize("path, value", [
    (("threshold",), "0.5"), (("threshold",), 1.5), (("name",), 3), (("labels",), "nv,mel"), (("labels",), ["nv", 1]),
    (("size_bytes",), "10"), (("input",), None), (("input", "shape"), [1, "224", 224, 3]),
    (("input", "dtype"), None), (("output", "quantization"), {"scale": "1", "zero_point": 0}),
    (("output", "quantization", "zero_point"), 0.5), (("preprocessing", "image_size"), "224"),
    (("preprocessing", "mean"), "128"), (("preprocessing", "name"), "melkit-v3"), (("sha256",), "XYZ"),
    (("validation",), []), (("versions",), "2.21"), (("melkit_card",), 2),
])
def test_a_wrong_type_is_refused_by_schema_and_from_json(validator, path, value):
    bad = replaced(card_json(), path, value)
    assert not validator.is_valid(bad)
    with pytest.raises(BadInputError) as e:
        ModelCard.from_json(bad)
    if path[0] != "melkit_card":
        assert path[-1] in str(e.value) or ".".join(path) in str(e.value), str(e.value)


def test_a_float_tensor_has_null_quantization(validator):
    d = replaced(card_json(), ("input", "quantization"), None)
    validator.validate(d)
    assert ModelCard.from_json(d).input.quantization is None


def test_extra_top_level_fields_are_kept_in_order():
    d = {**card_json(), "notes": {"by": "someone"}}
    assert list(ModelCard.from_json(d).to_json()) == list(d)


def test_make_card_reproduces_the_release_card():
    """make_card from the inputs the converter had gives the committed card exactly."""
    d = card_json(RELEASE.with_suffix(".json"))
    config = RunConfig(labels=tuple(d["labels"]), preprocessing=Contract.from_json(d["preprocessing"]),
                       recipe=replace(default_recipe(), name=d["source_run"]["recipe"]),
                       model={"alpha": d["source_run"]["alpha"], "weights": d["source_run"]["weights"]},
                       seed=d["source_run"]["seed"], versions=d["versions"].get("training", d["versions"]), training={},
                       data={"dir": d["training_data"]["dir"], "counts": d["training_data"]["counts"],
                             "counts_by_source": d["training_data"]["counts_by_source"],
                             "split": {**d["training_data"]["split"], "other": "not in the card"}})
    trained = d["threshold_fold"]["threshold"] if "threshold_fold" in d else d["threshold"]  # the run's threshold
    metrics = {"threshold": np.float64(trained), "threshold_policy": d["threshold_policy"],
               "val": {**d["validation"], "auc_ci": tuple(d["validation"]["auc_ci"]), "extra": 1},
               # a multi-source run: each source's val (and test, not in the card) and each external set
               "sources": {s: {"val": m, "test": {"n": 1}} for s, m in d["validation_by_source"].items()},
               "external": {s: {**m, "dir": "not in the card"} for s, m in d["external"].items()}}
    io = {"input": d["input"], "output": {k: v for k, v in d["output"].items() if k != "meaning"}}
    # the records convert adds beside the run's: the guard, the fold, licence/author and both steps' versions
    card = make_card(d["model_file"], RELEASE.read_bytes(), d["variant"], io, config, metrics,
                     d["source_run"]["path"], d["name"], d["version"], d["selfcheck"],
                     extra={"conversion": d["conversion"]}, domain_guard=d.get("domain_guard"),
                     threshold_fold=d.get("threshold_fold"), license=d.get("license"), author=d.get("author"),
                     versions=d["versions"] if "conversion" in d["versions"] else None)
    assert isinstance(card, ModelCard) and json.dumps(card.to_json()) == json.dumps(d)


def test_load_card_names_the_file_and_the_field(tmp_path):
    model = tmp_path / RELEASE.name
    shutil.copy(RELEASE, model)
    model.with_suffix(".json").write_text(json.dumps(without(card_json(RELEASE.with_suffix(".json")),
                                                             ("output", "dtype"))))
    with pytest.raises(BadInputError, match=r"\.json: model card field 'output\.dtype' is missing"):
        load_card(model)
    model.with_suffix(".json").write_text(json.dumps({**card_json(RELEASE.with_suffix(".json")), "melkit_card": 2}))
    with pytest.raises(BadInputError, match="not a melkit model card"):
        load_card(model)


def test_check_against_the_release_model():
    from melkit.core.litert import load_interpreter, predict_p_mel  # LiteRT

    card = load_card(RELEASE)
    interp = load_interpreter(RELEASE)
    card.check_against(interp, RELEASE)
    d = card.to_json()
    cases = [
        (replaced(d, ("input", "dtype"), "float32"), "card says input dtype float32, the model has uint8"),
        (replaced(d, ("output", "quantization", "scale"), d["output"]["quantization"]["scale"] * (1 + 1e-4)),
         "card says output quantization"),
        (replaced(d, ("output", "quantization"), None), "card says output quantization None"),
        (replaced(d, ("preprocessing", "image_size"), 96), "card image_size 96 does not fit input shape"),
        (replaced(d, ("labels",), ["nv", "mel", "other"]), "do not fit output shape"),
        (replaced(d, ("labels",), ["nv", "melanoma"]), "do not fit output shape"),
    ]
    for bad, message in cases:
        with pytest.raises(BadInputError, match=message):
            ModelCard.from_json(bad).check_against(interp, RELEASE)
    # within tolerance: the same
    ModelCard.from_json(replaced(d, ("input", "quantization", "scale"), 0.0078125 * (1 + 1e-8))).check_against(interp)

    # P(mel) is read where the labels say
    q = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    default = predict_p_mel(interp, q)
    swapped = ModelCard.from_json(replaced(d, ("labels",), ["mel", "nv"]))
    assert swapped.p_mel_index == 0 and card.p_mel_index == 1
    at_card = predict_p_mel(interp, q, p_mel_index=card.p_mel_index)
    first = predict_p_mel(interp, q, p_mel_index=swapped.p_mel_index)
    np.testing.assert_array_equal(default, at_card)
    assert not np.array_equal(first, at_card)
