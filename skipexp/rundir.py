"""The run folder contract: the names of what a run writes, and the skip variant's name.

It imports nothing from the rest of skipexp, so anything that reads run folders
(the report, plots, sweeps) can import it without loading torch or the network.
"""

from __future__ import annotations

RESULTS = "results.json"
EVAL = "eval.json"
PREDICTIONS = "predictions.tif"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"  # written after every epoch; the one before it is kept as last.prev.pt
BEST_CHECKPOINT = "best.pt"  # the best validation Dice so far
TENSORBOARD = "tb"
GRADFLOW = "gradflow.npz"  # the gradient-flow arrays, rewritten at every validation
HEATMAP_GRAD = "gradflow_grad_norm.png"  # their heat maps, as logged to TensorBoard
HEATMAP_UPDATE = "gradflow_update.png"
VAL_PANEL = "val_prediction.npz"  # the first validation image, its label and the latest prediction of it
SUMMARY = "sweep_summary.json"  # in a sweep folder: every job's outcome

VARIANTS = ("both", "long_only", "short_only", "none")  # the paper's four, in its order


def variant_name(long_skip: bool, short_skip: bool) -> str:
    """The variant's name, derived from the two switches (never stored beside them, so it cannot disagree)."""
    if long_skip:
        return "both" if short_skip else "long_only"
    return "short_only" if short_skip else "none"


def compile_mode(flag: bool | str) -> str | None:
    """torch.compile's mode that ``trainer.compile`` asks for, None = eager (``true`` is the default mode); as
    results.json's ``compile`` records it and the report reads it off runs written before that key."""
    if flag is True:
        return "default"
    return flag or None


def weight_decay_on(config: dict) -> str:
    """The parameters a run's optimizer decayed (``optimizer.weight_decay_on``), read off its config; runs from
    before the key decayed every parameter ("all"). Resume and the report read older runs through it."""
    return str((config.get("optimizer") or {}).get("weight_decay_on", "all"))


def early_stop_due(epoch: int, best_epoch: int, patience: int) -> bool:
    """The early-stopping rule (``trainer.patience``, 0 = off): ``patience`` epochs without a better val Dice.

    The loop stops on it, and the report reads it back to tell an early stop from an interrupted run.
    """
    return patience > 0 and epoch - best_epoch >= patience


CONVERGE_WINDOW = 3  # validations
CONVERGE_TOLERANCE = 0.005  # val Dice


def convergence(val_dice: list[float], window: int = CONVERGE_WINDOW,
                tolerance: float = CONVERGE_TOLERANCE) -> dict:
    """Whether a run's val Dice stopped rising: its best over the last ``window`` validations beats its best before
    them by less than ``tolerance``. Needs more than ``window`` validations; results.json and the report hold it.
    """
    rule = {"window": window, "tolerance": tolerance}
    if len(val_dice) <= window:
        return {"converged": False, "rise": None, **rule,
                "why": f"{len(val_dice)} validations, more than {window} are needed to judge"}
    rise = max(val_dice[-window:]) - max(val_dice[:-window])
    return {"converged": bool(rise < tolerance), "rise": round(float(rise), 6), **rule}


def summary_line(header: dict) -> str:
    """One line for the start of a run, from its results.json header: variant, counted layers, parameters, device."""
    return (f"skipexp {header['mode']}: model={header['model']} (long_skip={header['long_skip']}, "
            f"short_skip={header['short_skip']}), {header['depth_layers']} layers, {header['block']} blocks, "
            f"width {header['width']}, {header['params']:,} parameters, device {header['device']} "
            f"({header['precision']})")
