import re
from pathlib import Path

import pytest

from skipexp.config import find_conf_dir, normalise_overrides
from skipexp.rundir import variant_name
from tests.conftest import CONF, compose_config, run_cli

GROUPS = ["model", "depth", "dataset", "optimizer", "trainer", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    if group == "experiment":  # presets are global: they set other groups' keys
        assert cfg.dataset.name == "isbi2012" and cfg.trainer.epochs > 1
    else:
        assert cfg[group] is not None


@pytest.mark.parametrize("variant,long_skip,short_skip", [("both", True, True), ("long_only", True, False),
                                                          ("short_only", False, True), ("none", False, False)])
def test_model_variants_set_the_skip_flags(variant, long_skip, short_skip):
    cfg = compose_config([f"model={variant}"])
    assert (cfg.model.long_skip, cfg.model.short_skip) == (long_skip, short_skip)
    assert variant_name(cfg.model.long_skip, cfg.model.short_skip) == variant and "variant" not in cfg.model
    assert cfg.model.width == 32 and cfg.model.block == "bottleneck"  # shared keys come from `both`


def test_numeric_depth_presets_hold_their_own_number():
    for option in options("depth"):
        if option.isdigit():
            assert compose_config([f"depth={option}"]).depth.layers == int(option)


def test_numeric_depth_overrides_become_layer_counts():
    assert normalise_overrides(["depth=102", "model=none"]) == ["depth.layers=102", "model=none"]
    assert normalise_overrides(["depth=26,50"]) == ["depth.layers=26,50"]
    assert normalise_overrides(["depth=paper"]) == ["depth=paper"]
    assert compose_config(["depth=77"]).depth.layers == 77


def test_defaults_are_the_papers_recipe_where_it_matters():
    cfg = compose_config()
    assert cfg.optimizer.name == "rmsprop" and cfg.optimizer.lr == 1e-3 and cfg.optimizer.weight_decay == 1e-4
    assert cfg.optimizer.weight_decay_on == "kernels"  # the authors decayed conv kernels only
    assert cfg.trainer.loss == "dice" and cfg.model.dropout == 0.1 and cfg.model.merge == "sum"


def test_conf_is_found_from_the_source_tree():
    assert find_conf_dir() == Path(CONF)


def test_help_lists_every_group_and_option(tmp_path):
    out = run_cli(["--help"], tmp_path).stdout
    for group in GROUPS:
        assert re.search(rf"^{group}\s", out, re.M), group
        for option in options(group):
            assert re.search(rf"^\s+{re.escape(option)}\s+\S", out, re.M), f"{group}={option}"


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = run_cli(["--cfg", "job", "model=long_only", "depth=102"], tmp_path).stdout
    assert "long_skip: true" in out and "short_skip: false" in out and "layers: 102" in out


def test_experiment_presets_pin_their_study():
    cpu = compose_config(["experiment=isbi_cpu"])
    assert (cpu.depth.layers, cpu.model.width, cpu.trainer.crop, cpu.trainer.precision) == (44, 16, 256, "auto")
    assert (cpu.trainer.loss, cpu.augment.rotate_deg, cpu.augment.shear_rad, cpu.augment.rot90) == ("bce", 0, 0, True)
    assert (cpu.model.norm, cpu.model.dropout) == ("instance", 0.0)
    paper = compose_config(["experiment=paper"])
    assert (paper.depth.layers, paper.model.width, paper.trainer.epochs, paper.trainer.patience) == (140, 32, 500, 200)
    assert paper.optimizer.name == "rmsprop" and paper.optimizer.step_epochs == 200 and paper.trainer.crop == 0
    assert paper.trainer.precision == "fp32"  # as the authors trained, pinned
    assert (paper.optimizer.weight_decay, paper.optimizer.weight_decay_on) == (2e-4, "kernels")  # Keras' l2(1e-4)


def test_ablation_presets_pin_their_grid():
    gpu = compose_config(["experiment=ablation"], return_hydra_config=True)
    assert gpu.depth.layers == 140 and gpu.trainer.epochs == 500  # the paper's recipe, swept
    assert dict(gpu.hydra.sweeper.params) == {"model": "both,long_only,short_only,none",
                                               "depth.layers": "50,104,140", "trainer.seed": "0,1,2,3,4"}
    assert (gpu.trainer.precision, gpu.model.n_simple_blocks, gpu.model.match_params) == ("fp32", 1, "both")
    cpu = compose_config(["experiment=ablation_cpu"], return_hydra_config=True)
    assert (cpu.dataset.name, cpu.model.width, cpu.trainer.crop, cpu.trainer.precision) == ("isbi2012", 16, 128, "auto")
    assert cpu.trainer.epochs * cpu.trainer.samples_per_epoch // cpu.trainer.batch_size == 1000
    assert dict(cpu.hydra.sweeper.params)["depth.layers"] == "26,102"
    study = compose_config(["experiment=study_cpu"], return_hydra_config=True)
    assert (study.trainer.precision, study.model.n_simple_blocks, study.resume, study.model.match_params,
            study.model.norm, study.trainer.loss) == ("fp32", 1, "auto", "both", "instance", "bce")
    assert study.trainer.compile is True  # compiled once per net, repaid over its seeds (make bench)
    assert study.trainer.budget_min == 0  # counted in steps: a run's result does not depend on the CPU's load
    assert study.trainer.epochs * study.trainer.samples_per_epoch // study.trainer.batch_size == 2000
    assert dict(study.hydra.sweeper.params) == {"model": "both,long_only,short_only,none", "depth.layers": "26,104",
                                                 "trainer.seed": "0,1,2"}
    assert study.hydra.sweep.dir == "outputs/sweeps/study_cpu"  # fixed: the same command continues it
    from skipexp.models import net_spec
    assert {net_spec(study.model, {"layers": n}, 1).plan.n_simple_blocks for n in (26, 104)} == {1}


def test_sweep_subfolders_read_at_a_glance(tmp_path):
    run_cli(["-m", "experiment=ablation_cpu", "dataset.root=/data/isbi", "mode=summary", "hydra.sweep.dir=sweep"],
            tmp_path)
    names = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(names) == 16
    assert "model=both,depth=26,seed=0,experiment=ablation_cpu,mode=summary" in names
    assert not any("/" in name or "dataset.root" in name for name in names)


def test_plain_trainer_turns_every_speed_up_off():
    from skipexp.runtime import Runtime

    plain = compose_config(["trainer=plain"]).trainer
    fields = (plain.precision, plain.channels_last, plain.fast_dropout, plain.fused_optimizer, plain.allocator,
              plain.compile)
    assert fields == ("fp32", False, False, False, "system", False)
    assert plain.epochs == compose_config([]).trainer.epochs  # only the speed-ups differ
    runtime = Runtime.from_config(plain)
    assert runtime.amp_dtype is None and not runtime.channels_last and not runtime.fast_dropout
    assert not runtime.fast_resample and Runtime.from_config(compose_config([]).trainer).fast_resample
    assert not runtime.fast_norm and Runtime.from_config(compose_config([]).trainer).fast_norm
    assert not runtime.fused_optimizer and Runtime.from_config(compose_config([]).trainer).fused_optimizer


def test_auto_precision_picks_bf16_only_where_the_cpu_runs_it_natively():
    import torch

    from skipexp.runtime import Runtime, auto_precision

    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert auto_precision(torch.device("cpu")) == ("bf16" if native else "fp32")
    runtime = Runtime.from_config(compose_config(["trainer.device=cpu"]).trainer)
    assert runtime.amp_dtype == (torch.bfloat16 if native else None)


def test_bad_compile_mode_is_one_sentence():
    from skipexp.errors import ConfigError
    from skipexp.runtime import Runtime

    with pytest.raises(ConfigError, match=r"trainer\.compile=fast is not one of false, true, default"):
        Runtime.from_config(compose_config(["trainer.compile=fast"]).trainer)

