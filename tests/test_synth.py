"""Tests for melkit.data.synth (procedural ABCD dermoscopy-like data set)."""

import csv
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from melkit.data.synth import LOCALIZATIONS, METADATA_COLUMNS, write_synth_dataset
from melkit.util.errors import BadInputError

HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]
N_LESIONS = 60


def _rows(path):
    with open(path / "metadata.csv", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [dict(zip(header, r)) for r in reader]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    calls = []
    summary = write_synth_dataset(out, n_lesions=N_LESIONS, seed=0, progress=lambda d, t: calls.append((d, t)))
    return out, summary, calls


def test_layout_and_header(synth):
    out, summary, _ = synth
    assert sorted(p.name for p in out.iterdir()) == ["images", "metadata.csv"]
    header, rows = _rows(out)
    assert header == HEADER == list(METADATA_COLUMNS)
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == sorted(r["image_id"] + ".jpg" for r in rows)
    assert summary["path"] == str(out)
    assert not out.with_name(out.name + ".partial").exists()


def test_metadata_values(synth):
    out, _, _ = synth
    _, rows = _rows(out)
    for r in rows:
        assert re.fullmatch(r"SYN_\d{7}", r["lesion_id"])
        assert re.fullmatch(r"SYN_IMG_\d{7}", r["image_id"])
        assert r["dx"] in ("nv", "mel")
        assert r["dx_type"] == "synthetic"
        assert r["dataset"] == "synth"
        assert r["sex"] in ("male", "female")
        assert r["localization"] in LOCALIZATIONS
        assert 0 < int(r["age"]) < 100
    assert len({r["image_id"] for r in rows}) == len(rows)
    # lesion-level fields agree across the images of one lesion
    per_lesion = {}
    for r in rows:
        key = (r["dx"], r["age"], r["sex"], r["localization"])
        assert per_lesion.setdefault(r["lesion_id"], key) == key


def test_counts_match_summary(synth):
    out, summary, _ = synth
    _, rows = _rows(out)
    dx = Counter(r["dx"] for r in rows)
    assert summary["n_images"] == len(rows) == len(list((out / "images").iterdir()))
    assert summary["n_lesions"] == N_LESIONS == len({r["lesion_id"] for r in rows})
    assert summary["n_nv"] == dx["nv"]
    assert summary["n_mel"] == dx["mel"]
    assert summary["n_nv"] + summary["n_mel"] == summary["n_images"]


def test_class_balance_and_images_per_lesion(synth):
    out, _, _ = synth
    _, rows = _rows(out)
    lesion_dx = {r["lesion_id"]: r["dx"] for r in rows}
    n_mel = sum(v == "mel" for v in lesion_dx.values())
    assert 0 < n_mel < N_LESIONS
    assert abs(n_mel / N_LESIONS - 0.35) <= 0.05
    per_lesion = Counter(r["lesion_id"] for r in rows)
    assert set(per_lesion.values()) <= {1, 2, 3}
    assert sum(n >= 2 for n in per_lesion.values()) >= N_LESIONS // 3


def test_progress_called_per_image(synth):
    _, summary, calls = synth
    total = summary["n_images"]
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_images_are_rgb_jpegs_of_the_requested_size(synth):
    out, _, _ = synth
    for path in sorted((out / "images").iterdir()):
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB"
            assert im.size == (200, 150)


def test_images_of_one_lesion_differ(synth):
    out, _, _ = synth
    _, rows = _rows(out)
    by_lesion = {}
    for r in rows:
        by_lesion.setdefault(r["lesion_id"], []).append(r["image_id"])
    ids = next(v for v in by_lesion.values() if len(v) >= 2)
    a, b = (np.asarray(Image.open(out / "images" / f"{i}.jpg"), dtype=np.float32) for i in ids[:2])
    assert np.abs(a - b).mean() > 2.0


def _centre_colour_std(path):
    """Std of chromaticity (colour independent of brightness) in the central 60x60 pixels."""
    x = np.asarray(Image.open(path), dtype=np.float32)
    h, w, _ = x.shape
    c = x[h // 2 - 30:h // 2 + 30, w // 2 - 30:w // 2 + 30]
    chrom = c / (c.sum(axis=-1, keepdims=True) + 1.0)
    return float(chrom.std(axis=(0, 1)).mean())


def test_classes_differ_in_colour_variegation(synth):
    # ABCD "C": melanomas are multi-coloured, nevi mostly one brown.
    out, _, _ = synth
    _, rows = _rows(out)
    stats = {"nv": [], "mel": []}
    for r in rows:
        stats[r["dx"]].append(_centre_colour_std(out / "images" / f"{r['image_id']}.jpg"))
    nv, mel = np.mean(stats["nv"]), np.mean(stats["mel"])
    assert mel > 1.15 * nv, (nv, mel)


def test_deterministic(tmp_path):
    a = write_synth_dataset(tmp_path / "a", n_lesions=6, seed=7)
    b = write_synth_dataset(tmp_path / "b", n_lesions=6, seed=7)
    write_synth_dataset(tmp_path / "c", n_lesions=6, seed=8)
    assert {k: v for k, v in a.items() if k != "path"} == {k: v for k, v in b.items() if k != "path"}
    files = ["metadata.csv"] + [f"images/{p.name}" for p in sorted((tmp_path / "a" / "images").iterdir())]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "metadata.csv").read_bytes() != (tmp_path / "c" / "metadata.csv").read_bytes()
    first = "images/SYN_IMG_0000001.jpg"
    assert (tmp_path / "a" / first).read_bytes() != (tmp_path / "c" / first).read_bytes()


def test_refuses_non_empty_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError):
        write_synth_dataset(out, n_lesions=2)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "out.partial").exists()


