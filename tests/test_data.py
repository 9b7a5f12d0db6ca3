"""Readers, image decoding and odd files: what is kept, converted, skipped or refused."""

import csv

import numpy as np
import pytest
from PIL import Image

from melkit.data.imageio import UnreadableImage, read_rgb
from melkit.data.readers import read_dataset
from melkit.util.errors import BadInputError

HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def write_ham(root, rows, header=HEADER, name="metadata.csv", folder="images"):
    root.mkdir(parents=True, exist_ok=True)
    (root / folder).mkdir(exist_ok=True)
    with open(root / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow(row)
    rng = np.random.default_rng(0)
    for row in rows:
        img = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        img.save(root / folder / f"{row[1]}.jpg")
    return root


def test_ham_layout_keeps_nv_mel_and_counts_the_rest(tmp_path):
    rows = [["L1", "I1", "nv", "histo", 50, "male", "back"], ["L1", "I2", "nv", "histo", 50, "male", "back"],
            ["L2", "I3", "mel", "histo", 60, "female", "face"], ["L3", "I4", "bkl", "histo", 70, "male", "back"],
            ["L4", "I5", "bcc", "histo", 70, "male", "back"]]
    ds = read_dataset(write_ham(tmp_path / "d", rows))
    assert ds.layout == "ham10000"
    assert [r.image_id for r in ds.records] == ["I1", "I2", "I3"]
    assert [r.label for r in ds.records] == [0, 0, 1]
    assert ds.other_dx == {"bkl": 1, "bcc": 1}
    assert ds.records[2].meta["localization"] == "face"
    assert ds.counts() == {"images": 3, "nv": 2, "mel": 1, "lesions": 2}
    # no dataset column: the source is the folder's name; no split column: melkit chooses the split
    assert {(r.source, r.fixed_split) for r in ds.records} == {("d", "")}


def test_original_ham10000_names_and_two_image_folders(tmp_path):
    root = tmp_path / "ham"
    write_ham(root, [["L1", "A", "nv", "", "", "", ""]], name="HAM10000_metadata.csv", folder="HAM10000_images_part_1")
    write_ham(root, [["L2", "B", "mel", "", "", "", ""]], name="HAM10000_metadata.csv", folder="HAM10000_images_part_2")
    # the second write_ham replaced the CSV: list both rows again
    with open(root / "HAM10000_metadata.csv", "a", newline="") as f:
        csv.writer(f).writerow(["L1", "A", "nv", "", "", "", ""])
    ds = read_dataset(root)
    assert sorted(r.image_id for r in ds.records) == ["A", "B"]


def test_missing_lesion_id_makes_its_own_lesion(tmp_path):
    ds = read_dataset(write_ham(tmp_path / "d", [["", "I1", "nv", "", "", "", ""], ["", "I2", "mel", "", "", "", ""]]))
    assert [r.lesion_id for r in ds.records] == ["I1", "I2"]


def test_missing_image_is_skipped_and_reported(tmp_path):
    root = write_ham(tmp_path / "d", [["L1", "I1", "nv", "", "", "", ""], ["L2", "I2", "mel", "", "", "", ""]])
    (root / "images" / "I2.jpg").unlink()
    ds = read_dataset(root)
    assert [r.image_id for r in ds.records] == ["I1"]
    assert ds.skipped[0][0] == "I2" and "not found" in ds.skipped[0][1]


def test_images_in_hidden_folders_are_not_read(tmp_path):
    """A hidden folder is unfinished work (an interrupted fetch's .NAME.partial extraction, maybe holding a
    half-written JPEG): its images are not the data set's."""
    root = write_ham(tmp_path / "d", [["L1", "I1", "nv", "", "", "", ""], ["L2", "I2", "mel", "", "", "", ""]])
    (root / ".images_part_2.partial").mkdir()
    (root / "images" / "I2.jpg").rename(root / ".images_part_2.partial" / "I2.jpg")
    (root / "images" / "I1.jpg").rename(root / "images" / ".I1.jpg")  # a hidden file is not an image either
    ds = read_dataset(root)
    assert ds.records == [] and sorted(i for i, _ in ds.skipped) == ["I1", "I2"]


@pytest.mark.parametrize("header,missing", [(["lesion_id", "image", "dx"], "image_id"), (["lesion_id", "image_id"], "dx")])
def test_missing_columns_are_refused(tmp_path, header, missing):
    root = tmp_path / "d"
    root.mkdir()
    (root / "metadata.csv").write_text(",".join(header) + "\n")
    with pytest.raises(BadInputError, match=missing):
        read_dataset(root)


def test_duplicate_image_ids_are_refused(tmp_path):
    rows = [["L1", "I1", "nv", "", "", "", ""], ["L2", "I1", "mel", "", "", "", ""]]
    with pytest.raises(BadInputError, match="duplicate image_id"):
        read_dataset(write_ham(tmp_path / "d", rows))


def test_class_folders_layout(tmp_path):
    for cls, n in (("nv", 3), ("mel", 2), ("bkl", 4)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / cls / f"{cls}{i}.png")
    ds = read_dataset(tmp_path)
    assert ds.layout == "folders" and ds.counts()["nv"] == 3 and ds.counts()["mel"] == 2
    assert ds.other_dx == {"bkl": 4}
    assert all(r.lesion_id == r.image_id for r in ds.records)
    assert {r.source for r in ds.records} == {tmp_path.name}


def test_not_a_dataset(tmp_path):
    with pytest.raises(BadInputError, match="not a melkit data set"):
        read_dataset(tmp_path)
    with pytest.raises(BadInputError, match="not found"):
        read_dataset(tmp_path / "nope")


# --- decoding odd files -------------------------------------------------------------------------

def test_grayscale_is_replicated(tmp_path):
    Image.fromarray(np.full((4, 5), 77, np.uint8), "L").save(tmp_path / "g.png")
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.shape == (4, 5, 3) and (rgb == 77).all()


def test_rgba_is_composited_over_black(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[..., 0] = 200
    a[..., 3] = [[255, 0], [128, 255]]
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    rgb = read_rgb(tmp_path / "a.png")
    assert rgb[0, 0, 0] == 200 and rgb[0, 1, 0] == 0 and 99 <= rgb[1, 0, 0] <= 101


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    rgb = read_rgb(tmp_path / "c.jpg")
    assert rgb.shape == (6, 6, 3) and rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535]] * 2, np.uint16)
    img = Image.new("I;16", (3, 2))
    img.frombytes(a.astype("<u2").tobytes())
    img.save(tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").mode.startswith("I")
    rgb = read_rgb(tmp_path / "s.png")
    assert rgb[0, :, 0].tolist() == [0, 128, 255]


def test_truncated_and_corrupt_files_raise(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "x.jpg").write_bytes(b"not an image at all")
    for name in ("t.jpg", "x.jpg", "missing.jpg"):
        with pytest.raises(UnreadableImage):
            read_rgb(tmp_path / name)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "o.jpg", exif=exif)
    assert read_rgb(tmp_path / "o.jpg").shape == (4, 2, 3)


def test_oversampling_balances_classes_and_class_weights_are_balanced():
    from melkit.data.pipeline import class_weights, make_dataset

    labels = np.array([0] * 90 + [1] * 10)
    images = np.zeros((100, 8, 8, 3), np.uint8)
    ds = make_dataset(images, labels, batch_size=100, training=True, oversample=True, seed=0)
    (x, y), = list(ds)
    assert x.shape == (100, 8, 8, 3) and 35 <= float(y.numpy().sum()) <= 65  # ~half melanoma, 10 % in the data
    w = class_weights(labels)
    assert w[0] * 90 == pytest.approx(w[1] * 10)  # each class weighs the same in the loss
