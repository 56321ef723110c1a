"""Every figure skipexp draws: validation curves, scores against depth, and gradient-flow heat maps.

A heat map shows one measure per layer (rows, input at the top) over time
(columns) on a log colour scale; the training loop saves one per measure in the
run folder (and logs it to TensorBoard), ``skipexp-plot gradflow`` and the report
put several runs side by side on one shared scale. All figures are set up by
``figure`` and written as PNG by ``save_png`` (atomically). matplotlib is
imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skipexp.errors import UserError
from skipexp.files import atomic_write
from skipexp.report.collect import Run, load_arrays, run_title
from skipexp.report.stats import t_interval
from skipexp.report.tables import cells
from skipexp.rundir import GRADFLOW, VAL_PANEL

# measure: (its time axis in gradflow.npz, that axis' label, the colour bar's label)
MEASURES = {"grad_norm": ("steps", "step", "gradient L2 norm"),
            "grad_rms": ("steps", "step", "gradient RMS per weight (L2 / sqrt(size))"),
            "update_mean": ("epochs", "epoch", "mean |W_end - W_start|")}
HEATMAP_YLABEL = "layer (input at top)"


# ---- set-up -------------------------------------------------------------------------------------------


def figure(n_rows: int, n_cols: int, width: float, height: float, margin: float = 0.0):
    """A figure of ``n_rows`` x ``n_cols`` panels of ``width`` x ``height`` inches (plus ``margin`` inches of width
    for a colour bar or legend) at 100 dpi, so sizes in pixels are 100 x inches; returns (figure, 2-D axes).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols + margin, height * n_rows), dpi=100, layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def save_png(fig, path: Path) -> Path:
    """``fig`` as a PNG at ``path``, atomically."""
    return atomic_write(path, lambda handle: fig.savefig(handle, format="png"))


