"""Several sources (``melkit train --data A --data B``): records keep their source, prescribed splits are
kept, the rest is split by lesion stratified by source and label, and bad multi-source input is refused in
one line."""

import csv
from collections import defaultdict

import numpy as np
import pytest
from conftest import HAM, SHARED, need
from PIL import Image

from melkit.data import split as S
from melkit.data.readers import folder_source, read_dataset, read_sources
from melkit.data.records import Record
from melkit.data.synth import write_synth_dataset
from melkit.util.errors import BadInputError

ISIC2017 = SHARED / "data" / "isic2017-nv-mel"
HEADER = ["lesion_id", "image_id", "dx", "dataset", "split"]


def write_meta(root, rows, header=HEADER):
    """A HAM10000-layout directory with tiny images for ``rows`` (lists in ``header`` order)."""
    (root / "images").mkdir(parents=True)
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    for row in rows:
        Image.new("RGB", (8, 8)).save(root / "images" / f"{row[header.index('image_id')]}.jpg")
    return root


def lesions(n, mel_every, prefix, source="", fixed=None, images=(1, 2, 3)):
    """n lesions, every ``mel_every``-th a melanoma, 1-3 images each; ``fixed(i)`` prescribes lesion i's split."""
    out = []
    for i in range(n):
        for j in range(images[i % len(images)]):
            out.append(Record(f"{prefix}{i}_{j}", f"{prefix}L{i}", int(i % mel_every == 0), "p", source=source,
                              fixed_split=fixed(i) if fixed else ""))
    return out


def where(records, splits):
    out = defaultdict(set)
    for r, s in zip(records, splits):
        out[r.lesion_id].add(s)
    return out


# --- split ----------------------------------------------------------------------------------------------

# split_by_lesion(lesions(80, 4, "a")) before sources existed (t train, v val, T test): one source must give
# the same split for a seed as it always did.
SINGLE_SOURCE_SEED0 = (
    "tttTTTtttttttttttttttvvvTtttttttttttttttttttttttvtttttvttttttttTTTTvvttttttttttvvTTTttttttvTTttttttttttttvvv"
    "tttttttTTttttttTTTTttttttvvvvvtvvtttTttttttvvttttTT"
)
CODE = {"train": "t", "val": "v", "test": "T"}


@pytest.mark.parametrize("source", ["", "clinic"])
def test_one_source_splits_as_before(source):
    recs = lesions(80, 4, "a", source=source)
    assert "".join(CODE[s] for s in S.split_by_lesion(recs, 0.15, 0.15, seed=0)) == SINGLE_SOURCE_SEED0
    assert "by_source" not in S.split_counts(recs, S.split_by_lesion(recs))


def test_stratified_by_source_and_label_no_lesion_in_two_splits():
    # a large, melanoma-poor source and a small, melanoma-rich one
    recs = lesions(400, 8, "a", source="big") + lesions(100, 3, "b", source="small")
    splits = S.split_by_lesion(recs, 0.15, 0.15, seed=0)
    assert max(len(v) for v in where(recs, splits).values()) == 1
    counts = S.split_counts(recs, splits)
    assert set(counts) == {"train", "val", "test", "by_source"}
    for source in ("big", "small"):
        by = counts["by_source"][source]
        total = sum(by[s]["lesions"] for s in S.SPLITS)
        mel_rate = sum(by[s]["mel"] for s in S.SPLITS) / sum(by[s]["images"] for s in S.SPLITS)
        for name, frac in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
            assert abs(by[name]["lesions"] / total - frac) < 0.04, (source, by)
            assert abs(by[name]["mel"] / by[name]["images"] - mel_rate) < 0.08, (source, by)
    # the per-source counts add up to the split's
    for name in S.SPLITS:
        assert sum(counts["by_source"][s][name]["images"] for s in ("big", "small")) == counts[name]["images"]


def test_prescribed_splits_are_kept_whole_lesions():
    fixed_of = {0: "test", 1: "val"}  # lesion i of source b: test if i % 3 == 0, val if 1, else train
    b = lesions(60, 2, "b", source="b", fixed=lambda i: fixed_of.get(i % 3, "train"))
    # source c: lesions 1 (2 images) and 2 (3 images) prescribe a split for one image; the rest is melkit's
    c = lesions(80, 4, "c", source="c")
    c = [Record(r.image_id, r.lesion_id, r.label, r.path, source="c",
                fixed_split={"c2_0": "test", "c1_1": "val"}.get(r.image_id, "")) for r in c]
    recs = lesions(120, 4, "a", source="a") + b + c
    splits = S.split_by_lesion(recs, seed=1)
    got = {r.image_id: s for r, s in zip(recs, splits)}
    assert all(s == r.fixed_split for r, s in zip(recs, splits) if r.source == "b")
    # all images of the lesion, not only the prescribed one
    assert [got[i] for i in ("c2_0", "c2_1", "c2_2", "c1_0", "c1_1")] == ["test"] * 3 + ["val"] * 2
    assert max(len(v) for v in where(recs, splits).values()) == 1
    by = S.split_counts(recs, splits)["by_source"]
    assert all(by[s][name]["mel"] and by[s][name]["nv"] for s in "abc" for name in S.SPLITS)


