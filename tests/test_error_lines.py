"""Every way a command stops says so in one line with the right exit code, and names the right thing: a full disk
under TensorFlow's checkpoint and history writes (exit 2, the unfinished run kept for --resume), a card nested
too deeply (exit 2), Ctrl-C and SIGTERM during train and convert (130 and 143, cleaned up as after a kill, and
the command that continues), the output a full disk stopped (not the input), a file given as a run folder, a
FIFO given as an image, a model removed while melkit runs; predict's rows stay one per image whatever a file is
named, and the C++ log lines TensorFlow and LiteRT print on a CPU machine do not end a successful command's
stderr."""

from __future__ import annotations

import csv
import errno
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO
from PIL import Image
from test_disk_faults import TINY, failing_disk, leftovers, one_error

from melkit.cli import _one_line, main
from melkit.core.card import ModelCard
from melkit.core.litert import load_interpreter
from melkit.train.callbacks import HISTORY_COLUMNS
from melkit.util import files, native_logs
from melkit.util.errors import BadInputError

RELEASE = REPO / "tflite_models"
INT8 = RELEASE / "melkit_mnv2_1_224_int8.tflite"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png(path: Path, seed=0) -> Path:
    Image.fromarray((np.random.RandomState(seed).rand(40, 40, 3) * 255).astype(np.uint8)).save(path, format="PNG")
    return path


def release_copy(folder: Path, card_edit=None) -> Path:
    """The release int8 model and its card, copied to ``folder`` (the card's JSON text through ``card_edit``)."""
    folder.mkdir(exist_ok=True)
    model = folder / INT8.name
    shutil.copy(INT8, model)
    text = INT8.with_suffix(".json").read_text()
    model.with_suffix(".json").write_text(card_edit(text) if card_edit else text)
    return model


# --------------------------------------------------------------------------- a full disk under train's writers