def _label(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _colours(variants: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {variant: palette(i % 10) for i, variant in enumerate(variants)}


# ---- the report's curves ------------------------------------------------------------------------------


CURVES = (("history", "val_dice", "val Dice", (0.0, 1.0)), ("history", "val_vrand", "val V_rand", (0.0, 1.0)),
          ("history", "val_loss", "val loss", None),
          ("train_history", "train_loss", "training loss (epoch mean)", None))


def curves_figure(runs: list[Run], out: Path) -> Path:
    """Val Dice, V_rand and loss and the training loss against steps, a column per depth: thin lines per seed, the
    mean thick, and a band of the 95% t-interval over seeds (where every seed has a value)."""
    grouped = cells(runs)
    depths = sorted({depth for _, depth in grouped})
    colours = _colours(list(dict.fromkeys(variant for variant, _ in grouped)))
    fig, axes = figure(len(CURVES), len(depths), 4.5, 3.0, margin=1.0)
    for row, (part, key, label, limits) in enumerate(CURVES):
        for col, depth in enumerate(depths):
            ax = axes[row, col]
            for (variant, cell_depth), group in grouped.items():
                if cell_depth != depth:
                    continue
                colour = colours[variant]
                series = [{int(h["step"]): float(h[key]) for h in r.results.get(part, [])} for r in group]
                series = [values for values in series if values]
                if not series:
                    continue
                for values in series:
                    ax.plot(list(values), list(values.values()), color=colour, linewidth=0.7, alpha=0.35)
                common = sorted(set.intersection(*(set(values) for values in series)))  # steps all seeds reached
                bands = [t_interval([values[s] for values in series]) for s in common]
                ax.plot(common, [b.mean for b in bands], color=colour, linewidth=2.0,
                        label=f"{variant} (n={len(series)})")
                if len(series) > 1 and common:
                    ax.fill_between(common, [b.low for b in bands], [b.high for b in bands], color=colour,
                                    alpha=0.18, linewidth=0)
            if limits:
                ax.set_ylim(*limits)
            ax.set_title(f"{depth} layers", fontsize=10)
            _label(ax, "training step", label)
        axes[0, 0].legend(fontsize=8)
    return save_png(fig, out)


def score_vs_depth_figure(rows: list[dict[str, Any]], out: Path) -> Path:
    """Final val Dice and V_rand against depth, a line per variant, error bars the 95% t-interval over seeds."""
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    colours = _colours(variants)
    fig, axes = figure(1, 2, 4.5, 3.6, margin=1.0)
    depths = sorted({row["depth"] for row in rows})
    # depths sit at even spacing (26 and 140 layers alike), each variant nudged sideways so error bars stay apart
    dodge = {variant: 0.08 * (i - (len(variants) - 1) / 2) for i, variant in enumerate(variants)}
    for ax, (name, label) in zip(axes[0], (("final_val_dice", "final val Dice"),
                                           ("final_val_vrand", "final V_rand")), strict=True):
        for variant in variants:
            mine = [row for row in rows if row["variant"] == variant]
            ax.errorbar([depths.index(row["depth"]) + dodge[variant] for row in mine],
                        [row[f"{name}_mean"] for row in mine], yerr=_ci_errors(mine, name),
                        color=colours[variant], marker="o", capsize=3, linewidth=1.6, label=variant)
        ax.set_xticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlim(-0.5, len(depths) - 0.5)
        _label(ax, "depth (layers)", label)
    axes[0, 0].legend(fontsize=8)
    return save_png(fig, out)


# ---- gradient-flow heat maps --------------------------------------------------------------------------


def _ci_errors(rows: list[dict[str, Any]], name: str) -> list[list[float]]:
    """Asymmetric error bars (below, above) from each row's interval; 0 where there is none (one seed)."""
    low = [0.0 if r[f"{name}_ci_low"] is None else r[f"{name}_mean"] - r[f"{name}_ci_low"] for r in rows]
    high = [0.0 if r[f"{name}_ci_high"] is None else r[f"{name}_ci_high"] - r[f"{name}_mean"] for r in rows]
    return [low, high]


def _stage_bounds(stages: np.ndarray) -> list[tuple[str, int, int]]:
    bounds, start = [], 0
    for i in range(1, len(stages) + 1):
        if i == len(stages) or stages[i] != stages[start]:
            bounds.append((str(stages[start]), start, i))
            start = i
    return bounds


def color_range(arrays_list: list[dict[str, np.ndarray]], key: str) -> tuple[float, float]:
    """A log colour range shared by several runs: the 1st to 99.9th percentile of their positive values."""
    values = np.concatenate([a[key][a[key] > 0].ravel() for a in arrays_list if a[key].size] or [np.ones(1)])
    if values.size == 0:
        return 1e-8, 1.0
    low, high = np.percentile(values, [1, 99.9])
    return float(low), float(max(high, low * 10))


def draw_heatmap(ax, arrays: dict[str, np.ndarray], key: str, vrange: tuple[float, float], title: str = ""):
    """Layers (rows, input at the top) x time (columns) on a log colour scale, stage boundaries marked."""
    from matplotlib.colors import LogNorm

    time_key, time_label, _ = MEASURES[key]
    values = np.asarray(arrays[key], dtype=np.float64).T  # layers x time
    times = arrays[time_key]
    low, high = vrange
    image = ax.imshow(np.clip(values, low, high), aspect="auto", interpolation="nearest", cmap="viridis",
                      norm=LogNorm(vmin=low, vmax=high),
                      extent=(float(times[0]) - 0.5, float(times[-1]) + 0.5, values.shape[0] - 0.5, -0.5))
    bounds = _stage_bounds(arrays["stages"])
    for _, start, _ in bounds[1:]:
        ax.axhline(start - 0.5, color="white", linewidth=0.6)
    ax.set_yticks([(a + b - 1) / 2 for _, a, b in bounds], [s for s, _, _ in bounds], fontsize=9)
    ax.set_xlabel(time_label)
    ax.set_title(title, fontsize=10)
    return image


def save_heatmap(arrays: dict[str, np.ndarray], key: str, path: Path) -> Path:
    """One run's heat map of measure ``key`` as an 800 x 600 PNG (the one the run folder and TensorBoard show)."""
    fig, axes = figure(1, 1, 8, 6)
    ax = axes[0, 0]
    title = f"{MEASURES[key][2]} per layer ({len(arrays['layers'])} layers)"
    image = draw_heatmap(ax, arrays, key, color_range([arrays], key), title)
    fig.colorbar(image, ax=ax, label=MEASURES[key][2])
    ax.set_ylabel(HEATMAP_YLABEL)
    return save_png(fig, path)


def check_measure(measure: str) -> None:
    """A one-sentence error for a measure gradflow.npz does not hold."""
    if measure not in MEASURES:
        raise UserError(f"--measure {measure} is not one of {', '.join(MEASURES)}.")


def gradflow_grid(grid: list[list[Path | None]], measure: str, out: Path,
                  titles: list[list[str]] | None = None) -> Path:
    """Heat maps of ``measure`` in rows x columns of run folders (None: an empty panel), saved as PNG.

    All panels share one log colour scale, so a variant whose gradients vanish
    reads as darker than the others at a glance. ``titles`` (same shape as
    ``grid``) default to ``<variant>, <layers> layers`` from each results.json.
    """
    check_measure(measure)
    n_cols = max((len(row) for row in grid), default=0)
    if not n_cols or all(run_dir is None for row in grid for run_dir in row):
        raise UserError("no run folders to draw; give at least one run folder with gradflow.npz.")
    arrays: dict[tuple[int, int], dict] = {}
    for i, row in enumerate(grid):
        for j, run_dir in enumerate(row):
            if run_dir is None:
                continue
            path = run_dir / GRADFLOW
            if not path.is_file():
                raise UserError(f"{path} does not exist; give run folders of runs trained with gradflow.enabled=true.")
            data = load_arrays(path)
            if not data[measure].size:
                raise UserError(f"{path} holds no {measure} yet; let the run record at least one "
                                f"{MEASURES[measure][1]}.")
            arrays[i, j] = data
    vrange = color_range(list(arrays.values()), measure)
    fig, axes = figure(len(grid), n_cols, 3.2, 6, margin=1.2)
    image = None
    for (i, j), ax in ((ij, axes[ij]) for ij in np.ndindex(axes.shape)):
        if (i, j) not in arrays:
            ax.set_axis_off()
            continue
        title = titles[i][j] if titles else run_title(grid[i][j])
        image = draw_heatmap(ax, arrays[i, j], measure, vrange, title)
        if j == 0 or (i, j - 1) not in arrays:
            ax.set_ylabel(HEATMAP_YLABEL)
    fig.colorbar(image, ax=axes.ravel().tolist(), label=MEASURES[measure][2])
    return save_png(fig, out)


def gradflow_figure(run_dirs: list[Path], measure: str, out: Path) -> Path:
    """Side-by-side heat maps of ``measure`` for ``run_dirs``, one shared colour scale, saved as PNG."""
    return gradflow_grid([list(run_dirs)], measure, out)


def gradflow_panels(runs: list[Run], measure: str) -> tuple[list[list[Path | None]], list[list[str]], list[str]]:
    """A grid of run folders (rows: depths, columns: variants), the lowest seed with gradflow data per cell.

    Returns the grid, its titles and notes on runs skipped for lack of gradflow data.
    """
    grouped = cells(runs)
    variants = list(dict.fromkeys(variant for variant, _ in grouped))
    depths = sorted({depth for _, depth in grouped})
    grid: list[list[Path | None]] = [[None] * len(variants) for _ in depths]
    titles = [[""] * len(variants) for _ in depths]
    notes = []
    for (variant, depth), group in grouped.items():
        for run in group:  # lowest seed first
            path = run.folder / GRADFLOW
            if not path.is_file():
                notes.append(f"{run.folder.name} has no {GRADFLOW}; left out of the gradient-flow figure.")
                continue
            try:
                arrays = load_arrays(path)
                empty = measure not in arrays or not arrays[measure].size
            except (OSError, ValueError, KeyError) as err:
                notes.append(f"{path} is unreadable ({type(err).__name__}); left out of the gradient-flow figure.")
                continue
            if empty:
                notes.append(f"{path} holds no {measure}; left out of the gradient-flow figure.")
                continue
            i, j = depths.index(depth), variants.index(variant)
            grid[i][j] = run.folder
            titles[i][j] = f"{variant}, {depth} layers (seed {run.seed})"
            break
    return grid, titles, notes


def _panel_arrays(run: Run) -> dict[str, np.ndarray] | None:
    try:
        return load_arrays(run.folder / VAL_PANEL)
    except (OSError, ValueError):
        return None


def predictions_figure(runs: list[Run], out: Path) -> tuple[Path | None, list[str]]:
    """The same validation slice predicted by every variant: a row pair per depth (membrane probability; errors at
    0.5, false membrane red and missed membrane blue, over the image), the image and label in the first column.
    The lowest seed with a saved prediction stands for each cell."""
    grouped = cells(runs)
    variants = list(dict.fromkeys(variant for variant, _ in grouped))
    depths = sorted({depth for _, depth in grouped})
    chosen = {}
    for (variant, depth), group in grouped.items():
        found = next(((r, a) for r in group if (a := _panel_arrays(r)) is not None), None)
        if found:
            chosen[variant, depth] = found
    if not chosen:
        return None, [f"no run holds {VAL_PANEL}; predictions.png was not drawn."]
    fig, axes = figure(2 * len(depths), len(variants) + 1, 2.6, 2.6)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, depth in enumerate(depths):
        for j, variant in enumerate(variants):
            if (variant, depth) not in chosen:
                continue
            run, arrays = chosen[variant, depth]
            image = arrays["image"].astype(np.float32)
            gray = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
            prob, label, valid = arrays["prob"].astype(np.float32), arrays["label"], arrays["valid"]
            if not axes[2 * i, 0].images:  # the image and label once per depth, from the first variant drawn
                axes[2 * i, 0].imshow(gray, cmap="gray")
                axes[2 * i, 0].set_title(f"image ({depth} layers)", fontsize=8)
                axes[2 * i + 1, 0].imshow(label, cmap="gray_r")
                axes[2 * i + 1, 0].set_title("label (black: membrane)", fontsize=8)
            axes[2 * i, j + 1].imshow(prob, cmap="gray_r", vmin=0, vmax=1)
            axes[2 * i, j + 1].set_title(f"{variant}, seed {run.seed}, epoch {int(arrays['epoch'])}", fontsize=8)
            errors = np.stack([gray * 0.6] * 3, axis=-1)
            predicted = prob > 0.5
            errors[predicted & ~label & valid] = (0.9, 0.1, 0.1)  # false membrane
            errors[~predicted & label & valid] = (0.1, 0.3, 0.95)  # missed membrane
            wrong = float(((predicted != label) & valid).sum() / max(valid.sum(), 1))
            axes[2 * i + 1, j + 1].imshow(errors)
            axes[2 * i + 1, j + 1].set_title(f"errors: {100 * wrong:.1f}% of pixels", fontsize=8)
    return save_png(fig, out), []


def report_figures(runs: list[Run], rows: list[dict[str, Any]], measure: str, out: Path
                   ) -> tuple[dict[str, Path], list[str]]:
    """The report's figures in ``out``, and notes: the curves; gradient flow of ``measure`` (gradflow.png) and, beside
    it, the paper's weight-update heat maps and the per-weight gradient RMS, each on one colour scale across the
    variants (drawn only where some run holds the data); final scores against depth."""
    figures = {"curves": curves_figure(runs, out / "curves.png")}
    notes: list[str] = []
    for key, name in ((measure, "gradflow"), *((m, f"gradflow_{m}") for m in ("update_mean", "grad_rms")
                                                 if m != measure)):
        grid, titles, skipped = gradflow_panels(runs, key)
        if any(cell is not None for row in grid for cell in row):
            figures[name] = gradflow_grid(grid, key, out / f"{name}.png", titles)
            notes += skipped if key == measure else []
        else:
            notes.append(f"no run holds {key} gradient-flow data; {name}.png was not drawn.")
    figures["score_vs_depth"] = score_vs_depth_figure(rows, out / "score_vs_depth.png")
    path, skipped = predictions_figure(runs, out / "predictions.png")
    notes += skipped
    if path is not None:
        figures["predictions"] = path
    return figures, notes
