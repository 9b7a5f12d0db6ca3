"""``melkit data fetch``: download a public data set from its Dataverse record, verified and resumable.

The work is split three ways: ``http`` bounds, retries and resumes every request and verifies each download
against its checksum; ``dataverse`` lists the record's files and says where each is served; ``extract``
unpacks an archive safely and writes the set's completion marker. What is here puts them together: list,
download what is missing, extract, move the tables into place, mark the folder complete.

Everything waits in ``downloads/`` until the images are extracted: a table under its final name is what
melkit's readers take for a data set, so the tables move beside the images last, and the marker, written
after everything else, is what says the set is complete. A run that stops anywhere keeps what it verified,
and the next run of the same command resumes from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

from melkit.data.fetch.dataverse import NO_NETWORK_ADVICE, download_url, list_files, resolve_base_url, select_files
from melkit.data.fetch.extract import marker_path, other_sets_in, read_marker, safe_extract, write_marker
from melkit.data.fetch.http import DEADLINE_S, STALL_S, Patience, download, file_digest, printable
from melkit.data.sources import CITATION, DOI, LICENCE, get_source, write_metadata_from_ground_truth
from melkit.util.errors import BadInputError
from melkit.util.files import exclusive, file_in_the_way, sweep_temps, writable_dir
from melkit.util.options import default_of, opt

__all__ = ["fetch_set", "FetchOptions"]


def fetch_set(name: str, to=None, base_url: str | None = None, retries: int = 5, keep_archives: bool = False,
              stall_timeout: float = STALL_S, deadline: float = DEADLINE_S, echo=print) -> dict:
    """Download, verify and extract the set ``name`` into ``to`` (default ``data/NAME``) in melkit's layout.

    A try that receives fewer than MIN_PROGRESS bytes in ``stall_timeout`` seconds is cut off; failed tries
    are retried (``retries`` in a row at most, with doubling waits); the whole fetch gives up after
    ``deadline`` seconds, keeping what it downloaded for the next run to resume."""
    patience = Patience(retries=retries, stall_s=stall_timeout, deadline_s=deadline, echo=echo,
                        advice=NO_NETWORK_ADVICE)
    source = get_source(name)
    root = Path(to) if to is not None else Path("data") / source.name
    blocker = file_in_the_way(root)
    if blocker is not None:  # refused before the listing, not after it
        raise BadInputError(f"cannot fetch into {root}: {blocker} is a file, not a folder")
    done = read_marker(root, source.name)
    if done is not None:
        echo(f"{root}: {source.title} is already fetched, verified and extracted; nothing to do.")
        _echo_terms(echo)
        return {"path": str(root), "already_complete": True, "files": done.get("files", [])}
    others = other_sets_in(root, source.name)
    if others:
        raise BadInputError(f"{root} already holds the data set {', '.join(others)}; fetch each set into its own "
                            f"directory (--to)")
    base = resolve_base_url(base_url)
    echo(f"listing the files of {DOI} at {base}")
    chosen = select_files(source, list_files(base, patience))
    for _, f in chosen:
        if not f.hash_name or not f.checksum:
            raise BadInputError(f"the record lists no usable checksum for {printable(f.name, 100)}; refusing an "
                                f"unverifiable download")
    writable_dir(root)  # only now: a failed listing leaves no empty directory behind
    # Under the folder's lock: a second fetch into it exits 2 instead of appending to the same .part files,
    # and the temp files a killed fetch left beside metadata.csv and the marker are this one's to remove.
    with exclusive(root):
        sweep_temps(root, ["metadata.csv", marker_path(root, source.name).name])
        return _fetch_into(root, source, base, chosen, keep_archives, patience, echo)


def _fetch_into(root: Path, source, base: str, chosen: list, keep_archives: bool, patience: Patience,
                echo) -> dict:
    """Download what is missing of ``chosen``, verify, extract and mark ``root`` complete (fetch_set's work
    once the listing is known, under the folder's lock)."""
    local = _download_missing(root, base, chosen, patience, echo)
    for wanted, _ in chosen:
        if wanted.kind == "archive":
            folder = root / Path(wanted.save_as).stem
            n = safe_extract(local[wanted.save_as], folder)
            echo(f"{wanted.save_as}: extracted {n} files into {folder}")
    for wanted, _ in chosen:  # the tables last, each with one rename
        if wanted.kind != "archive" and local[wanted.save_as] != root / wanted.save_as:
            os.replace(local[wanted.save_as], root / wanted.save_as)
            local[wanted.save_as] = root / wanted.save_as
    if source.ground_truth:
        n = write_metadata_from_ground_truth(root / source.ground_truth, root / "metadata.csv")
        echo(f"wrote {root / 'metadata.csv'} ({n} rows) from {source.ground_truth}")

    files = [{"name": w.save_as, "id": f.id, "size": f.size, "checksum": f"{f.hash_name}:{f.checksum}"}
             for w, f in chosen]
    write_marker(root, source.name, {"source": f"{base} {DOI}", "files": files,
                                     "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if not keep_archives:
        for wanted, _ in chosen:
            if wanted.kind == "archive":
                local[wanted.save_as].unlink(missing_ok=True)
        downloads = root / "downloads"
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    echo(f"{source.title}: ready in {root} ({source.use.replace('DIR', str(root))})")
    _echo_terms(echo)
    return {"path": str(root), "already_complete": False, "files": files}


def _download_missing(root: Path, base: str, chosen: list, patience: Patience, echo) -> dict:
    """Each file of ``chosen`` verified on disk, downloaded into ``root/downloads`` unless a verified copy is
    there already: {local name: its path}."""
    local = {}
    for wanted, f in chosen:
        # Everything waits in downloads/ until the images are extracted (see the module's docstring).
        dest = root / "downloads" / wanted.save_as
        # a table an earlier fetch already moved beside the images counts as downloaded too
        places = ([root / wanted.save_as] if wanted.kind != "archive" else []) + [dest]
        done = next((p for p in places if p.exists() and file_digest(p, f.hash_name) == f.checksum), None)
        if done is not None:
            echo(f"{wanted.save_as}: already downloaded and verified")
            local[wanted.save_as] = done
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        echo(f"{wanted.save_as}: downloading {_human(f.size)} (file id {f.id})")
        download(download_url(base, f), dest, f, patience)
        echo(f"{wanted.save_as}: {f.hash_name} verified")
        local[wanted.save_as] = dest
    return local


def _human(size) -> str:
    if size is None:
        return "(size not listed)"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def _echo_terms(echo) -> None:
    echo(f"Licence: {LICENCE}")
    echo(f"Cite: {CITATION}")


@dataclass
class FetchOptions:
    """``melkit data fetch``: the keywords of ``fetch_set``, with its defaults."""

    name: str = opt("ham10000", argument=True)
    to: str | None = opt(None, type=click.Path(file_okay=False), help="Target directory (default data/NAME).")
    base_url: str | None = opt(None, help="Dataverse server (default https://dataverse.harvard.edu, "
                                          "or $MELKIT_DATAVERSE_URL).")
    retries: int = opt(default_of(fetch_set, "retries"), min=0, max=100,
                       help="Further tries after a network failure, with doubling waits.")
    keep_archives: bool = opt(default_of(fetch_set, "keep_archives"),
                              help="Keep the downloaded zip files after extracting them.")
    stall_timeout: float = opt(default_of(fetch_set, "stall_timeout"), min=1, max=3600,
                               help="Seconds a try may go with under 16 KiB received before it is cut off "
                                    "and retried.")
    deadline: float = opt(default_of(fetch_set, "deadline"), min=1,
                          help="Seconds the whole fetch may take, waits and retries included (default 6 h); "
                               "a rerun resumes what was downloaded.")
