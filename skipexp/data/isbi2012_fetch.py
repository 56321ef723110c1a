"""Getting the ISBI 2012 stacks into a data folder: from the public mirrors, or from a copy the user already has.

For each stack the sources are tried in order: URL bases the user gave, the
TIFF mirrors (bytes checked by git blob id), then the per-section PNGs (each
file checked by its sha256, then stacked). Whatever the source, the decoded
stack must match the shipped decoded-pixel sha256 before it is written, by
``files.write_tiff``, as the multi-page TIFF that ``dataset=isbi2012`` reads:
a folder never holds a partial or wrong stack under a real name, and a stack
already there and correct is kept.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from skipexp.data.download import DownloadError, Failed, fetch, file_url, mirrored
from skipexp.data.isbi2012_sources import Sources, Stack, decode_png, decode_tiff, git_blob_sha1, mismatch
from skipexp.files import write_tiff

Say = Callable[[str], None]
FETCH_FIX = ("check this machine's internet connection (an HTTPS proxy is taken from https_proxy), or import a copy "
             "you have with `skipexp-data isbi2012 --from PATH`")


@dataclass(frozen=True)
class _Source:
    """One place a stack may come from: how messages name it, and how to get its pixels (Failed when it cannot)."""

    label: str
    get: Callable[[], np.ndarray]


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _section(data: bytes, where: str) -> np.ndarray:
    """One decoded 8-bit grayscale section, or Failed naming the file."""
    try:
        image = decode_png(data)
    except ValueError as err:
        raise Failed(f"{where}: {err}") from err
    if image.ndim != 2 or image.dtype != np.uint8:
        raise Failed(f"{where}: holds a {image.dtype} image of shape {tuple(image.shape)}, not an 8-bit grayscale "
                     "section")
    return image


def _stacked(sections: list[np.ndarray], where: str) -> np.ndarray:
    shapes = sorted({section.shape for section in sections})
    if len(shapes) > 1:
        sizes = ", ".join(" x ".join(map(str, shape)) for shape in shapes)
        raise Failed(f"the slices in {where} have different sizes ({sizes})")
    return np.stack(sections)


def _tiff_from_url(url: str, blob_sha1: str | None, timeout: float, progress: bool, label: str) -> np.ndarray:
    data = fetch(url, timeout, progress, label)
    if blob_sha1:
        got = git_blob_sha1(data)
        if got != blob_sha1:
            raise Failed(f"checksum mismatch (expected git blob {blob_sha1}, got {got})")
    try:
        return decode_tiff(data)
    except ValueError as err:
        raise Failed(str(err)) from err


def _pngs_from_url(stack: Stack, template: str, mirror: str | None, timeout: float, progress: bool) -> np.ndarray:
    sections = []
    with tqdm(total=len(stack.png_slices), unit="slice", desc=f"{stack.name} (PNG)", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        for path, expected in stack.png_slices:
            name = PurePosixPath(path).name
            data = _fetch_named(mirrored(template.format(path=path), mirror), name, timeout)
            got = hashlib.sha256(data).hexdigest()
            if got != expected:
                raise Failed(f"{name}: checksum mismatch (expected sha256 {expected}, got {got})")
            sections.append(_section(data, name))
            bar.update()
    return _stacked(sections, "the PNG slices")


def _fetch_named(url: str, name: str, timeout: float) -> bytes:
    try:
        return fetch(url, timeout)
    except Failed as failed:
        raise Failed(f"{name}: {failed}") from failed


def _png_folder_url(stack: Stack, template: str, mirror: str | None) -> str:
    """The folder URL of a stack's PNG slices, for messages."""
    return mirrored(template.format(path=str(stack.png_folder)), mirror) + "/"


def download_sources(stack: Stack, sources: Sources, url_bases: Sequence[str], mirror: str | None,
                     timeout: float, progress: bool) -> list[_Source]:
    """The places ``stack`` is fetched from, in order: the user's URL bases (checked by decoded pixels only, as
    any copy may be re-encoded), the TIFF mirrors (git blob id), the PNG slices (sha256 per file)."""
    found = []
    for base in url_bases:
        url = file_url(base, stack.file)
        found.append(_Source(url, partial(_tiff_from_url, url, None, timeout, progress, stack.file)))
    for template in sources.tiff_mirrors:
        url = mirrored(template.format(name=stack.name), mirror)
        found.append(_Source(url, partial(_tiff_from_url, url, stack.tiff_git_blob_sha1, timeout, progress,
                                          stack.file)))
    folder = _png_folder_url(stack, sources.png_url, mirror)
    found.append(_Source(f"the PNG slices at {folder}",
                         partial(_pngs_from_url, stack, sources.png_url, mirror, timeout, progress)))
    return found


def _read_tiff_file(path: Path) -> np.ndarray:
    try:
        return decode_tiff(path.read_bytes())
    except OSError as err:
        raise Failed(f"could not be read ({err.strerror or err})") from err
    except ValueError as err:
        raise Failed(str(err)) from err


