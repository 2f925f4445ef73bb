"""Closed forms for the linear least-squares problems of the ``norm-constraints`` study.

With reglab's (Keras') L2 penalty ``a · Σw²`` on the mean squared error,
``L(w) = (1/N)‖Xw − y‖² + a‖w‖²`` is minimised by ridge regression with ``α = N · a``:
``w(a) = (XᵀX + N a I)⁻¹ Xᵀ y``, which tends to the minimum-norm solution ``X⁺ y`` as a → 0.
A norm constraint ``‖w‖ ≤ k`` (projection or Lagrangian) that binds lands on the same path, at
the ``a`` whose ridge solution has norm k (its KKT multiplier).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import DataConfig, load_data
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import KeyPath, Table, fail
from reglab.lab.work.init import load_init
from reglab.lab.work.training import TrialContext, TrialOutcome, history_rows, train_model

__all__ = ["KIND", "LinearModel", "equivalent_l2", "ridge", "ridge_metrics", "run_regression"]


@dataclass(frozen=True)
class LinearModel(Table):
    """``[model] kind = "linear"``, with ``[data] name = "teacher"``: a bias-free linear
    model ``fc0: Linear(inputs, 1)`` trained from zero (no settings of its own)."""

    kind: ClassVar[str] = "linear"
    stochastic: ClassVar[bool] = False

    def check(self, data: DataConfig, where: KeyPath) -> None:
        if data.name != "teacher":
            raise fail(
                where("kind"), "the 'teacher' data and model.kind = 'linear' go together", "linear"
            )

    def build(self, data: DataConfig) -> nn.Sequential:
        net = nn.Sequential(OrderedDict(fc0=nn.Linear(data.inputs, 1, bias=False)))
        nn.init.zeros_(net.fc0.weight)
        return net


def ridge(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Minimiser of ``mean((x w − y)²) + l2 · ‖w‖²`` (``l2 > 0``), via the SVD (stable for tiny
    ``l2``; ``l2 = 0`` gives ``pinv(x) @ y``)."""
    u, s, vt = np.linalg.svd(np.asarray(x, dtype=np.float64), full_matrices=False)
    keep = s > s.max() * max(x.shape) * np.finfo(np.float64).eps  # numerical rank, as pinv
    shrink = np.where(keep, s / np.where(keep, s**2 + len(x) * l2, 1.0), 0.0)

    return vt.T @ (shrink * (u.T @ np.asarray(y, dtype=np.float64)))


def equivalent_l2(x: np.ndarray, y: np.ndarray, norm: float) -> float:
    """The L2 coefficient whose ridge solution has ``‖w‖ = norm`` (0 if even the minimum-norm
    solution is shorter): ‖w(a)‖ falls monotonically in ``a``, so bisect on log a."""
    if norm >= np.linalg.norm(ridge(x, y, 0.0)):
        return 0.0
    lo, hi = -16.0, 8.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.linalg.norm(ridge(x, y, 10**mid)) > norm:
            lo = mid
        else:
            hi = mid
    return float(10 ** ((lo + hi) / 2))


def ridge_metrics(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Where trained weights ``w`` sit relative to the ridge path of ``(x, y)``.

    ``equiv_l2``: the L2 coefficient with the same norm; ``ridge_gap``: ``‖w − w(equiv_l2)‖ /
    ‖w(equiv_l2)‖`` (0 when ``w`` is on the path); ``pinv_gap``: ``‖w − x⁺y‖ / ‖x⁺y‖``;
    ``pinv_norm``: ``‖x⁺y‖``.

    >>> x = np.eye(3); y = np.array([3.0, 0.0, 4.0])
    >>> m = ridge_metrics(ridge(x, y, 1 / 3), x, y)  # w = y / (1 + 3 · 1/3)
    >>> round(m["equiv_l2"], 6), round(m["ridge_gap"], 6), m["pinv_norm"]
    (0.333333, 0.0, 5.0)
    """
    w = np.asarray(w, dtype=np.float64)
    l2 = equivalent_l2(x, y, float(np.linalg.norm(w)))
    on_path, pinv = ridge(x, y, l2), ridge(x, y, 0.0)
    return {
        "equiv_l2": l2,
        "ridge_gap": float(np.linalg.norm(w - on_path) / np.linalg.norm(on_path)),
        "pinv_gap": float(np.linalg.norm(w - pinv) / np.linalg.norm(pinv)),
        "pinv_norm": float(np.linalg.norm(pinv)),
    }


def run_regression(config: TrialConfig, seed: int, context: TrialContext) -> TrialOutcome:
    """A linear model ``fc0: Linear(d, 1, bias=False)`` trained from zero on the teacher's
    mean squared error, with the grid's penalties, constraints or norm bound; compared with
    the closed forms of ``reglab.lab.kinds.linear``. Zero initialisation keeps gradient
    descent in the row space of X, so with no penalty it converges to ``pinv(X) y``."""
    (train, test), val = load_data(config.data, seed)
    (x, y), (xt, yt) = train, test
    net = config.model.build(config.data)
    load_init(config, seed, net, context.device)

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out.squeeze(-1), target)

    history, seconds = train_model(
        net,
        (x, y),
        None,  # thousands of full-batch epochs: the test error is measured once, at the end
        config,
        seed,
        context,
        loss=mse,
    )

    with torch.no_grad():
        w = net.fc0.weight.detach().double().ravel()
        metrics = {
            "train_mse": mse(net(x), y).item(),
            "test_mse": mse(net(xt), yt).item(),
            **({} if val is None else {"val_mse": mse(net(val[0]), val[1]).item()}),
            "weight_norm": float(w.norm()),
            **ridge_metrics(w.numpy(), x.double().numpy(), y.double().numpy()),
            "epochs_run": float(len(history)),
            "seconds": seconds,
        }
    return TrialOutcome(metrics, history_rows(history), net, None)


def _network(config: TrialConfig) -> nn.Module:
    return config.model.build(config.data)  # type: ignore[union-attr]


KIND = register(
    Kind("linear", LinearModel, "regression", network=_network, run=run_regression, order=5)
)
