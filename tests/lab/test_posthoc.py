"""Post-hoc stopping criteria on scripted curves, checked by hand."""

from __future__ import annotations

import pytest

from reglab.lab.work.posthoc import post_hoc_stopping, stopping_criteria

# Validation loss falls to 1.0 at epoch 4, then rises; test accuracy peaks at epoch 5.
VAL = [3.0, 2.0, 1.5, 1.2, 1.0, 1.01, 1.03, 1.06, 1.1, 1.2, 1.3, 1.4]
TEST = [0.5, 0.6, 0.7, 0.8, 0.85, 0.86, 0.84, 0.83, 0.82, 0.81, 0.80, 0.79]
ROWS = [
    {"val_loss": v, "loss": 1.0 / (e + 1), "test_acc": a}
    for e, (v, a) in enumerate(zip(VAL, TEST, strict=True))
]


def test_gl_and_patience_stop_where_hand_computed() -> None:
    m = post_hoc_stopping(ROWS, {"gl": [2, 5], "patience": [3]})
    # GL = 100 (E_va / 1.0 - 1): 1, 3, 6 % at epochs 5, 6, 7 -> GL2 fires at epoch 6, GL5 at 7.
    assert m["stop/gl2"] == 7.0
    assert m["stop/gl5"] == 8.0
    # Patience 3: no improvement at epochs 5, 6, 7 -> stops at epoch 7.
    assert m["stop/patience3"] == 8.0
    assert m["test_acc_last/gl2"] == 0.84
    assert m["test_acc_best/gl2"] == 0.85
    assert m["test_acc_final"] == 0.79
    assert m["test_acc_oracle"] == 0.86


def test_a_criterion_that_never_fires_runs_to_the_end() -> None:
    m = post_hoc_stopping(ROWS, {"gl": [1000]})
    assert m["stop/gl1000"] == len(ROWS)
    assert m["test_acc_last/gl1000"] == TEST[-1]
    assert m["test_acc_best/gl1000"] == 0.85


def test_unknown_criterion_is_named() -> None:
    with pytest.raises(ValueError, match=r"criterion.*'median'"):
        stopping_criteria({"median": [1]})
    assert set(stopping_criteria({"up": [2], "pq": [0.5]})) == {"up2", "pq0.5"}
