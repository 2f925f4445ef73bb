"""Coefficients set by hand (or by a schedule) are validated as the constructors validate them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab import constraints, penalties
from reglab._validation import InvalidParameterError
from reglab.optim import proximal_l1
from tests.conftest import constraint_examples, penalty_examples

#: Every coefficient attribute that a constructor validates as a finite number >= 0.
COEFFICIENTS = ("l1", "l2", "coefficient", "factor", "max_value", "min_value", "rate", "target")


def _coefficients(obj: object) -> list[str]:
    config = obj.get_config()  # type: ignore[attr-defined]
    return [k for k in COEFFICIENTS if isinstance(config.get(k), float)]


CASES = [
    (obj, name)
    for obj in [*penalty_examples(), *constraint_examples()]
    for name in _coefficients(obj)
]


@pytest.mark.parametrize(("obj", "name"), CASES, ids=lambda x: getattr(x, "__name__", str(x)))
@pytest.mark.parametrize("bad", [-5.0, float("nan"), "0.1", True])
def test_setter_rejects_what_the_constructor_rejects(obj: object, name: str, bad: object) -> None:
    owner = type(obj).__name__
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of {owner} must be"):
        type(obj)(**{**obj.get_config(), name: bad})  # type: ignore[attr-defined]
    before = getattr(obj, name)
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of {owner} must be"):
        setattr(obj, name, bad)
    assert getattr(obj, name) == before  # the rejected value was not stored


def test_every_example_has_a_checked_coefficient() -> None:
    # The parametrisation above must not be empty for classes that have coefficients.
    covered = {type(obj) for obj, _ in CASES}
    assert covered >= {
        penalties.L1,
        penalties.L2,
        penalties.L1L2,
        penalties.ExpAbs,
        penalties.Orthogonal,
        penalties.KLSparsity,
        penalties.TemporalDifference,
        penalties.ToReference,
        constraints.MaxNorm,
        constraints.MinMaxNorm,
    }


def test_setter_accepts_and_converts_a_valid_value() -> None:
    pen = penalties.L2(0.1)
    pen.l2 = 3  # an int, stored as the constructor stores it
    assert pen.l2 == 3.0
    assert isinstance(pen.l2, float)
    assert pen(torch.ones(2)).item() == pytest.approx(6.0)


def test_attached_penalty_keeps_its_value_when_a_bad_coefficient_is_rejected() -> None:
    # Issue 24, case 7: pen.l2 = -5.0 was accepted and penalty() became negative (-16.85).
    model = nn.Linear(4, 3)
    pen = penalties.L2(0.5)
    reg = reglab.attach(model, {"": dict(kernel=pen)})
    expected = 0.5 * model.weight.detach().square().sum().item()
    with pytest.raises(InvalidParameterError, match=r"'l2' parameter of L2 .* Got -5\.0"):
        pen.l2 = -5.0
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-6)


def test_kl_target_setter_checks_the_open_interval() -> None:
    pen = penalties.KLSparsity(target=0.1)
    with pytest.raises(
        InvalidParameterError,
        match=r"'target' parameter of KLSparsity must be a number in \(0, 1\)\. Got 1\.0",
    ):
        pen.target = 1.0


def test_proximal_l1_setter() -> None:
    model = nn.Linear(3, 2)
    prox = proximal_l1(torch.optim.SGD(model.parameters(), lr=0.1), model, l1=0.1)
    with pytest.raises(InvalidParameterError, match=r"'l1' parameter of proximal_l1 .* Got -1\.0"):
        prox.l1 = -1.0
    assert prox.l1 == 0.1
