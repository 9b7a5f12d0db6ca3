"""``melkit data fetch`` against the stand-in for the Dataverse API in fake_dataverse.py, on 127.0.0.1, started
here; never the internet.

The stand-in answers like the real record: a file list with ids, sizes and MD5s (native API), files by id
(access API), an ingested table served as ``.tab`` unless ``format=original`` is asked for, a redirect to
storage, HTTP range requests, a connection dropped mid-file, a transient 503. It also misbehaves on
request: a server that drips a byte now and then, one that never answers, one that keeps answering 503, and
one that answers garbage (control characters in the status line or the reason phrase). The archives are
built here from a few tiny JPEGs.
"""

from __future__ import annotations

import json
import re
import socket
import time
import zipfile

import pytest
from click.testing import CliRunner
from fake_dataverse import Dataverse, StoredFile, jpeg, zip_of

from melkit.cli import main
from melkit.data.fetch import dataverse as fetch_dataverse
from melkit.data.fetch import http as fetch_http
from melkit.data.fetch.extract import Limits, safe_extract
from melkit.data.readers import read_dataset
from melkit.util.errors import BadInputError


def symlink_entry(name: str, target: str):
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16  # S_IFLNK: unzip would create a link pointing at target
    return info, target.encode()


# (lesion_id, image_id, dx): two images of one nevus, two melanomas, one bkl (counted, not used), one more nevus
ROWS = [("HAM_0000001", "ISIC_0024306", "nv"), ("HAM_0000001", "ISIC_0024307", "nv"),
        ("HAM_0000002", "ISIC_0024308", "mel"), ("HAM_0000003", "ISIC_0024309", "mel"),
        ("HAM_0000004", "ISIC_0024310", "bkl"), ("HAM_0000005", "ISIC_0024311", "nv")]
IMAGES = {image_id: jpeg(i) for i, (_, image_id, _) in enumerate(ROWS)}
METADATA_CSV = ("lesion_id,image_id,dx,dx_type,age,sex,localization\n"
                + "".join(f"{les},{img},{dx},histo,50.0,male,back\n" for les, img, dx in ROWS)).encode()
METADATA_TAB = METADATA_CSV.replace(b",", b"\t")  # what Dataverse serves without format=original
PART_1 = zip_of([(f"{i}.jpg", IMAGES[i]) for _, i, _ in ROWS[:3]])
PART_2 = zip_of([(f"{i}.jpg", IMAGES[i]) for _, i, _ in ROWS[3:]])

TEST_IDS = ["ISIC_0034524", "ISIC_0034525", "ISIC_0034526"]
TEST_IMAGES = zip_of([("ISIC2018_Task3_Test_Images/", b"")]
                     + [(f"ISIC2018_Task3_Test_Images/{i}.jpg", jpeg(100 + n)) for n, i in enumerate(TEST_IDS)])
GT_ONE_HOT = ("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n"
              f"{TEST_IDS[0]},1.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
              f"{TEST_IDS[1]},0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
              f"{TEST_IDS[2]},0.0,0.0,0.0,0.0,0.0,1.0,0.0\n").encode()
GT_HAM = ("lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n"
          f"HAMT_1,{TEST_IDS[0]},mel,histo,60,male,back,vidir\n"
          f"HAMT_2,{TEST_IDS[1]},nv,histo,30,female,trunk,vidir\n"
          f"HAMT_3,{TEST_IDS[2]},df,histo,40,female,leg,vidir\n").encode()


def ham_files(part_2=PART_2, part_2_md5=None):
    return [
        StoredFile(3172585, "HAM10000_images_part_1.zip", PART_1, redirect=True, truncate_once=True),
        StoredFile(3172584, "HAM10000_images_part_2.zip", part_2, md5=part_2_md5),
        # The real record lists the ingested table as .tab; its original may have no extension.
        StoredFile(4338392, "HAM10000_metadata.tab", METADATA_CSV, tab=METADATA_TAB, original_name="HAM10000_metadata"),
        StoredFile(3838943, "HAM10000_segmentations_lesion_tschandl.zip", zip_of([("x.png", b"not wanted")])),
    ]


def isic_files(gt=GT_ONE_HOT):
    return [
        StoredFile(3855824, "ISIC2018_Task3_Test_Images.zip", TEST_IMAGES),
        StoredFile(6924466, "ISIC2018_Task3_Test_GroundTruth.tab", gt, tab=gt.replace(b",", b"\t"),
                   original_name="ISIC2018_Task3_Test_GroundTruth.csv", fail_once=503),
    ]


