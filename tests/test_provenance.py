"""What a converted model says about where it came from (issue #15): licence, author, package versions, and no
path of the machine that made it.

The licence defaults to the training data's (melkit/data/sources.py), `--license` / `--author` override it;
the TFLite metadata and the card state the same and read back; `melkit card` maps the licence to a Hugging
Face id; cards of older releases (no licence, flat versions) load and render as before.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from melkit.cli import main
from melkit.convert.metadata import read_metadata
from melkit.convert.options import ConvertOptions
from melkit.convert.provenance import DEFAULT_AUTHOR, MAX_TEXT
from melkit.core.card import ModelCard, load_card
from melkit.data.sources import UNKNOWN_LICENCE, source_licence, training_licence
from melkit.release.card_document import (
    CardOptions,
    front_matter,
    hf_license_id,
    load_inputs,
    render,
)
from melkit.util.errors import BadInputError

RELEASE_CARD = REPO / "tflite_models" / "previous-2.1.0" / "melkit_mnv2_1_224_int8.json"  # HAM10000 + ISIC 2017
PACKAGES = ("tensorflow", "tf_keras", "ai-edge-litert", "pillow", "numpy")


# --------------------------------------------------------------------------- the licence registry


def test_the_training_datas_licence_comes_from_its_sources():
    assert training_licence(["ham10000"]) == "CC BY-NC 4.0"
    assert training_licence(["isic2017", "ham10000"]) == "CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)"
    # a folder read without a dataset column is a source named after the folder
    assert source_licence("HAM10000-nv-mel") == ("HAM10000", "CC BY-NC 4.0") and source_licence("ham1000") is None
    # unknown terms are said to be unknown, never guessed
    assert training_licence(["synth"]) == f"{UNKNOWN_LICENCE} (synth)"
    assert training_licence(["ham10000", "mine"]) == f"CC BY-NC 4.0 (HAM10000); {UNKNOWN_LICENCE} (mine)"
    assert training_licence([]) == UNKNOWN_LICENCE


@pytest.mark.parametrize("text, hf", [
    ("CC BY-NC 4.0", "cc-by-nc-4.0"), ("CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)", "cc-by-nc-4.0"),
    ("CC0 1.0 (ISIC 2016); CC0 1.0 (ISIC 2017)", "cc0-1.0"), ("cc-by-4.0", "cc-by-4.0"), ("Apache-2.0", "apache-2.0"),
    ("CC BY-NC-SA 4.0", "cc-by-nc-sa-4.0"), ("CC BY-NC 4.0 (HAM10000); CC BY 4.0 (other)", None),
    (f"{UNKNOWN_LICENCE} (synth)", None), ("CC BY-NC 4.0 (HAM10000); unknown (mine)", None), ("CC BY 9.0", None),
])
def test_a_licence_text_maps_to_a_hugging_face_id_or_none(text, hf):
    assert hf_license_id(text) == hf


def test_provenance_names_each_steps_versions_and_qat_adds_its_package(synth_dir):
    from types import SimpleNamespace

    from melkit.convert.provenance import Provenance, training_sources

    run = {"melkit": "0.1.0", "tensorflow": "2.0.0"}
    several = SimpleNamespace(data={"counts_by_source": {"isic2017": {}, "ham10000": {}}}, versions=run)
    assert training_sources(several) == ["ham10000", "isic2017"]  # the run's own record, no data read
    one = SimpleNamespace(data={"dir": str(synth_dir)}, data_dirs=[str(synth_dir)], versions=run)
    assert training_sources(one) == ["synth"]  # the data directory's dataset column
    p = Provenance.of(several, None, "me")
    assert p.license == "CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)"
    assert Provenance.of(several, "CC BY 4.0", "me").license == "CC BY 4.0"
    int8, qat = p.versions("int8"), p.versions("qat")
    assert int8["training"] == run and all(int8["conversion"][k] for k in PACKAGES)
    assert "tensorflow-model-optimization" not in int8["conversion"]
    assert qat["conversion"]["tensorflow-model-optimization"] and qat["training"] == run
    assert p.card_fields("int8") == {"license": p.license, "author": "me", "versions": int8}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--license", ""], "--license must not be empty"), (["--license", "  "], "--license must not be empty"),
    (["--license", "CC BY 4.0\nand more"], "--license must be one line"),
    (["--author", ""], "--author must not be empty"), (["--author", "a\rb"], "--author must be one line"),
    (["--author", "x" * (MAX_TEXT + 1)], f"at most {MAX_TEXT}"),
])
def test_bad_license_or_author_exits_2_with_one_line(tmp_path, args, message):
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "no-run"), "--float32", *args])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and message in lines[0], r.output
    assert not (tmp_path / "no-run").exists()
    with pytest.raises(BadInputError, match=re.escape(message)):  # the same check for library callers
        ConvertOptions(variants=["float32"], **{args[0][2:]: args[1]}).validate()


# --------------------------------------------------------------------------- the card


def _old_style(d: dict) -> dict:
    """A card as releases before licence/author wrote it (2.0.0): neither field, the run's versions only."""
    return {k: (v.get("training", v) if k == "versions" else v) for k, v in d.items() if k not in ("license", "author")}


def _new_style(d: dict, license="CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)", author=DEFAULT_AUTHOR) -> dict:
    """A released card as melkit convert now writes it: licence and author after not_a_medical_device, and the
    training run's versions beside the conversion's."""
    out = {}
    for k, v in d.items():
        out[k] = {"training": v, "conversion": {"tensorflow": "2.21.0", "ai-edge-litert": "2.3.0"}} \
            if k == "versions" else v
        if k == "not_a_medical_device":
            out.update(license=license, author=author)
    return out


