"""Splits: lesion-grouped and stratified on the real lesion ids; the paper's leaks reproduced on purpose."""

from collections import Counter, defaultdict

import numpy as np
import pytest
from conftest import HAM, need

from melkit.data import split as S
from melkit.data.readers import read_dataset
from melkit.data.records import Record
from melkit.util.errors import BadInputError


@pytest.fixture(scope="module")
def ham_records():
    return read_dataset(need(HAM)).records


def lesions_per_split(records, splits):
    where = defaultdict(set)
    for r, s in zip(records, splits):
        where[r.lesion_id].add(s)
    return where


def test_real_lesion_split_never_shares_a_lesion(ham_records):
    splits = S.split_by_lesion(ham_records, 0.15, 0.15, seed=0)
    where = lesions_per_split(ham_records, splits)
    assert max(len(v) for v in where.values()) == 1
    # the real data has lesions with several images, so this is not trivially true
    assert max(Counter(r.lesion_id for r in ham_records).values()) > 1
    counts = S.split_counts(ham_records, splits)
    total_mel = sum(r.label for r in ham_records) / len(ham_records)
    for name, frac in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        c = counts[name]
        assert abs(c["images"] / len(ham_records) - frac) < 0.03, counts
        assert abs(c["mel"] / c["images"] - total_mel) < 0.03, counts  # stratified (by lesion, so not exact)


def test_real_image_split_leaks_lesions(ham_records):
    splits = S.split_by_image(ham_records, 0.15, 0.15, seed=0)
    where = lesions_per_split(ham_records, splits)
    assert sum(len(v) > 1 for v in where.values()) > 100  # the paper's leak, measurable


def test_split_is_deterministic_for_a_seed(ham_records):
    a = S.split_by_lesion(ham_records, seed=3)
    assert a == S.split_by_lesion(ham_records, seed=3)
    assert a != S.split_by_lesion(ham_records, seed=4)


def test_augment_before_split_copies_melanoma_with_transforms():
    recs = [Record(f"n{i}", f"n{i}", 0, "p") for i in range(40)] + [Record(f"m{i}", f"m{i}", 1, "p") for i in range(10)]
    out = S.augment_before_split(recs, seed=0)
    copies = [r for r in out if r.transform]
    assert len(copies) == 10 * 3  # 40 // 10 - 1 copies each, to roughly balance
    assert all(r.label == 1 and "_aug" in r.image_id for r in copies)
    assert {r.lesion_id for r in copies} <= {f"m{i}" for i in range(10)}


def test_split_csv_round_trip(tmp_path, ham_records):
    recs = ham_records[::15]
    splits = S.split_by_image(recs, seed=0)
    S.write_split_csv(tmp_path / "split.csv", recs, splits)
    header = (tmp_path / "split.csv").read_text().splitlines()[0]
    assert header == "image_id,lesion_id,label,source,split"
    # an image split puts images of one lesion in two splits: read back only when a leak is asked for
    assert S.apply_split_csv(recs, S.read_split_csv(tmp_path / "split.csv"), allow_leak=True) == splits


def test_split_csv_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("image_id,split\nA,holdout\n")
    with pytest.raises(BadInputError, match="unknown split"):
        S.read_split_csv(tmp_path / "bad.csv")
    (tmp_path / "ok.csv").write_text("image_id,split\nA,train\n")
    with pytest.raises(BadInputError, match="not in the split file"):
        S.apply_split_csv([Record("B", "B", 0, "p")], S.read_split_csv(tmp_path / "ok.csv"))


def test_too_small_for_a_grouped_split():
    recs = [Record("a", "a", 0, "p"), Record("b", "b", 1, "p"), Record("c", "c", 0, "p")]
    with pytest.raises(BadInputError):
        S.split_by_lesion(recs)


def test_synthetic_split_is_grouped(synth_dir):
    recs = read_dataset(synth_dir).records
    splits = S.split_by_lesion(recs, seed=0)
    assert max(len(v) for v in lesions_per_split(recs, splits).values()) == 1
    assert set(np.unique(splits)) == {"train", "val", "test"}


def test_too_few_images_of_each_class_is_bad_input_not_a_traceback():
    """8 images, 5 nv and 3 mel, each its own lesion: a 15 % fold (k = 7) cannot be stratified. sklearn's
    ValueError becomes one line that says so (exit 2), and train leaves no run behind."""
    from melkit.data.records import Record
    from melkit.data.split import split_by_lesion
    from melkit.util.errors import BadInputError

    records = [Record(f"i{i}", f"l{i}", int(i >= 5), f"i{i}.png") for i in range(8)]
    with pytest.raises(BadInputError, match=r"too few images for a 15% lesion-grouped split \(5 nv, 3 mel\)"):
        split_by_lesion(records, 0.15, 0.15, seed=0)