@pytest.fixture
def dataverse():
    started = []

    def start(files, **kwargs):
        started.append(Dataverse(files, **kwargs))
        return started[-1]

    yield start
    for dv in started:
        dv.close()


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch):
    monkeypatch.setattr(fetch_http, "BACKOFF_S", 0.0)
    monkeypatch.delenv(fetch_dataverse.BASE_URL_ENV, raising=False)


def run(*args, env=None):
    return CliRunner().invoke(main, ["data", "fetch", *[str(a) for a in args]], env=env, catch_exceptions=False)


def test_fetch_ham10000_into_the_layout_train_reads(dataverse, tmp_path):
    dv = dataverse(ham_files())
    out = tmp_path / "ham"
    r = run("ham10000", "--to", out, "--base-url", dv.url)
    assert r.exit_code == 0, r.output
    assert "CC BY-NC 4.0" in r.output and "doi:10.1038/sdata.2018.161" in r.output and "Tschandl" in r.output
    # The original CSV was asked for and kept under the name the readers look for, not the .tab rendering.
    assert (out / "HAM10000_metadata.csv").read_bytes() == METADATA_CSV
    assert [e[1] for e in dv.requests_for(4338392)] == ["format=original"]
    for _, image_id, _ in ROWS[:3]:
        assert (out / "HAM10000_images_part_1" / f"{image_id}.jpg").read_bytes() == IMAGES[image_id]
    for _, image_id, _ in ROWS[3:]:
        assert (out / "HAM10000_images_part_2" / f"{image_id}.jpg").read_bytes() == IMAGES[image_id]
    assert dv.requests_for(3838943) == []  # the segmentations are not part of the set
    assert not (out / "downloads").exists()  # archives removed after extraction by default
    marker = json.loads((out / ".melkit-fetch-ham10000.json").read_text())
    assert marker["complete"] is True and {f["id"] for f in marker["files"]} == {3172585, 3172584, 4338392}
    ds = read_dataset(out)
    assert sorted(r.image_id for r in ds.records) == sorted(i for _, i, dx in ROWS if dx in ("nv", "mel"))
    assert ds.other_dx == {"bkl": 1} and ds.skipped == []
    assert {r.image_id: r.lesion_id for r in ds.records}["ISIC_0024307"] == "HAM_0000001"


def test_a_dropped_download_resumes_with_a_range_through_a_fresh_redirect(dataverse, tmp_path):
    dv = dataverse(ham_files())
    r = run("ham10000", "--to", tmp_path / "ham", "--base-url", dv.url, "--keep-archives")
    assert r.exit_code == 0, r.output
    hits = dv.requests_for(3172585)
    access = [h for h in hits if h[0].startswith("/api/access/")]
    storage = [h for h in hits if h[0].startswith("/storage/")]
    # Two tries, each starting at the access URL (the storage link is re-resolved), the second a range request.
    assert len(access) == 2 and len(storage) == 2
    assert storage[0][2] is None
    assert access[1][2] == storage[1][2] and re.fullmatch(r"bytes=\d+-", storage[1][2])
    assert int(storage[1][2][6:-1]) == len(PART_1) // 2
    assert (tmp_path / "ham" / "downloads" / "HAM10000_images_part_1.zip").read_bytes() == PART_1


def test_a_dropped_download_of_unlisted_size_is_caught_by_its_content_length(dataverse, tmp_path):
    files = ham_files()
    files[2].size_listed, files[2].truncate_once = False, True  # the metadata table
    dv = dataverse(files)
    r = run("ham10000", "--to", tmp_path / "ham", "--base-url", dv.url)
    assert r.exit_code == 0, r.output
    assert [e[2] for e in dv.requests_for(4338392)] == [None, f"bytes={len(METADATA_CSV) // 2}-"]
    assert (tmp_path / "ham" / "HAM10000_metadata.csv").read_bytes() == METADATA_CSV


