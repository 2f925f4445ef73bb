"""Unit layouts: per-output-unit rules follow the module's layout (one registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm, UnitNorm
from reglab.layouts import UnitLayout, is_kernel, named_kernels, register_layout, unit_layout
from reglab.penalties import Orthogonal


def _max_norm_by_hand(units: list[torch.Tensor], max_value: float) -> list[torch.Tensor]:
    """Keras' MaxNorm on each unit's incoming weights, one unit at a time."""
    out = []
    for u in units:
        n = u.square().sum().sqrt()
        out.append(u * n.clamp(0, max_value) / (1e-7 + n))
    return out


def test_conv_transpose_max_norm_is_per_output_channel() -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 4, 2)  # weight (in=3, out=4, 2, 2)
    with torch.no_grad():
        layer.weight.mul_(10)
    before = layer.weight.detach().clone()
    reg = reglab.attach(layer, {"": dict(kernel_constraint=MaxNorm(1.0))})
    reg.apply_constraints()
    expected = _max_norm_by_hand([before[:, j] for j in range(4)], 1.0)
    for j in range(4):
        torch.testing.assert_close(layer.weight[:, j], expected[j])
        assert float(layer.weight.detach()[:, j].norm()) == pytest.approx(1.0, rel=1e-5)


def test_grouped_conv_transpose_units_read_their_group_only() -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 2, groups=2)  # weight (4, 3, 2, 2): 2 groups x 3 units
    with torch.no_grad():
        layer.weight.mul_(10)
    before = layer.weight.detach().clone()
    reglab.attach(layer, {"": dict(kernel_constraint=UnitNorm())}).apply_constraints()
    for g in range(2):
        for j in range(3):
            unit = before[2 * g : 2 * g + 2, j]  # input channels of group g -> output g*3+j
            torch.testing.assert_close(
                layer.weight[2 * g : 2 * g + 2, j], unit / (1e-7 + unit.norm())
            )


def test_layout_round_trip_and_rows() -> None:
    for layout, shape in [
        (UnitLayout(), (5, 3, 2)),
        (UnitLayout(out_dim=1), (3, 5, 2, 2)),
        (UnitLayout(out_dim=1, groups=3), (6, 2, 3)),
        (UnitLayout(out_dim=-1), (4, 7)),
        (UnitLayout(), (9,)),
    ]:
        w = torch.randn(shape)
        units = layout.to_units(w)
        torch.testing.assert_close(layout.from_units(units, w), w)
    units = UnitLayout(out_dim=1, groups=3).to_units(torch.arange(36.0).reshape(6, 2, 3))
    assert units.shape == (6, 2, 3)  # 3 groups x 2 units, each reading 2 inputs x 3 taps


def test_orthogonal_rows_are_output_units_of_the_module() -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose1d(3, 4, 2)  # weight (3, 4, 2): 4 units of 6 weights
    reg = reglab.attach(layer, {"": dict(kernel=Orthogonal(1.0))})
    reg.penalty()
    expected = Orthogonal(1.0)(layer.weight.detach().transpose(0, 1))
    assert float(reg.terms()["kernel"]) == pytest.approx(float(expected), rel=1e-6)


class Mine(nn.Module):
    """A third-party layer storing its kernel (in, out)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel_weight = nn.Parameter(torch.randn(3, 5) * 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.kernel_weight


def test_user_registered_layout_and_documented_default() -> None:
    assert unit_layout(Mine(), "kernel_weight") == UnitLayout()  # default: dim 0
    register_layout(Mine, UnitLayout(out_dim=-1))
    try:
        layer = Mine()
        before = layer.kernel_weight.detach().clone()
        reglab.attach(layer, {"": dict(kernel_constraint=MaxNorm(2.0))}).apply_constraints()
        for j in range(5):
            expected = _max_norm_by_hand([before[:, j]], 2.0)[0]
            torch.testing.assert_close(layer.kernel_weight[:, j], expected)
    finally:
        from reglab import layouts

        del layouts._BY_TYPE[Mine]


def test_explicit_axis_is_taken_as_given() -> None:
    layer = nn.ConvTranspose2d(3, 4, 2)
    before = layer.weight.detach().clone()
    reglab.attach(layer, {"": dict(kernel_constraint=MaxNorm(0.1, axis=0))}).apply_constraints()
    torch.testing.assert_close(layer.weight, MaxNorm(0.1, axis=0)(before))


def test_what_a_kernel_is() -> None:
    attention = nn.MultiheadAttention(8, 2)
    names = [n for n, *_ in named_kernels(attention)]
    assert names == ["in_proj_weight", "out_proj.weight"]
    assert not is_kernel("weight", torch.zeros(4))  # a LayerNorm scale
    lstm_kernels = [n for n, *_ in named_kernels(nn.LSTM(3, 4))]
    assert lstm_kernels == ["weight_ih_l0", "weight_hh_l0"]


def test_register_layout_rejects_non_modules() -> None:
    with pytest.raises(
        reglab.InvalidParameterError, match="'module_type' parameter of register_layout"
    ):
        register_layout(42, UnitLayout())  # type: ignore[arg-type]
