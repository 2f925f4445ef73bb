"""Matrix constraints on a kernel seen as ``(units, fan_in)``: a spectral-norm bound (a
per-layer Lipschitz bound) and orthogonality, applied as projections after each step."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from reglab._validation import Checked, check_coefficient, check_positive_int, invalid
from reglab.constraints._base import Constraint, registry

__all__ = ["Orthogonal", "SpectralNorm"]

_MAX_CACHED = 4096  # power-iteration warm starts kept (one per constrained kernel)


def _as_matrix(w: torch.Tensor, owner: str) -> torch.Tensor:
    if w.ndim < 2:
        raise ValueError(
            f"{owner} needs a kernel with at least 2 dimensions. Got shape {tuple(w.shape)}."
        )
    return w.reshape(w.shape[0], -1)  # (units, fan_in): conv kernels (out, in, *k) flattened


def _check_bound(value: object, name: str, owner: str) -> float:
    """A finite number > 0 (a spectral bound of 0 would zero the kernel)."""
    bound = check_coefficient(value, name, owner)
    if bound == 0:
        raise invalid(name, owner, "a finite number > 0", value)
    return bound


@registry.register("spectral_norm")
class SpectralNorm(Constraint):
    """Bound the largest singular value of each kernel: ``W ← W · min(1, max_value / σ(W))``.

    ``σ(W)`` is the spectral norm of the kernel as a ``(units, fan_in)`` matrix — the layer's
    Lipschitz constant for a ``Linear``; for a convolution, the bound Miyato et al. (2018)
    use (the reshaped kernel's norm, not the convolution operator's). It is estimated as
    ``torch.nn.utils.parametrizations.spectral_norm`` does, by power iteration
    (``u = normalize(Wv)``, ``v = normalize(Wᵀu)``, ``σ = uᵀWv``), ``n_power_iterations`` per
    call, warm-started from the vector ``v`` left by the previous call on the same tensor, so
    one iteration per step tracks σ as training moves (torch's default). Power iteration
    underestimates σ until it has converged: with ``n_power_iterations=None`` σ is exact
    (``torch.linalg.matrix_norm(W, 2)``, an SVD).

    The difference from torch's parametrization: that one *replaces* W by ``W / σ`` at every
    forward (σ = 1 exactly, a reparametrization); this is a bound enforced by projection after
    the optimizer step, and leaves a kernel with ``σ <= max_value`` untouched.

    Attached with ``reglab.attach(..., kernel_constraint=SpectralNorm(1.0))`` the kernel is
    taken per output unit whatever the module's layout (a ``ConvTranspose`` kernel
    ``(in, out, *k)`` as ``(out, in·k)``, as torch's ``dim=1``; see ``reglab.layouts``).
    Applied after the step, it composes with AMP (the step is the optimizer's),
    ``torch.compile`` (the projection runs eagerly between steps) and gradient accumulation
    (it runs once per optimizer step). Not for ``ModelStack`` kernels, whose members would be
    mixed in one matrix.

    Args:
        max_value: the bound on σ, > 0. Default 1.0.
        n_power_iterations: power-iteration steps per call (an int >= 1), or None for the
            exact σ. Default 1.
        eps: added to norms in the power iteration, as torch. Default 1e-12.

    >>> w = torch.diag(torch.tensor([4.0, 1.0]))
    >>> SpectralNorm(2.0, n_power_iterations=None)(w)
    tensor([[2.0000, 0.0000],
            [0.0000, 0.5000]])
    """

    max_value = Checked(_check_bound)

    def __init__(
        self, max_value: float = 1.0, n_power_iterations: int | None = 1, eps: float = 1e-12
    ) -> None:
        self.max_value = max_value
        if n_power_iterations is not None:
            check_positive_int(n_power_iterations, "n_power_iterations", "SpectralNorm")
        self.n_power_iterations = n_power_iterations
        self.eps = check_coefficient(eps, "eps", "SpectralNorm")
        self._v: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}  # warm starts

    @property
    def per_unit(self) -> bool:
        return True

    @torch.no_grad()
    def sigma(self, w: torch.Tensor) -> torch.Tensor:
        """The estimate of σ(w) this constraint uses (a 0-dim tensor), advancing the power
        iteration."""
        m = _as_matrix(w, "SpectralNorm").detach()
        if self.n_power_iterations is None:
            return torch.linalg.matrix_norm(m.float() if m.dtype == torch.half else m, 2).to(
                m.dtype
            )
        key = (w.data_ptr(), tuple(w.shape))  # the parameter's storage (w may be a view of it)
        v = self._v.get(key)
        if v is None or v.device != m.device or v.dtype != m.dtype:
            # deterministic start: the normalised column sums plus one (not orthogonal to the
            # top right singular vector except by a measure-zero accident)
            v = F.normalize(m.sum(0) + 1.0, dim=0, eps=self.eps)
        for _ in range(self.n_power_iterations):  # torch's order: u from v, then v from u
            u = F.normalize(m @ v, dim=0, eps=self.eps)
            v = F.normalize(m.mT @ u, dim=0, eps=self.eps)
        if key not in self._v and len(self._v) >= _MAX_CACHED:
            self._v.clear()  # tensors that went away: start again cold
        self._v[key] = v
        return torch.dot(u, m @ v)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma(w)
        return w * (self.max_value / sigma.clamp_min(self.max_value)).to(w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            "max_value": self.max_value,
            "n_power_iterations": self.n_power_iterations,
            "eps": self.eps,
        }


@registry.register("orthogonal")
class Orthogonal(Constraint):
    """Project each kernel onto the nearest (semi-)orthogonal matrix, times ``gain``.

    With ``W = U Σ Vᵀ`` (thin SVD of the kernel as a ``(units, fan_in)`` matrix), the closest
    matrix with orthonormal rows (``units <= fan_in``) or columns (``units > fan_in``) in
    Frobenius norm is the polar factor ``U Vᵀ``; the constraint returns ``gain · U Vᵀ``: every
    singular value set to ``gain``. A hard version of ``reglab.penalties.Orthogonal`` (a soft
    penalty on the cosines between rows), and the projection step of orthogonality-constrained
    training (e.g. Parseval networks, Cisse et al. 2017, project back after each update).

    Layout, AMP, ``torch.compile`` and gradient accumulation: as :class:`SpectralNorm`. One
    SVD per kernel per step: cheap for MLP and small conv kernels, noticeable for large
    ones.

    Args:
        gain: the common singular value, a finite number >= 0. Default 1.0.

    >>> w = Orthogonal()(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    >>> torch.allclose(w @ w.T, torch.eye(2), atol=1e-6)
    True
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = check_coefficient(gain, "gain", "Orthogonal")

    @property
    def per_unit(self) -> bool:
        return True

    @torch.no_grad()
    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        m = _as_matrix(w, "Orthogonal")
        work = m.float() if m.dtype in (torch.half, torch.bfloat16) else m
        u, _, vh = torch.linalg.svd(work, full_matrices=False)
        return (self.gain * (u @ vh)).to(w.dtype).reshape(w.shape)

    @torch.no_grad()
    def violated(self, w: torch.Tensor) -> torch.Tensor:
        """Every unit when a singular value differs from ``gain`` beyond the SVD's own error
        (relative ``sqrt(eps)`` of the dtype: recomputing the SVD of a projected kernel moves
        entries by more than plain rounding), none otherwise; shaped ``(units, 1, ...)``."""
        m = _as_matrix(w, "Orthogonal")
        work = m.float() if m.dtype in (torch.half, torch.bfloat16) else m
        s = torch.linalg.svdvals(work)
        tolerance = torch.finfo(w.dtype).eps ** 0.5 * max(self.gain, float(s.max()), 1.0)
        bad = (s - self.gain).abs().max() > tolerance
        return bad.expand(w.shape[0], *([1] * (w.dim() - 1))).clone()

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}