def test_only_prescribed_splits():
    recs = lesions(30, 2, "b", source="b", fixed=lambda i: S.SPLITS[i % 3])
    assert S.split_by_lesion(recs) == [r.fixed_split for r in recs]


def test_source_without_melanoma_is_refused():
    recs = lesions(80, 4, "a", source="a") + lesions(40, 10 ** 6, "b", source="b")[1:]  # b: lesion 0 was its mel
    with pytest.raises(BadInputError, match="source 'b' has no mel images") as e:
        S.split_by_lesion(recs)
    assert "\n" not in str(e.value)


def test_too_small_source_is_refused():
    recs = lesions(200, 4, "a", source="a") + lesions(12, 4, "b", source="b")  # b: 3 mel lesions for 3 splits
    with pytest.raises(BadInputError, match="source 'b' is too small for a stratified lesion split") as e:
        S.split_by_lesion(recs)
    assert "\n" not in str(e.value)


def test_a_lesion_prescribed_two_splits_is_refused():
    recs = lesions(40, 4, "a", source="a") + [Record("x1", "X", 0, "p", source="b", fixed_split="train"),
                                              Record("x2", "X", 1, "p", source="b", fixed_split="test")]
    with pytest.raises(BadInputError, match="lesion X is prescribed two splits"):
        S.split_by_lesion(recs)


def test_augment_before_split_keeps_the_source():
    recs = lesions(20, 4, "a", source="a", fixed=lambda i: "train")
    out = S.augment_before_split(recs)
    assert len(out) > len(recs) and {(r.source, r.fixed_split) for r in out} == {("a", "train")}


