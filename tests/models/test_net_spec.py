"""net_spec: every value of the ``model`` and ``depth`` nodes is checked, in one sentence naming it, before
anything is built."""

from __future__ import annotations

import time

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from skipexp.errors import ConfigError, UserError
from skipexp.models import FCResNet, NetSpec, build_model, net_spec
from tests.conftest import compose_config

WRONG = {  # key: values a user might type, each of which must be refused
    "model.long_skip": ["abc", "3", "1", "null"],
    "model.short_skip": ["abc", "0"],
    "model.checkpointing": ["yes", "1"],
    "model.match_params": ["Both", "5", "true", "all"],
    "model.block": ["5", "nope", "Bottleneck", "true"],
    "model.width": ["abc", "1.5", "8.0", "true", "0", "-1", "null"],
    "model.n_simple_blocks": ["true", "0", "-1", "1.5", "abc"],
    "model.merge": ["5", "add", "true"],
    "model.upsample": ["5", "nearest"],
    "model.dropout": ["abc", "true", "-1.0", "-0.1", "1", "1.0", "1.5", "null"],
    "model.norm": ["5", "layer", "null"],
    "depth.layers": ["abc", "1.5", "true", "-1", "0", "null"],
}
CASES = [(key, text) for key, texts in WRONG.items() for text in texts]
_parser = OverridesParser.create()
_DEFAULT = compose_config([])


def test_every_key_of_the_model_node_is_covered():
    assert {f"model.{key}" for key in _DEFAULT.model} | {"depth.layers"} == set(WRONG)


@pytest.mark.parametrize("key,text", CASES, ids=[f"{k}={t}" for k, t in CASES])
def test_a_wrong_value_is_one_sentence_naming_the_key(key, text):
    cfg = _DEFAULT.copy()
    OmegaConf.update(cfg, key, _parser.parse_override(f"{key}={text}").value(), merge=False)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        net_spec(cfg.model, cfg.depth, 1)
    assert time.perf_counter() - started < 0.5
    message = str(err.value)
    assert f"{key}=" in message and "\n" not in message and message.endswith("."), message


def test_unreachable_depths_and_a_missing_key_are_sentences_too():
    cfg = compose_config(["depth=27"])
    with pytest.raises(UserError, match=r"depth\.layers=27 .* nearest reachable depths are 26 and 28"):
        net_spec(cfg.model, cfg.depth, 1)
    cfg = compose_config(["depth.layers=5"])
    with pytest.raises(UserError, match=r"depth\.layers=5 .* the nearest reachable depth is 26 "):
        net_spec(cfg.model, cfg.depth, 1)
    cfg = compose_config(["~model.width"])
    with pytest.raises(ConfigError, match=r"model\.width is missing"):
        net_spec(cfg.model, cfg.depth, 1)


def test_the_spec_is_what_build_model_builds():
    cfg = compose_config(["model.width=4", "model.block=basic", "depth.layers=21", "model.dropout=0"])
    spec = net_spec(cfg.model, cfg.depth, 3)
    assert isinstance(spec, NetSpec) and spec.width == 4 and spec.plan.layers == 21 and spec.in_channels == 3
    assert isinstance(spec.dropout, float) and spec.dropout == 0.0
    model = build_model(cfg.model, cfg.depth, 3)
    assert isinstance(model, FCResNet) and model.spec == spec


@pytest.mark.parametrize("overrides", [[], ["model=none"], ["model=long_only"], ["model=short_only"],
                                       ["experiment=paper"], ["experiment=isbi_cpu"], ["model.n_simple_blocks=1"],
                                       ["model.dropout=0"]])
def test_the_presets_pass(overrides):
    cfg = compose_config(overrides)
    net_spec(cfg.model, cfg.depth, 1)
