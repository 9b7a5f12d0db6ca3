"""What TensorFlow's and LiteRT's C++ code prints on stderr, kept to what a user of melkit needs.

On a machine without a GPU, importing TensorFlow prints lines like ``I0000 ... cudart_stub.cc:31] Could not
find cuda drivers on your machine``, training adds ``E0000 ... failed call to cuInit``, LiteRT ``INFO: Created
TensorFlow Lite XNNPACK delegate for CPU.``: the last lines of a successful command look like failures.
``TF_CPP_MIN_LOG_LEVEL`` no longer stops them: TensorFlow logs through absl, which writes every message to
stderr until ``absl::InitializeLog()`` is called, and nothing calls it.

So, in a melkit process whose stderr is the real one (not a test's capture), :func:`quiet` puts a filter in
front of file descriptor 2: a small child process (it outlives a crash of ours, so a fatal line is never
lost) that passes everything through except these C++ log lines below the level ``TF_CPP_MIN_LOG_LEVEL``
asks for. Unset, melkit's default is 2 (errors and fatal lines show, info and warnings do not) and, on top,
the error lines a CPU-only machine prints on every run (CUDA, cuDNN, cuFFT, cuBLAS and TensorRT probing).
A user's own ``TF_CPP_MIN_LOG_LEVEL`` wins: 0 shows everything (no filter), 1-3 hide what TensorFlow's
documentation says they hide, and no probe line is singled out. Python's own output (tracebacks, warnings,
progress bars) always passes.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys

DEFAULT_LEVEL = 2

# absl's format (TensorFlow >= 2.16; before absl is initialised the seconds are since the epoch):
# "I0000 00:00:1796534069.761394    6485 cudart_stub.cc:31] ..."
_ABSL = re.compile(rb"(?P<level>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.+-]+:\d+\] ")
# TensorFlow's own older format: "2024-05-01 12:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:182] ..."
_TSL = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<level>[IWEF]) \S+:\d+\] ")
# Printed at info level whatever the settings: absl's banner before its first line, LiteRT's XNNPACK note, the
# TFLite converter's quantizer settings.
_INFO = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
         b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", b"fully_quantize: ")
# Error lines every run prints on a machine without CUDA: probing for a GPU, GPU libraries registered twice,
# and tf.data's note about an attribute newer than the op it runs.
_CPU_PROBE = re.compile(rb"cuInit|cuda|cudnn|cufft|cublas|tensorrt|NodeDef mentions attribute", re.IGNORECASE)
_LEVELS = b"IWEF"

_child = None


def _level() -> tuple[int, bool]:
    """(the minimum level shown, whether the CPU probe lines are hidden too): the user's TF_CPP_MIN_LOG_LEVEL,
    else melkit's default."""
    value = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if value is None:
        return DEFAULT_LEVEL, True
    try:
        return max(0, min(3, int(value))), False
    except ValueError:
        return 0, False  # not a level: TensorFlow shows everything, so do we


def shown(line: bytes, level: int, hide_probes: bool) -> bool:
    """Whether one line of stderr passes the filter."""
    m = _ABSL.match(line) or _TSL.match(line)
    if m is not None:
        severity = _LEVELS.index(m["level"])
        return severity >= level and not (hide_probes and severity == 2 and _CPU_PROBE.search(line))
    return level == 0 or not line.startswith(_INFO)


def quiet() -> None:
    """Install the filter once per process (see the module's docstring); a no-op where stderr is not the
    process's own (pytest's capture, click's CliRunner), where level 0 asks for every line, or where no child
    process can be started."""
    global _child
    level, hide_probes = _level()
    if _child is not None or level == 0 or sys.stderr is None or sys.stderr is not sys.__stderr__:
        return
    try:
        if sys.stderr.fileno() != 2:
            return
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        _child = subprocess.Popen(
            [sys.executable, "-c", "from melkit.util.native_logs import serve; serve()", str(level),
             str(int(hide_probes))],
            stdin=read_end, stdout=subprocess.DEVNULL, close_fds=True,
            start_new_session=True)  # Ctrl-C reaches melkit, not the filter: melkit's last line must pass
        saved = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        os.close(read_end)
    except (OSError, ValueError):
        return
    atexit.register(_drain, saved)


def _drain(saved: int) -> None:
    """At exit: stderr back to the real one, then wait until the filter has passed on everything (a shell's
    prompt must not come before melkit's last line)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)  # the filter's pipe has no writer left (bar a child process of ours): it ends
    try:
        _child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def serve() -> None:
    """The filter process: stdin (the pipe) to stderr (melkit's real one), line by line. A partial line (a
    progress bar's carriage-return update) passes at once unless it may be the start of a log line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    level, hide_probes = int(sys.argv[1]), sys.argv[2] == "1"
    pending = b""
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        parts = re.split(rb"(?<=[\r\n])", pending + chunk)
        pending = parts.pop()
        out = b"".join(p for p in parts if shown(p, level, hide_probes))
        if pending and not _may_be_log(pending):  # a progress bar's update: passes now, not at its newline
            out, pending = out + pending, b""
        _write(out)
    if shown(pending, level, hide_probes):
        _write(pending)


def _may_be_log(start: bytes) -> bool:
    """Whether a line that began with ``start`` may be one the filter holds back (C++ writes some in pieces)."""
    return start[:1] in b"0123456789IWEF" or any(p.startswith(start) or start.startswith(p) for p in _INFO)


def _write(data: bytes) -> None:
    while data:
        try:
            data = data[os.write(2, data):]
        except OSError:  # stderr is gone: nothing left to show, but keep reading so melkit never blocks
            return
