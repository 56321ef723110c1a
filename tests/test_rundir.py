"""The run folder's rules shared by the loop and the report: early stopping and convergence."""

import pytest

from skipexp.rundir import compile_mode, convergence, early_stop_due


def test_convergence_compares_the_last_validations_with_the_best_before_them():
    # best before the last 3: 0.80; best of the last 3: 0.803 -> rose 0.003 < 0.005: converged
    result = convergence([0.5, 0.8, 0.79, 0.803, 0.801])
    assert result == {"converged": True, "rise": pytest.approx(0.003), "window": 3, "tolerance": 0.005}
    rising = convergence([0.5, 0.6, 0.7, 0.8, 0.9])  # best before: 0.6, after: 0.9
    assert not rising["converged"] and rising["rise"] == pytest.approx(0.3)
    falling = convergence([0.9, 0.5, 0.5, 0.5])  # no longer rising at all: converged (rise below 0)
    assert falling["converged"] and falling["rise"] == pytest.approx(-0.4)
    assert convergence([0.6, 0.5, 0.61], window=2, tolerance=0.02)["converged"]  # rose 0.01
    short = convergence([0.5, 0.6, 0.7])
    assert not short["converged"] and short["rise"] is None and "3 validations" in short["why"]


def test_early_stop_rule():
    assert not early_stop_due(10, 5, 0)  # patience 0: never
    assert early_stop_due(10, 5, 5) and not early_stop_due(9, 5, 5)


@pytest.mark.parametrize(("flag", "mode"), [(False, None), (True, "default"), ("max-autotune", "max-autotune")])
def test_compile_mode_names_what_trainer_compile_asks_for(flag, mode):
    assert compile_mode(flag) == mode
