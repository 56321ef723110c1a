"""Fetching one URL into memory with a progress bar, and a short reason when it fails.

Everything skipexp downloads is small (a stack is 7.9 MB) and checked before
it is written, so a fetch returns bytes and never touches the disk: what lands
in a data folder is written by ``files.atomic_write`` only after its checksum
matched (skipexp/data/isbi2012_fetch.py).
"""

from __future__ import annotations

import http.client
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from skipexp.data.io import DataError

CHUNK = 1 << 20
MIRROR_ENV = "SKIPEXP_DATA_MIRROR"


class DownloadError(DataError):
    """Data that could not be fetched or imported intact; the message names the file, each source tried and why."""


class Failed(Exception):
    """One source that did not give the file (the reason is the message)."""


def file_url(base: str, name: str) -> str:
    """``BASE/NAME``; a base without a scheme is a local folder (``file://`` URL)."""
    if "://" not in base:
        base = Path(base).expanduser().resolve().as_uri()
    return f"{base.rstrip('/')}/{name}"


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` as served by ``mirror``, a server or folder laid out as ``wget -x`` saves URLs (``HOST/PATH``):
    ``https://HOST/PATH`` becomes ``MIRROR/HOST/PATH``; without a mirror, ``url`` itself."""
    if not mirror:
        return url
    return file_url(mirror, url.split("://", 1)[-1])


def read_urls_file(path: Path) -> list[str]:
    """URL bases from a text file, one a line; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DownloadError(f"--urls-file {path} could not be read ({err.strerror or err}); give a text file with one "
                            "URL base a line.") from err
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def why(err: BaseException, timeout: float) -> str:
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


def fetch(url: str, timeout: float, progress: bool = False, label: str = "") -> bytes:
    """The whole body of ``url``, or Failed with the reason; a bar of bytes as they arrive when ``progress``."""
    request = urllib.request.Request(url, headers={"User-Agent": "skipexp-data"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise Failed(why(err, timeout)) from err
    size = response.headers.get("Content-Length")
    expected = int(size) if size and size.isdigit() else None
    chunks = []
    with response, tqdm(total=expected, unit="B", unit_scale=True, desc=label, disable=not progress,
                        file=sys.stderr, leave=False) as bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (http.client.HTTPException, OSError) as err:
                raise Failed(why(err, timeout)) from err
            if not chunk:
                break
            chunks.append(chunk)
            bar.update(len(chunk))
    data = b"".join(chunks)
    if expected is not None and len(data) != expected:
        raise Failed(f"connection closed after {len(data)} of {expected} bytes")
    return data