def test_refuses_existing_file(tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    with pytest.raises(BadInputError):
        write_synth_dataset(out, n_lesions=2)


def test_empty_existing_dir_and_stale_partial(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = tmp_path / "out.partial"
    (stale / "images").mkdir(parents=True)
    (stale / "metadata.csv").write_text("junk")
    summary = write_synth_dataset(str(out), n_lesions=3, image_size=(128, 96), images_per_lesion=(2, 2))
    assert summary["n_images"] == 6
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with Image.open(out / "images" / "SYN_IMG_0000001.jpg") as im:
        assert im.size == (128, 96) and im.mode == "RGB"


def test_crash_leaves_nothing(tmp_path):
    out = tmp_path / "out"

    def boom(done, total):
        if done == 3:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_synth_dataset(out, n_lesions=5, progress=boom)
    assert not out.exists()
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("kwargs", [
    {"n_lesions": 0},
    {"n_lesions": 2.5},
    {"mel_fraction": 1.5},
    {"mel_fraction": -0.1},
    {"mel_fraction": "half"},
    {"images_per_lesion": (0, 2)},
    {"images_per_lesion": (3, 1)},
    {"images_per_lesion": 2},
    {"image_size": (200,)},
    {"image_size": (10, 10)},
    {"seed": -1},
    {"progress": "not callable"},
])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(BadInputError):
        write_synth_dataset(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_all_one_class(tmp_path):
    s = write_synth_dataset(tmp_path / "nv", n_lesions=3, mel_fraction=0.0)
    assert s["n_mel"] == 0 and s["n_nv"] == s["n_images"]
    s = write_synth_dataset(tmp_path / "mel", n_lesions=3, mel_fraction=1.0)
    assert s["n_nv"] == 0 and s["n_mel"] == s["n_images"]


# --- several sources ----------------------------------------------------------------------------------

def test_source_options_at_their_defaults_change_nothing(tmp_path):
    write_synth_dataset(tmp_path / "a", n_lesions=4, seed=5)
    write_synth_dataset(tmp_path / "b", n_lesions=4, seed=5, source="synth", id_prefix="SYN", split_fractions=None,
                        colour_cast=None, vignette=0.0)
    files = ["metadata.csv"] + [f"images/{p.name}" for p in sorted((tmp_path / "a" / "images").iterdir())]
    assert files == ["metadata.csv"] + [f"images/{p.name}" for p in sorted((tmp_path / "b" / "images").iterdir())]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_source_name_ids_and_split_column(tmp_path):
    s = write_synth_dataset(tmp_path / "a", n_lesions=20, seed=5, source="clinic_b", id_prefix="B",
                            split_fractions=(0.6, 0.2, 0.2))
    header, rows = _rows(tmp_path / "a")
    assert header == HEADER + ["split"]
    assert {r["dataset"] for r in rows} == {"clinic_b"}
    assert all(re.fullmatch(r"B_\d{7}", r["lesion_id"]) and re.fullmatch(r"B_IMG_\d{7}", r["image_id"]) for r in rows)
    per_lesion = {}
    for r in rows:
        assert per_lesion.setdefault(r["lesion_id"], (r["dx"], r["split"])) == (r["dx"], r["split"])
    lesions = Counter(per_lesion.values())  # (dx, split) -> lesions: 7 mel and 13 nv lesions
    assert lesions[("mel", "val")] == lesions[("mel", "test")] == 1 and lesions[("mel", "train")] == 5
    assert lesions[("nv", "val")] == lesions[("nv", "test")] == 3 and lesions[("nv", "train")] == 7
    assert s["splits"] == dict(Counter(r["split"] for r in rows))
    # the split column changes no image
    write_synth_dataset(tmp_path / "c", n_lesions=20, seed=5, id_prefix="B")
    for p in sorted((tmp_path / "c" / "images").iterdir()):
        assert p.read_bytes() == (tmp_path / "a" / "images" / p.name).read_bytes()


def test_device_look(tmp_path):
    write_synth_dataset(tmp_path / "a", n_lesions=4, seed=5, image_size=(64, 48))
    write_synth_dataset(tmp_path / "b", n_lesions=4, seed=5, image_size=(64, 48), colour_cast=(1.1, 1.0, 0.8),
                        vignette=0.6)
    for p in sorted((tmp_path / "a" / "images").iterdir()):
        a = np.asarray(Image.open(p), np.float32)
        b = np.asarray(Image.open(tmp_path / "b" / "images" / p.name), np.float32)
        centre = (slice(18, 30), slice(26, 38))
        assert b[centre][..., 2].mean() < 0.9 * a[centre][..., 2].mean()  # blue cut
        assert b[:4, :4].mean() < a[:4, :4].mean()  # darker corners


@pytest.mark.parametrize("kwargs", [
    {"source": "my clinic"},
    {"source": ""},
    {"id_prefix": "B_"},
    {"split_fractions": (0.5, 0.5)},
    {"split_fractions": (0.7, 0.2, 0.2)},
    {"colour_cast": (1.0, 1.0)},
    {"colour_cast": (1.0, 0.0, 1.0)},
    {"vignette": 1.0},
    {"vignette": True},
])
def test_bad_source_arguments(tmp_path, kwargs):
    with pytest.raises(BadInputError):
        write_synth_dataset(tmp_path / "out", n_lesions=2, **kwargs)
    assert not (tmp_path / "out").exists()