def test_a_full_disk_in_trains_checkpoints_and_history_is_one_line_and_resumes(synth_dir, tmp_path, monkeypatch):
    """TensorFlow raises its own ResourceExhaustedError for a checkpoint it cannot write (no OSError: a traceback
    and exit 1 before); history.csv is written whole or not at all. Each time: one line naming where space ran
    out and the command that continues, exit 2, the run kept with no torn file and no checkpoint half-written by
    TensorFlow (its ``*_temp`` folder) left; --resume then finishes the run."""
    from melkit.util.tf import keras, tf

    out, partial = tmp_path / "run", tmp_path / "run.partial"
    args = ["train", "--data", synth_dir, "--out", out, *TINY]
    real_save = keras.Model.save_weights

    def full_disk(self, filepath, *a, **k):  # as TensorFlow fails on a full disk (message and all), leaving _temp
        if Path(filepath).name == "final.ckpt":
            temp = Path(f"{filepath}_temp")
            temp.mkdir()
            (temp / "part-00000-of-00001.data-00000-of-00001.tempstate1").write_bytes(b"\0" * 100)
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{{{{function_node __wrapped__SaveV2}}}} {temp}/part-00000-of-00001.data-00000-of-00001"
                            f".tempstate1; No space left on device [Op:SaveV2]")
        return real_save(self, filepath, *a, **k)

    monkeypatch.setattr(keras.Model, "save_weights", full_disk)
    r = run(*args)
    assert r.exit_code == 2, r.output
    line = one_error(r, "No space left on device", partial / "checkpoints" / "head", f"kept in {partial}",
                     "continue it with: melkit train --data")
    assert line.endswith("--resume")
    assert not out.exists() and (partial / "history.csv").is_file()
    assert not list(partial.rglob("*_temp")) and leftovers(tmp_path) == ["run.partial"]

    # --resume, and the disk fills while the next stage's first epoch goes into history.csv
    monkeypatch.setattr(keras.Model, "save_weights", real_save)
    rows_before = (partial / "history.csv").read_text()
    disk = failing_disk(monkeypatch, errno.ENOSPC, lambda p: p == partial / "history.csv")
    r = run(*args, "--resume")
    assert r.exit_code == 2, r.output
    one_error(r, "No space left on device", partial / "history.csv", "--resume")
    assert disk.hits and (partial / "history.csv").read_text() == rows_before  # whole rows, as they were
    assert leftovers(tmp_path) == ["run.partial"]

    monkeypatch.setattr(files, "os", os)
    r = run(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and leftovers(tmp_path) == []
    rows = list(csv.reader(open(out / "history.csv", newline="")))
    assert rows[0] == list(HISTORY_COLUMNS) and all(len(row) == len(HISTORY_COLUMNS) for row in rows)


# --------------------------------------------------------------------------- JSON nested too deeply


def nested(depth: int):
    def edit(text):
        card = json.loads(text)
        return json.dumps(card)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    return edit


@pytest.mark.parametrize("depth", [900, 100_000])  # 900: parsed, then copying the card's extra field recursed
def test_a_card_nested_too_deeply_is_one_line(tmp_path, depth):
    model = release_copy(tmp_path / "m", nested(depth))
    r = run("predict", model, png(tmp_path / "a.png"))
    assert r.exit_code == 2, r.output
    one_error(r, model.with_suffix(".json"), "nested more than 100 levels")


def test_a_recipe_nested_too_deeply_is_one_line(tmp_path, synth_dir):
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"name": ' + "[" * 5000 + "]" * 5000 + "}")
    r = run("train", "--data", synth_dir, "--out", tmp_path / "run", "--recipe", recipe)
    assert r.exit_code == 2, r.output
    one_error(r, recipe, "nested more than 100 levels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.json"]


def test_read_json_keeps_what_is_merely_nested_or_null(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100 + "]" * 100)
    assert files.read_json(deep) is not None
    (tmp_path / "null.json").write_text("null")
    assert files.read_json(tmp_path / "null.json") is None
    deep.write_text("[" * 101 + "]" * 101)
    with pytest.raises(BadInputError, match="nested more than 100"):
        files.read_json(deep)


# --------------------------------------------------------------------------- Ctrl-C and SIGTERM


def env_without_tf_logging() -> dict:
    """The environment of a user who has not set TF_CPP_MIN_LOG_LEVEL (this test process's import of
    TensorFlow sets it)."""
    env = {**os.environ, "CI": "true", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}  # lines as printed
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


class Child:
    """A melkit command in a subprocess, its stdout read line by line on a thread (every wait bounded)."""

    def __init__(self, *args):
        # SIGINT as at a terminal: a test run started in the background (``cmd &`` in a script) inherits SIGINT
        # ignored, and a Python started so never turns it into KeyboardInterrupt.
        self.proc = subprocess.Popen([sys.executable, "-m", "melkit.cli", *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env_without_tf_logging(),
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()

    def wait_for(self, prefix: str, timeout=300) -> None:
        """Until a line of stdout starts with ``prefix``; fails if the command ends or the time runs out first."""
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line {prefix!r} in {timeout} s: {seen}")
            seen.append(line)
            if line.startswith(prefix):
                return
            assert self.proc.poll() is None or not self.lines.empty(), seen

    def stop(self, sig) -> tuple[int, str]:
        assert self.proc.poll() is None, f"the command ended (exit {self.proc.returncode}) before the signal"
        self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=120)
        finally:
            self.proc.kill()
        if self.proc.returncode == 0:  # the signal did not stop it: what it printed after, to see where it went
            err += "\n[stdout after the signal]\n" + out[-2000:]
        return self.proc.returncode, err


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_ctrl_c_in_train_and_sigterm_in_convert_exit_130_and_143_and_say_what_continues(synth_dir, tmp_path):
    out, partial = tmp_path / "run", tmp_path / "run.partial"
    # Enough epochs that the run cannot finish between "Epoch 2/" and the signal (6 did once, on a loaded CPU: a
    # 32-px epoch of 133 images takes a tenth of a second).
    args = ["train", "--data", synth_dir, "--out", out, "--recipe", "scratch", "--epochs", "40", "--alpha", "0.35",
            "--image-size", "32", "--batch-size", "16", "--weights", "none", "--threshold-policy", "fixed:0.5"]
    child = Child(*args)
    child.wait_for("Epoch 2/")  # the first epoch is done: its checkpoint and history row are written
    code, err = child.stop(signal.SIGINT)
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "Aborted!" not in err
    assert last_line(err) == (f"melkit: interrupted (SIGINT); the unfinished run is kept in {partial}; continue it "
                              f"with: melkit {shlex.join(map(str, args))} --resume")
    assert not out.exists() and (partial / "history.csv").is_file()
    assert leftovers(tmp_path) == ["run.partial"]  # no lock file, no temp file

    r = subprocess.run([sys.executable, "-m", "melkit.cli", *map(str, args), "--resume"], capture_output=True,
                       text=True, env=env_without_tf_logging(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Epoch 1/40" not in r.stdout  # continued, not started again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not native_lines(r.stderr), r.stderr[-3000:]  # a successful command's stderr

    tflite = tmp_path / "tflite"
    convert = ["convert", out, "--float32", "--out", tflite, "--calibration-images", "8", "--min-agreement", "0.5"]
    child = Child(*convert)
    child.wait_for("converting float32")
    code, err = child.stop(signal.SIGTERM)
    assert code == 143, err[-3000:]
    assert "Traceback" not in err
    assert last_line(err) == ("melkit: interrupted (SIGTERM); nothing half-written was published and the outputs are "
                              f"as they were; run it again with: melkit {shlex.join(map(str, convert))}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- messages that name the right thing


def synth(folder: Path, lesions=36) -> Path:
    from melkit.data.synth import write_synth_dataset

    write_synth_dataset(folder, n_lesions=lesions, mel_fraction=0.5, seed=3)  # 20 of each class at least
    return folder


def full_disk_under(monkeypatch, marker: str):
    """Path.write_bytes fails as a full disk does (ENOSPC with no file name) for paths under ``marker``."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if marker in self.parts:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_a_full_disk_in_calibrate_names_the_output_not_the_model(tmp_path, monkeypatch):
    data, model = synth(tmp_path / "data"), release_copy(tmp_path / "m")
    out = tmp_path / "cal"
    full_disk_under(monkeypatch, "cal.partial")
    r = run("calibrate", model, "--data", data, "--out", out, "--bootstrap", "10")
    assert r.exit_code == 2, r.output
    line = one_error(r, f"No space left on device: {out}")
    assert str(model) not in line
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_in_bundle_names_the_app_folders(tmp_path, monkeypatch):
    from test_bundle_crash import ASSETS, app_copy

    app = app_copy(tmp_path)
    model = release_copy(tmp_path / "m")
    full_disk_under(monkeypatch, ASSETS.name + ".partial")
    r = run("bundle", model, "--app", app)
    assert r.exit_code == 2, r.output
    line = one_error(r, f"No space left on device: {app / ASSETS}")
    assert str(model) not in line and leftovers(tmp_path) == []


def test_a_failed_copy_names_its_destination():
    """shutil's copy functions name the source first and the destination second; a full disk is the
    destination's problem."""
    e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "in/model.tflite", None, "out/model.tflite")
    assert _one_line(e) == "No space left on device: out/model.tflite"
    e = OSError(errno.EACCES, os.strerror(errno.EACCES), "in/model.tflite", None, "out/model.tflite")
    assert _one_line(e) == "Permission denied: in/model.tflite"


def test_train_out_that_is_a_file_says_so(tmp_path, synth_dir):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    r = run("train", "--data", synth_dir, "--out", out, *TINY)
    assert r.exit_code == 2, r.output
    line = one_error(r, f"{out} is a file, not a folder")
    assert "already holds" not in line
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_fifo_named_like_an_image_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    r = run("predict", INT8, fifo)  # never opened: reading a FIFO would wait for a writer forever
    assert r.exit_code == 2, r.output
    line = one_error(r, fifo, "not a regular file")
    assert "not found" not in line


def test_a_model_removed_while_melkit_runs_is_not_found_not_unloadable(tmp_path, monkeypatch):
    model = release_copy(tmp_path / "m")
    real = ModelCard.from_json.__func__

    def remove_the_model(cls, d):  # the card is read; the model goes before its bytes are
        model.unlink(missing_ok=True)
        return real(cls, d)

    monkeypatch.setattr(ModelCard, "from_json", classmethod(remove_the_model))
    r = run("predict", model, png(tmp_path / "a.png"))
    assert r.exit_code == 2, r.output
    line = one_error(r, f"model file not found: {model}", "removed")
    assert "loadable" not in line

    with pytest.raises(BadInputError, match="model file not found") as e:
        load_interpreter(tmp_path / "gone.tflite")
    assert "loadable" not in str(e.value)


def test_a_newline_in_a_file_name_keeps_predicts_row_one_line(tmp_path):
    odd = png(tmp_path / "a\nb\x1b[2J.png")
    plain = png(tmp_path / "plain.png", seed=1)
    r = run("predict", INT8, odd, plain)
    assert r.exit_code == 0, r.output
    rows = [line for line in r.output.splitlines() if "P(mel)" in line]
    assert len(rows) == 2 and "\x1b" not in r.output
    assert rows[0].startswith(str(tmp_path / "a\\nb\\x1b[2J.png"))
    r = run("predict", INT8, odd, "--json")
    assert json.loads(r.stdout)["predictions"][0]["image"] == str(odd)  # the JSON keeps the true name


# --------------------------------------------------------------------------- C++ log lines on stderr


def test_a_successful_predict_ends_stderr_with_no_native_log_line(tmp_path):
    """LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (and TensorFlow's absl lines) used to
    be the last lines of a successful command."""
    r = subprocess.run([sys.executable, "-m", "melkit.cli", "predict", str(INT8), str(png(tmp_path / "a.png"))],
                       capture_output=True, text=True, env=env_without_tf_logging(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "P(mel)" in r.stdout
    assert not native_lines(r.stderr), r.stderr


def test_importing_tensorflow_through_melkit_prints_nothing():
    code = "import melkit.util.tf"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_without_tf_logging(),
                       timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def native_lines(stderr: str) -> list:
    """The lines of ``stderr`` that TensorFlow's or LiteRT's C++ code printed (absl's or TensorFlow's log
    format, absl's banner, LiteRT's XNNPACK note, any mention of CUDA)."""
    return [line for line in re.split(r"[\r\n]", stderr)
            if native_logs._ABSL.match(line.encode()) or native_logs._TSL.match(line.encode())
            or re.search(r"cuda|cuInit|absl::InitializeLog|XNNPACK", line, re.IGNORECASE)]


ABSL = "{}0000 00:00:1796534069.761394    6485 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"


@pytest.mark.parametrize("line,level,hide_probes,shown", [
    (ABSL.format("I"), 2, True, False),
    (ABSL.format("W"), 2, True, False),
    (ABSL.format("E"), 2, True, False),  # a CUDA probe: hidden by melkit's default only
    (ABSL.format("E"), 2, False, True),  # the user's own TF_CPP_MIN_LOG_LEVEL=2 shows errors
    (ABSL.format("E").replace("cuda_platform.cc:52] failed call to cuInit", "session.cc:9] a real failure"), 2,
     True, True),
    (ABSL.format("F"), 3, False, True),  # fatal lines always show
    (ABSL.format("I"), 0, False, True),
    ("2024-05-01 12:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:182] optimized\n", 1, False, False),
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", 2, True, False),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", 3, False, False),
    ("melkit: error: No space left on device\n", 3, False, True),
    ("Traceback (most recent call last):\n", 3, False, True),
    ("predict:  50%|#####     | 1/2\r", 3, False, True),
])
def test_the_filter_passes_what_the_level_asks_for(line, level, hide_probes, shown):
    assert native_logs.shown(line.encode(), level, hide_probes) is shown
