"""A linear teacher–student regression problem (Krogh & Hertz 1992), generated on the fly."""

from __future__ import annotations

import torch

from reglab._validation import check_coefficient, check_positive_int

__all__ = ["teacher_student"]


def teacher_student(
    n_train: int = 90,
    n_inputs: int = 100,
    noise: float = 0.5,
    n_test: int = 5000,
    seed: int = 0,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((x, y), (x_test, y_test))`` from a random linear teacher ``w* ~ N(0, I / n_inputs)``.

    Inputs are ``N(0, I)`` (so ``E‖w*‖² = 1`` and the signal has unit variance). Training
    targets are ``x · w* + noise · N(0, 1)``; test targets are the *noise-free* teacher outputs,
    so the test mean squared error is the generalization error ``E_g = ‖w − w*‖²`` Krogh & Hertz
    study. With ``n_train < n_inputs`` the least-squares problem is under-determined.
    All tensors are float32; ``y`` has shape ``(N,)``. Deterministic in ``seed``.

    >>> (x, y), (xt, yt) = teacher_student(n_train=5, n_inputs=3, n_test=7)
    >>> tuple(x.shape), tuple(y.shape), tuple(xt.shape)
    ((5, 3), (5,), (7, 3))
    """
    n_train = check_positive_int(n_train, "n_train", "teacher_student")
    n_inputs = check_positive_int(n_inputs, "n_inputs", "teacher_student")
    n_test = check_positive_int(n_test, "n_test", "teacher_student")
    noise = check_coefficient(noise, "noise", "teacher_student")
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(n_inputs, generator=g, dtype=torch.float64) / n_inputs**0.5
    x = torch.randn(n_train, n_inputs, generator=g, dtype=torch.float64)
    xt = torch.randn(n_test, n_inputs, generator=g, dtype=torch.float64)
    y = x @ w + noise * torch.randn(n_train, generator=g, dtype=torch.float64)
    return (x.float(), y.float()), (xt.float(), (xt @ w).float())
