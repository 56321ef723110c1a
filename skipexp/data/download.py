"""Fetch the ISBI 2012 stacks from a list of URL bases, each file checked against its sha256 before it lands.

A file is streamed into a hidden temporary file inside DEST and renamed to its
final name only once its checksum matched, so DEST never holds a partial or
wrong file under a real name; files already there with the right checksum are
kept as they are. URL bases are tried in order for each file; the defaults and
the sums live in conf/dataset/isbi2012.yaml (``sources``, ``sha256``).
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from omegaconf import OmegaConf
from tqdm import tqdm

from skipexp.data.io import DataError
from skipexp.data.isbi2012 import Isbi2012Spec
from skipexp.files import atomic_write

CHUNK = 1 << 20


class DownloadError(DataError):
    """A file that could not be fetched and verified; the message names the file, each URL tried and why it failed."""


class _Failed(Exception):
    """One URL that did not give the file (the reason is the message)."""


def isbi2012_defaults(conf_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The default URL bases and the sha256 of each file, from conf/dataset/isbi2012.yaml (checked as the
    ``dataset=isbi2012`` node is everywhere)."""
    spec = Isbi2012Spec.from_config(OmegaConf.load(conf_dir / "dataset" / "isbi2012.yaml"))
    return list(spec.sources), dict(spec.sha256)


def read_urls_file(path: Path) -> list[str]:
    """URL bases from a text file, one a line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DownloadError(f"--urls-file {path} could not be read ({err.strerror or err}); give a text file with one "
                            "URL base a line.") from err
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_url(base: str, name: str) -> str:
    """``BASE/NAME``; a base without a scheme is a local folder (``file://`` URL)."""
    if "://" not in base:
        base = Path(base).expanduser().resolve().as_uri()
    return f"{base.rstrip('/')}/{name}"


def _why(err: BaseException, timeout: float) -> str:
    """A short reason for a failed fetch: HTTP status, connection refused, host not found, time-out..."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP error {err.code} {err.reason}"
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"host not found ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, FileNotFoundError):
        return "no such file"
    if isinstance(reason, http.client.IncompleteRead):
        return f"connection closed after {len(reason.partial)} bytes"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _fetch_one(url: str, name: str, dest: Path, expected: str, timeout: float, progress: bool) -> Path:
    """Stream ``url`` into ``dest / name`` through ``files.atomic_write``: the file appears only whole and with
    the ``expected`` sha256 (a mismatch or a broken connection leaves no file)."""
    request = urllib.request.Request(url, headers={"User-Agent": "skipexp-data"})

    def stream(out: BinaryIO) -> None:
        digest = hashlib.sha256()
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            raise _Failed(_why(err, timeout)) from err
        size = response.headers.get("Content-Length")
        with response, tqdm(total=int(size) if size and size.isdigit() else None, unit="B", unit_scale=True,
                            desc=name, disable=not progress, file=sys.stderr, leave=False) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (http.client.HTTPException, OSError) as err:
                    raise _Failed(_why(err, timeout)) from err
                if not chunk:
                    break
                out.write(chunk)  # an OSError here is our disk, not the URL: atomic_write says so
                digest.update(chunk)
                bar.update(len(chunk))
        got = digest.hexdigest()
        if got != expected:
            raise _Failed(f"checksum mismatch (expected sha256 {expected}, got {got})")

    return atomic_write(dest / name, stream, error=DownloadError, fix="free some space or pick another DEST")


def fetch_files(dest: Path, url_bases: list[str], sha256: dict[str, str], timeout: float = 60.0,
                progress: bool = True, say: Callable[[str], None] | None = None) -> list[Path]:
    """Put every file of ``sha256`` into ``dest``, verified, trying ``url_bases`` in order; return their paths.

    Stops with a DownloadError at the first file no URL base gives intact;
    files fetched before it stay (they are complete and verified).
    """
    say = say or (lambda text: print(text, file=sys.stderr))
    paths = []
    for name, expected in sha256.items():
        target = dest / name
        try:
            intact = target.is_file() and file_sha256(target) == expected
        except OSError as err:
            raise DownloadError(f"{target} could not be read ({err.strerror or err}); make it readable or remove "
                                "it.") from err
        if intact:
            say(f"{name}: already in {dest} with the right sha256, kept")
            paths.append(target)
            continue
        if not url_bases:
            raise DownloadError(f"no URL base to fetch {name} from (conf/dataset/isbi2012.yaml lists no sources, as no "
                                "public mirror serves these exact files); pass --url-base URL or --urls-file FILE "
                                f"naming a folder URL that serves {', '.join(sha256)}.")
        if target.is_file():
            say(f"{name}: {target} has another sha256, fetching it again")
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DownloadError(f"cannot create the folder {dest} ({err.strerror or err}); pick a DEST you can write "
                                "to.") from err
        failures = []
        for base in url_bases:
            url = file_url(base, name)
            try:
                paths.append(_fetch_one(url, name, dest, expected, timeout, progress))
            except _Failed as failed:
                failures.append(f"{url}: {failed}")
                say(f"{name}: {url} failed ({failed}); trying the next URL base" if base != url_bases[-1]
                    else f"{name}: {url} failed ({failed})")
                continue
            say(f"{name}: fetched from {url}, sha256 ok")
            break
        else:
            kept = f" ({target} is left as it was)" if target.exists() else ""
            raise DownloadError(f"could not fetch {name} intact from any URL base ({'; '.join(failures)}){kept}; "
                                "pass a working --url-base URL.")
    return paths
