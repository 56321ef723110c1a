import numpy as np
import pytest
import torch
from PIL import Image

from skipexp.gradflow import GradFlow, tracked_layers
from skipexp.models.depth import plan_depth
from skipexp.models.fcresnet import FCResNet, NetSpec, main_path_layers
from skipexp.report.collect import load_arrays
from skipexp.report.figures import gradflow_figure, save_heatmap


def tiny_net(**kw) -> FCResNet:
    torch.manual_seed(0)
    spec = NetSpec(plan_depth(kw.pop("layers", 12), kw.pop("block", "simple")), width=1, norm="none", dropout=0.0,
                   **kw)
    return FCResNet(spec).double()


def loss_of(model, x):
    return (model(x) ** 2).sum()


def finite_difference_grad_norm(model, x, weight, eps=1e-6):
    """The layer's gradient norm by central differences, one weight at a time: no autograd involved."""
    flat = weight.data.view(-1)
    squares = 0.0
    for i in range(flat.numel()):
        keep = flat[i].item()
        flat[i] = keep + eps
        up = loss_of(model, x).item()
        flat[i] = keep - eps
        down = loss_of(model, x).item()
        flat[i] = keep
        squares += ((up - down) / (2 * eps)) ** 2
    return squares**0.5


def test_recorded_norms_equal_finite_differences():
    model = tiny_net()
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    flow = GradFlow(model, every=1)
    loss_of(model, x).backward()
    norms = dict(zip(flow.layer_names, flow.record_gradients(1), strict=True))
    with torch.no_grad():
        for name in ("down1.conv1", "across.b1.conv1", "classifier.conv1"):
            weight = dict(model.named_parameters())[f"{name}.weight"]
            assert norms[name] == pytest.approx(finite_difference_grad_norm(model, x, weight), rel=1e-5), name


def test_layers_follow_the_network_in_depth_order():
    model = FCResNet(NetSpec(plan_depth(26), width=2))
    main, aux = tracked_layers(model)
    assert [t.name for t in main] == [name for name, _ in main_path_layers(model)]
    assert len(main) == 26
    aux_names = [t.name for t in aux]
    # a long skip's projection sits just before the decoder stage it feeds
    assert aux_names.index("long_skips.up1.proj") == aux_names.index("up1.b1.norm1") - 1
    assert {t.kind for t in aux} == {"norm", "skip"}
    assert all(t.kind == "skip" for t in aux if "shortcut" in t.name or "long_skips" in t.name)


def test_weight_update_statistics_by_hand():
    model = tiny_net()
    flow = GradFlow(model, every=1)
    flow.start_epoch()
    with torch.no_grad():
        model.down1.conv1.weight += 0.5
        model.classifier.conv1.weight[0, 0, 0, 0] -= 2.0  # one weight of one: mean 2, std 0
        model.up2.b1.conv1.weight.view(-1)[:2] += torch.tensor([1.0, 3.0], dtype=torch.float64)
    flow.end_epoch(1)
    arrays = flow.arrays()
    row = {name: i for i, name in enumerate(arrays["layers"])}
    mean, std = arrays["update_mean"][0], arrays["update_std"][0]
    assert mean[row["down1.conv1"]] == pytest.approx(0.5) and std[row["down1.conv1"]] == pytest.approx(0.0)
    assert mean[row["classifier.conv1"]] == pytest.approx(2.0)
    n = model.up2.b1.conv1.weight.numel()
    assert mean[row["up2.b1.conv1"]] == pytest.approx(4.0 / n)
    assert arrays["update_max"][0][row["up2.b1.conv1"]] == pytest.approx(3.0)
    assert arrays["update_min"][0][row["up2.b1.conv1"]] == 0.0
    untouched = [i for name, i in row.items() if name not in ("down1.conv1", "classifier.conv1", "up2.b1.conv1")]
    assert np.all(mean[untouched] == 0)


def test_summary_numbers():
    model = tiny_net()
    flow = GradFlow(model, every=2)
    assert not flow.due(1) and flow.due(2) and flow.first_last_ratio() is None
    loss_of(model, torch.randn(1, 1, 64, 64, dtype=torch.float64)).backward()
    norms = flow.record_gradients(2)
    assert flow.first_last_ratio() == pytest.approx(norms[0] / norms[-1])
    medians = flow.stage_medians()
    assert next(iter(medians)) == "down1" and medians["classifier"] == pytest.approx(norms[-1])


def _record(flow, model, steps):
    for step in range(1, steps + 1):
        model.zero_grad()
        flow.start_epoch()
        loss_of(model, torch.randn(1, 1, 64, 64, dtype=torch.float64)).backward()
        flow.record_gradients(step)
        with torch.no_grad():
            for p in model.parameters():
                p -= 1e-3 * p.grad
        flow.end_epoch(step)


def test_npz_and_heatmap_pngs(tmp_path):
    model = tiny_net(layers=26, block="bottleneck")
    flow = GradFlow(model, every=1)
    _record(flow, model, 3)
    flow.save(tmp_path)
    arrays = load_arrays(tmp_path / "gradflow.npz")
    assert arrays["grad_norm"].shape == (3, 26) and list(arrays["steps"]) == [1, 2, 3]
    assert arrays["update_mean"].shape == (3, 26) and list(arrays["layers"][:2]) == ["down1.conv1", "down2.b1.conv1"]
    for png in ("gradflow_grad_norm.png", "gradflow_update.png"):
        assert Image.open(tmp_path / png).size == (800, 600)
    save_heatmap(arrays, "grad_norm", tmp_path / "again.png")
    assert Image.open(tmp_path / "again.png").size == (800, 600)


def test_side_by_side_figure(tmp_path):
    for name, long_skip in (("a", True), ("b", False)):
        model = tiny_net(long_skip=long_skip)
        flow = GradFlow(model, every=1)
        _record(flow, model, 2)
        (tmp_path / name).mkdir()
        flow.save(tmp_path / name)
    out = gradflow_figure([tmp_path / "a", tmp_path / "b"], "grad_norm", tmp_path / "cmp.png")
    width, height = Image.open(out).size
    assert (width, height) == (int((3.2 * 2 + 1.2) * 100), 600)