def _read_png_folder(folder: Path, names: list[str]) -> np.ndarray:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise Failed(f"{len(missing)} of the {len(names)} slices are missing ({', '.join(missing[:4])}"
                     f"{', ...' if len(missing) > 4 else ''})")
    sections = []
    for name in names:
        try:
            data = (folder / name).read_bytes()
        except OSError as err:
            raise Failed(f"{name}: could not be read ({err.strerror or err})") from err
        sections.append(_section(data, name))
    return _stacked(sections, str(folder))


def png_folders(root: Path, stack: Stack) -> list[Path]:
    """Where a local copy's PNG slices of ``stack`` may be: ``ROOT/train-volume/`` and the PNG mirror's own layout
    from any level of it (``ROOT/data/membrane/train/image``, ``ROOT/membrane/train/image``, ``ROOT/train/image``,
    ``ROOT/image``), so a clone of the repository or any folder in it will do."""
    parts = stack.png_folder.parts
    return list(dict.fromkeys([root / stack.name, *(root.joinpath(*parts[i:]) for i in range(len(parts)))]))


def local_sources(root: Path, stack: Stack) -> list[_Source]:
    """The copies of ``stack`` under ``root``: its multi-page TIFF, then folders holding its PNG slices by their
    exact names (0.png ... 29.png: the mirror's folders also hold other PNGs)."""
    found = []
    tiff = root / stack.file
    if tiff.is_file():
        found.append(_Source(str(tiff), partial(_read_tiff_file, tiff)))
    names = [PurePosixPath(path).name for path, _ in stack.png_slices]
    for folder in png_folders(root, stack):
        if folder.is_dir() and any((folder / name).is_file() for name in names):
            found.append(_Source(f"the PNG slices in {folder}", partial(_read_png_folder, folder, names)))
    return found


def _kept(target: Path, stack: Stack, sources: Sources, say: Say) -> bool:
    """Whether ``target`` already holds the right stack (then it is left alone)."""
    if not target.exists():
        return False
    try:
        problem = mismatch(stack, _read_tiff_file(target), sources)
    except Failed as failed:
        problem = str(failed)
    if problem is None:
        say(f"{stack.file}: already in {target.parent} with the right pixels, kept")
        return True
    say(f"{stack.file}: the copy in {target.parent} differs ({problem}); getting it again")
    return False


def _first_intact(target: Path, stack: Stack, sources: Sources, candidates: list[_Source], say: Say,
                  fix: str) -> Path:
    """Write ``target`` from the first candidate whose decoded pixels match; DownloadError naming every one tried
    and why when none does."""
    tried = []
    for source in candidates:
        try:
            array = source.get()
            problem = mismatch(stack, array, sources)
            if problem:
                raise Failed(problem)
        except Failed as failed:
            tried.append(f"{source.label}: {failed}")
            say(f"{stack.file}: {source.label} failed ({failed})")
            continue
        write_tiff(target, array, what=f"the {stack.name} stack, at", error=DownloadError,
                   fix="free some space or pick another folder")
        say(f"{stack.file}: from {source.label}, decoded pixels match; written to {target}")
        return target
    left = f" ({target}, which differs, is left as it was)" if target.exists() else ""
    raise DownloadError(f"could not get {stack.file} intact from any source ({'; '.join(tried)}){left}; {fix}.")


def get_isbi2012(dest: Path, sources: Sources, url_bases: Sequence[str] = (), mirror: str | None = None,
                 timeout: float = 60.0, progress: bool = True, say: Say = _say) -> list[Path]:
    """Fetch the three stacks into ``dest``, each from the first source that gives it intact; return their paths.

    Stops with a DownloadError at the first stack no source gives; stacks
    written before it stay (they are complete and verified).
    """
    paths = []
    for stack in sources.stacks:
        target = dest / stack.file
        if _kept(target, stack, sources, say):
            paths.append(target)
            continue
        candidates = download_sources(stack, sources, url_bases, mirror, timeout, progress)
        paths.append(_first_intact(target, stack, sources, candidates, say, FETCH_FIX))
    return paths


def import_isbi2012(dest: Path, root: Path, sources: Sources, say: Say = _say) -> list[Path]:
    """Import a copy the user has under ``root`` (the three TIFFs, or folders of per-section PNGs) into ``dest``,
    each stack checked by its decoded pixels."""
    if not root.is_dir():
        raise DownloadError(f"--from {root} is not a folder; give the folder that holds train-volume.tif, "
                            "train-labels.tif and test-volume.tif, or their per-section PNG folders.")
    paths = []
    for stack in sources.stacks:
        target = dest / stack.file
        candidates = [c for c in local_sources(root, stack) if Path(c.label).resolve() != target.resolve()]
        if _kept(target, stack, sources, say):
            paths.append(target)
            continue
        if not candidates:
            looked = ", ".join(str(folder) for folder in png_folders(root, stack))
            raise DownloadError(f"--from {root} holds no copy of {stack.file}: looked for {root / stack.file} and "
                                f"for PNG slices 0.png to {len(stack.png_slices) - 1}.png in {looked}; give the folder "
                                "that holds the three stacks or their PNG folders.")
        fix = (f"give the challenge's {stack.name} (sections 0 to {len(stack.png_slices) - 1}, in order, as the "
               "challenge numbers them), or fetch it with `skipexp-data isbi2012`")
        paths.append(_first_intact(target, stack, sources, candidates, say, fix))
    return paths
