"""bench/limits.py (the CPU's kind, the net's own convolution peak, the roofline bound) and the page
`make bench` writes from its figures: checked on cases small enough to count by hand."""

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import limits  # noqa: E402
import run as bench  # noqa: E402


@pytest.mark.parametrize(("flags", "kind"), [
    ({"avx2", "avx512f", "avx512_bf16"}, "native bf16 (AVX-512 BF16)"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "native bf16 (AMX)"),
    ({"avx2", "avx512f"}, "AVX-512 without bf16 (bf16 emulated)"),
    ({"avx2", "fma"}, "AVX2 only (bf16 emulated)"),
])
def test_cpu_kind_from_flags(flags, kind):
    assert limits.cpu_kind(flags) == kind


def test_roofline_counts_flops_and_bytes_of_each_op_and_skips_views():
    a, b = torch.ones(4, 8), torch.ones(8, 16)

    def step():
        return torch.mm(a.view(4, 8), b)  # the view moves no data

    # mm: 2 * 4 * 8 * 16 = 1024 FLOPs; reads 32 + 128 floats, writes 64: 896 bytes
    slow_memory = limits.roofline(step, {torch.float32: 1024.0}, bytes_per_s=448.0)
    assert (slow_memory["flops"], slow_memory["bytes"], slow_memory["ops"]) == (1024, 896, 1)
    assert slow_memory["bound_s"] == pytest.approx(2.0)  # bytes: 896 / 448
    slow_arithmetic = limits.roofline(step, {torch.float32: 256.0}, bytes_per_s=896e3)
    assert slow_arithmetic["bound_s"] == pytest.approx(4.0)  # FLOPs: 1024 / 256
    assert slow_arithmetic["per_op"]["aten::mm"]["count"] == 1


def test_where_time_goes_splits_convolutions_from_the_rest():
    profile = {"aten::mkldnn_convolution": 10.0, "aten::convolution_backward": 20.0, "aten::add": 5.0}
    bound = {"bound_s": 0.012, "per_op": {"aten::convolution": {"bound_s": 0.010}, "aten::add": {"bound_s": 0.002}}}
    split = limits.where_time_goes(profile, bound, step_s=0.050)
    assert [(kind.split(",")[0], round(ms, 6), round(b, 6)) for kind, ms, b in split] == [
        ("convolutions", 30.0, 10.0), ("all other ops", 5.0, 2.0), ("outside any op", 15.0, 0.0)]


def test_conv_shapes_are_the_3x3_convolutions_the_net_runs():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 1),
                              torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1))
    shapes = limits.conv_shapes(net, torch.zeros(2, 1, 16, 16))
    # largest work first, in MACs / 9: 2 x 8 x 8 x 8 x 8, then 2 x 4 x 8 x 8 x 8 (stride 2), then 2 x 1 x 4 x 16 x 16
    assert shapes == [(2, 8, 8, 8, 8, 1), (2, 4, 16, 16, 8, 2), (2, 1, 16, 16, 4, 1)]
    rates = limits.conv_rates(shapes[0], torch.float32, repeats=1, device=torch.device("cpu"))
    assert rates["forward"] > 0 and rates["backward"] > 0


def test_compiled_graphs_are_named_by_the_pass_they_ran_in():
    from types import SimpleNamespace as Event

    step = Event(name="ProfilerStep", cpu_parent=None)
    backward = Event(name="autograd::engine::evaluate_function: CompiledFunctionBackward", cpu_parent=step)
    events = [Event(name="## Call CompiledFxGraph aaa ##", cpu_parent=step),
              Event(name="aten::mkldnn_convolution", cpu_parent=step),
              Event(name="## Call CompiledFxGraph bbb ##", cpu_parent=Event(name="CompiledFunctionBackward",
                                                                          cpu_parent=backward)),
              Event(name="## Call CompiledFxGraph ccc ##", cpu_parent=step),
              Event(name="## Call CompiledFxGraph aaa ##", cpu_parent=step)]  # a second call of the first graph
    assert bench.graph_names(events) == {"## Call CompiledFxGraph aaa ##": "compiled forward graph 1",
                                         "## Call CompiledFxGraph ccc ##": "compiled forward graph 2",
                                         "## Call CompiledFxGraph bbb ##": "compiled backward graph"}


def test_plain_overrides_win_over_a_presets_trainer_keys():
    from skipexp.config import compose_config

    cfg = compose_config([*bench.STUDY, *bench.plain_overrides()])
    assert (cfg.trainer.channels_last, cfg.trainer.precision, cfg.trainer.fast_resample, cfg.trainer.allocator) == (
        False, "fp32", False, "system")
    assert cfg.trainer.crop == 128  # the study's own shape stays