def test_rerun_on_a_complete_set_does_nothing(dataverse, tmp_path):
    dv = dataverse(ham_files())
    out = tmp_path / "ham"
    assert run("ham10000", "--to", out, "--base-url", dv.url).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    n_requests = len(dv.log)
    dv.close()  # any request now would fail
    r = run("ham10000", "--to", out, "--base-url", dv.url)
    assert r.exit_code == 0, r.output
    assert "nothing to do" in r.output and "CC BY-NC 4.0" in r.output
    assert len(dv.log) == n_requests
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_checksum_mismatch_deletes_the_file_and_a_rerun_recovers(dataverse, tmp_path):
    out = tmp_path / "ham"
    dv = dataverse(ham_files(part_2_md5="0" * 32))
    r = run("ham10000", "--to", out, "--base-url", dv.url)
    assert r.exit_code == 2, r.output
    assert "HAM10000_images_part_2.zip: checksum mismatch" in r.output and "deleted" in r.output
    assert not (out / "downloads" / "HAM10000_images_part_2.zip").exists()
    assert not (out / "downloads" / "HAM10000_images_part_2.zip.part").exists()
    assert not (out / ".melkit-fetch-ham10000.json").exists()
    # The record is fixed: part 1, verified last time, is not downloaded again.
    dv2 = dataverse(ham_files())
    r = run("ham10000", "--to", out, "--base-url", dv2.url)
    assert r.exit_code == 0, r.output
    assert "HAM10000_images_part_1.zip: already downloaded and verified" in r.output
    assert dv2.requests_for(3172585) == [] and len(dv2.requests_for(3172584)) == 1
    assert len(read_dataset(out).records) == 5


@pytest.mark.parametrize("entry,reason", [
    (("../evil.jpg", b"escaped"), "path traversal"),
    (("HAM10000_images/../../evil.jpg", b"escaped"), "path traversal"),
    (("/tmp/evil.jpg", b"escaped"), "absolute path"),
    (symlink_entry("evil.jpg", "../../../../etc/passwd"), "symbolic link"),
])
def test_a_malicious_archive_is_refused_and_nothing_is_written(dataverse, tmp_path, entry, reason):
    bad = zip_of([("ISIC_0024309.jpg", IMAGES["ISIC_0024309"]), entry])
    dv = dataverse(ham_files(part_2=bad))
    out = tmp_path / "a" / "ham"
    r = run("ham10000", "--to", out, "--base-url", dv.url)
    assert r.exit_code == 2, r.output
    assert "HAM10000_images_part_2.zip: refusing to extract" in r.output and reason in r.output
    assert not list(tmp_path.rglob("evil.jpg"))
    assert not (out / "HAM10000_images_part_2").exists() and not list(out.glob(".*.partial"))
    assert not (out / ".melkit-fetch-ham10000.json").exists()


def test_zip_bombs_are_refused_by_ratio_and_by_total_size(tmp_path):
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_of([("zeros.bin", bytes(4 << 20))]))  # 4 MiB of zeros squeeze ~1000x
    with pytest.raises(BadInputError, match="expands .*x .*zip bomb"):
        safe_extract(bomb, tmp_path / "out")
    big = tmp_path / "big.zip"
    big.write_bytes(zip_of([(f"{i}.jpg", jpeg(i)) for i in range(3)]))
    with pytest.raises(BadInputError, match="more than the limit"):
        safe_extract(big, tmp_path / "out", Limits(max_total_bytes=1000))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.partial"))
    assert safe_extract(big, tmp_path / "out") == 3


