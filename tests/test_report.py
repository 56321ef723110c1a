"""skipexp-report on a real tiny sweep: table values, figures, HParams sessions, bad runs and bad input."""

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml
from PIL import Image

from skipexp.report import COLUMNS, VARIANT_ORDER, ablation_rows, collect_runs, main, markdown_table
from tests.conftest import TINY, run_cli

# TINY with one training and one validation image: each job trains 2 epochs of 1 step
SWEEP = ["-m", "model=both,long_only,short_only,none", "depth=26", "trainer.seed=0",
         *(o for o in TINY if not o.startswith(("dataset.n_train=", "dataset.n_val="))),
         "dataset.n_train=2", "dataset.n_val=1", "trainer.epochs=2", "hydra.sweep.dir=sweep"]
SCORES = {"final_val_loss": ("final", "val_loss"), "final_val_dice": ("final", "val_dice"),
          "final_val_vrand": ("final", "val_vrand"), "final_val_vinfo": ("final", "val_vinfo"),
          "best_val_dice": ("best", "val_dice")}
SKIP_HEAVY = shutil.ignore_patterns("checkpoints", "tb", "*.png")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2))


def fabricate_seed(run: Path, seed: int, shift: float) -> Path:
    """A copy of ``run`` posing as another seed: every val score moved by ``shift``, best and final kept consistent."""
    twin = run.with_name(run.name.replace("seed=0", f"seed={seed}"))
    shutil.copytree(run, twin, ignore=SKIP_HEAVY)
    results = read_json(twin / "results.json")
    for record in results["history"]:
        for key in ("val_loss", "val_dice", "val_pixel_error", "val_vrand", "val_vinfo"):
            record[key] = min(1.0, max(0.0, record[key] * 0.8 + shift))
    results["seed"], results["wall_s"] = seed, results["wall_s"] * 1.5 + shift
    results["final"] = results["history"][-1]
    results["best"] = max(results["history"], key=lambda r: r["val_dice"])
    write_json(twin / "results.json", results)
    config = yaml.safe_load((twin / ".hydra" / "config.yaml").read_text())
    config["trainer"]["seed"] = seed
    (twin / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = [o.replace("trainer.seed=0", f"trainer.seed={seed}") for o in
                 yaml.safe_load((twin / ".hydra" / "overrides.yaml").read_text())]
    (twin / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = read_json(run.parent / "sweep_summary.json")
    summary["jobs"].append({"job": twin.name, "folder": str(twin), "status": "completed", "error": None})
    write_json(run.parent / "sweep_summary.json", summary)
    return twin


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real 4-variant sweep of seed 0 through the CLI, plus a fabricated seed 1 of each variant."""
    work = tmp_path_factory.mktemp("report")
    run_cli(SWEEP, work)
    root = work / "sweep"
    for i, run in enumerate(sorted(root.glob("model=*"))):
        fabricate_seed(run, 1, 0.01 * (i + 1))
    return root


def runs_by_cell(root: Path) -> dict[tuple[str, int], list[dict]]:
    """results.json of every run folder, grouped by (variant, depth), read independently of skipexp.report."""
    cells: dict[tuple[str, int], list[dict]] = {}
    for path in sorted(root.glob("*/results.json")):
        results = read_json(path)
        cells.setdefault((results["model"], results["depth_layers"]), []).append(results)
    return cells


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> tuple[Path, str, str]:
    """``skipexp-report SWEEP --out OUT`` run once in-process: (OUT, stdout, stderr)."""
    out = tmp_path_factory.mktemp("out") / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        main([str(sweep), "--out", str(out)])
    return out, stdout.getvalue(), stderr.getvalue()


def test_table_means_and_stds_equal_numpy(report, sweep):
    out, _, _ = report
    table = read_json(out / "ablation.json")
    rows = table["rows"]
    assert [(r["variant"], r["depth"]) for r in rows] == [(v, 26) for v in VARIANT_ORDER]
    cells = runs_by_cell(sweep)
    for row in rows:
        runs = cells[row["variant"], row["depth"]]
        assert row["n_seeds"] == len(runs) == 2 and row["params"] == runs[0]["params"]
        for column, (part, key) in SCORES.items():
            values = [r[part][key] for r in runs]
            assert row[f"{column}_mean"] == pytest.approx(np.mean(values), rel=1e-12), column
            assert row[f"{column}_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12), column
            half = 12.7062047 * np.std(values, ddof=1) / np.sqrt(2)  # t(0.975, 1 df): two seeds
            assert row[f"{column}_ci_low"] == pytest.approx(np.mean(values) - half, rel=1e-6, abs=1e-12), column
            assert row[f"{column}_ci_high"] == pytest.approx(np.mean(values) + half, rel=1e-6, abs=1e-12), column
        walls = [r["wall_s"] for r in runs]
        assert row["wall_s_mean"] == pytest.approx(np.mean(walls)) and row["wall_s_std"] == pytest.approx(
            np.std(walls, ddof=1))
        reached = [next(h["epoch"] for h in r["history"] if h["val_dice"] >= 0.75) for r in runs
                   if any(h["val_dice"] >= 0.75 for h in r["history"])]
        assert row["epochs_to_target_reached"] == len(reached)
        assert row["epochs_to_target_mean"] == (np.mean(reached) if reached else None)
    assert len(table["runs"]) == 8 and table["left_out"] == []
    per_run = {(r["variant"], r["seed"]): r for r in table["runs"]}
    both0 = cells["both", 26][0] if cells["both", 26][0]["seed"] == 0 else cells["both", 26][1]
    assert per_run["both", 0]["final_val_dice"] == both0["final"]["val_dice"]
    assert per_run["both", 0]["epochs_completed"] == per_run["both", 0]["epochs_planned"] == 2


def test_csv_matches_json(report):
    out, _, _ = report
    rows = read_json(out / "ablation.json")["rows"]
    with (out / "ablation.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        lines = list(reader)
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows, strict=True):
        assert line["variant"] == row["variant"]
        assert line["precision"] == row["precision"]
        for key in COLUMNS[1:]:
            if key == "precision":
                continue
            if row[key] is None:
                assert line[key] == "", key
            else:
                assert float(line[key]) == pytest.approx(row[key], rel=1e-12), key


def test_markdown_and_console(report):
    out, stdout, stderr = report
    text = (out / "ablation.md").read_text()
    first = text[text.index("| variant"):].split("\n\n")[0]
    table_lines = [line for line in first.splitlines() if line.startswith("| ")]
    assert len(table_lines) == 1 + 4  # header and one row per variant
    for variant in VARIANT_ORDER:
        assert any(line.startswith(f"| {variant} | 26 | 2 |") for line in table_lines), variant
    assert " [" in table_lines[1] and "/2) |" in table_lines[1]  # mean [95% CI], epochs to target (k/2)
    assert "## Runs left out\n\nNone." in text
    for png in ("curves.png", "gradflow.png", "score_vs_depth.png"):
        assert f"]({png})" in text
    assert table_lines[0] in stdout and table_lines[1] in stdout  # the table is printed
    for name in ("ablation.md", "ablation.csv", "ablation.json", "curves.png", "hparams"):
        assert str(out / name) in stdout
    assert "left out" not in stderr


def test_figures_are_pngs(report):
    out, _, _ = report
    sizes = {}
    for name in ("curves", "gradflow", "score_vs_depth", "gradflow_update_mean", "gradflow_grad_rms", "predictions"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG"
            sizes[name] = image.size
            assert np.asarray(image.convert("L")).std() > 5, name  # something is drawn
    assert sizes["gradflow"] == (int((3.2 * 4 + 1.2) * 100), 600)  # 4 variants x 1 depth
    assert sizes["curves"][0] >= 400 and sizes["curves"][1] >= 1200  # Dice, V_rand, val and training loss rows
    assert sizes["predictions"] == (int(2.6 * 5 * 100), int(2.6 * 2 * 100))  # image + 4 variants, 1 depth x 2
    assert sizes["score_vs_depth"][0] >= 800


def test_hparams_sessions_read_back(report, sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    out, _, _ = report
    runs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    assert sorted(p.name for p in (out / "hparams").iterdir()) == [p.name for p in runs]
    for run in runs:
        results = read_json(run / "results.json")
        session = out / "hparams" / run.name
        assert len(list(session.glob("events.out.tfevents.*"))) == 1
        acc = EventAccumulator(str(session))
        acc.Reload()
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        hparams = {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
                   for key, value in start.hparams.items()}
        assert hparams["variant"] == results["model"]
        assert hparams["depth"] == results["depth_layers"] == 26 and hparams["seed"] == results["seed"]
        assert hparams["long_skip"] == str(results["long_skip"]).lower() and hparams["width"] == results["width"]
        assert hparams["loss"] == "dice" and hparams["lr"] == pytest.approx(1e-3)
        [dice] = acc.Scalars("hparam/val_dice")
        assert dice.value == pytest.approx(results["final"]["val_dice"], rel=1e-6)
        [best] = acc.Scalars("hparam/best_val_dice")
        assert best.value == pytest.approx(results["best"]["val_dice"], rel=1e-6)
        experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
        domains = {info.name: [v.string_value for v in info.domain_discrete.values] for info in
                   experiment.hparam_infos}
        assert domains["variant"] == list(VARIANT_ORDER)  # every session declares the whole grid
        assert {m.name.tag for m in experiment.metric_infos} >= {"hparam/val_dice", "hparam/val_vrand",
                                                                   "hparam/val_vinfo", "hparam/wall_s"}


def copy_sweep(sweep: Path, dest: Path, names: list[str] | None = None) -> Path:
    """The sweep (or the runs ``names`` of it) copied without checkpoints and event files."""
    dest.mkdir()
    for run in sweep.iterdir():
        if run.is_dir() and (names is None or run.name in names) and run.name != "report":
            shutil.copytree(run, dest / run.name, ignore=SKIP_HEAVY)
    for name in ("sweep_summary.json", "multirun.yaml"):
        if names is None:
            shutil.copy(sweep / name, dest / name)
    return dest


def run_of(root: Path, variant: str, seed: int) -> Path:
    [run] = root.glob(f"model={variant},depth=26,seed={seed},*")
    return run


def test_epochs_to_target_from_hand_edited_history(sweep, tmp_path):
    root = copy_sweep(sweep, tmp_path / "s", [run_of(sweep, "both", s).name for s in (0, 1)])
    for seed, dice in ((0, [0.5, 0.8]), (1, [0.9, 0.95])):
        path = run_of(root, "both", seed) / "results.json"
        results = read_json(path)
        for record, value in zip(results["history"], dice, strict=True):
            record["val_dice"] = value
        write_json(path, results)
    runs = collect_runs(root).runs
    assert len(runs) == 2
    for target, mean, reached in ((0.75, 1.5, 2), (0.85, 1.0, 1), (0.5, 1.0, 2), (0.96, None, 0)):
        [row] = ablation_rows(runs, target)
        assert (row["epochs_to_target_mean"], row["epochs_to_target_reached"]) == (mean, reached), target
    [row] = ablation_rows(runs, 0.96)
    assert "| – (0/2) |" in markdown_table([row], 0.96)
    assert "| 1.5 (2/2) |" in markdown_table(ablation_rows(runs, 0.75), 0.75)


def test_bad_runs_are_left_out_with_reasons(sweep, tmp_path, capsys):
    root = copy_sweep(sweep, tmp_path / "s")
    (run_of(root, "long_only", 1) / "results.json").unlink()  # never validated
    failed = run_of(root, "short_only", 1)
    error = "ConfigError: depth.layers=27 cannot be built; the nearest reachable depths are 26 and 28."
    summary = read_json(root / "sweep_summary.json")
    for job in summary["jobs"]:
        if job["job"] == failed.name:
            job.update(status="failed", error=error)
    summary["jobs"].append({"job": "model=both,depth=27,seed=0", "folder": str(root / "model=both,depth=27,seed=0"),
                            "status": "failed", "error": error})  # failed before its folder held anything
    write_json(root / "sweep_summary.json", summary)
    interrupted = run_of(root, "none", 1)
    results = read_json(interrupted / "results.json")
    results["history"], results["epochs_completed"] = results["history"][:1], 1
    results["final"] = results["best"] = results["history"][0]
    write_json(interrupted / "results.json", results)
    summary_run = root / "summary_only"  # a mode=summary run: a results.json header, no history
    (summary_run / ".hydra").mkdir(parents=True)
    (summary_run / ".hydra" / "config.yaml").write_text("mode: summary\n")
    write_json(summary_run / "results.json", {"mode": "summary", "model": "both", "depth_layers": 140})
    (run_of(root, "both", 0) / "gradflow.npz").unlink()
    out = tmp_path / "out"

    main([str(root), "--out", str(out)])

    captured = capsys.readouterr()
    table = read_json(out / "ablation.json")
    reasons = {item["job"]: item["reason"] for item in table["left_out"]}
    assert reasons[run_of(root, "long_only", 1).name].startswith("no results.json")
    assert reasons[failed.name] == f"failed: {error}"
    assert reasons["model=both,depth=27,seed=0"] == f"failed: {error}"
    assert reasons[interrupted.name] == "incomplete (interrupted or still running): 1 of 2 epochs"
    assert reasons["summary_only"].startswith("not a training run")
    assert len(reasons) == 5
    n_seeds = {row["variant"]: row["n_seeds"] for row in table["rows"]}
    assert n_seeds == {"both": 2, "long_only": 1, "short_only": 1, "none": 1}
    one_seed = next(row for row in table["rows"] if row["variant"] == "none")
    assert one_seed["final_val_dice_std"] is None
    assert one_seed["final_val_dice_mean"] == read_json(run_of(root, "none", 0) / "results.json")["final"]["val_dice"]
    markdown = (out / "ablation.md").read_text()
    for name, reason in reasons.items():
        assert f"- `{name}`: {reason}" in markdown
        assert f"left out {name}: {reason}" in captured.err
    assert any("gradflow.npz" in note and run_of(root, "both", 0).name in note for note in table["notes"])
    assert (out / "gradflow.png").is_file()  # drawn with both's seed 1


def test_killed_sweep_and_plain_runs_folder(sweep, tmp_path):
    # no sweep_summary.json: a job folder without results.json gets its error from the job's log
    root = copy_sweep(sweep, tmp_path / "s", [run_of(sweep, v, 0).name for v in ("both", "none")])
    crashed = run_of(root, "none", 0)
    (crashed / "results.json").unlink()
    (crashed / "cli.log").write_text("skipexp train: model=none\n[2025-01-01][skipexp][ERROR] - skipexp: error: "
                                     "the training loss became nan at step 3 (epoch 1); lower optimizer.lr.\n")
    sweep_read = collect_runs(root)
    assert [run.variant for run in sweep_read.runs] == ["both"]
    [left] = sweep_read.left_out
    assert left.reason == "failed: the training loss became nan at step 3 (epoch 1); lower optimizer.lr."
    # a folder of plain runs, as outputs/runs holds
    plain = tmp_path / "runs"
    plain.mkdir()
    for variant in ("both", "none"):
        shutil.copytree(run_of(sweep, variant, 0), plain / f"2025-01-01_00-00-00_{variant}_d26_train",
                        ignore=SKIP_HEAVY)
    assert sorted(run.variant for run in collect_runs(plain).runs) == ["both", "none"]


@pytest.mark.parametrize("case", ["missing", "empty", "file", "run_folder", "target_zero", "target_high",
                                  "out_is_file"])
def test_bad_input_is_one_sentence_and_exit_2(case, sweep, tmp_path, capsys):
    args, named = {
        "missing": ([str(tmp_path / "nope")], str(tmp_path / "nope")),
        "empty": ([str(tmp_path)], str(tmp_path)),
        "file": ([str(tmp_path / "f.txt")], str(tmp_path / "f.txt")),
        "run_folder": ([str(run_of(sweep, "both", 0))], str(sweep)),
        "target_zero": ([str(sweep), "--target-dice", "0"], "--target-dice 0"),
        "target_high": ([str(sweep), "--target-dice", "1.5"], "--target-dice 1.5"),
        "out_is_file": ([str(sweep), "--out", str(tmp_path / "f.txt")], str(tmp_path / "f.txt")),
    }[case]
    (tmp_path / "f.txt").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("skipexp-report: error: ")
    assert named in err and "Traceback" not in err
    assert not (sweep / "report").exists()  # nothing written beside the sweep


def test_docs_out_links_figures_relative_to_the_page(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main([str(sweep), "--out", "docs/ablation", "--no-hparams"])
    page = tmp_path / "docs" / "ablation" / "ablation.md"
    links = [line.split("](", 1)[1].rstrip(")") for line in page.read_text().splitlines() if line.startswith("![")]
    assert links == ["curves.png", "gradflow.png", "gradflow_update_mean.png", "gradflow_grad_rms.png",
                     "score_vs_depth.png", "predictions.png"]
    assert all((page.parent / link).is_file() for link in links)
    assert not (page.parent / "hparams").exists() and "hparams:" not in capsys.readouterr().out
    assert not list(page.parent.glob(".*.tmp"))  # every file went through atomic_write


def test_variant_from_the_switches_and_early_stop_kept(sweep, tmp_path):
    root = copy_sweep(sweep, tmp_path / "s", [run_of(sweep, v, 0).name for v in ("both", "none")])
    renamed = run_of(root, "both", 0) / "results.json"
    results = read_json(renamed)
    del results["model"]  # the name is derived from long_skip and short_skip
    write_json(renamed, results)
    stopped = run_of(root, "none", 0)
    results = read_json(stopped / "results.json")
    results["best"] = results["history"][0]  # no better val Dice after epoch 1 ...
    write_json(stopped / "results.json", results)
    config_path = stopped / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["trainer"].update(epochs=5, patience=1)  # ... so patience 1 ended the run at epoch 2 of 5
    config_path.write_text(yaml.safe_dump(config))
    read = collect_runs(root)
    assert sorted(run.variant for run in read.runs) == ["both", "none"] and read.left_out == []
    config["trainer"]["patience"] = 0  # without early stopping, 2 of 5 epochs is an interrupted run
    config_path.write_text(yaml.safe_dump(config))
    [left] = collect_runs(root).left_out
    assert left.reason == "incomplete (interrupted or still running): 2 of 5 epochs"


def test_importing_the_report_loads_neither_torch_nor_the_network():
    import subprocess
    import sys

    code = ("import sys, skipexp.report; print(' '.join(sorted(sys.modules)))", "import sys, skipexp.rundir; "
            "print(' '.join(sorted(sys.modules)))")
    report, rundir = (set(subprocess.run([sys.executable, "-c", c], capture_output=True, text=True,
                                         check=True).stdout.split()) for c in code)
    heavy = {"skipexp.models", "skipexp.runtime", "skipexp.gradflow", "skipexp.train", "skipexp.build", "torch",
             "hydra", "matplotlib"}
    assert not {m for m in report if m in heavy or m.startswith("skipexp.models.")}
    assert {m for m in rundir if m.startswith("skipexp")} == {"skipexp", "skipexp.rundir"}


def test_the_report_page_says_which_commands_made_it(tmp_path, monkeypatch):
    from skipexp.report.collect import sweep_command

    assert sweep_command(tmp_path) is None
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    hydra: [hydra/launcher=joblib, hydra.mode=MULTIRUN, hydra.sweep.dir=out/s]\n"
        "    task: [experiment=ablation_cpu, dataset.root=data/isbi2012]\n")
    assert sweep_command(tmp_path) == ("skipexp -m experiment=ablation_cpu dataset.root=data/isbi2012 "
                                       "hydra/launcher=joblib hydra.sweep.dir=out/s")
    # launched from elsewhere with this folder's absolute path: written as the folder the report was given
    (tmp_path / "multirun.yaml").write_text(
        f"hydra:\n  overrides:\n    hydra: [hydra.sweep.dir={tmp_path}]\n    task: [experiment=study_cpu]\n")
    assert sweep_command(tmp_path) == f"skipexp -m experiment=study_cpu hydra.sweep.dir={tmp_path}"
    monkeypatch.chdir(tmp_path.parent)
    assert sweep_command(Path(tmp_path.name)) == f"skipexp -m experiment=study_cpu hydra.sweep.dir={tmp_path.name}"


def test_paired_comparisons_match_scipy(report, sweep):
    out, _, _ = report
    found = read_json(out / "ablation.json")["comparisons"]
    assert [(c["a"], c["b"]) for c in found[::3]] == [("both", "long_only"), ("both", "short_only"), ("both", "none")]
    cells = runs_by_cell(sweep)
    for c in found:
        key = {"final V_rand": "val_vrand", "final V_info": "val_vinfo", "final val Dice": "val_dice"}[c["metric"]]
        a = {r["seed"]: r["final"][key] for r in cells[c["a"], 26]}
        b = {r["seed"]: r["final"][key] for r in cells[c["b"], 26]}
        assert c["seeds"] == [0, 1] and c["difference_mean"] == pytest.approx(np.mean([a[s] - b[s] for s in (0, 1)]))
        assert c["p_value"] == pytest.approx(scipy.stats.ttest_rel([a[0], a[1]], [b[0], b[1]]).pvalue)
    text = (out / "ablation.md").read_text()
    assert "## The paper's comparisons, paired by seed" in text and "**Significant at 0.05:**" in text
    assert "q (BH)" in text and "9 tests at 0.05" in text


def test_runs_that_did_not_finish_or_never_learned_are_named():
    from skipexp.report.collect import Run
    from skipexp.report.tables import no_learning_notes, unconverged_notes

    def run(name, dice, converged):
        history = [{"epoch": 4 * (i + 1), "val_dice": d, "val_vrand": 0.2, "val_vinfo": 0.4}
                   for i, d in enumerate(dice)]
        results = {"model": "none", "depth_layers": 104, "seed": 0, "history": history, "stopped_by": "epochs",
                   "converged": {"converged": converged, "rise": 0.0, "window": 3, "tolerance": 0.005}}
        return Run(Path(name), results, {})

    flat_zero = run("dead", [0.0, 0.0, 0.0, 0.0, 0.0], True)
    rising = run("rising", [0.3, 0.5, 0.6, 0.7, 0.78], False)
    fine = run("fine", [0.6, 0.78, 0.79, 0.79, 0.79], True)
    assert no_learning_notes([flat_zero, rising, fine]) == [
        "dead never learned to segment: its best val Dice was 0.000 (final V_rand 0.200), it predicts (nearly) one "
        "class everywhere; its flat curve counts as converged, but the training failed."]
    assert unconverged_notes([flat_zero, rising, fine]) == [
        "rising had not converged (val Dice still rising over its last validations, ended by its epochs)."]


def test_the_page_states_each_runs_compile_mode_and_weight_decay(sweep, tmp_path):
    """The page says how the runs ran: precision, device, eager or compiled, and which parameters were decayed. A
    run written before results.json had ``compile`` and ``weight_decay_on`` is read off its own config, where a
    run from before optimizer.weight_decay_on decayed every parameter."""
    root = copy_sweep(sweep, tmp_path / "s")
    older = run_of(root, "none", 1)
    results = read_json(older / "results.json")
    del results["compile"], results["weight_decay_on"]
    write_json(older / "results.json", results)
    config = yaml.safe_load((older / ".hydra" / "config.yaml").read_text())
    config["trainer"]["compile"] = True
    del config["optimizer"]["weight_decay_on"]
    (older / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    main([str(root), "--out", str(tmp_path / "out"), "--no-hparams"])
    precision = read_json(run_of(root, "both", 0) / "results.json")["precision"]
    assert (f"Runs in {precision} on cpu, compiled (default), weight decay on every parameter (norm weights and "
            f"biases too); {precision} on cpu, eager, weight decay on the conv kernels only.") in (
        tmp_path / "out" / "ablation.md").read_text()
    runs = {(r["variant"], r["seed"]): r for r in read_json(tmp_path / "out" / "ablation.json")["runs"]}
    assert runs["none", 1]["compile"] == "default" and runs["both", 0]["compile"] is None
    assert runs["none", 1]["weight_decay_on"] == "all" and runs["both", 0]["weight_decay_on"] == "kernels"
