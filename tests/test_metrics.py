import numpy as np

from skipexp.metrics import dice, pixel_error


def test_dice_by_hand():
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[1, 0, 1, 0]])
    assert dice(pred, truth) == 2 * 1 / (2 + 2)
    assert dice(truth, truth) == 1.0
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert dice(np.ones((2, 2)), np.zeros((2, 2))) == 0.0


def test_pixel_error_by_hand():
    assert pixel_error(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == 0.5
    assert pixel_error(np.array([1, 0]), np.array([1, 0])) == 0.0
