"""A full or read-only disk, a failed step or a kill -9, per command: exit 2 (1 for a quality gate) with one line
that names the problem, no staging folder, partial file or temp file left behind, the previous output as it
was, and a rerun of the same command that works.

Faults are injected, not provoked (the tests run as root, whom chmod does not stop): ``Disk`` stands in for the
``os`` module inside melkit.util.files, where every atomic write and every lock of melkit goes through, and
raises ENOSPC or EROFS for the paths a test names, at the moment the write would be published (the temp file
exists then, so its removal is checked too) or the lock file created (the first write of every command).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

import melkit.demo as demo
from melkit.bench.bench import BenchResult
from melkit.bench.predict import PredictResult
from melkit.cli import main
from melkit.convert.converter import ConvertResult
from melkit.release.bundle import BundleResult
from melkit.train.trainer import TrainResult
from melkit.util import files
from melkit.util.errors import QualityGateError
from melkit.util.files import atomic_writer, is_temp, sweep_temps

# A one-epoch-per-stage run at 32 px; a fixed threshold, as a model this small may not separate the classes yet.
TINY = ["--weights", "none", "--alpha", "0.35", "--image-size", "32", "--epochs", "1,1", "--batch-size", "16",
        "--threshold-policy", "fixed:0.5"]
RELEASE = REPO / "tflite_models" / "previous-1.1.0"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


class Disk:
    """The ``os`` module as melkit.util.files sees it, with a disk that fails: ``replace`` (an atomic write's
    publication, a staged folder's swap) and ``open`` (a lock file) raise ``OSError(err)`` for a path
    ``at(path)`` accepts; everything else is the real os."""

    def __init__(self, err: int, at):
        self.err, self.at, self.hits = err, at, []

    def __getattr__(self, name):
        return getattr(os, name)

    def _check(self, path):
        if self.at(Path(path)):
            self.hits.append(Path(path))
            raise OSError(self.err, os.strerror(self.err), str(path))

    def replace(self, src, dst, **kw):
        self._check(dst)
        return os.replace(src, dst, **kw)

    def open(self, path, flags, mode=0o777, **kw):
        self._check(path)
        return os.open(path, flags, mode, **kw)


def failing_disk(monkeypatch, err, at) -> Disk:
    disk = Disk(err, at)
    monkeypatch.setattr(files, "os", disk)
    return disk


def one_error(result, *words) -> str:
    """The single ``melkit: error:`` line of ``result`` (no traceback), checked to hold each of ``words``."""
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("melkit: error:")]
    assert len(errors) == 1, result.output
    for w in words:
        assert str(w) in errors[0], (w, errors[0])
    return errors[0]


def leftovers(folder: Path) -> list:
    """What a failed or killed writer may leave anywhere under ``folder``: temp files, staging folders,
    journals, lock files, old copies."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if is_temp(p.name) or p.name.endswith((".partial", ".swap", ".lock", ".old", ".tmp.keras")))


# --------------------------------------------------------------------------- data synth


def test_data_synth_on_a_full_disk_leaves_nothing_and_reruns(tmp_path, monkeypatch):
    out = tmp_path / "synth"
    real_write = Path.write_bytes
    written = []

    def fill_up(self, data):  # the disk fills at the third image
        if out.name + ".partial" in self.parts and len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        written.append(self)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", fill_up)
    r = run("data", "synth", out, "--lesions", "4")
    assert r.exit_code == 2
    one_error(r, "No space left on device", "synth.partial")
    assert sorted(tmp_path.iterdir()) == []  # no folder, no staging, no lock file

    monkeypatch.setattr(Path, "write_bytes", real_write)
    r = run("data", "synth", out, "--lesions", "4")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"] and (out / "metadata.csv").is_file()


@pytest.mark.parametrize("where", ["lock", "staging"])
def test_data_synth_on_a_read_only_disk_is_one_line(tmp_path, monkeypatch, where):
    out = tmp_path / "synth"
    if where == "lock":  # the first thing a writer creates beside its output
        failing_disk(monkeypatch, errno.EROFS, lambda p: p.name == "synth.lock")
    else:
        real_mkdir = Path.mkdir

        def read_only(self, *a, **k):
            if "synth.partial" in self.parts:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", read_only)
    r = run("data", "synth", out, "--lesions", "4")
    assert r.exit_code == 2
    one_error(r, "Read-only file system", "synth")
    assert sorted(tmp_path.iterdir()) == []


def test_data_synth_killed_9_leaves_what_the_next_run_removes(tmp_path):
    """A real kill -9 in the middle of writing images: the staging folder and the lock file stay (nothing can
    run on SIGKILL); the next run of the command, holding the lock, removes them and writes the set."""
    out = tmp_path / "synth"
    child = subprocess.Popen([sys.executable, "-m", "melkit.cli", "data", "synth", str(out), "--lesions", "400"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    images = tmp_path / "synth.partial" / "images"
    try:
        for _ in range(600):  # until it is writing images (at most a minute)
            if images.is_dir() and len(list(images.iterdir())) >= 3:
                break
            if child.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (tmp_path / "synth.partial").is_dir() and not out.exists()

    r = run("data", "synth", out, "--lesions", "4")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- train


def test_train_on_a_full_disk_at_the_first_write_leaves_nothing(synth_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    disk = failing_disk(monkeypatch, errno.ENOSPC, lambda p: p.parent.name == "run.partial")
    r = run("train", "--data", synth_dir, "--out", out, *TINY)
    assert r.exit_code == 2, r.output
    one_error(r, "No space left on device", "run.partial")
    assert disk.hits  # the fault was hit, at the first file of the run, before any training
    assert sorted(tmp_path.iterdir()) == []  # no run, no run.partial asking for --resume, no lock, no temp file


def test_train_on_a_full_disk_while_publishing_keeps_a_resumable_run(synth_dir, tmp_path, monkeypatch):
    """After the stages ran, the disk fills while the run's last files are written: the trained stages are
    kept in run.partial (every file in it whole), and --resume finishes the run without training again,
    removing the temp file a killed writer had left there."""
    out = tmp_path / "run"
    failing_disk(monkeypatch, errno.ENOSPC, lambda p: p == tmp_path / "run.partial" / "metrics.json")
    r = run("train", "--data", synth_dir, "--out", out, *TINY)
    assert r.exit_code == 2, r.output
    one_error(r, "No space left on device", "metrics.json")
    partial = tmp_path / "run.partial"
    assert not out.exists() and (partial / "checkpoints" / "state.json").is_file()
    assert (partial / "model.keras").is_file() and not (partial / "metrics.json").exists()
    assert leftovers(tmp_path) == ["run.partial"]  # no temp file, no lock file

    monkeypatch.setattr(files, "os", os)
    r = run("train", "--data", synth_dir, "--out", out, *TINY)
    assert r.exit_code == 2 and "continue it with --resume" in one_error(r)
    stale = partial / ".metrics.json.k1ll3d_9.tmp"  # as a kill -9 in the middle of writing it leaves
    stale.write_text('{"torn')
    r = run("train", "--data", synth_dir, "--out", out, *TINY, "--resume")
    assert r.exit_code == 0, r.output
    assert "done before, weights restored" in r.output
    assert json.loads((out / "metrics.json").read_text())["threshold_chosen_on"] == "val"
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --------------------------------------------------------------------------- demo (its steps stubbed: what is
# tested here is the demo's own staging; test_cli.test_demo_small runs the real steps)


def fake_steps(monkeypatch, fail_at: str | None = None, err=None):
    """Stand-ins for train/convert/bench/predict/bundle that write a few files where the real ones would (the
    run's config.json records its data directory, bench's report.json its model paths, as the real ones
    do); ``fail_at`` names the step that raises ``err`` after writing part of its output."""
    def maybe_fail(step, folder):
        if step == fail_at:
            (folder / "half-written.bin").write_bytes(b"\0" * 10)
            raise err

    def train(opts, echo=print):
        run_dir = Path(opts.out)
        run_dir.mkdir()
        maybe_fail("train", run_dir)
        (data,) = opts.data
        ids = [r["image_id"] for r in csv.DictReader(open(Path(data) / "metadata.csv"))]
        (run_dir / "split.csv").write_text("image_id,split\n" + "".join(f"{i},test\n" for i in ids))
        (run_dir / "config.json").write_text(json.dumps({"data": {"dir": os.path.relpath(data, run_dir)}}))
        return TrainResult(run_dir, {"threshold": 0.5}, None)

    def run_convert(run_dir, opts, echo=print):
        out = Path(opts.out)
        out.mkdir()
        models = {v: out / f"m_{v}.tflite" for v in ("float32", "int8")}
        for p in models.values():
            p.write_bytes(b"TFL3")
        maybe_fail("convert", out)
        return ConvertResult([], list(models.values()), "convert table", "", models)

    def run_bench(opts, echo=print):
        out = Path(opts.out)
        out.mkdir()
        (out / "report.md").write_text("# bench\n")
        maybe_fail("bench", out)
        (out / "report.json").write_text(json.dumps({"models": [{"path": os.path.relpath(m, out)} for m in opts.models]}))
        return BenchResult({"gates": {"failures": []}}, out, "bench table", [out / "report.md"])

    def app_copy(staged):
        app = staged / "android_demo"
        app.mkdir()
        return app

    def bundle(model, app):
        (app / "model.tflite").write_bytes(Path(model).read_bytes())
        maybe_fail("bundle", app)
        return BundleResult(assets=app, model=app / "model.tflite", golden=app, images=0, card=None)

    for name, fake in [("run_train", train), ("run_convert", run_convert), ("run_bench", run_bench),
                       ("_app_copy", app_copy), ("run_bundle", bundle)]:
        monkeypatch.setattr(demo, name, fake)
    monkeypatch.setattr(demo, "print_train_summary", lambda result, echo: echo(f"run: {result.out_dir}"))
    monkeypatch.setattr(demo, "run_predict", lambda model, images: PredictResult(
        model=str(model), kind="tflite", variant="int8", threshold=0.5, image_size=224,
        predictions=[{"image": str(i)} for i in images]))
    monkeypatch.setattr(demo, "text", lambda result: "P(mel) 0.5")


DEMO = ["--lesions", "12", "--weights", "none"]


@pytest.mark.parametrize("step,err,code,words", [
    ("convert", QualityGateError("int8 self-check failed"), 1, ["int8 self-check failed"]),
    ("bench", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "bench/report.json"), 2, ["No space left"]),
    ("bundle", OSError(errno.EROFS, os.strerror(errno.EROFS), "android_demo/model.tflite"), 2, ["Read-only"]),
])
def test_a_demo_step_that_fails_leaves_no_output_and_the_rerun_works(tmp_path, monkeypatch, step, err, code,
                                                                     words):
    out = tmp_path / "demo"
    out.mkdir()  # an empty folder the user made: stays as it was
    fake_steps(monkeypatch, fail_at=step, err=err)
    r = run("demo", "--out", out, *DEMO)
    assert r.exit_code == code, r.output
    one_error(r, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and list(out.iterdir()) == []

    fake_steps(monkeypatch)
    r = run("demo", "--out", out, *DEMO)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and leftovers(tmp_path) == []
    assert sorted(p.name for p in out.iterdir()) == ["android_demo", "bench", "data", "run", "tflite"]
    # What the steps recorded, relative to its own folder, names the published files as it is: nothing rewritten.
    assert json.loads((out / "run" / "config.json").read_text())["data"]["dir"] == "../data"
    paths = [m["path"] for m in json.loads((out / "bench" / "report.json").read_text())["models"]]
    assert paths == ["../run", "../tflite/m_float32.tflite", "../tflite/m_int8.tflite"]
    assert all((out / "bench" / p).exists() for p in paths)
    assert f"run: {out / 'run'}" in r.output and "demo.partial" not in r.output


def test_a_demo_returns_its_results_under_the_published_folder(tmp_path, monkeypatch):
    fake_steps(monkeypatch)
    out = tmp_path / "demo"
    said = []
    result = demo.run_demo(demo.DemoOptions(out=str(out), lesions=12), echo=said.append)
    assert isinstance(result, demo.DemoResult)
    assert result.train.out_dir == out / "run" and result.bench.out_dir == out / "bench"
    assert result.convert.models == {v: out / "tflite" / f"m_{v}.tflite" for v in ("float32", "int8")}
    assert result.artifacts == {"data": out / "data", "run": out / "run", "tflite": out / "tflite",
                                "bench": out / "bench" / "report.md", "android_demo": out / "android_demo"}
    assert all(p.exists() for p in result.artifacts.values())
    assert not [line for line in said if "demo.partial" in str(line)]


def test_a_demo_whose_training_fails_its_gate_says_nothing_was_kept(tmp_path, monkeypatch):
    fake_steps(monkeypatch, fail_at="train", err=QualityGateError(
        "the youden threshold on validation is 1: the model does not separate the classes there (saturated or "
        f"constant scores); the run is kept unfinished in {tmp_path / 'demo.partial' / 'run.partial'}"))
    r = run("demo", "--out", tmp_path / "demo", *DEMO)
    assert r.exit_code == 1
    line = one_error(r, "threshold on validation is 1", f"the demo wrote nothing to {tmp_path / 'demo'}")
    assert "kept unfinished" not in line
    assert sorted(tmp_path.iterdir()) == []


def test_a_demo_onto_a_read_only_disk_is_one_line(tmp_path, monkeypatch):
    fake_steps(monkeypatch)
    failing_disk(monkeypatch, errno.EROFS, lambda p: p.name == "demo.lock")
    r = run("demo", "--out", tmp_path / "demo", *DEMO)
    assert r.exit_code == 2
    one_error(r, "Read-only file system", tmp_path / "demo.lock")
    assert sorted(tmp_path.iterdir()) == []


def test_a_demo_into_a_non_empty_folder_touches_nothing(tmp_path, monkeypatch):
    fake_steps(monkeypatch)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    r = run("demo", "--out", out, *DEMO)
    assert r.exit_code == 2 and "not empty" in one_error(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and (out / "mine.txt").read_text() == "keep me"


KILLED_DEMO = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import melkit.demo as demo
    from melkit.demo import DemoOptions, run_demo

    def train(opts, echo=print):  # stands in for a long training: killed while it writes
        Path(opts.out).mkdir()
        (Path(opts.out) / "history.csv").write_text("epoch\\n")
        print("training", flush=True)
        time.sleep(600)

    demo.run_train = train
    run_demo(DemoOptions(out=sys.argv[1], lesions=12))
""")


def test_a_demo_killed_9_midway_is_cleaned_up_by_the_rerun(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    child = subprocess.Popen([sys.executable, "-c", KILLED_DEMO, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in child.stdout:  # its progress lines, until the stand-in training has begun writing
            lines.append(line)
            if line == "training\n":
                break
        assert lines[-1:] == ["training\n"], lines
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (tmp_path / "demo.partial" / "run" / "history.csv").is_file() and not out.exists()

    fake_steps(monkeypatch)
    r = run("demo", "--out", out, *DEMO)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and leftovers(tmp_path) == []
    assert not (out / "run" / "history.csv").exists()  # nothing of the killed run was published


# --------------------------------------------------------------------------- temp files after kill -9


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from melkit.util.files import atomic_writer

    with atomic_writer(Path(sys.argv[1])) as f:
        f.write("half a model card")
        f.flush()
        print("writing", flush=True)
        time.sleep(600)
""")


def test_the_temp_file_of_a_writer_killed_9_is_removed_by_the_next_card_only(tmp_path):
    """A real kill -9 in the middle of an atomic write leaves a hidden temp file beside MODEL_CARD.md; the next
    `melkit card` into it removes exactly that one (under the file's lock), and neither an unrelated hidden
    file nor the temp file of another name."""
    out = tmp_path / "MODEL_CARD.md"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (stale,) = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert is_temp(stale.name, ["MODEL_CARD.md"]) and stale.read_text() == "half a model card"
    others = [tmp_path / ".other.md.abcd1234.tmp", tmp_path / ".hidden-notes", tmp_path / ".MODEL_CARD.md.bak"]
    for p in others:
        p.write_text("not melkit card's")

    r = run("card", RELEASE / "melkit_mnv2_1_224_int8.tflite", "--bench", RELEASE / "bench-test", "--out", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["MODEL_CARD.md"] + [p.name for p in others])


def test_sweep_temps_knows_only_the_names_melkit_writes(tmp_path):
    """The temp files of atomic_writer and atomic_path, as a kill -9 leaves them (kept here by a hard link in
    another folder, taken while they exist), are found, by final name if asked; look-alikes are not."""
    killed = tmp_path / "killed"
    killed.mkdir()
    for final, writer in (("a.json", atomic_writer), ("curves.png", files.atomic_path), ("b", atomic_writer)):
        with writer(tmp_path / final):
            (name,) = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
            os.link(tmp_path / name, killed / name)
    not_mine = [".a.json.swp", ".a.json.tmp", ".a.json.ABCDEFGH.tmp", ".curves.png.abcd1234.tmp.jpg", "a.json.tmp",
                ".hidden", ".a.json.abcd1234.tmp~"]
    for n in not_mine:
        (killed / n).write_text("")
    (killed / ".dir.abcd1234.tmp").mkdir()
    assert not any(is_temp(n) for n in not_mine)
    assert [p.name.split(".")[1] for p in sweep_temps(killed, ["a.json"])] == ["a"]
    assert sorted(p.name.split(".")[1] for p in sweep_temps(killed)) == ["b", "curves"]
    assert sorted(p.name for p in killed.iterdir()) == sorted(not_mine + [".dir.abcd1234.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b", "curves.png", "killed"]


def test_a_folder_replaced_whole_does_not_carry_a_stale_temp_file_forward(tmp_path):
    final, staged = tmp_path / "tflite", tmp_path / "tflite.partial"
    final.mkdir()
    staged.mkdir()
    for name in ("old_model.tflite", ".old_model.json.k1ll3d_9.tmp", ".notes"):
        (final / name).write_text(name)
    files.keep_the_rest(final, staged)
    assert sorted(p.name for p in staged.iterdir()) == [".notes", "old_model.tflite"]


# --------------------------------------------------------------------------- convert, bench, bundle: the previous
# output stays as it was, byte for byte


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_convert_on_a_full_or_read_only_disk_keeps_the_previous_conversion(tiny_run, converted, tmp_path,
                                                                           monkeypatch):
    from conftest import LOOSE

    out = tmp_path / "tflite"
    shutil.copytree(converted[1], out)  # the previous conversion: the session's (all variants of the run)
    args = ["convert", tiny_run.out_dir, "--float32", "--out", out, "--calibration-images", "8",
            "--min-agreement", LOOSE]
    before = snapshot(out)
    failing_disk(monkeypatch, errno.ENOSPC, lambda p: p.parent.name == "tflite.partial" and p.suffix == ".json")
    r = run(*args)
    assert r.exit_code == 2, r.output
    one_error(r, "No space left on device", "tflite.partial")
    assert snapshot(out) == before and leftovers(tmp_path) == []

    failing_disk(monkeypatch, errno.EROFS, lambda p: p.name == "tflite.lock")
    r = run(*args)
    assert r.exit_code == 2
    one_error(r, "Read-only file system", "tflite.lock")
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_bench_on_a_full_or_read_only_disk_keeps_the_previous_report(tiny_run, converted, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    args = ["bench", tiny_run.out_dir, converted[1] / "melkit_mnv2_0.35_48_float32.tflite", "--out", out,
            "--runs", "3", "--warmup", "1", "--sweep-threads", "1", "--bootstrap", "50"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    before = snapshot(out)
    failing_disk(monkeypatch, errno.ENOSPC, lambda p: p.parent.name == "bench.partial" and p.name == "report.json")
    r = run(*args)
    assert r.exit_code == 2, r.output
    one_error(r, "No space left on device", "report.json")
    assert snapshot(out) == before and leftovers(tmp_path) == []

    failing_disk(monkeypatch, errno.EROFS, lambda p: p.name == "bench.lock")
    r = run(*args)
    assert r.exit_code == 2
    one_error(r, "Read-only file system", "bench.lock")
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_bundle_on_a_full_or_read_only_disk_keeps_the_previous_bundle(converted, tmp_path, monkeypatch):
    from test_bundle_crash import app_copy, bundled_state

    app = app_copy(tmp_path)
    int8 = converted[1] / "melkit_mnv2_0.35_48_int8.tflite"
    f32 = converted[1] / "melkit_mnv2_0.35_48_float32.tflite"
    assert run("bundle", int8, "--app", app).exit_code == 0
    before = snapshot(app)
    failing_disk(monkeypatch, errno.ENOSPC, lambda p: p.name == "index.json" and p.parent.name.endswith(".partial"))
    r = run("bundle", f32, "--app", app)
    assert r.exit_code == 2, r.output
    one_error(r, "No space left on device", "index.json")
    assert snapshot(app) == before and bundled_state(app) == "int8" and leftovers(tmp_path) == []

    failing_disk(monkeypatch, errno.EROFS, lambda p: p.name == ".melkit-bundle.lock")
    r = run("bundle", f32, "--app", app)
    assert r.exit_code == 2
    one_error(r, "Read-only file system", ".melkit-bundle.lock")
    assert snapshot(app) == before and leftovers(tmp_path) == []
