"""The Dataverse API, as ``melkit data fetch`` uses it: a record's file list, and the URL of each file.

The record's native API lists every file with its id, size and checksum; the access API serves a file by
id. Ingested tabular files are requested with ``format=original``: without it Dataverse serves its own
``.tab`` rendering, whose bytes differ from the uploaded file the checksum belongs to. The access API
redirects to storage with a signed link that expires, so each try of a download starts again from the
access URL (see ``melkit.data.fetch.http``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
from dataclasses import dataclass

from melkit.data.fetch.http import DeadlinePassed, Patience, Retryable, Watch, open_url, printable, read_body
from melkit.data.sources import DEFAULT_BASE_URL, DOI
from melkit.util.errors import BadInputError

__all__ = ["BASE_URL_ENV", "NO_NETWORK_ADVICE", "RemoteFile", "download_url", "list_files", "resolve_base_url",
           "select_files"]

BASE_URL_ENV = "MELKIT_DATAVERSE_URL"
# What a request that ran out of tries tells the user to do (Patience.advice).
NO_NETWORK_ADVICE = (f"Check the network connection, or point --base-url (or {BASE_URL_ENV}) at a reachable "
                     f"Dataverse mirror.")
_MAX_LISTING = 64 << 20
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


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


def resolve_base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    if not re.match(r"https?://", url):
        raise BadInputError(f"base URL must start with http:// or https://, got {url!r}")
    return url


def list_files(base_url: str, patience: Patience | None = None, doi: str = DOI) -> list:
    """The files of the latest version of the record ``doi``, from the native API."""
    patience = patience or Patience(advice=NO_NETWORK_ADVICE)
    url = f"{base_url}/api/datasets/:persistentId/?persistentId={urllib.parse.quote(doi, safe=':/')}"
    what = f"listing the files of {doi} at {url}"
    failures, last = 0, None
    while True:
        if patience.left() <= 0:
            raise patience.too_late(what, last and f"last problem: {last}")
        try:
            with Watch(patience) as watch, open_url(url, {"Accept": "application/json"}, patience, watch) as resp:
                body = bytearray()
                for chunk in read_body(resp, watch):
                    body += chunk
                    if len(body) > _MAX_LISTING:
                        raise BadInputError(f"{url}: the file list is over {_MAX_LISTING >> 20} MiB; "
                                            f"is --base-url a Dataverse server?")
            break
        except Retryable as e:
            failures, last = failures + 1, e
            patience.retry(what, failures, e)
        except DeadlinePassed as e:
            raise patience.too_late(what, e) from None
        except urllib.error.HTTPError as e:
            raise BadInputError(f"{base_url} has no data set {doi} (HTTP {e.code} {printable(e.reason)}); "
                                f"is --base-url a Dataverse server?") from None
    try:
        files = json.loads(bytes(body))["data"]["latestVersion"]["files"]
        return [_remote_file(f) for f in files]
    except (ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{url}: not a Dataverse file list ({type(e).__name__}: {printable(e)})") from None


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
        names = sorted(printable(f.name, 100) for f in remote)
        listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") or "none"
        raise BadInputError(f"the record lacks {', '.join(missing)} (it lists: {listed})")
    return chosen


def download_url(base_url: str, f: RemoteFile) -> str:
    return f"{base_url}/api/access/datafile/{f.id}" + ("?format=original" if f.tabular else "")
