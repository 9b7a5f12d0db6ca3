"""Training on several sources: per-source split and metrics, external test sets, balanced sampling.

Three synthetic "devices" (a colour cast, a vignette) stand in for clinics; the real shared sets are used
where present.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import HAM, ISIC2016, built_once, need, subset_of, tiny_recipe

from melkit.cli import main
from melkit.core.run import load_run
from melkit.data.pipeline import source_weights, strata
from melkit.data.records import Record
from melkit.data.synth import write_synth_dataset
from melkit.util.errors import BadInputError

ISIC2017 = HAM.parent / "isic2017-nv-mel"


def _synth(path, source, prefix, **kw):
    write_synth_dataset(path, n_lesions=kw.pop("n_lesions", 60), seed=kw.pop("seed", 3), source=source,
                        id_prefix=prefix, **kw)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return built_once(tmp_path_factory, "multisource-sources", lambda root: {
        "a": _synth(root / "a", "clinic_a", "A", n_lesions=100, seed=11),
        # clinic_b prescribes its own split (as ISIC 2017 does) and has a colour cast
        "b": _synth(root / "b", "clinic_b", "B", n_lesions=60, seed=12, split_fractions=(0.6, 0.2, 0.2),
                    colour_cast=(1.1, 0.95, 0.85)),
        "c": _synth(root / "c", "clinic_c", "C", n_lesions=30, seed=13, vignette=0.5),
    })


@pytest.fixture(scope="module")
def multi_run(sources, tmp_path_factory):
    def build(folder):
        out = folder / "run"
        recipe = replace(tiny_recipe(), name="tiny-multi")
        (folder / "recipe.json").write_text(json.dumps(recipe.to_dict()))
        r = CliRunner().invoke(main, ["train", "--data", str(sources["a"]), "--data", str(sources["b"]),
                                      "--external", str(sources["c"]), "--recipe", str(folder / "recipe.json"),
                                      "--weights", "none", "--source-balance", "--out", str(out)])
        assert r.exit_code == 0, r.output
        return out, r.output

    return built_once(tmp_path_factory, "multi_run", build)


def _metadata(path):
    return {row["image_id"]: row for row in csv.DictReader(open(path / "metadata.csv"))}


def test_split_keeps_sources_and_prescribed_splits(multi_run, sources):
    out, _ = multi_run
    rows = list(csv.DictReader(open(out / "split.csv")))
    assert {r["source"] for r in rows} == {"clinic_a", "clinic_b"}
    prescribed = _metadata(sources["b"])
    for r in rows:
        if r["source"] == "clinic_b":
            assert r["split"] == prescribed[r["image_id"]]["split"]
    for source in ("clinic_a", "clinic_b"):  # stratified by source: each source in every split, both classes
        for split in ("train", "val", "test"):
            labels = {r["label"] for r in rows if r["source"] == source and r["split"] == split}
            assert labels == {"nv", "mel"}, (source, split)
    lesions = {}
    for r in rows:
        assert lesions.setdefault(r["lesion_id"], r["split"]) == r["split"]


def test_metrics_per_source_and_external(multi_run, sources):
    out, output = multi_run
    m = json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        per_source = [m["sources"][s][split]["n"] for s in ("clinic_a", "clinic_b")]
        assert sum(per_source) == m[split]["n"] and min(per_source) > 0
        assert all(len(m["sources"][s][split]["auc_ci"]) == 2 for s in ("clinic_a", "clinic_b"))
    ext = m["external"]["clinic_c"]
    assert ext["n"] == len(_metadata(sources["c"])) and (out / ext["dir"]).resolve() == sources["c"].resolve()
    assert ext["auc"] is not None and ext["auc_ci"][0] <= ext["auc"] <= ext["auc_ci"][1]
    # evaluated at the run's own threshold
    assert ext["threshold"] == m["threshold"]
    assert "external:clinic_c" in output and "test:clinic_b" in output


def test_config_records_sources_and_balance(multi_run, sources):
    out, _ = multi_run
    config = json.loads((out / "config.json").read_text())
    # stored relative to the run's folder (melkit.util.paths), so a run moved with its data still reads
    assert not any(Path(d).is_absolute() for d in config["data"]["dirs"])
    assert [(out / d).resolve() for d in config["data"]["dirs"]] == [sources["a"].resolve(), sources["b"].resolve()]
    assert load_run(out).data_dirs == [str(sources["a"].resolve()), str(sources["b"].resolve())]
    assert set(config["data"]["counts_by_source"]) == {"clinic_a", "clinic_b"}
    assert config["recipe"]["source_balance"] is True
    assert set(config["data"]["split"]["counts"]["by_source"]) == {"clinic_a", "clinic_b"}


def test_convert_reads_a_multi_source_run(multi_run, tmp_path):
    """The later stages find a run's validation images in all of its sources; the card carries them."""
    from melkit.convert.converter import run_convert
    from melkit.convert.options import ConvertOptions
    from melkit.core.card import load_card

    out, _ = multi_run
    result = run_convert(out, ConvertOptions(variants=["float32"], out=str(tmp_path)), echo=lambda *a: None)
    m = json.loads((out / "metrics.json").read_text())
    assert result.checks[0].n == m["val"]["n"] and result.checks[0].passed
    card = load_card(result.models["float32"])
    assert set(card.training_data["counts_by_source"]) == {"clinic_a", "clinic_b"}
    by_source = card.extra["validation_by_source"]
    assert {s: v["n"] for s, v in by_source.items()} == {s: m["sources"][s]["val"]["n"] for s in by_source}
    assert card.extra["external"]["clinic_c"]["auc"] == m["external"]["clinic_c"]["auc"]


