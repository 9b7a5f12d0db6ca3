"""``melkit data fetch`` under kill -9: the trickling stand-in Dataverse it downloads from, serving a HAM10000
and an ISIC 2018 test set, and the check of what a killed fetch leaves."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from _reliability_common import Command, Mixed, need

# One test double, two users: the fetch tests' stand-in Dataverse serves this check too, trickling and without
# faults. tests/ has no __init__.py; it imports as a namespace package from the repository root (on sys.path).
from tests.fake_dataverse import Dataverse, StoredFile, jpeg, zip_of

__all__ = ["Fetch", "fetch_server", "FETCH_IMAGES", "FETCH_IDS"]

# The stand-in Dataverse's answers trickle: SLOW_CHUNK bytes, then a pause of SLOW_EVERY_S, so that a fetch spends
# most of its time receiving (about 1 s per ~210-kB archive of FETCH_IMAGES 16x16 JPEGs) and random kills land there.
FETCH_IMAGES = 300
SLOW_CHUNK, SLOW_EVERY_S = 4096, 0.02
FETCH_IDS = {"ham10000": {3172585, 3172584, 4338392}, "isic2018-test": {3855824, 6924466}}  # the files each set takes


def fetch_server():
    """The stand-in Dataverse (tests/fake_dataverse.py), on 127.0.0.1 in a thread of this process, serving a
    HAM10000 and an ISIC 2018 test set of FETCH_IMAGES per archive (no faults on purpose: the kills are the
    faults), each answer trickling. Returns the server and, per set, {relative path: bytes} of the complete
    fetched folder (marker aside) and of the files downloaded on the way (archives in downloads/, tables beside
    the images)."""
    from melkit.data.sources import write_metadata_from_ground_truth

    def entry(name):  # a fixed date: the same archives, byte for byte, in every invocation
        info = zipfile.ZipInfo(name, date_time=(2018, 1, 1, 0, 0, 0))
        info.external_attr = (0o40755 << 16) | 0x10 if name.endswith("/") else 0o100644 << 16
        return info

    n = FETCH_IMAGES
    ham_ids = [f"ISIC_{24306 + i:07d}" for i in range(2 * n)]
    ham_images = {i: jpeg(k) for k, i in enumerate(ham_ids)}
    meta = ("lesion_id,image_id,dx,dx_type,age,sex,localization\n"
            + "".join(f"HAM_{k // 2:07d},{i},{('nv', 'mel', 'bkl')[k % 3]},histo,50.0,male,back\n"
                      for k, i in enumerate(ham_ids))).encode()
    part_1 = zip_of([(entry(f"{i}.jpg"), ham_images[i]) for i in ham_ids[:n]])
    part_2 = zip_of([(entry(f"{i}.jpg"), ham_images[i]) for i in ham_ids[n:]])
    test_ids = [f"ISIC_{34524 + i:07d}" for i in range(n)]
    test_images = {i: jpeg(100_000 + k) for k, i in enumerate(test_ids)}
    test_zip = zip_of([(entry("ISIC2018_Task3_Test_Images/"), b"")]
                      + [(entry(f"ISIC2018_Task3_Test_Images/{i}.jpg"), test_images[i]) for i in test_ids])
    gt = ("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n"
          + "".join(f"{i},{','.join('1.0' if c == k % 3 else '0.0' for c in (0, 1, 2, 3, 4, 5, 6))}\n"
                    for k, i in enumerate(test_ids))).encode()
    dv = Dataverse([
        StoredFile(3172585, "HAM10000_images_part_1.zip", part_1, redirect=True),
        StoredFile(3172584, "HAM10000_images_part_2.zip", part_2),
        StoredFile(4338392, "HAM10000_metadata.tab", meta, tab=meta.replace(b",", b"\t"),
                   original_name="HAM10000_metadata"),
        StoredFile(3855824, "ISIC2018_Task3_Test_Images.zip", test_zip),
        StoredFile(6924466, "ISIC2018_Task3_Test_GroundTruth.tab", gt, tab=gt.replace(b",", b"\t"),
                   original_name="ISIC2018_Task3_Test_GroundTruth.csv"),
    ], trickle_chunk=SLOW_CHUNK, trickle_every_s=SLOW_EVERY_S)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gt.csv").write_bytes(gt)
        write_metadata_from_ground_truth(Path(tmp) / "gt.csv", Path(tmp) / "metadata.csv")
        derived = (Path(tmp) / "metadata.csv").read_bytes()
    complete = {
        "ham10000": {"HAM10000_metadata.csv": meta,
                     **{f"HAM10000_images_part_{1 + (k >= n)}/{i}.jpg": ham_images[i] for k, i in enumerate(ham_ids)}},
        "isic2018-test": {"ISIC2018_Task3_Test_GroundTruth.csv": gt, "metadata.csv": derived,
                          **{f"ISIC2018_Task3_Test_Images/{i}.jpg": test_images[i] for i in test_ids}},
    }
    downloaded = {
        # tables wait in downloads/ until the images are extracted, then move beside them
        "ham10000": {"downloads/HAM10000_images_part_1.zip": part_1, "downloads/HAM10000_images_part_2.zip": part_2,
                     "downloads/HAM10000_metadata.csv": meta, "HAM10000_metadata.csv": meta},
        "isic2018-test": {"downloads/ISIC2018_Task3_Test_Images.zip": test_zip,
                          "downloads/ISIC2018_Task3_Test_GroundTruth.csv": gt,
                          "ISIC2018_Task3_Test_GroundTruth.csv": gt},
    }
    return dv, complete, downloaded


class Fetch(Command):
    """``melkit data fetch`` of both sets in turn from the trickling stand-in server. absent: no data set a reader
    would take (no metadata table melkit's readers look for) and no marker; what is there is what a resumed
    fetch builds on, each file checked: a ``.part`` a prefix of what the server serves, a download or extracted
    file under its final name byte for byte the served one, unfinished ``.NAME.partial`` extractions and temp
    files of atomic writes. new: every file of the set as served and extracted, byte for byte, with or without
    the marker (counted apart: ``complete, not yet marked``)."""

    name, tags, fresh_target, alternate, needs_base = "data fetch", ("ham10000", "isic2018-test"), True, True, False

    def __init__(self, work, base):
        super().__init__(work, base)
        self.server, self.complete, self.downloaded = fetch_server()
        self.current = self.tags[0]

    def outputs(self):
        return [self.work / "set"]

    def next_tag(self, published):
        # Leftovers of a set (a failed run's) are that set's to finish: another set's check would call them mixed.
        return self.current if self.resumable() else super().next_tag(published)

    def resumable(self):
        return self.outputs()[0].exists()

    def argv(self, tag, resume=False):
        self.current = tag  # the check judges leftovers by the set being fetched
        return ["data", "fetch", tag, "--to", self.outputs()[0], "--base-url", self.server.url]

    def check(self):
        from melkit.data.fetch.extract import read_marker
        from melkit.data.readers import find_metadata
        from melkit.util.files import is_temp

        root, name = self.outputs()[0], self.current
        if not root.exists():
            return None
        complete, downloaded = self.complete[name], self.downloaded[name]
        marker_name = f".melkit-fetch-{name}.json"
        leftovers, unfinished, torn = set(), [], []
        for p in sorted(root.rglob("*")):
            if not p.is_file():
                continue
            parts = p.relative_to(root).parts
            rel = "/".join(parts)
            data = p.read_bytes()
            if rel in complete or rel in downloaded:
                need(data == complete.get(rel, downloaded.get(rel)), f"{rel}: not the bytes served")
            elif rel.endswith(".part") and rel[:-5] in downloaded:
                need(downloaded[rel[:-5]].startswith(data), f"{rel}: not a prefix of what the server sends")
            elif len(parts) > 1 and parts[0].startswith(".") and parts[0].endswith(".partial"):
                leftovers.add("an unfinished extraction left")  # the next extraction of that archive removes it
                unfinished.append(rel)
                if data != complete.get("/".join((parts[0][1:-len(".partial")],) + parts[1:])):
                    torn.append(rel)  # the member being written when the kill came
            elif rel == marker_name:
                pass
            elif is_temp(p.name):
                leftovers.add("a temp file of an atomic write left")
            else:
                raise Mixed(f"{rel}: a file no fetch of {name} writes")
        self.notes.update(leftovers)
        missing = sorted(rel for rel in complete if not (root / rel).is_file())
        marker = read_marker(root, name)
        if marker is not None:
            need(not missing, f"marked complete without {len(missing)} file(s), e.g. {missing[0]}" if missing else "")
            need({f["id"] for f in marker["files"]} == FETCH_IDS[name], "the marker lists other files")
        elif find_metadata(root) is not None:
            if missing:
                raise Mixed(f"{find_metadata(root).name} published without a marker, beside "
                            f"{sum(rel.endswith('.jpg') for rel in complete if rel not in missing)} of "
                            f"{sum(rel.endswith('.jpg') for rel in complete)} images (missing e.g. {missing[0]}) and "
                            f"{len(unfinished)} in an unfinished extraction ({len(torn)} torn"
                            f"{': ' + ', '.join(torn) if torn else ''}); "
                            + reader_view(root))
            self.notes["complete, not yet marked"] += 1
        else:
            return None
        if (root / "downloads").exists():
            self.notes["complete, verified archives still in downloads/"] += 1
        return name


def reader_view(root: Path) -> str:
    """What ``melkit train --data root`` would read there."""
    from melkit.data.readers import read_dataset
    from melkit.util.errors import BadInputError

    try:
        ds = read_dataset(root)
    except BadInputError as e:
        return f"melkit's reader refuses it ({e})"
    hidden = sum(any(part.startswith(".") for part in Path(r.path).relative_to(root).parts) for r in ds.records)
    return (f"melkit's reader takes it for a set of {len(ds.records)} nv/mel images, {hidden} of them in hidden "
            f"folders, {len(ds.skipped)} listed images not found")
