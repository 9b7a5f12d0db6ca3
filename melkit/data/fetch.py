"""``melkit data fetch``: download a public data set from its Dataverse record, verified and resumable.

The record's native API lists every file with its id, size and checksum; the access API serves a file by
id. Ingested tabular files are requested with ``format=original``: without it Dataverse serves its own
``.tab`` rendering, whose bytes differ from the uploaded file the checksum belongs to.

A download goes to ``NAME.part`` and is renamed only after its checksum matches, so a file under its final
name is always a verified one. An interrupted download continues with an HTTP range request; each try
starts again from the access URL, because its redirect to storage is a signed link that expires.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from melkit.core.errors import BadInputError
from melkit.core.files import writable_dir
from melkit.core.progress import progress_bar
from melkit.data.extract import other_sets_in, read_marker, safe_extract, write_marker
from melkit.data.sources import CITATION, DEFAULT_BASE_URL, DOI, LICENCE, get_source, write_metadata_from_ground_truth

BASE_URL_ENV = "MELKIT_DATAVERSE_URL"
BACKOFF_S = 2.0  # first wait between tries; doubles each time (tests set 0)
TIMEOUT_S = 60.0  # per socket operation, not per file
_CHUNK = 1 << 20
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


class _Retryable(Exception):
    """A failure another try may get past: no connection, a dropped one, a 5xx, an expired storage link."""


@dataclass(frozen=True)
class RemoteFile:
    id: int
    names: tuple  # label, stored file name, original file name (an ingested table has all three)
    size: int | None  # bytes of what is downloaded (the original, for a table); None if the record omits it
    hash_name: str  # hashlib name
    checksum: str
    tabular: bool

    @property
    def name(self) -> str:
        return self.names[-1] or self.names[0]


def _user_agent() -> str:

    try:
        return f"melkit/{version('melkit')}"
    except PackageNotFoundError:
        return "melkit"


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _urlopen(url: str, headers=None, timeout: float = TIMEOUT_S):
    """urlopen with failures sorted: _Retryable for transient ones, HTTPError (4xx) for the caller to word."""
    req = urllib.request.Request(url, headers={"User-Agent": _user_agent(), **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in (408, 429) or e.code >= 500:
            raise _Retryable(f"HTTP {e.code} {e.reason} from {_host(e.geturl() or url)}") from None
        if e.geturl() and e.geturl() != url and e.code in (400, 401, 403, 404, 410):
            # Refused by the storage a redirect led to: its signed link expired; the access URL mints a new one.
            raise _Retryable(f"HTTP {e.code} from redirected storage {_host(e.geturl())}") from None
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise _Retryable(f"cannot reach {_host(url)}: {getattr(e, 'reason', e)}") from None


def _no_network(what: str, tries: int, err: Exception) -> BadInputError:
    return BadInputError(f"{what} failed after {tries} tr{'y' if tries == 1 else 'ies'}: {err}. Check the network "
                         f"connection, or point --base-url (or {BASE_URL_ENV}) at a reachable Dataverse mirror.")


def _sleep_before_try(n_failures: int) -> None:
    time.sleep(BACKOFF_S * 2 ** (n_failures - 1))


def list_files(base_url: str, retries: int, doi: str = DOI, timeout: float = TIMEOUT_S) -> list:
    """The files of the latest version of the record ``doi``, from the native API."""
    url = f"{base_url}/api/datasets/:persistentId/?persistentId={urllib.parse.quote(doi, safe=':/')}"
    for failures in range(retries + 1):
        if failures:
            _sleep_before_try(failures)
        try:
            with _urlopen(url, {"Accept": "application/json"}, timeout) as resp:
                body = resp.read()
            break
        except _Retryable as e:
            if failures == retries:
                raise _no_network(f"listing the files of {doi} at {base_url}", retries + 1, e) from None
        except urllib.error.HTTPError as e:
            raise BadInputError(f"{base_url} has no data set {doi} (HTTP {e.code} {e.reason}); "
                                f"is --base-url a Dataverse server?") from None
    try:
        files = json.loads(body)["data"]["latestVersion"]["files"]
        return [_remote_file(f) for f in files]
    except (ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{url}: not a Dataverse file list ({type(e).__name__}: {e})") from None


def _remote_file(entry: dict) -> RemoteFile:
    df = entry["dataFile"]
    tabular = bool(df.get("originalFileFormat") or df.get("tabularData"))
    checksum = df.get("checksum") or ({"type": "MD5", "value": df["md5"]} if df.get("md5") else {})
    size = df.get("originalFileSize") if tabular else df.get("filesize")
    return RemoteFile(
        id=int(df["id"]),
        names=(entry.get("label") or "", df.get("filename") or "", df.get("originalFileName") or ""),
        size=int(size) if size is not None else None,
        hash_name=_HASHES.get(str(checksum.get("type", "")).upper(), ""),
        checksum=str(checksum.get("value", "")).lower(),
        tabular=tabular,
    )


def select_files(source, remote: list) -> list:
    """[(Wanted, RemoteFile)] for every file the set needs; BadInputError naming what the record lacks."""
    chosen, missing = [], []
    for wanted in source.files:
        hits = [f for f in remote if wanted.matches(f.names)]
        if not hits:
            missing.append(wanted.save_as)
            continue
        # Several matches (e.g. a .csv uploaded beside an ingested .tab): prefer the exact local name.
        hits.sort(key=lambda f: wanted.save_as not in f.names)
        chosen.append((wanted, hits[0]))
    if missing:
        listed = ", ".join(sorted(f.name for f in remote)) or "none"
        raise BadInputError(f"the record lacks {', '.join(missing)} (it lists: {listed})")
    return chosen


def download_url(base_url: str, f: RemoteFile) -> str:
    return f"{base_url}/api/access/datafile/{f.id}" + ("?format=original" if f.tabular else "")


def file_digest(path: Path, hash_name: str) -> str:
    h = hashlib.new(hash_name)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def download(url: str, dest: Path, f: RemoteFile, retries: int, timeout: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming and retrying; verify the checksum; rename."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    with progress_bar(total=f.size, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024) as bar:
        while True:
            have = _size(part)
            if f.size is not None and have > f.size:
                part.unlink()  # not a prefix of this file (another version of the record): start over
                have = 0
            if f.size is not None and have == f.size:
                break
            bar.n = have
            bar.refresh()
            try:
                _get_from(url, part, have, bar, timeout)
                if f.size is None or _size(part) == f.size:
                    break
                if _size(part) < f.size:
                    raise _Retryable(f"the server sent {_size(part)} of {f.size} bytes")
            except _Retryable as e:
                failures = 0 if _size(part) > have else failures + 1  # a try that gained bytes is no failure
                if failures > retries:
                    raise _no_network(f"downloading {dest.name} from {_host(url)}", failures, e) from None
                if failures:
                    _sleep_before_try(failures)
            except urllib.error.HTTPError as e:
                raise BadInputError(f"{url}: HTTP {e.code} {e.reason} for {dest.name}") from None
    actual = file_digest(part, f.hash_name)
    if actual != f.checksum:
        part.unlink()
        raise BadInputError(f"{dest.name}: checksum mismatch ({f.hash_name} {actual}, the record lists {f.checksum}); "
                            f"the file was deleted. Run the command again to download it afresh.")
    os.replace(part, dest)
    return dest


def _get_from(url: str, part: Path, have: int, bar, timeout: float) -> None:
    """One try: GET (from byte ``have`` on, if any) and append to ``part``."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = _urlopen(url, headers, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # our partial file is no prefix the server knows: start over
            part.unlink(missing_ok=True)
            raise _Retryable("the server refused to resume; starting over") from None
        raise
    with resp:
        mode = "wb"
        if have and resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Retryable(f"the server resumed at the wrong offset ({resp.headers.get('Content-Range')})")
            mode = "ab"
        elif have:
            bar.n = 0  # the server ignored the range and sends the whole file
        announced = resp.headers.get("Content-Length")
        received = 0
        with open(part, mode) as out:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (http.client.HTTPException, OSError) as e:
                    raise _Retryable(f"connection lost: {type(e).__name__}: {e}") from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without complaint when the connection drops early.
    if announced and announced.isdigit() and received < int(announced):
        raise _Retryable(f"connection closed after {received} of {announced} bytes")


