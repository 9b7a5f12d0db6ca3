"""The kill loop of benchmarks/reliability.py: time a command once, then run it again and again, SIGKILL each run
at a random moment, and classify its output after each (old, new, absent, mixed)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time

from _reliability_common import ENV, MELKIT, STATES, Command, Mixed, snapshot

from melkit.util.files import recover

__all__ = ["run_command", "measure", "classify"]


def measure(cmd: Command, tag, resume=False):
    """Run to completion; seconds to the first change in the watched folders, and in all."""
    before = {d: sorted(os.listdir(d)) if d.is_dir() else None for d in cmd.watch()}
    log = cmd.logs / "run.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(MELKIT + [str(a) for a in cmd.argv(tag, resume)], stdout=f, stderr=subprocess.STDOUT,
                             env=ENV)
        first = None
        while p.poll() is None:
            if first is None and any((sorted(os.listdir(d)) if d.is_dir() else None) != b for d, b in before.items()):
                first = time.perf_counter() - t0
            time.sleep(0.01)
    total = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{cmd.name} failed when measured:\n{log.read_text()[-3000:]}")
    return (first if first is not None else 0.0), total


def classify(cmd: Command, tag, before_snap, before_tag):
    """The output's state after a run of configuration ``tag``; a journal left by a kill is finished first."""
    rolled = False
    for j in cmd.journals():
        rolled |= recover(j)
    try:
        got = cmd.check()
    except Mixed as e:
        return "mixed", str(e), rolled
    except (KeyError, TypeError, ValueError, OSError) as e:
        return "mixed", f"{type(e).__name__}: {e}", rolled
    if got is None:
        return ("absent", "", rolled) if before_tag is None else ("mixed", "the previous output vanished", rolled)
    if snapshot(cmd.outputs()) == before_snap:
        return "old", "", rolled
    if got == tag:
        return "new", "", rolled
    return "mixed", f"a complete output of {got!r} that is not the previous one", rolled


def run_command(cmd: Command, kills: int, seed: int, say, minutes=None) -> dict:
    """Measure, then kill ``kills`` runs (fewer if ``minutes``, counted from here, run out first; the rerun after
    the last kill still runs) and classify the output after each run."""
    started = time.monotonic()
    rng = random.Random(f"{seed}:{cmd.name}")
    cmd.clear()
    cmd.make_references()
    first, total = measure(cmd, cmd.tags[0])
    if cmd.fresh_target:
        cmd.clear()
    first2, total2 = measure(cmd, cmd.tags[1]) if not cmd.fresh_target or cmd.alternate else (first, total)
    if cmd.fresh_target:
        cmd.clear()
    first, total = (min(first, first2) if cmd.alternate else first), max(total, total2)
    say(f"{cmd.name}: first touch of its output at {first:.2f} s, full run {total:.2f} s")
    res = {"runs": 2, "kills": 0, "journal": 0, "reruns": 0, "reruns_ok": 0, "problems": [], "full_s": total,
           **{s: 0 for s in STATES}}
    published = cmd.check()
    pending = None  # the tag of an unfinished run to resume
    killed_last = False
    while True:
        enough = res["kills"] >= kills or (minutes is not None and time.monotonic() - started > 60 * minutes)
        if enough and not killed_last:
            break
        if cmd.fresh_target and published is not None:
            cmd.clear()
            published = None
        before_snap, before_tag = snapshot(cmd.outputs()), published
        resume = cmd.resumable()
        tag = pending if resume and pending is not None else cmd.next_tag(published)
        no_kill = enough  # the rerun after the last kill runs to its end
        deadline = None if no_kill else rng.uniform(0.9 * first, 1.1 * total)
        log = cmd.logs / "run.log"
        with open(log, "w") as f:
            # A session of its own: the kill takes the command's children too (demo's latency processes), as a
            # crash would, instead of leaving them running beside the next run.
            p = subprocess.Popen(MELKIT + [str(a) for a in cmd.argv(tag, resume)], stdout=f,
                                 stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
            try:
                p.wait(timeout=deadline)
                killed = False
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it ended just now, children and all
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                killed = True
            except BaseException:  # Ctrl-C reaches only this process now: take the command down with it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                raise
        res["runs"] += 1
        state, why, rolled = classify(cmd, tag, before_snap, before_tag)
        res[state] += 1
        res["journal"] += rolled
        if state == "mixed":
            lines = [x for x in log.read_text(errors="replace").replace("\r", "\n").splitlines() if x.strip()]
            when = f"killed at {deadline:.2f} s" if killed else "completed"
            res["problems"].append(f"run {res['runs']} ({tag}, {when}): {why}"
                                   + (f" [its log's last line: {lines[-1][-200:]}]" if lines else ""))
            keep = cmd.work.parent / "mixed" / f"{cmd.work.name}-run{res['runs']}"  # for a look (with --work)
            for out in cmd.outputs():
                if out.is_dir():
                    shutil.copytree(out, keep / out.name, symlinks=True)
                elif out.exists():
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(out, keep / out.name)
        if killed:
            res["kills"] += 1
            pending = tag if state == "absent" else None
        else:
            if killed_last:
                res["reruns"] += 1
                ok = p.returncode == 0 and state == "new"
                res["reruns_ok"] += ok
                if not ok:
                    res["problems"].append(f"rerun {res['runs']} exit {p.returncode}, {state}: "
                                           + log.read_text()[-600:].replace("\n", " | "))
            pending = None
        if state in ("old", "new"):
            published = before_tag if state == "old" else tag
        elif state == "absent":
            published = None
        else:  # mixed: start over from a clean target so the count goes on
            cmd.clear()
            published = None
        killed_last = killed
    res["minutes"] = (time.monotonic() - started) / 60
    res["notes"] = dict(cmd.notes)
    say(f"{cmd.name}: done in {res['minutes']:.1f} min, {res['runs']} runs, {res['kills']} kills, {res['mixed']} mixed"
        + "".join(f"; {what}: {n}" for what, n in sorted(cmd.notes.items())))
    return res
