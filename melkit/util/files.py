"""Atomic file and directory writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from melkit.util.errors import BadInputError

# mkstemp creates files 0600; a published output gets the mode any new file would get (0644 under the usual
# umask), so the files a run or a release writes can be read by the app's build, a CI user or a colleague.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK

# Every temp file written here is ``.<final name>.<mkstemp's 8 random characters>.tmp`` beside its final file
# (``...tmp<suffix>`` for atomic_path, whose writers go by the extension). A kill -9 mid-write leaves one
# behind; this one pattern lets the next writer of the folder find exactly those and nothing else.
_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^./]+)?")

# What a write fails with because of where it writes (a full disk or quota, a read-only mount, a file too large).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def name_destination(e: BaseException, *paths) -> None:
    """Let a write-side OSError that names no file name where it was writing: ``f.write`` on a full disk raises
    ENOSPC without a file name, and the one line the CLI prints should say where space ran out."""
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS and not e.filename:
        e.filename = " or ".join(str(p) for p in paths)


@contextlib.contextmanager
def _renamed_into_place(tmp, path: Path):
    """Rename the temp file ``tmp`` over ``path`` when the block succeeds; when it fails, remove ``tmp`` and
    name ``path`` in the error (see name_destination)."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        name_destination(e, path)
        raise


@contextlib.contextmanager
def atomic_writer(path, mode="w", **kwargs):
    """Write to a temp file in the same directory, then rename over ``path`` (atomic on POSIX)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with _renamed_into_place(tmp, path):
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {}), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def file_in_the_way(folder) -> Path | None:
    """The first of ``folder``'s parents, or ``folder`` itself, that exists and is not a folder; None if none."""
    folder = Path(folder)
    return next((p for p in reversed([folder, *folder.parents]) if p.exists() and not p.is_dir()), None)


def make_dirs(folder) -> Path:
    """``folder`` and its parents, created where missing; BadInputError naming the file in the way when one of
    them is a file (mkdir alone says "File exists" about a path the user meant as a folder)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = file_in_the_way(folder) or folder
        raise BadInputError(f"cannot create the folder {folder}: {blocker} is a file, not a folder") from None
    return folder


def writable_dir(path) -> Path:
    """Create ``path`` (and parents) if needed and check it can be written; BadInputError otherwise."""
    path = Path(path)
    try:
        make_dirs(path)
    except OSError as e:
        raise BadInputError(f"cannot create output directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise BadInputError(f"output directory {path} is not writable")
    return path


def _real(path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def check_out_apart(out, *, read=(), data=(), flag="--out") -> None:
    """Refuse (BadInputError naming both paths) an output that would overwrite or mix with what the command
    reads; call it before anything is created. Each input is ``(what, path)``, e.g. ``("the model", p)``;
    a None path is skipped. Paths are compared resolved (symlinks, ``..``).

    ``read``: files and folders read by name (models, cards, split files, run directories, bench reports).
    ``out`` may not be one nor hold one: a published output replaces its folder, and a file written there
    replaces the input. It may lie inside one that is a folder (convert's RUN/tflite, bench's RUN/bench).
    ``data``: data folders, every image below them read. ``out`` may not be, hold or lie inside one either:
    the next run would read melkit's plots there as images."""
    target = _real(out)
    for kind, inputs in (("read", read), ("data", data)):
        for what, path in inputs:
            if path is None or path == "":
                continue
            source = _real(path)
            if target == source:
                raise BadInputError(f"{flag} {out} is {what} {path}: write the output apart from the inputs")
            if source.is_relative_to(target):
                raise BadInputError(f"{flag} {out} holds {what} {path}: write the output apart from the inputs")
            if kind == "data" and target.is_relative_to(source):
                raise BadInputError(f"{flag} {out} is inside {what} {path}: what melkit writes there would be read "
                                    f"as data; write the output outside it")


# The file melkit writes into an output folder that a later run may replace whole (calibrate --force, bundle's
# golden folder). A folder without it is not melkit's to delete: it may hold a user's images.
OUTPUT_MARKER = ".melkit-output"


