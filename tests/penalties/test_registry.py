"""The common contract of every registered penalty and constraint, and get()'s errors."""

from __future__ import annotations

import pytest
import torch

from reglab import InvalidParameterError, constraints, penalties
from tests.conftest import constraint_examples, penalty_examples

ALL = penalty_examples() + constraint_examples()


def _family(obj):
    return penalties if isinstance(obj, penalties.Penalty) else constraints


@pytest.mark.parametrize("obj", ALL, ids=lambda o: type(o).__name__)
def test_config_round_trip(obj) -> None:
    config = obj.get_config()
    rebuilt = type(obj).from_config(config)
    assert rebuilt == obj
    assert rebuilt.get_config().keys() == config.keys()
    assert _family(obj).get(_family(obj).serialize(obj)) == obj


@pytest.mark.parametrize("obj", ALL, ids=lambda o: type(o).__name__)
def test_get_by_class_name_and_by_object(obj) -> None:
    family = _family(obj)
    assert family.get(obj) is obj
    if type(obj).__name__ != "ToReference":
        assert type(family.get(type(obj).__name__)) is type(obj)


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("l1", penalties.L1(0.01)),
        ("l2", penalties.L2(0.01)),
        ("l1l2", penalties.L1L2()),
        ("l1_l2", penalties.L1L2()),
        ("orthogonal", penalties.Orthogonal()),
        ("kl_sparsity", penalties.KLSparsity()),
        ("tar", penalties.TemporalDifference()),
    ],
)
def test_penalty_aliases(alias, expected) -> None:
    assert penalties.get(alias) == expected


@pytest.mark.parametrize(
    ("alias", "cls"),
    [
        ("max_norm", constraints.MaxNorm),
        ("min_max_norm", constraints.MinMaxNorm),
        ("unit_norm", constraints.UnitNorm),
        ("non_neg", constraints.NonNeg),
    ],
)
def test_constraint_aliases(alias, cls) -> None:
    assert type(constraints.get(alias)) is cls


def test_get_none_and_callables() -> None:
    assert penalties.get(None) is None

    def custom(x: torch.Tensor) -> torch.Tensor:
        return x.sum()

    assert penalties.get(custom) is custom


def test_unknown_identifier_names_what_was_given() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"Could not interpret penalty identifier 'l3'\. Expected None, one of .*'l1'",
    ):
        penalties.get("l3")
    with pytest.raises(ValueError, match=r"Could not interpret constraint identifier 42"):
        constraints.get(42)
    with pytest.raises(
        TypeError,
        match=r"config dict must have the keys 'class_name' and 'config' \(a dict\), and may "
        r"have Keras' 'module' and 'registered_name'\. Got \{'name': 'l2'\}",
    ):
        penalties.get({"name": "l2"})


def test_to_reference_cannot_be_built_from_a_name() -> None:
    with pytest.raises(
        InvalidParameterError, match=r"ToReference cannot be built from its name alone"
    ):
        penalties.get("ToReference")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: penalties.L2(-1.0),
            r"The 'l2' parameter of L2 must be a finite number >= 0\. Got -1\.0 instead\.",
        ),
        (
            lambda: penalties.L1(float("nan")),
            r"The 'l1' parameter of L1 must be a finite number >= 0\. Got nan instead\.",
        ),
        (
            lambda: penalties.L1L2(l1="0.1"),
            r"The 'l1' parameter of L1L2 must be a finite number >= 0\. Got '0\.1' instead\.",
        ),
        (
            lambda: penalties.L2(True),
            r"The 'l2' parameter of L2 must be a finite number >= 0\. Got True instead\.",
        ),
        (
            lambda: penalties.ExpAbs(float("inf")),
            r"'coefficient' parameter of ExpAbs must be a finite number >= 0\. Got inf",
        ),
        (
            lambda: penalties.Orthogonal(mode="diag"),
            r"'mode' parameter of Orthogonal must be one of 'rows', 'columns'\. Got 'diag'",
        ),
        (
            lambda: penalties.KLSparsity(target=1.0),
            r"'target' parameter of KLSparsity must be a number in \(0, 1\)\. Got 1\.0",
        ),
        (
            lambda: penalties.TemporalDifference(time_dim=0.5),
            r"'time_dim' parameter of TemporalDifference must be an int\. Got 0\.5",
        ),
        (
            lambda: penalties.ToReference([1.0]),
            r"'reference' parameter of ToReference must be a torch\.Tensor\. Got 'list'",
        ),
        (
            lambda: constraints.MaxNorm(-2),
            r"'max_value' parameter of MaxNorm must be a finite number >= 0\. Got -2",
        ),
        (
            lambda: constraints.MinMaxNorm(2.0, 1.0),
            r"'max_value' parameter of MinMaxNorm must be a number >= min_value=2\.0\. Got 1\.0",
        ),
        (
            lambda: constraints.MinMaxNorm(rate=1.5),
            r"'rate' parameter of MinMaxNorm must be a number in \[0, 1\]\. Got 1\.5",
        ),
        (
            lambda: constraints.UnitNorm(axis="0"),
            r"'axis' parameter of UnitNorm must be None, an int or a sequence of ints\. Got '0'",
        ),
    ],
)
def test_bad_arguments_name_the_parameter_and_the_value(build, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        build()
