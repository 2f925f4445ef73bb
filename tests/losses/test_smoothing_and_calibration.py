"""Label smoothing in both forms, ECE and reliability against hand computations, temperature."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from reglab import InvalidParameterError
from reglab.losses import (
    LabelSmoothingCrossEntropy,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
    smooth_targets,
)


def test_uniform_form_equals_pytorch_label_smoothing() -> None:
    logits, y = torch.randn(64, 7, dtype=torch.float64), torch.randint(0, 7, (64,))
    for eps in (0.0, 0.05, 0.1, 0.3):
        ours = LabelSmoothingCrossEntropy(eps, "uniform")(logits, y)
        # float64 throughout: equal to rounding, not to float32's 1e-8 (the targets' ε/k)
        theirs = F.cross_entropy(logits, y, label_smoothing=eps)
        torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=0)
    assert smooth_targets(y, 7, 0.1, dtype=torch.float64).dtype == torch.float64
    assert smooth_targets(y, 7, 0.1).dtype == torch.get_default_dtype()


def test_the_two_forms_side_by_side() -> None:
    y = torch.tensor([1, 0])
    uniform = smooth_targets(y, 4, 0.2, "uniform")
    others = smooth_targets(y, 4, 0.2, "others")
    torch.testing.assert_close(uniform[0], torch.tensor([0.05, 0.85, 0.05, 0.05]))
    torch.testing.assert_close(others[0], torch.tensor([0.2 / 3, 0.8, 0.2 / 3, 0.2 / 3]))
    torch.testing.assert_close(uniform.sum(1), torch.ones(2))
    torch.testing.assert_close(others.sum(1), torch.ones(2))


def test_others_form_loss_by_hand() -> None:
    logits, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])
    logp = F.log_softmax(logits, 1)
    expected = -torch.stack(
        [0.9 * logp[i, y[i]] + 0.05 * (logp[i].sum() - logp[i, y[i]]) for i in range(5)]
    ).mean()
    torch.testing.assert_close(LabelSmoothingCrossEntropy(0.1, "others")(logits, y), expected)


def test_ece_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = torch.tensor([0, 1, 1, 1])
    # 2 bins: (0, .5] empty; (.5, 1] holds all: conf mean (.9+.8+.7+.55)/4 = .7375, acc 3/4.
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(abs(0.75 - 0.7375))
    # 5 bins: (.4,.6]: .55 correct -> |1-.55|; (.6,.8]: .8 wrong, .7 right -> |.5-.75|;
    # (.8,1]: .9 right -> |1-.9|.
    expected = (1 * 0.45 + 2 * 0.25 + 1 * 0.1) / 4
    assert expected_calibration_error(probs, y, n_bins=5) == pytest.approx(expected)
    r = reliability_diagram(probs, y, n_bins=5)
    assert r.count.tolist() == [0, 0, 1, 2, 1]
    assert torch.isnan(r.accuracy[0])


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20_000, 5, generator=g, dtype=torch.float64)
    y = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)  # calibrated at T = 1
    assert fit_temperature(2.5 * logits, y) == pytest.approx(2.5, rel=0.03)
    ece_hot = expected_calibration_error((2.5 * logits).softmax(1), y)
    ece_fixed = expected_calibration_error(
        (2.5 * logits / fit_temperature(2.5 * logits, y)).softmax(1), y
    )
    assert ece_fixed < ece_hot / 3


def test_errors() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"'form' parameter of smooth_targets must be one of 'uniform', 'others'\. Got 'book'",
    ):
        smooth_targets(torch.tensor([0]), 3, 0.1, "book")
    with pytest.raises(
        InvalidParameterError,
        match=r"'eps' parameter of LabelSmoothingCrossEntropy must be a float in \[0, 1\)\. Got 1\.0",
    ):
        LabelSmoothingCrossEntropy(1.0)
