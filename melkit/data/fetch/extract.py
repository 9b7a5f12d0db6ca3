"""Safe zip extraction and the completion marker of a fetched data set.

A downloaded archive is untrusted input even when its checksum matches (the checksum only proves it is the
file the record lists). Every member is checked before anything is written: no absolute paths, no ``..``,
no symlinks or other special files, and size limits against zip bombs. An archive is extracted into a
hidden ``.NAME.partial`` folder (``melkit.util.files.hidden_staging``: hidden because it lies inside the
data set's folder, whose readers skip hidden folders, so a half extraction is never read as images of the
set) and renamed into place only when complete, and the set's marker is written after everything else, so
an interrupted run never looks finished.
"""

from __future__ import annotations

import contextlib
import json
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from melkit.util.errors import BadInputError
from melkit.util.files import hidden_staging, write_json

MARKER_PREFIX = ".melkit-fetch-"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds no honest dermatoscopy archive comes near (HAM10000's parts are ~1.3 GB of JPEGs, ratio ~1)."""

    max_total_bytes: int = 16 << 30
    max_members: int = 100_000
    max_ratio: float = 100.0  # uncompressed / compressed, per member above 1 MiB


def _member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath | None:
    """The member's relative path, or BadInputError if it could escape the target or is not a plain file."""
    name = info.filename
    mode = info.external_attr >> 16
    bad = None
    if "\x00" in name:
        bad = "a NUL byte in its name"
    elif "\\" in name:
        bad = "a backslash in its name"  # a Windows path separator: ..\ would escape on some systems
    elif name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        bad = "an absolute path"
    elif ".." in PurePosixPath(name).parts:
        bad = "a '..' component (path traversal)"
    elif stat.S_ISLNK(mode):
        bad = "a symbolic link"
    elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded (Windows tools)
        bad = "a special file (device, pipe or socket)"
    if bad:
        raise BadInputError(f"{archive.name}: refusing to extract {name!r}: {bad}")
    path = PurePosixPath(name)
    if not path.parts or path.parts[0] == "__MACOSX":  # macOS resource forks: noise, not data
        return None
    return path


def check_archive(archive: Path, limits: Limits = Limits()) -> list:
    """Validate every member of ``archive``; return [(ZipInfo, relative path)] to extract."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise BadInputError(f"{archive.name}: not a readable zip archive: {e}") from None
    with zf:
        infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise BadInputError(f"{archive.name}: {len(infos)} members, more than the limit of {limits.max_members}")
    total, members = 0, []
    for info in infos:
        path = _member_path(info, archive)
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _CHUNK and ratio > limits.max_ratio:
            raise BadInputError(f"{archive.name}: {info.filename!r} expands {ratio:.0f}x "
                                f"(limit {limits.max_ratio:.0f}x): refusing a possible zip bomb")
        if path is not None:
            members.append((info, path))
    if total > limits.max_total_bytes:
        raise BadInputError(f"{archive.name}: expands to {total} bytes, more than the limit of "
                            f"{limits.max_total_bytes}: refusing a possible zip bomb")
    return members


def safe_extract(archive, dest, limits: Limits = Limits()) -> int:
    """Extract ``archive`` into the folder ``dest`` (replaced if present); return the number of files."""
    archive, dest = Path(archive), Path(dest)
    members = check_archive(archive, limits)
    # An archive that wraps everything in a folder of its own name is not nested twice.
    if members and all(rel.parts[0] == dest.name and (len(rel.parts) > 1 or info.is_dir()) for info, rel in members):
        members = [(info, PurePosixPath(*rel.parts[1:])) for info, rel in members if len(rel.parts) > 1]
    n_files = 0
    with hidden_staging(dest) as partial:
        root = partial.resolve()
        with zipfile.ZipFile(archive) as zf:
            for info, rel in members:
                target = partial.joinpath(*rel.parts)
                # Belt and braces: the name checks above should make this impossible.
                if not target.resolve().is_relative_to(root):
                    raise BadInputError(f"{archive.name}: {info.filename!r} resolves outside the target folder")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_member(zf, info, target, archive)
                n_files += 1
    return n_files


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> None:
    # Stream and count: the declared size is a claim, and a member must not write more than it claims.
    written = 0
    try:
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise BadInputError(f"{archive.name}: {info.filename!r} is larger than its header says")
                out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise BadInputError(f"{archive.name}: {info.filename!r} is corrupt: {e}") from None


def marker_path(root: Path, set_name: str) -> Path:
    return Path(root) / f"{MARKER_PREFIX}{set_name}.json"


def read_marker(root: Path, set_name: str) -> dict | None:
    path = marker_path(root, set_name)
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        marker = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(marker, dict) and marker.get("set") == set_name and marker.get("complete") is True:
            return marker
    return None


def other_sets_in(root: Path, set_name: str) -> list:
    """Names of other sets whose completion marker lies in ``root``."""
    if not Path(root).is_dir():
        return []
    return sorted(p.name[len(MARKER_PREFIX):-len(".json")] for p in Path(root).glob(f"{MARKER_PREFIX}*.json")
                  if p.name != marker_path(root, set_name).name)


def write_marker(root: Path, set_name: str, info: dict) -> Path:
    """The last write of a fetch: its presence means every file is downloaded, verified and extracted."""
    path = marker_path(root, set_name)
    write_json(path, {"set": set_name, "complete": True, **info})
    return path