def test_page_states_the_new_figures():
    results = {"cpu_kind": "AVX2 only (bf16 emulated)", "train_speedup_b1": 2.6, "train_speedup_b4": 2.4,
               "b4_vs_b1_per_image": 0.9, "train_s_per_img_b1": 1.0, "train_img_per_s_b1": 1.0,
               "plain_s_per_img_b1": 2.6, "peak_mem_mb_b1": 1, "plain_peak_mem_mb_b1": 1,
               "train_s_per_img_b4": 1.0, "train_img_per_s_b4": 1.0, "plain_s_per_img_b4": 2.4,
               "peak_mem_mb_b4": 1, "plain_peak_mem_mb_b4": 1,
               "shared_default_alone_s": 40.0, "shared_default_pair_s": 72.0, "shared_default_slowdown": 1.8,
               "shared_all_cores_alone_s": 40.0, "shared_all_cores_pair_s": 150.0, "shared_all_cores_slowdown": 3.75,
               "paper_image_steps": 13000, "paper_batch": 4, "paper_own_precision": "fp32",
               "paper_own_s_per_img": 1.2, "paper_own_hours": 13000 * 1.2 / 3600,
               "avx2_precision": "fp32", "avx2_default_s_per_img_b1": 2.0, "avx2_plain_s_per_img_b1": 3.0,
               "avx2_speedup_b1": 1.5, "avx2_default_s_per_img_b4": 1.0, "avx2_plain_s_per_img_b4": 2.6,
               "avx2_speedup_b4": 2.6}
    page = bench.performance_page(results)
    assert "| 1 | 2.000 s/image | 3.000 s/image | 1.50x |" in page  # the AVX2-kernel table, from before its bound
    bounded = bench.performance_page(dict(results, avx2_bound_s_per_img_b1=1.5, avx2_ceiling_b1=2.0,
                                          avx2_bound_s_per_img_b4=0.8, avx2_ceiling_b4=3.25,
                                          avx2_peak_gflops_fp32_b1=230.0, avx2_peak_gflops_fp32_b4=240.0))
    assert "| 1 | 2.000 s/image | 3.000 s/image | 1.50x | 1.500 s/image | 2.00x |" in bounded
    assert "| 4 | 1.000 s/image | 2.600 s/image | 2.60x | 0.800 s/image | 3.25x |" in bounded
    assert "(230 GFLOP/s at batch 1, 240 at batch 4)" in bounded
    assert "batch 1, AVX2 kernels (emulated on this CPU) | 1.50x (at most 2.00x at the default's roofline bound) " \
           "| no |" in bounded
    assert "| default at least 2.5x faster per image than plain fp32, batch 1, AVX2 kernels (emulated on this CPU) " \
           "| 1.50x | no |" in page
    assert "batch 4, AVX2 kernels (emulated on this CPU) | 2.60x | yes |" in page
    assert "CPU kind: AVX2 only (bf16 emulated)" in page
    assert "| default at least 2.5x faster per image than plain fp32, batch 1 (on a CPU without native bf16) | " \
           "2.60x | yes |" in page
    assert "| two default runs at once within 2x of one alone | 1.80x | yes |" in page
    assert "| fp32 (the preset's own) | 1.200 | 260 min |" in page
    assert "| experiment=paper under 90 minutes (fp32) | 260 min | no |" in page


def test_paper_projection_is_image_steps_times_the_pooled_step():
    # experiment=paper: 500 epochs of 26 sections at batch 4; auto's figure is dropped where it is fp32 too
    both = bench.paper_projection({"own": {"precision": "fp32", "step_s": 3.6},
                                   "auto": {"precision": "bfloat16", "step_s": 1.6}})
    assert (both["paper_image_steps"], both["paper_batch"]) == (13000, 4)
    assert both["paper_own_s_per_img"] == 0.9 and both["paper_auto_s_per_img"] == 0.4
    assert abs(60 * both["paper_auto_hours"] - 13000 * 0.4 / 60) < 1e-9  # 86.7 min
    same = bench.paper_projection({"own": {"precision": "fp32", "step_s": 3.6},
                                   "auto": {"precision": "fp32", "step_s": 3.7}})
    assert "paper_auto_hours" not in same and same["paper_own_s_per_img"] == 0.9


def test_page_gives_the_recipe_at_the_default_batch_4_step_too():
    results = {"precision": "bfloat16", "train_s_per_img_b4": 0.42, "paper_image_steps": 13000, "paper_batch": 4,
               "paper_in_rounds": True, "paper_auto_precision": "bfloat16", "paper_auto_s_per_img": 0.473,
               "paper_auto_hours": 13000 * 0.473 / 3600}
    page = bench.performance_page(results)
    assert "| bfloat16 (`trainer.precision=auto`) | 0.473 | 102 min |" in page
    assert "at its 0.420 s per image the recipe would take 91 min. The two steps differ by +13%: how far" in page
    assert "measured in the train step's two rounds above" in page