def test_split_csv_round_trip_with_sources(tmp_path):
    recs = lesions(80, 4, "a", source="a") + lesions(60, 3, "b", source="b.2017")
    splits = S.split_by_lesion(recs)
    S.write_split_csv(tmp_path / "split.csv", recs, splits)
    with open(tmp_path / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(S.SPLIT_COLUMNS) == ["image_id", "lesion_id", "label", "source", "split"]
    assert [r["source"] for r in rows] == [r.source for r in recs]
    assert S.apply_split_csv(recs, S.read_split_csv(tmp_path / "split.csv")) == splits
    # a split file from before sources (no source column) still reads
    (tmp_path / "old.csv").write_text("image_id,lesion_id,label,split\nA,A,nv,train\n")
    assert S.read_split_csv(tmp_path / "old.csv") == {"A": "train"}
    (tmp_path / "bad.csv").write_text("image_id,lesion_id,label,source,split\nA,A,nv,my clinic,train\n")
    with pytest.raises(BadInputError, match="unknown source 'my clinic' for A"):
        S.read_split_csv(tmp_path / "bad.csv")


# --- readers --------------------------------------------------------------------------------------------

def test_reader_fills_source_and_prescribed_split(tmp_path):
    root = write_meta(tmp_path / "my data", [["L1", "I1", "nv", "clinicA", "train"], ["L2", "I2", "mel", "", "test"],
                                            ["L3", "I3", "nv", "clinicA", ""], ["L4", "I4", "bcc", "clinicA", "val"]])
    ds = read_dataset(root)
    assert [(r.image_id, r.source, r.fixed_split) for r in ds.records] == [
        ("I1", "clinicA", "train"), ("I2", "my_data", "test"), ("I3", "clinicA", "")]
    assert folder_source(root) == "my_data"  # no dataset value: the folder's name, made a plain name
    assert ds.dirs == [str(root)] and ds.sources == {"clinicA": str(root), "my_data": str(root)}
    assert ds.counts_by_source() == {"clinicA": {"images": 2, "nv": 2, "mel": 0, "lesions": 2},
                                     "my_data": {"images": 1, "nv": 0, "mel": 1, "lesions": 1}}
    # without a dataset column, every record's source is the folder's name
    plain = write_meta(tmp_path / "isic.2016", [["L1", "I1", "nv"], ["L2", "I2", "mel"]], header=HEADER[:3])
    assert {r.source for r in read_dataset(plain).records} == {"isic.2016"}
    assert {r.fixed_split for r in read_dataset(plain).records} == {""}


def test_class_folders_source_is_the_folder_name(tmp_path):
    for cls in ("nv", "mel"):
        (tmp_path / "clinic-x" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "clinic-x" / cls / f"{cls}0.png")
    ds = read_dataset(tmp_path / "clinic-x")
    assert {r.source for r in ds.records} == {"clinic-x"} and ds.sources == {"clinic-x": str(tmp_path / "clinic-x")}


@pytest.mark.parametrize("column,value,match", [
    ("split", "holdout", r"split value 'holdout' of image I2: expected train, val, test or empty"),
    ("split", "Test", r"split value 'Test' of image I2"),
    ("dataset", "my clinic", r"dataset value 'my clinic' of image I2 is not a source name"),
    ("dataset", "a,b", r"dataset value 'a,b' of image I2 is not a source name"),
])
def test_bad_source_and_split_values_are_refused(tmp_path, column, value, match):
    rows = [["L1", "I1", "nv", "a", "train"], ["L2", "I2", "mel", "a", "test"]]
    rows[1][HEADER.index(column)] = value
    with pytest.raises(BadInputError, match=match) as e:
        read_dataset(write_meta(tmp_path / "d", rows))
    assert "metadata.csv" in str(e.value) and "\n" not in str(e.value)


def test_read_sources_merges(tmp_path):
    a = write_meta(tmp_path / "a", [["L1", "A1", "nv", "", ""], ["L2", "A2", "mel", "", ""]])
    b = write_meta(tmp_path / "b", [["L1", "B1", "nv", "isic", "val"], ["L2", "B2", "bkl", "isic", ""]])
    ds = read_sources([a, b])
    assert [(r.image_id, r.source) for r in ds.records] == [("A1", "a"), ("A2", "a"), ("B1", "isic")]
    assert ds.root == f"{a} + {b}" and ds.dirs == [str(a), str(b)] and ds.layout == "ham10000"
    assert ds.sources == {"a": str(a), "isic": str(b)} and ds.other_dx == {"bkl": 1}
    assert ds.counts_by_source()["isic"] == {"images": 1, "nv": 1, "mel": 0, "lesions": 1}
    one = read_sources([a])
    assert one == read_dataset(a) and read_sources(str(a)) == one


def test_read_sources_refusals(tmp_path):
    a = write_meta(tmp_path / "a", [["L1", "X1", "nv", "same", ""], ["L2", "A2", "mel", "same", ""]])
    b = write_meta(tmp_path / "b", [["L1", "X1", "nv", "other", ""]])
    c = write_meta(tmp_path / "c", [["L1", "C1", "nv", "same", ""]])
    cases = [([a, b], rf"image id X1 is in both {a} and {b} \(1 shared id\(s\)\)"),
             ([a, c], rf"source 'same' comes from two directories, {a} and {c}"),
             ([a, tmp_path / "b" / ".." / "a"], "given twice"),
             ([], "no data directory")]
    for dirs, match in cases:
        with pytest.raises(BadInputError, match=match) as e:
            read_sources(dirs)
        assert "\n" not in str(e.value)


# --- synthetic sources, end to end (CI) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def two_synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    a = root / "clinic_a"
    b = root / "clinic_b"
    write_synth_dataset(a, n_lesions=50, seed=2, image_size=(64, 48), id_prefix="A")
    write_synth_dataset(b, n_lesions=40, seed=3, image_size=(64, 48), id_prefix="B", source="clinic_b",
                        split_fractions=(0.6, 0.2, 0.2), colour_cast=(1.12, 0.96, 0.8), vignette=0.5)
    return a, b


def test_synthetic_sources_split(two_synth):
    a, b = two_synth
    ds = read_sources([a, b])
    assert set(ds.sources) == {"synth", "clinic_b"}
    splits = S.split_by_lesion(ds.records, seed=0)
    assert max(len(v) for v in where(ds.records, splits).values()) == 1
    assert all(s == r.fixed_split for r, s in zip(ds.records, splits) if r.source == "clinic_b")
    assert all(not r.fixed_split for r in ds.records if r.source == "synth")
    by = S.split_counts(ds.records, splits)["by_source"]
    assert all(by[s][name]["mel"] and by[s][name]["nv"] for s in by for name in S.SPLITS)


def test_synthetic_sources_look_different(two_synth):
    def mean_rgb(d):
        return np.mean([np.asarray(Image.open(p), np.float32).mean(axis=(0, 1)) for p in sorted((d / "images").iterdir())],
                       axis=0)

    a, b = (mean_rgb(d) for d in two_synth)
    assert b[0] / b[2] > 1.2 * a[0] / a[2]  # clinic_b's warm cast


# --- real data ------------------------------------------------------------------------------------------

def test_real_ham10000_and_isic2017():
    ds = read_sources([need(HAM), need(ISIC2017)])
    assert set(ds.sources) == {"ham10000", "isic2017"}
    splits = S.split_by_lesion(ds.records, seed=0)
    isic = [(r, s) for r, s in zip(ds.records, splits) if r.source == "isic2017"]
    assert len(isic) == 1642 and all(s == r.fixed_split for r, s in isic)  # the challenge's split, exactly
    counts = S.split_counts(ds.records, splits)
    assert {k: counts["by_source"]["isic2017"][k]["images"] for k in S.SPLITS} == {"train": 1019, "val": 106,
                                                                                   "test": 517}
    ham = counts["by_source"]["ham10000"]
    n_ham = sum(ham[k]["images"] for k in S.SPLITS)
    for name, frac in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert abs(ham[name]["images"] / n_ham - frac) < 0.03, ham
    assert max(len(v) for v in where(ds.records, splits).values()) == 1
    # HAM10000's own split is the one it gets alone: isic2017's prescribed split leaves it untouched
    alone = S.split_by_lesion(read_dataset(HAM).records, seed=0)
    assert [s for r, s in zip(ds.records, splits) if r.source == "ham10000"] == alone
