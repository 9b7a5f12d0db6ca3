"""Reliability under kill -9: run each writing melkit command many times, SIGKILL it at a random moment, and
classify what its output holds afterwards. Not a test: it takes minutes and prints counts (issue #16).

Each command writes over a previous complete output of the other of two configurations (a seed, a version,
a model...), so the output after a kill tells which run it came from:

  old     the previous complete output, byte for byte
  new     a complete, self-consistent output of the killed run (it got past its publication)
  absent  nothing published (only where the command never overwrites: train, data synth, data fetch, demo;
          the target is cleared before each of their runs, an unfinished ``.partial`` or ``.part`` download
          is resumed, or removed by the next run)
  mixed   anything else: files of two runs, a file missing, a model whose sha256 is not its card's, a torn
          JSON, goldens of another model, a fetched metadata table (which melkit's readers take for a data
          set) beside missing images. Must be 0.

A run the random kill does not reach completes: after a kill it is the rerun (resume) that must succeed and
publish ``new``; the last kill of each command is always followed by one. A publication journal a kill left
(``*.swap``) is rolled forward with ``recover`` before the check, as the command's next run would do; the
``journal`` column counts those. Kill times are uniform between the moment the command first touches its
output's folder (lock or staging folder, measured once) and 1.1x its full duration; SIGKILL goes to the
command's whole process group, so its child processes die with it.

``data fetch`` downloads from the tests' stand-in Dataverse server (tests/fake_dataverse.py), started here on
127.0.0.1, whose answers trickle (SLOW_CHUNK bytes per SLOW_EVERY_S) so that kills land during transfers too;
runs alternate between its two sets. ``demo`` runs the whole pipeline at its smallest (12 lesions, a one-epoch
32-px recipe): about a minute per run, so ``--minutes`` may cap its kills.

    .venv/bin/python benchmarks/reliability.py --kills 50 [--commands train convert ...] [--seed 0] [--jobs 2]
        [--minutes M]

Two more checks of issue 24, no kills: ``--race RUNS`` runs predict and bench RUNS times each while another
writer replaces their model and its card with another model of the same run (no answer may come from a model
other than the one whose card was checked), and ``--out-cases`` runs each writing command with its output equal
to, inside or holding one of its inputs (refused with exit 2, every input intact). Given alone, they run alone:

    .venv/bin/python benchmarks/reliability.py --race 20 --out-cases [--work DIR]

The work is done by the modules beside this one: _reliability_common.py (running melkit, the check's vocabulary,
the Command base, the tiny base inputs), _reliability_commands.py and _reliability_fetch.py (each command and its
check), _reliability_kills.py (the kill loop), _reliability_race.py and _reliability_out_cases.py (issue 24).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The modules beside this script, run as one (python benchmarks/reliability.py puts this folder on sys.path).
from _reliability_commands import (  # noqa: E402
    Bench,
    Bundle,
    Calibrate,
    Card,
    Convert,
    Demo,
    Synth,
    Train,
)
from _reliability_common import ENV, STATES, setup  # noqa: E402
from _reliability_fetch import Fetch  # noqa: E402
from _reliability_kills import run_command  # noqa: E402
from _reliability_out_cases import out_vs_inputs  # noqa: E402
from _reliability_race import race  # noqa: E402

COMMANDS = {c.name: c for c in (Train, Convert, Bench, Bundle, Calibrate, Card, Synth, Fetch, Demo)}


def table(results: dict) -> str:
    return plain(["command", "runs", "kills", "old", "new", "absent", "mixed", "journal", "reruns ok"],
                 [[name, r["runs"], r["kills"], r["old"], r["new"], r["absent"], r["mixed"], r["journal"],
                   f"{r['reruns_ok']}/{r['reruns']}"] for name, r in results.items()])


def plain(head, rows, left=1) -> str:
    """A plain-text table, its first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills per command (default 50)")
    ap.add_argument("--commands", nargs="+", choices=list(COMMANDS), metavar="CMD",
                    help=f"some of: {', '.join(repr(c) for c in COMMANDS)} (default: all, unless --race or "
                         f"--out-cases is given)")
    ap.add_argument("--race", type=int, default=0, metavar="RUNS",
                    help="runs of predict and of bench while their model is replaced (issue 24's read-once race)")
    ap.add_argument("--out-cases", action="store_true",
                    help="each writing command with its output equal to, inside or holding one of its inputs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--jobs", type=int, default=1, help="commands benchmarked at once (default 1)")
    ap.add_argument("--minutes", type=float, help="stop killing a command once this many minutes have passed since "
                                                  "its start (the rerun after its last kill still runs); the kills "
                                                  "column says how many were done")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed at the end); "
                                              "a given one keeps its base run between invocations")
    args = ap.parse_args(argv)
    if args.commands is None:
        args.commands = [] if args.race or args.out_cases else list(COMMANDS)
    work = args.work or Path(tempfile.mkdtemp(prefix="melkit-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    # Temp folders of killed runs (demo's latency processes make some) stay in the working folder.
    ENV["TMPDIR"] = str(work / "tmp")
    (work / "tmp").mkdir(exist_ok=True)
    lock = threading.Lock()

    def say(msg):
        with lock:
            print(msg, flush=True)

    try:
        needs_base = args.race or args.out_cases or any(COMMANDS[n].needs_base for n in args.commands)
        base = setup(work, say) if needs_base else {}
        raced = race(base, work, args.race, args.seed, say) if args.race else {}
        cases = out_vs_inputs(base, work, say) if args.out_cases else []
        cmds = [COMMANDS[n](work, base) for n in args.commands]
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {c.name: pool.submit(run_command, c, args.kills, args.seed, say, args.minutes) for c in cmds}
            results = {}
            for name, f in futures.items():
                try:
                    results[name] = f.result()
                except (Exception, SystemExit) as e:  # one command's broken set-up: the others' counts still print
                    say(f"{name}: could not be benchmarked: {e}")
                    results[name] = {"runs": 0, "kills": 0, "journal": 0, "reruns": 1, "reruns_ok": 0,
                                     "problems": [str(e)[-600:]], **{s: 0 for s in STATES}}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    wrong = sum(c["wrong"] + c["other"] for c in raced.values()) + sum(not c["ok"] for c in cases)
    if raced:
        print("\n" + plain(["command", "runs", "right", "wrong", "refused", "other"],
                           [[name, *(c[k] for k in ("runs", "right", "wrong", "refused", "other"))]
                            for name, c in raced.items()]))
    if cases:
        print("\n" + plain(["command", "case", "exit", "inputs intact", "ok"],
                           [[c["command"], c["case"], c["exit"], "yes" if c["intact"] else "NO", "yes" if c["ok"]
                             else "NO"] for c in cases], left=2))
        for c in cases:
            if not c["ok"]:
                print(f"{c['command']}, {c['case']}: {c['said']}")
    if not results:
        print(f"\nwrong answers or crashes in the race, and cases not refused with their inputs intact: {wrong} "
              f"(must be 0)")
        return 1 if wrong else 0
    print()
    print(table(results))
    for name, r in results.items():
        if "minutes" in r:
            print(f"{name}: one full run {r['full_s']:.1f} s; {r['minutes']:.1f} min in all"
                  + "".join(f"; {what}: {n}" for what, n in sorted(r["notes"].items())))
    for name, r in results.items():
        for p in r["problems"][:10]:
            print(f"{name}: {p}")
        if len(r["problems"]) > 10:
            print(f"{name}: ... and {len(r['problems']) - 10} more")
    mixed = sum(r["mixed"] for r in results.values())
    failed = sum(r["reruns"] - r["reruns_ok"] for r in results.values())
    print(f"\nmixed states: {mixed} (must be 0); failed reruns: {failed}")
    return 1 if mixed or failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