def test_no_network_says_so_and_exits_2(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ham"
    r = run("ham10000", "--to", out, "--base-url", f"http://127.0.0.1:{port}", "--retries", "1")
    assert r.exit_code == 2
    assert f"cannot reach 127.0.0.1:{port}" in r.output and "after 2 tries" in r.output
    assert "network" in r.output and "Traceback" not in r.output
    assert not out.exists()


@pytest.mark.parametrize("gt", [GT_ONE_HOT, GT_HAM], ids=["isic-one-hot", "ham-columns"])
def test_isic2018_test_set_from_the_env_var_base_url(dataverse, tmp_path, gt):
    dv = dataverse(ham_files() + isic_files(gt))
    out = tmp_path / "isic"
    r = run("isic2018-test", "--to", out, env={fetch_dataverse.BASE_URL_ENV: dv.url})
    assert r.exit_code == 0, r.output
    assert (out / "ISIC2018_Task3_Test_GroundTruth.csv").read_bytes() == gt
    # The archive's own top folder is not nested twice.
    assert (out / "ISIC2018_Task3_Test_Images" / f"{TEST_IDS[0]}.jpg").is_file()
    assert len(dv.requests_for(6924466)) == 2  # a 503 first, then a retry, announced on a line of its own
    assert re.search(r"^downloading ISIC2018_Task3_Test_GroundTruth.csv from \S+/api/access/datafile/6924466\?"
                     r"format=original: HTTP 503 .*; retry 1 of 5 in 0 s$", r.stdout, re.M), r.stdout
    assert dv.requests_for(3172585) == []  # nothing of HAM10000's training set
    ds = read_dataset(out)
    assert {r.image_id: r.label for r in ds.records} == {TEST_IDS[0]: 1, TEST_IDS[1]: 0}
    assert ds.other_dx == {"df": 1} and ds.skipped == []


def test_a_record_without_a_needed_file_names_it(dataverse, tmp_path):
    dv = dataverse([f for f in ham_files() if f.id != 3172584])
    r = run("ham10000", "--to", tmp_path / "ham", "--base-url", dv.url)
    assert r.exit_code == 2 and "lacks HAM10000_images_part_2.zip" in r.output
    assert "HAM10000_images_part_1.zip" in r.output  # what it does list


def test_one_directory_holds_one_set(dataverse, tmp_path):
    dv = dataverse(ham_files() + isic_files())
    out = tmp_path / "data"
    assert run("ham10000", "--to", out, "--base-url", dv.url).exit_code == 0
    r = run("isic2018-test", "--to", out, "--base-url", dv.url)
    assert r.exit_code == 2 and "already holds the data set ham10000" in r.output
    assert not (out / "metadata.csv").exists()


def test_unknown_set_and_bad_base_url_exit_2(tmp_path):
    r = run("ham20000", "--to", tmp_path / "x")
    assert r.exit_code == 2 and "unknown data set 'ham20000'" in r.output and "isic2018-test" in r.output
    r = run("ham10000", "--to", tmp_path / "x", "--base-url", "ftp://example")
    assert r.exit_code == 2 and "http:// or https://" in r.output


def error_line(r) -> str:
    """The one error line; nothing of the message spills onto another."""
    lines = [line for line in r.output.split("\n") if "melkit: error:" in line]
    assert len(lines) == 1, r.output
    assert r.stderr.split("\n")[-1] == "" and r.stderr.split("\n")[-2] == lines[0], r.stderr
    return lines[0]


def timed_run(*args, env=None):
    t = time.monotonic()
    r = run(*args, env=env)
    return r, time.monotonic() - t


def test_a_dripping_download_stalls_and_a_rerun_resumes_the_partial(dataverse, tmp_path):
    files = ham_files()
    files[1].drip_s = 0.5  # part 2: the headers at once, then a byte every half second
    dv = dataverse(files)
    out = tmp_path / "ham"
    # (--deadline only so that a fetch blind to the stall fails this test instead of hanging it)
    r, took = timed_run("ham10000", "--to", out, "--base-url", dv.url, "--stall-timeout", 1.5, "--retries", 1,
                        "--deadline", 12)
    assert r.exit_code == 2, r.output
    assert took < 2 * 1.5 + 2, took  # two tries, each cut off at the stall timeout
    url = f"{dv.url}/api/access/datafile/3172584"
    # Each failed try is announced with its reason and the wait; the error says which URL, what happened.
    assert re.search(rf"^downloading HAM10000_images_part_2.zip from {url}: stalled: [1-3] bytes in 1.5 s "
                     rf"\(--stall-timeout\); retry 1 of 1 in 0 s$", r.stdout, re.M), r.output
    line = error_line(r)
    assert f"downloading HAM10000_images_part_2.zip from {url} failed after 2 tries: stalled:" in line
    # What arrived is kept by design, as a prefix of the file, under .part: a rerun resumes from it.
    part = out / "downloads" / "HAM10000_images_part_2.zip.part"
    have = part.stat().st_size
    assert 2 <= have <= 6 and PART_2.startswith(part.read_bytes())
    assert not (out / "downloads" / "HAM10000_images_part_2.zip").exists()
    assert not (out / ".melkit-fetch-ham10000.json").exists()
    dv2 = dataverse(ham_files())
    r = run("ham10000", "--to", out, "--base-url", dv2.url, "--keep-archives")
    assert r.exit_code == 0, r.output
    assert [e[2] for e in dv2.requests_for(3172584)] == [f"bytes={have}-"]
    assert (out / "downloads" / "HAM10000_images_part_2.zip").read_bytes() == PART_2 and not part.exists()
    assert len(read_dataset(out).records) == 5


def test_the_deadline_ends_a_download_that_never_stalls_outright(dataverse, tmp_path):
    files = ham_files()
    files[1].drip_s = 0.5
    dv = dataverse(files)
    out = tmp_path / "ham"
    r, took = timed_run("ham10000", "--to", out, "--base-url", dv.url, "--stall-timeout", 60, "--deadline", 2)
    assert r.exit_code == 2, r.output
    assert 2 <= took < 4, took
    line = error_line(r)
    assert (f"downloading HAM10000_images_part_2.zip from {dv.url}/api/access/datafile/3172584: gave up, "
            f"the deadline of 2 s for the whole fetch (--deadline) passed") in line
    assert "resume" in line and "Traceback" not in r.output
    assert (out / "downloads" / "HAM10000_images_part_2.zip.part").stat().st_size >= 1


def test_retries_announce_their_waits_and_stop_at_the_deadline(dataverse, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_http, "BACKOFF_S", 0.4)  # waits of 0.4, 0.8, 1.6 s: the third would pass the deadline
    files = ham_files()
    files[2].fail_always = 503  # the metadata table
    dv = dataverse(files)
    r, took = timed_run("ham10000", "--to", tmp_path / "ham", "--base-url", dv.url, "--retries", 100,
                        "--deadline", 2)
    assert r.exit_code == 2, r.output
    assert took < 2, took  # it gives up when the next wait would pass the deadline, not after sleeping it
    retries = re.findall(r"^downloading HAM10000_metadata.csv from \S+: HTTP 503 .*; retry (\d) of 100 in (\S+) s$",
                         r.stdout, re.M)
    assert retries == [("1", "0.4"), ("2", "0.8")], r.stdout
    line = error_line(r)
    assert "the deadline of 2 s for the whole fetch (--deadline) passed (before retry 3 of 100, after: HTTP 503" in line
    assert len(dv.requests_for(4338392)) == 3


def test_a_server_that_never_answers_is_cut_off_at_the_stall_timeout(dataverse, tmp_path):
    dv = dataverse(ham_files(), listing="silent")
    out = tmp_path / "ham"
    r, took = timed_run("ham10000", "--to", out, "--base-url", dv.url, "--stall-timeout", 1, "--retries", 1,
                        "--deadline", 12)
    assert r.exit_code == 2, r.output
    assert took < 2 * 1 + 2, took
    assert re.search(r"^listing the files of \S+ at \S+: stalled: 0 bytes in 1 s \(--stall-timeout\); "
                     r"retry 1 of 1 in 0 s$", r.stdout, re.M), r.output
    assert "failed after 2 tries: stalled: 0 bytes in 1 s" in error_line(r)
    assert not out.exists()


@pytest.mark.parametrize("garbage", ["status", "reason"])
def test_garbage_from_the_server_is_quoted_printable_and_short(dataverse, tmp_path, garbage):
    files = ham_files()
    files[1].garbage = garbage
    dv = dataverse(files)
    r = run("ham10000", "--to", tmp_path / "ham", "--base-url", dv.url, "--retries", 1, env={"MELKIT_QUIET": "1"})
    assert r.exit_code == 2, r.output
    assert all(c.isprintable() for c in r.output.replace("\n", "")), repr(r.output)
    line = error_line(r)
    assert "EVIL" in line and "more characters]" in line  # what is printable of it is kept, up to a point
    assert "x" * (fetch_http.SERVER_TEXT + 1) not in r.output and len(line) < 600
    if garbage == "status":
        assert "sent no valid HTTP answer (BadStatusLine: ?[2J?" in line and "retry 1 of 1" in r.stdout
    else:
        assert "HTTP 404 ?[2J?" in line and "for HAM10000_images_part_2.zip" in line


def test_printable_replaces_control_characters_and_truncates():
    assert fetch_http.printable("a\x1b[31mb\r\n\tc\x00") == "a?[31mb c?"
    long = fetch_http.printable("\x07" + "y" * 1000)
    assert long == "?" + "y" * 199 + "... [801 more characters]"
