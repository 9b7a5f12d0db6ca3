"""Staged outputs are published all or none: a crash at any point leaves the old or the new version of every
target, never a mix, once the next run has finished (or rolled forward) what the crash interrupted."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from melkit.util import files
from melkit.util.files import recover, staging, staging_many


def version_of(d):
    """The version a folder holds; every file in it must carry the same one (a half-filled folder would not)."""
    seen = {p.read_text() for p in d.iterdir()}
    assert len(seen) == 1, f"{d} mixes versions {seen}"
    return seen.pop()


def fill(d, version, n=3):
    for i in range(n):
        (d / f"f{i}.txt").write_text(version)


def leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name.endswith((".partial", ".old", ".swap")))


def test_staging_publishes_on_success_and_leaves_the_old_version_on_error(tmp_path):
    final = tmp_path / "out"
    with staging(final) as d:
        fill(d, "v1")
    assert version_of(final) == "v1" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with staging(final) as d:
            fill(d, "v2", n=1)
            raise RuntimeError("half-way")
    assert version_of(final) == "v1" and leftovers(tmp_path) == []


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs (no except/finally of melkit's publishing code)."""


def test_a_crash_between_the_two_renames_is_finished_by_the_next_run(tmp_path, monkeypatch):
    final = tmp_path / "out"
    with staging(final) as d:
        fill(d, "v1")
    real, calls = os.replace, []

    def crash_on_second(src, dst):
        calls.append(src)
        if len(calls) == 3:  # journal, final -> old, [staged -> final]
            raise Killed()
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_on_second)
    with pytest.raises(Killed):
        with staging(final) as d:
            fill(d, "v2")
    monkeypatch.setattr(files.os, "replace", real)
    assert not final.exists() and (tmp_path / "out.old").is_dir() and (tmp_path / "out.swap").is_file()
    assert recover(tmp_path / "out.swap") and version_of(final) == "v2" and leftovers(tmp_path) == []


def test_several_targets_are_published_together(tmp_path, monkeypatch):
    a, b = tmp_path / "assets", tmp_path / "golden"
    with staging_many([a, b]) as (da, db):
        fill(da, "v1")
        fill(db, "v1")
    real, calls = os.replace, []

    def crash_after_first_target(src, dst):
        calls.append(src)
        if len(calls) == 4:  # journal, a -> a.old, a.partial -> a, [b -> b.old]
            raise Killed()
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", crash_after_first_target)
    with pytest.raises(Killed):
        with staging_many([a, b]) as (da, db):
            fill(da, "v2")
            fill(db, "v2")
    monkeypatch.setattr(files.os, "replace", real)
    assert version_of(a) == "v2" and version_of(b) == "v1"  # mixed until the next run...
    with staging_many([a, b]) as (da, db):  # ...which finishes the interrupted one first, then fails here
        assert version_of(a) == version_of(b) == "v2"
        fill(da, "v3")
        fill(db, "v3")
    assert version_of(a) == version_of(b) == "v3" and leftovers(tmp_path) == []


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from melkit.util.files import staging_many
    root = Path(sys.argv[1])
    for v in range(10**6):
        with staging_many([root / "assets", root / "golden"]) as dirs:
            for d in dirs:
                for i in range(20):
                    (d / f"f{i}.txt").write_text(str(v))
            print(v, flush=True)
""")


def test_random_kill_9_never_leaves_a_mixed_state_after_recovery(tmp_path):
    """The fault-injection version of the above: a child publishing two folders in a loop, killed at random
    moments; after each kill (and the recovery the next run does) both folders hold one same version."""
    import random

    rng = random.Random(0)
    kills = 0
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()  # at least one version published
        time.sleep(rng.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
        a, b = tmp_path / "assets", tmp_path / "golden"
        recover(tmp_path / "assets.swap")
        assert version_of(a) == version_of(b)
    assert kills == 12