def test_paper_target_counts_both_measurements_of_its_step():
    # 0.407 s/image in the paper's own child, 0.456 in the default's batch-4 one: 88 and 99 min
    results = {"precision": "bfloat16", "train_s_per_img_b4": 0.456, "paper_image_steps": 13000, "paper_batch": 4,
               "paper_auto_precision": "bfloat16", "paper_auto_s_per_img": 0.407,
               "paper_auto_hours": 13000 * 0.407 / 3600}
    target = "| experiment=paper under 90 minutes (bfloat16) | 88 min; 99 min at the default's batch-4 step |"
    assert f"{target} in one of the two measurements |" in bench.performance_page(results)
    both = dict(results, train_s_per_img_b4=0.40)  # 87 min
    assert "| 88 min; 87 min at the default's batch-4 step | yes |" in bench.performance_page(both)
    neither = dict(results, paper_auto_hours=13000 * 0.5 / 3600)  # 108 min
    assert "| 108 min; 99 min at the default's batch-4 step | no |" in bench.performance_page(neither)
    fp32_default = dict(results, precision="fp32")  # no second measurement in the same precision
    assert "| experiment=paper under 90 minutes (bfloat16) | 88 min | yes |" in bench.performance_page(fp32_default)


def test_cpu_generation_reads_family_and_model_not_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\n"
                    "processor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\n")
    assert bench.cpu_generation(info) == "family 26 model 2"
    assert bench.cpuinfo_field("model name", info) == "AMD EPYC"
    assert bench.cpu_generation(tmp_path / "absent") is None


def test_a_run_on_one_kind_keeps_the_other_kinds_last_figures():
    bf16 = {"cpu_kind": "native bf16 (AVX-512 BF16)", "train_speedup_b1": 3.5, "date": "2026-12-01"}
    avx2 = {"cpu_kind": "AVX2 only (bf16 emulated)", "train_speedup_b1": 1.8}
    # an AVX2 run after a committed bf16 run keeps the bf16 run, whole, under its kind
    kept = bench.other_kinds(bf16, bench.machine_kind(avx2))
    assert kept == {"native bf16 (AVX-512 BF16)": bf16}
    # a second AVX2 run carries the bf16 figures forward, and drops the earlier AVX2 run it replaces
    again = bench.other_kinds(dict(avx2, other_kinds=kept), "AVX2 only (bf16 emulated)")
    assert again == {"native bf16 (AVX-512 BF16)": bf16}
    # back on the bf16 kind: the AVX2 run is kept, the older bf16 one replaced by this run
    back = bench.other_kinds(dict(avx2, other_kinds=kept), "native bf16 (AVX-512 BF16)")
    assert back == {"AVX2 only (bf16 emulated)": avx2}
    # two generations of one kind are two kinds, once the generation is recorded
    zen5 = dict(bf16, cpu="AMD EPYC", cpu_generation="family 26 model 2")
    assert bench.machine_kind(zen5) == "native bf16 (AVX-512 BF16), AMD EPYC family 26 model 2"
    assert bench.other_kinds(bf16, bench.machine_kind(zen5)) == {"native bf16 (AVX-512 BF16)": bf16}
    # a GPU run is its own kind
    assert bench.machine_kind({"cpu_kind": "AVX2 only (bf16 emulated)", "cuda_device": "NVIDIA H200"}) == "NVIDIA H200"


def test_page_shows_the_other_kinds_figures_and_targets():
    other = {"cpu_kind": "native bf16 (AVX-512 BF16)", "cpu": "AMD EPYC", "torch": "2.13.0+cpu", "date": "2026-12-01",
             "commit": "abc1234", "precision": "bfloat16", "train_s_per_img_b1": 0.75, "train_img_per_s_b1": 1.33,
             "plain_s_per_img_b1": 2.7, "train_speedup_b1": 3.6, "peak_mem_mb_b1": 1300, "plain_peak_mem_mb_b1": 1800,
             "train_s_per_img_b4": 0.6, "train_img_per_s_b4": 1.67, "plain_s_per_img_b4": 3.0,
             "train_speedup_b4": 5.0, "peak_mem_mb_b4": 3600, "plain_peak_mem_mb_b4": 5400, "b4_vs_b1_per_image": 0.8}
    page = bench.performance_page({"cpu_kind": "AVX2 only (bf16 emulated)", "other_kinds": {other["cpu_kind"]: other}})
    assert "## The last figures of another machine: native bf16 (AVX-512 BF16)" in page
    assert "Its CPU generation was not recorded" in page
    assert "measured on 2026-12-01 at commit abc1234" in page
    assert "(the default ran in bf16)" in page
    assert "| 4 | 0.600 s/image | 1.67 | 3.000 s/image | 5.00x | 3,600 MB | 5,400 MB |" in page
    assert "| default at least 3.4x faster per image than plain fp32, batch 1 (on a native bf16 CPU) | 3.60x | yes |" \
        in page