def test_cards_with_and_without_licence_and_author_round_trip():
    old = _old_style(json.loads(RELEASE_CARD.read_text()))
    card = ModelCard.from_json(old)
    assert (card.license, card.author) == (None, None) and card.to_json() == old
    assert card.versions_by_step == {"training": old["versions"]}
    new = _new_style(old)
    card = ModelCard.from_json(new)
    assert json.dumps(card.to_json()) == json.dumps(new)  # same keys, order, values
    assert card.license.startswith("CC BY-NC 4.0") and card.author == DEFAULT_AUTHOR
    assert card.versions_by_step["conversion"]["ai-edge-litert"] == "2.3.0"
    for key, bad in (("license", ""), ("license", "two\nlines"), ("author", 7), ("author", " ")):
        with pytest.raises(BadInputError, match=f"'{key}'"):
            ModelCard.from_json({**new, key: bad})


def test_melkit_card_uses_the_cards_licence(tmp_path):
    new = _new_style(_old_style(json.loads(RELEASE_CARD.read_text())), author="Jane Doe")
    path = tmp_path / "m.json"
    path.write_text(json.dumps(new))
    text = render(load_inputs(CardOptions(model=str(path), out=str(tmp_path / "M.md"))))
    fm = front_matter(load_inputs(CardOptions(model=str(path))))
    assert fm["license"] == "cc-by-nc-4.0" and "license_name" not in fm
    assert text.startswith("---\nlicense: cc-by-nc-4.0\n")
    assert "- Licence: CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017); author: Jane Doe" in text
    assert "Package versions:\n\n- training: melkit 0.1.0," in text and "\n- conversion: tensorflow 2.21.0, " in text
    convert_line = next(line for line in text.splitlines() if line.startswith("melkit convert "))
    assert "--author 'Jane Doe'" in convert_line and "--license" not in convert_line  # the data's licence: default
    # a licence that names no Hugging Face id: "other", with the card's words
    path.write_text(json.dumps({**new, "license": "Research only, ask the authors"}))
    fm = front_matter(load_inputs(CardOptions(model=str(path))))
    assert fm["license"] == "other" and fm["license_name"] == "Research only, ask the authors"
    text = render(load_inputs(CardOptions(model=str(path), out=str(tmp_path / "M.md"))))
    assert "--license 'Research only, ask the authors'" in text


# --------------------------------------------------------------------------- what convert writes


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def _machine_paths(*roots) -> list:
    """Markers of this machine's paths: the session's folders, home, the repository, the usual roots."""
    marks = {str(Path(r).resolve()) for r in roots} | {str(Path(r)) for r in roots}
    marks |= {str(Path.home()) + os.sep, str(REPO), "/tmp/", "/work/", "/home/", "/root/"}
    return sorted(m for m in marks if m not in ("", os.sep))


def _assert_no_path(strings, marks, where):
    for s in strings:
        assert not (os.path.isabs(s) or re.match(r"[A-Za-z]:[\\/]", s)), f"{where}: absolute path {s!r}"
        assert not any(m in s for m in marks), f"{where}: machine path in {s!r}"


def test_converted_models_state_licence_author_versions_and_no_path(converted, tiny_run, tiny_data):
    result, out = converted
    marks = _machine_paths(out, tiny_run.out_dir, tiny_data, out.parent.parent)
    models = sorted(out.glob("*.tflite"))
    assert models
    run_versions = json.loads((Path(tiny_run.out_dir) / "config.json").read_text())["versions"]
    for model in models:
        data = model.read_bytes()
        card = load_card(model)
        d = json.loads(model.with_suffix(".json").read_text())
        _assert_no_path(_strings(d), marks, model.with_suffix(".json").name)
        md = read_metadata(data)
        _assert_no_path(_strings(md), marks, f"{model.name} metadata")
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            _assert_no_path(z.namelist(), marks, f"{model.name} zip")
        for m in marks:  # nowhere in the file: flatbuffer strings, metadata, zip
            assert m.encode() not in data, f"{model.name} holds {m!r}"
        # the synthetic training data is melkit's own "synth" source, whose terms melkit does not state
        assert card.license == md["license"] == f"{UNKNOWN_LICENCE} (synth)"
        assert card.author == md["author"] == DEFAULT_AUTHOR
        assert card.versions == md["versions"] == card.versions_by_step
        assert card.versions["training"] == run_versions
        conversion = card.versions["conversion"]
        assert all(conversion.get(p) for p in PACKAGES), conversion
        assert "tensorflow-model-optimization" not in conversion  # no QAT variant here
        assert md["description"].startswith("Dermoscopy nevus-vs-melanoma classifier")


def test_license_and_author_options_reach_metadata_and_card(tiny_run, tmp_path):
    out = tmp_path / "tflite"
    licence, author = "CC BY 4.0 (test set); see NOTICE", "Jane Doe <jane@example.org>"
    r = CliRunner().invoke(main, ["convert", str(tiny_run.out_dir), "--float32", "--out", str(out),
                                  "--min-agreement", "0.5", "--license", licence, "--author", author])
    assert r.exit_code == 0, r.output
    model = next(out.glob("*_float32.tflite"))
    card, md = load_card(model), read_metadata(model.read_bytes())
    assert (card.license, card.author) == (md["license"], md["author"]) == (licence, author)
    assert card.versions == md["versions"] and set(card.versions) == {"training", "conversion"}
