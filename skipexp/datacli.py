"""``skipexp-data``: put data sets on disk.

    skipexp-data synthetic DEST [--count N] [--size S] [--seed K]
    skipexp-data isbi2012 [DEST] [--url-base URL ...] [--urls-file FILE] [--mirror URL] [--timeout S]
    skipexp-data isbi2012 [DEST] --from PATH

``synthetic`` writes synthetic sections as TIFF stacks in the ISBI 2012
convention (``synthetic-volume.tif`` uint8, ``synthetic-labels.tif`` with
255 = cell, 0 = membrane) and a PNG preview of the first section beside its
label; defaults come from conf/dataset/synthetic.yaml. ``isbi2012`` puts
train-volume.tif, train-labels.tif and test-volume.tif into DEST (by default
the folder ``dataset=isbi2012`` reads), fetched from the public copies listed
in skipexp/data/isbi2012_sources.json or imported from a copy you have, each
stack checked by its decoded pixels before it is written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from skipexp import checks
from skipexp.config import find_conf_dir
from skipexp.data.download import MIRROR_ENV, read_urls_file
from skipexp.data.io import DataError
from skipexp.data.isbi2012 import Isbi2012Spec
from skipexp.data.isbi2012_fetch import get_isbi2012, import_isbi2012
from skipexp.data.isbi2012_sources import Sources
from skipexp.data.synthetic import MIN_CELL_SIZE, MIN_SIZE, SyntheticSpec, make_stack
from skipexp.errors import ConfigError, exit_on_user_error
from skipexp.files import atomic_write, write_tiff


def export_synthetic(dest: Path, count: int, size: int, seed: int, cell_size: float) -> list[Path]:
    """Write ``count`` training sections of the synthetic set (split 0) and a preview PNG under ``dest``."""
    images, membranes = make_stack(seed, 0, count, size, cell_size)  # refuses bad values before DEST is made
    volume = (images * 255).round().astype(np.uint8)
    labels = np.where(membranes == 1, 0, 255).astype(np.uint8)
    paths = [dest / "synthetic-volume.tif", dest / "synthetic-labels.tif", dest / "synthetic-sample.png"]
    gap = np.full((size, 8), 255, np.uint8)
    preview = Image.fromarray(np.concatenate([volume[0], gap, labels[0]], axis=1))
    fails_as = {"what": "the synthetic stacks, at", "error": DataError, "fix": "pick a DEST you can write to"}
    write_tiff(paths[0], volume, **fails_as)
    write_tiff(paths[1], labels, **fails_as)
    atomic_write(paths[2], lambda handle: preview.save(handle, format="PNG"), **fails_as)
    return paths


def _check_synthetic_flags(args: argparse.Namespace, defaults: SyntheticSpec) -> None:
    """The flags of ``skipexp-data synthetic``, named as typed, checked before anything is generated."""
    flags = {"--count": args.count, "--size": args.size, "--seed": args.seed, "--cell-size": args.cell_size}
    checks.positive_int("", flags, "--count", example=defaults.n_train)
    checks.integer("", flags, "--size", minimum=MIN_SIZE, example=defaults.size)
    checks.non_negative_int("", flags, "--seed", example=defaults.seed)
    checks.number("", flags, "--cell-size", minimum=MIN_CELL_SIZE, example=defaults.cell_size)


def _isbi2012(args: argparse.Namespace, dest: Path) -> list[Path]:
    """``skipexp-data isbi2012``: the flags checked, then the stacks fetched or imported into ``dest``."""
    checks.positive_number("", {"--timeout": args.timeout}, "--timeout", example=60)
    if args.source is not None:
        given = [flag for flag, value in (("--url-base", args.url_base), ("--urls-file", args.urls_file),
                                          ("--mirror", args.mirror)) if value]
        if given:
            raise ConfigError(f"--from {args.source} imports a copy you have, so {' and '.join(given)} would not be "
                              f"used; drop {'them' if len(given) > 1 else 'it'} (or drop --from to download)"
                              f"{f' and unset {MIRROR_ENV}' if '--mirror' in given else ''}.")
        return import_isbi2012(dest, args.source.expanduser(), Sources.shipped())
    extra = read_urls_file(args.urls_file) if args.urls_file else []
    bases = list(dict.fromkeys([*args.url_base, *extra]))
    return get_isbi2012(dest, Sources.shipped(), bases, mirror=args.mirror, timeout=args.timeout)


def _parser(defaults: SyntheticSpec, root: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skipexp-data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthetic", help="write synthetic EM-like sections and labels as TIFF stacks and a PNG")
    syn.add_argument("dest", type=Path, help="folder to write into (created if missing)")
    syn.add_argument("--count", type=int, default=defaults.n_train, help="number of sections (default %(default)s)")
    syn.add_argument("--size", type=int, default=defaults.size, help="section size in pixels (default %(default)s)")
    syn.add_argument("--seed", type=int, default=defaults.seed, help="data seed (default %(default)s)")
    syn.add_argument("--cell-size", type=float, default=defaults.cell_size,
                     help="mean cell diameter in pixels (default %(default)s)")
    isbi = sub.add_parser("isbi2012", help="fetch the ISBI 2012 stacks (or import a copy), each checked by its "
                                           "decoded pixels")
    isbi.add_argument("dest", type=Path, nargs="?", help=f"folder to write into (created if missing); default {root}, "
                      "the folder dataset=isbi2012 reads (data/isbi2012 under the folder you run from, or "
                      "$SKIPEXP_DATA/isbi2012)")
    isbi.add_argument("--from", dest="source", type=Path, metavar="PATH",
                      help="import a copy you have instead of downloading: a folder with the three .tif stacks, or "
                           "their per-section PNG folders (0.png ... 29.png)")
    isbi.add_argument("--url-base", action="append", default=[], metavar="URL",
                      help="a URL (or local folder) serving the three .tif stacks, tried before the public mirrors; "
                           "repeat for fallbacks")
    isbi.add_argument("--urls-file", type=Path, metavar="FILE", help="more URL bases, one a line (# comments)")
    isbi.add_argument("--mirror", metavar="URL", default=os.environ.get(MIRROR_ENV) or None,
                      help="fetch the public sources through a mirror laid out as HOST/PATH (as `wget -x` saves "
                           f"them): https://HOST/PATH is read as URL/HOST/PATH (default ${MIRROR_ENV})")
    isbi.add_argument("--timeout", type=float, default=60.0, metavar="S",
                      help="seconds to wait for a server (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; a bad value or a failed fetch is one sentence on stderr and exit 2."""
    with exit_on_user_error("skipexp-data"):
        conf = find_conf_dir()
        defaults = SyntheticSpec.from_config(OmegaConf.load(conf / "dataset" / "synthetic.yaml"))
        root = Isbi2012Spec.from_config(OmegaConf.load(conf / "dataset" / "isbi2012.yaml")).root
        args = _parser(defaults, root).parse_args(argv)
        if args.command == "isbi2012":
            paths = _isbi2012(args, args.dest or root)
        else:
            _check_synthetic_flags(args, defaults)
            paths = export_synthetic(args.dest, args.count, args.size, args.seed, args.cell_size)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
