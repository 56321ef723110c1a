"""Where skipexp's Hydra config lives and how it composes, for every entry point (``skipexp``, ``skipexp-data``,
tests, the bench): the conf/ folder, override spelling, and the resolvers the config uses."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from skipexp.rundir import variant_name


def find_conf_dir() -> Path:
    """conf/ travels inside the wheel as skipexp/conf; in a source checkout it sits beside skipexp/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"skipexp's conf/ folder was not found beside {here}; reinstall with `make install`.")


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """The config ``skipexp OVERRIDES`` would compose, without a run folder (for tests, benchmarks, reports)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(find_conf_dir()), version_base=None):
        return compose(config_name="config", overrides=normalise_overrides(overrides or []),
                       return_hydra_config=return_hydra_config)


def normalise_overrides(args: list[str]) -> list[str]:
    """Turn ``depth=102`` (or a sweep ``depth=26,50``) into ``depth.layers=...``.

    Hydra parses a bare number as an int, which it refuses as a config-group
    choice; every numeric depth preset holds exactly that many layers, so the
    two spellings build the same network, and any N works, not only presets.
    """
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key == "depth" and value and all(v.strip().isdigit() for v in value.split(",")):
            arg = f"depth.layers={value}"
        out.append(arg)
    return out


JOB_NAME_KEYS = {"depth.layers": "depth", "trainer.seed": "seed"}  # shorter names in sweep subfolders
JOB_NAME_SKIP = ("dataset.root", "checkpoint")  # paths: the same for every job of a sweep, and full of slashes


def job_dirname(overrides: list[str]) -> str:
    """A sweep job's subfolder name from its overrides, e.g. ``model=both,depth=26,seed=0``.

    Like Hydra's ``override_dirname`` but in the order given (sweep order), with
    ``depth.layers`` and ``trainer.seed`` shortened and path-valued keys left out,
    so a folder reads at a glance and never nests.
    """
    parts = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in JOB_NAME_SKIP:
            continue
        key = JOB_NAME_KEYS.get(key, key)
        parts.append(f"{key}={value}".replace("/", "_").replace(os.sep, "_"))
    return ",".join(parts) or "default"


DATA_ENV = "SKIPEXP_DATA"


def data_folder(name: str) -> str:
    """Where data set ``name`` lives unless ``dataset.root`` says otherwise: ``data/NAME`` under the folder you run
    from, or ``$SKIPEXP_DATA/NAME``; ``skipexp-data NAME`` writes there by default, so neither needs a path."""
    return str(Path(os.environ.get(DATA_ENV) or "data") / name)


OmegaConf.register_new_resolver("skipexp_data", data_folder, replace=True)
OmegaConf.register_new_resolver("skipexp_dirname", job_dirname, replace=True)
OmegaConf.register_new_resolver("skipexp_variant", lambda long, short: variant_name(long, short), replace=True)