def mark_output(folder, command: str) -> None:
    """Say in ``folder`` (a staging folder, before it is published) that ``melkit command`` wrote it."""
    with atomic_writer(Path(folder) / OUTPUT_MARKER) as f:
        f.write(f"written by melkit {command}; melkit may replace this folder whole\n")


def check_replaceable(folder, flag="--out") -> None:
    """BadInputError unless ``folder`` is missing, empty or marked as melkit's (:func:`mark_output`): a folder
    melkit did not write is never replaced, since replacing it deletes every file in it."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / OUTPUT_MARKER).is_file() or not any(folder.iterdir()):
        return
    raise BadInputError(f"{flag} {folder} holds files melkit did not write (no {OUTPUT_MARKER} in it), and "
                        f"replacing it would delete them; choose a new folder")


def write_json(path, obj) -> None:
    with atomic_writer(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_jsonable)
        f.write("\n")


def _jsonable(o):

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path):
    """A JSON file's content; BadInputError naming the file if it is not valid JSON (a torn or edited file), or
    nested more than MAX_JSON_DEPTH levels deep: a crafted card would otherwise stop the parser, or whatever
    walks the content later (a copy of a card's extra fields), with a RecursionError and a traceback."""
    with open(path, encoding="utf-8") as f:
        try:
            obj, deep = json.load(f), False
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:  # deeper than the parser goes: deeper than the limit too
            obj, deep = None, True
    if deep or _deeper_than(obj, MAX_JSON_DEPTH):
        raise BadInputError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep (melkit's files nest a "
                            f"few); not a file melkit wrote")
    return obj


MAX_JSON_DEPTH = 100  # melkit's own JSON files nest fewer than 10 levels


def _deeper_than(obj, limit: int) -> bool:
    """Whether lists and objects in ``obj`` nest more than ``limit`` levels (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        if isinstance(o, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (o.values() if isinstance(o, dict) else o))
    return False


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temp path beside ``path`` for a writer that wants a file name (e.g. savefig), then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    with _renamed_into_place(tmp, path):
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
        yield tmp


def is_temp(name: str, finals=None) -> bool:
    """Whether ``name`` is a temp file of atomic_writer/atomic_path (of one of the ``finals`` names if given)."""
    m = _TEMP.fullmatch(name)
    if m is None or (m["suffix"] and not m["name"].endswith(m["suffix"])):
        return False
    return finals is None or m["name"] in finals


def sweep_temps(folder, finals=None) -> list:
    """Remove the temp files a killed writer left in ``folder`` (not below it), only those of the ``finals``
    file names if given; return their paths. Call it only while holding the lock of what writes there: a live
    writer's temp file looks the same. Folders, links and every other name are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for f in folder.iterdir():
        if is_temp(f.name, finals) and f.is_file() and not f.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                removed.append(f)
    return removed


def _finish_swap(staged: Path, final: Path) -> None:
    """Put the complete ``staged`` in place of ``final`` (two renames), from any point a crash left it at."""
    old = final.with_name(final.name + ".old")
    if staged.exists():
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(staged, final)
    if old.exists():
        shutil.rmtree(old)


def _journal(finals) -> Path:
    first = Path(finals[0])
    return first.with_name(first.name + ".swap")


def recover(journal: Path) -> bool:
    """Finish a publication a crash interrupted: every staged directory the journal names was complete when
    it was written, so the swaps are rolled forward. True if there was one to finish."""
    journal = Path(journal)
    if not journal.exists():
        return False
    try:
        pairs = read_json(journal)["pairs"]
    except (BadInputError, KeyError, TypeError, OSError):  # torn before its rename: nothing was swapped yet
        journal.unlink()
        return False
    for staged, final in pairs:
        _finish_swap(journal.parent / staged, journal.parent / final)
    journal.unlink()
    return True


def publish(pairs, journal: Path) -> None:
    """Replace each ``final`` by its complete ``staged`` directory, all or none: a journal naming every pair is
    written (atomically) before the first rename and removed after the last, so a crash in between is
    finished by :func:`recover` the next time any of these targets is staged. Paths are relative to the
    journal's folder, so a moved project still recovers."""
    journal = Path(journal)
    rel = [[os.path.relpath(s, journal.parent), os.path.relpath(f, journal.parent)] for s, f in pairs]
    write_json(journal, {"pairs": rel})
    for staged, final in pairs:
        _finish_swap(Path(staged), Path(final))
    journal.unlink()


def swap_dir(staged: Path, final: Path) -> None:
    """Replace ``final`` by the complete ``staged`` directory (never a half-filled final; see publish)."""
    publish([(staged, final)], _journal([final]))


@contextlib.contextmanager
def staging_many(finals):
    """Fresh ``<final>.partial`` directories for several targets, published together on success (one
    journal, see publish) and removed on failure. What a killed earlier run left is dealt with first: its
    publication is finished, its torn journal and unfinished staging removed. Callers hold the targets' lock
    (see exclusive) so that none of this is a live writer's."""
    finals = [Path(f) for f in finals]
    journal = _journal(finals)
    for final in finals:
        make_dirs(final.parent)
        recover(_journal([final]))
        sweep_temps(final.parent, [_journal([final]).name])  # a journal torn by a kill before its rename
    recover(journal)
    sweep_temps(journal.parent, [journal.name])
    staged = []
    try:
        for final in finals:
            s = final.with_name(final.name + ".partial")
            if s.exists():  # an earlier run's unfinished staging: never published, so never needed
                shutil.rmtree(s)
            s.mkdir()
            staged.append(s)
        yield staged
    except BaseException as e:
        for s in staged:
            shutil.rmtree(s, ignore_errors=True)
        name_destination(e, *finals)  # whatever the command was writing, it was writing into these
        raise
    # Not under the cleanup above: once the journal exists the staged folders belong to it (recover).
    publish(list(zip(staged, finals)), journal)


def keep_the_rest(final: Path, staged: Path, skip=lambda path: False) -> None:
    """Copy into ``staged`` what ``final`` holds and the staged folder does not (nor ``skip`` names): what an
    earlier run or another tool put there survives the swap of the whole folder. A temp file a killed writer
    left there is not carried forward."""
    if not final.is_dir():
        return
    for f in final.iterdir():
        if not (staged / f.name).exists() and not skip(f) and not is_temp(f.name):
            (shutil.copytree if f.is_dir() else shutil.copy2)(f, staged / f.name)


@contextlib.contextmanager
def staging(final: Path):
    """A fresh ``<final>.partial`` directory, swapped in on success and removed on failure."""
    with staging_many([final]) as (staged,):
        yield staged


@contextlib.contextmanager
def hidden_staging(final: Path):
    """A fresh hidden ``.<name>.partial`` directory beside ``final``, renamed to ``final`` on success (an older
    ``final`` removed first) and removed on failure. For a folder inside a data set, whose readers skip hidden
    entries: whatever a crash leaves is never read as part of the set. Unlike :func:`staging` there is no
    journal: such a folder is rebuilt from its source (an archive), so a crash between the removal and the
    rename costs only a rerun, which the caller's completion marker asks for."""
    final = Path(final)
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if final.exists():
            shutil.rmtree(final)  # a stale or half-replaced copy from an interrupted run
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive(target):
    """An advisory lock (``fcntl.flock``) on ``<target>.lock`` beside the target, held while a command writes
    it: a second writer of the same target exits 2 at once instead of interleaving its files with ours. The
    lock file holds the owner's pid; the kernel drops the lock when the process dies, even on ``kill -9``."""
    target = Path(target)
    make_dirs(target.parent)
    lock_path = target.with_name(target.name + ".lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise BadInputError(f"{target} is being written by another melkit process (pid {owner}); wait for it "
                                f"or choose another output") from None
        try:  # the holder before us may have removed the file after we opened it: lock the one at the path
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # still ours: nobody else can hold it while we do
        os.close(fd)