def resolve_base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    if not re.match(r"https?://", url):
        raise BadInputError(f"base URL must start with http:// or https://, got {url!r}")
    return url


def fetch_set(name: str, to=None, base_url: str | None = None, retries: int = 5, keep_archives: bool = False,
              timeout: float = TIMEOUT_S, echo=print) -> dict:
    """Download, verify and extract the set ``name`` into ``to`` (default ``data/NAME``) in melkit's layout."""
    source = get_source(name)
    root = Path(to) if to is not None else Path("data") / source.name
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
    chosen = select_files(source, list_files(base, retries=retries, timeout=timeout))
    for _, f in chosen:
        if not f.hash_name or not f.checksum:
            raise BadInputError(f"the record lists no usable checksum for {f.name}; refusing an unverifiable download")
    writable_dir(root)  # only now: a failed listing leaves no empty directory behind

    downloads = root / "downloads"
    local = {}
    for wanted, f in chosen:
        # Tables are data in their own right and stay beside the images; archives wait in downloads/.
        dest = (downloads if wanted.kind == "archive" else root) / wanted.save_as
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and file_digest(dest, f.hash_name) == f.checksum:
            echo(f"{wanted.save_as}: already downloaded and verified")
        else:
            dest.unlink(missing_ok=True)
            echo(f"{wanted.save_as}: downloading {_human(f.size)} (file id {f.id})")
            download(download_url(base, f), dest, f, retries=retries, timeout=timeout)
            echo(f"{wanted.save_as}: {f.hash_name} verified")
        local[wanted.save_as] = dest

    for wanted, _ in chosen:
        if wanted.kind == "archive":
            folder = root / Path(wanted.save_as).stem
            n = safe_extract(local[wanted.save_as], folder)
            echo(f"{wanted.save_as}: extracted {n} files into {folder}")
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
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    echo(f"{source.title}: ready in {root} ({source.use.replace('DIR', str(root))})")
    _echo_terms(echo)
    return {"path": str(root), "already_complete": False, "files": files}


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