def _bad_train(tmp_path, *args):
    r = CliRunner().invoke(main, ["train", *args, "--weights", "none", "--recipe", "scratch", "--epochs", "1",
                                  "--out", str(tmp_path / "run")])
    lines = [line for line in r.output.splitlines() if line.startswith("melkit: error")]
    return r, lines


def test_overlapping_image_ids_across_sources_exit_2(tmp_path):
    a = _synth(tmp_path / "a", "clinic_a", "X")
    b = _synth(tmp_path / "b", "clinic_b", "X")
    r, lines = _bad_train(tmp_path, "--data", str(a), "--data", str(b))
    assert r.exit_code == 2 and len(lines) == 1 and "image id" in lines[0], r.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_external_set_sharing_ids_with_training_exit_2(tmp_path):
    a = _synth(tmp_path / "a", "clinic_a", "A")
    r, lines = _bad_train(tmp_path, "--data", str(a), "--external", str(a))
    assert r.exit_code == 2 and len(lines) == 1 and "external set" in lines[0], r.output


def test_source_without_melanoma_exit_2(tmp_path):
    a = _synth(tmp_path / "a", "clinic_a", "A")
    b = _synth(tmp_path / "b", "clinic_b", "B")
    rows = list(csv.DictReader(open(b / "metadata.csv")))
    with open(b / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, rows[0].keys(), lineterminator="\n")
        w.writeheader()
        w.writerows(row for row in rows if row["dx"] == "nv")
    r, lines = _bad_train(tmp_path, "--data", str(a), "--data", str(b))
    assert r.exit_code == 2 and len(lines) == 1 and "clinic_b" in lines[0] and "no mel" in lines[0], r.output


def test_bad_split_column_exit_2(tmp_path):
    a = _synth(tmp_path / "a", "clinic_a", "A")
    b = _synth(tmp_path / "b", "clinic_b", "B", split_fractions=(0.6, 0.2, 0.2))
    text = (b / "metadata.csv").read_text().replace(",val\n", ",holdout\n", 1)
    (b / "metadata.csv").write_text(text)
    r, lines = _bad_train(tmp_path, "--data", str(a), "--data", str(b))
    assert r.exit_code == 2 and len(lines) == 1 and "holdout" in lines[0], r.output


def test_balanced_draws_and_weights_by_source():
    recs = [Record(f"i{k}", f"l{k}", k % 2, "p", source="big" if k < 90 else "small") for k in range(100)]
    w = source_weights(recs)
    assert np.isclose(w[:90].sum(), w[90:].sum()) and np.isclose(w.mean(), 1.0)
    g = strata(recs, by_class=False, by_source=True)
    assert set(g[:90]) == {0} and set(g[90:]) == {1}
    assert len(set(strata(recs, by_class=True, by_source=True))) == 4
    assert strata(recs, by_class=False, by_source=False) is None


@pytest.mark.real_data
def test_real_sources_split_and_external(tmp_path):
    """HAM10000 + ISIC 2017 (its challenge split kept) split as the run would; ISIC 2016 is unseen by both."""
    from melkit.data.readers import read_dataset, read_sources
    from melkit.data.split import split_by_lesion

    ds = read_sources([subset_of(need(HAM), tmp_path / "ham", 120), need(ISIC2017)])
    splits = split_by_lesion(ds.records, 0.15, 0.15, 0)
    for r, s in zip(ds.records, splits):
        if r.source == "isic2017":
            assert s == r.fixed_split
    ids = {r.image_id for r in ds.records}
    assert not ids & {r.image_id for r in read_dataset(need(ISIC2016)).records}
    with pytest.raises(BadInputError, match="given twice"):
        read_sources([need(ISIC2017), need(ISIC2017)])
