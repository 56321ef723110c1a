"""Every value a user can set is checked where it is read, before anything is built: a loop over every key.

Each leaf key of the composed config (every dataset kind and optimizer, so that
every key of every group is visited) gets values of the wrong kind and range,
written as a user writes them on the command line; ``check_config`` (what the
CLI runs before Hydra makes a run folder) must refuse each with one sentence
that names the key. A handful go through the real CLI to check the exit status,
the one printed line, the time and that no run folder is left behind.
"""

from __future__ import annotations

import time

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from skipexp.build import check_config
from skipexp.errors import UserError
from tests.conftest import assert_one_sentence, compose_config, run_cli

BASES = {  # overrides that between them hold every key of every config group
    "synthetic": [],
    "isbi2012": ["dataset=isbi2012", "optimizer=adam"],
    "folder": ["dataset=folder", "dataset.images=imgs", "dataset.masks=masks", "optimizer=sgd"],
}
FREE_TEXT = {  # keys whose value is any text (a path, a URL, a name): only a non-text value is wrong
    "dataset.root", "dataset.images", "dataset.masks", "dataset.valid", "dataset.val_images", "dataset.val_masks",
    "dataset.val_valid", "dataset.predict_images", "checkpoint", "resume",
}
_parser = OverridesParser.create()


def leaves(node: DictConfig, prefix: str = "") -> list[tuple[str, object]]:
    """Every (dotted key, value) below ``node`` that a user sets with ``key=value`` (lists and maps whole)."""
    out = []
    for key in node:
        value = node[key]
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            out += leaves(value, f"{name}.")
        else:
            out.append((name, OmegaConf.to_object(value) if isinstance(value, DictConfig | ListConfig) else value))
    return out


def bad_values(key: str, default: object) -> list[str]:
    """What a user might type that must be refused, by the kind of the default value."""
    if isinstance(default, bool):
        return ["abc", "3"]
    if isinstance(default, int):
        return ["abc", "1.5", "true", "-1"]
    if isinstance(default, float):
        return ["abc", "true", "-1.0"]
    if isinstance(default, str):
        return ["5"] if key in FREE_TEXT else ["5", "nope"]
    if default is None:
        return ["true"]
    return ["abc"]  # a list or a mapping given as text


def cases() -> list[tuple[str, str, str]]:
    seen, out = set(), []
    for base, overrides in BASES.items():
        for key, default in leaves(compose_config(overrides)):
            for text in bad_values(key, default):
                if (key, text) not in seen:
                    seen.add((key, text))
                    out.append((base, key, text))
    return out


CASES = cases()


def test_the_loop_visits_every_group():
    keys = {key for _, key, _ in CASES}
    for node in ("mode", "trainer.epochs", "trainer.crop", "model.width", "model.dropout", "depth.layers",
                 "optimizer.lr", "optimizer.betas", "optimizer.nesterov", "augment.rotate_deg", "gradflow.every",
                 "predict.tile", "dataset.n_train", "dataset.val_slices", "dataset.pair_by"):
        assert node in keys
    assert len(CASES) > 150


@pytest.mark.parametrize("base,key,text", CASES, ids=[f"{k}={t}" for _, k, t in CASES])
def test_every_wrong_value_is_refused_with_a_sentence_naming_it(base, key, text):
    cfg = compose_config(BASES[base]) if base != "synthetic" else _DEFAULT
    cfg = cfg.copy()
    OmegaConf.update(cfg, key, _parser.parse_override(f"{key}={text}").value(), merge=False)
    started = time.perf_counter()
    with pytest.raises(UserError) as err:
        check_config(cfg)
    message = str(err.value)
    assert key in message and "\n" not in message, message
    assert time.perf_counter() - started < 1.0  # nothing was built or generated to find out


_DEFAULT = compose_config([])


def test_the_defaults_and_presets_pass():
    for overrides in [*BASES.values(), ["experiment=isbi_cpu"], ["experiment=paper"], ["trainer=plain"]]:
        check_config(compose_config(overrides))


CLI_CASES = [  # (overrides, words): the real command line, as a new user types it
    (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["model.width=0"], "model.width=0"),
    (["depth=27"], "nearest reachable depths are 26 and 28"),
    (["model.dropout=1.5"], "model.dropout=1.5"),
    (["trainer.precision=fp8"], "trainer.precision=fp8"),
    (["dataset.n_train=0"], "dataset.n_train=0"),
]


@pytest.mark.parametrize("overrides,words", CLI_CASES, ids=[" ".join(o) for o, _ in CLI_CASES])
def test_the_cli_refuses_at_once_prints_once_and_leaves_no_run_folder(tmp_path, overrides, words):
    started = time.perf_counter()
    proc = run_cli(overrides, tmp_path, check=False)
    took = time.perf_counter() - started
    assert_one_sentence(proc, words)
    assert words not in proc.stdout  # printed once, not logged as well
    assert not (tmp_path / "outputs").exists()
    assert took < 20  # no data generated first (interpreter and torch start-up only)


def test_a_data_error_found_after_hydra_started_leaves_no_run_folder(tmp_path):
    proc = run_cli(["dataset=isbi2012", "dataset.root=missing"], tmp_path, check=False)
    assert proc.returncode == 2 and "missing" in proc.stderr
    assert not (tmp_path / "outputs").exists()  # neither the run folder nor the outputs/runs/ made for it


@pytest.mark.parametrize("key", ["+model.widht", "+trainer.epoch", "+depth.depth", "+gradflow.evry", "+modes"])
def test_an_unknown_key_is_refused_in_every_group(key):
    name = key.lstrip("+")
    cfg = _DEFAULT.copy()
    OmegaConf.set_struct(cfg, False)
    OmegaConf.update(cfg, name, 3)
    with pytest.raises(UserError, match=f"{name.replace('.', '[.]')} is not a key of"):
        check_config(cfg)


@pytest.mark.parametrize("mode", ["eval", "predict"])
def test_eval_and_predict_need_an_existing_checkpoint_before_anything_is_built(mode, tmp_path):
    with pytest.raises(UserError, match=f"mode={mode} needs a checkpoint"):
        check_config(compose_config([f"mode={mode}"]))
    with pytest.raises(UserError, match=r"nope\.pt does not exist"):
        check_config(compose_config([f"mode={mode}", f"checkpoint={tmp_path / 'nope.pt'}"]))
