"""Consistency regularization for semi-supervised learning: the mean teacher (Tarvainen &
Valpola 2017) and the Π-model (Laine & Aila 2017).

Both add ``w(t) · mean((softmax(z_student) − softmax(z_target))²)`` to the cross-entropy on
the labelled rows, with ``z_target`` a second, differently perturbed prediction (input noise,
dropout) and ``w(t) = consistency · exp(−5 (1 − t/T)²)`` ramped up over the first
``T = ramp_up`` optimizer steps. The mean teacher's target comes from an exponential moving
average of the student's weights; the Π-model's from the student itself.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from reglab._validation import check_choice, check_coefficient, check_positive_int, invalid

__all__ = ["MeanTeacher", "PiModel", "sigmoid_ramp_up"]


def sigmoid_ramp_up(step: int, length: int) -> float:
    """``exp(−5 (1 − t/T)²)`` for ``t < T``, then 1 (Laine & Aila 2017; 1 at once if ``T = 0``).

    >>> round(sigmoid_ramp_up(0, 10), 4), sigmoid_ramp_up(10, 10)
    (0.0067, 1.0)
    """
    if length <= 0 or step >= length:
        return 1.0
    return math.exp(-5.0 * (1.0 - step / length) ** 2)


class PiModel(nn.Module):
    """The Π-model: the student's prediction under one perturbation is the target for another.

    In training mode ``forward(x)`` returns the student's logits on ``x + noise·ε`` (and its
    dropout), and keeps a second prediction on ``x + noise·ε'`` (another dropout mask) as the
    target, without gradient (the usual implementation; the paper lets both branches learn).
    ``loss(logits, y)`` is cross-entropy over the labelled rows (``y >= 0``; unlabelled rows
    carry ``-1``, as in ``SemiSupervised``) plus ``w(t) · mean((p − p_target)²)`` over the
    rows chosen by ``rows`` (``"all"``, as the papers, or ``"unlabelled"``). In eval mode
    ``forward`` is the student. ``t`` counts optimizer steps once ``bind(optimizer)`` is
    called (``fit`` users: call it before ``fit``); ``remove()`` unbinds.

    Works with ``fit(model, (x, y_with_minus_ones), loss=model.loss, ...)`` and with
    ``reglab.attach`` rules on the student (activity penalties see both passes). AMP: the loss
    is an ordinary loss (scale it). Gradient accumulation: ``t`` and the teacher move per
    optimizer step. ``torch.compile``: compile the student.

    Args:
        student: the classifier.
        consistency: the weight ``w`` reached after ramp-up (the papers: 1 to 100 for MSE).
        ramp_up: ``T``, optimizer steps of the sigmoid ramp-up (0: none).
        noise: standard deviation of the Gaussian input noise, drawn independently for
            the two predictions.
        rows: ``"all"`` or ``"unlabelled"``: where the consistency term is taken.
    """

    _ROWS = ("all", "unlabelled")

    def __init__(
        self,
        student: nn.Module,
        consistency: float = 1.0,
        ramp_up: int = 0,
        noise: float = 0.0,
        rows: str = "all",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.student = student
        self.consistency = check_coefficient(consistency, "consistency", owner)
        self.ramp_up = check_positive_int(ramp_up, "ramp_up", owner, minimum=0)
        self.noise = check_coefficient(noise, "noise", owner)
        self.rows = check_choice(rows, "rows", owner, self._ROWS)
        self.step = 0
        self._target: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []

    def _perturb(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.noise * torch.randn_like(x) if self.noise > 0 else x

    def _target_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(self._perturb(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.student(x)
        logits = self.student(self._perturb(x))
        with torch.no_grad():
            self._target = self._target_logits(x).detach()
        return logits

    def weight(self) -> float:
        """``w(t)`` now."""
        return self.consistency * sigmoid_ramp_up(self.step, self.ramp_up)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CE over the labelled rows (0 if none) + ``w(t)`` · mean squared difference of the
        softmax probabilities over the chosen rows (mean over rows and classes)."""
        labelled = y >= 0
        ce = (
            F.cross_entropy(logits[labelled], y[labelled])
            if bool(labelled.any())
            else logits.sum() * 0.0
        )
        target, self._target = self._target, None
        if target is None:  # eval mode, or no training forward before
            return ce
        chosen = ~labelled if self.rows == "unlabelled" else torch.ones_like(labelled)
        if not bool(chosen.any()):
            return ce
        p, q = F.softmax(logits[chosen], -1), F.softmax(target[chosen], -1)
        return ce + self.weight() * F.mse_loss(p, q)

    def _after_step(self) -> None:
        self.step += 1

    def bind(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Count steps (ramp-up) after every ``optimizer.step()``; returns the hook's handle."""
        handle = optimizer.register_step_post_hook(lambda *_: self._after_step())
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        """Remove the optimizer hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        state = super().state_dict(*args, **kwargs)
        state["consistency_step"] = torch.tensor(self.step)
        return state

    def load_state_dict(self, state_dict: dict[str, Any], *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        state = dict(state_dict)
        step = state.pop("consistency_step", None)
        if step is not None:
            self.step = int(step)
        return super().load_state_dict(state, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"consistency={self.consistency}, ramp_up={self.ramp_up}, noise={self.noise}, "
            f"rows={self.rows!r}"
        )


class MeanTeacher(PiModel):
    """The mean teacher (Tarvainen & Valpola 2017): the target comes from a teacher whose
    weights are an exponential moving average of the student's,
    ``θ'_t = α θ'_{t−1} + (1 − α) θ_t`` after every optimizer step (``bind(optimizer)``),
    with ``α = min(1 − 1/(t + 1), ema_decay)`` (the authors' warm-up: a plain average at
    first); buffers (BatchNorm statistics) are copied. The teacher runs in the same mode as
    the student (its dropout is part of the noise) without gradient. Loss, rows, ramp-up,
    noise: as :class:`PiModel`. Evaluate the teacher with ``model.teacher`` (often the better
    model).

    Args:
        student: the classifier (the teacher starts as a deep copy).
        ema_decay: α. Default 0.99 (the paper: 0.99 during ramp-up, 0.999 after).
        consistency: as :class:`PiModel`.
        ramp_up: as :class:`PiModel`.
        noise: as :class:`PiModel`.
        rows: as :class:`PiModel`.

    >>> student = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> model = MeanTeacher(student, consistency=1.0, ramp_up=100, noise=0.1)
    >>> optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    >>> handle = model.bind(optimizer)
    >>> x, y = torch.randn(6, 4), torch.tensor([0, 1, -1, -1, 2, -1])
    >>> model.loss(model(x), y).backward()
    >>> optimizer.step()  # and the teacher moves
    >>> model.step
    1
    """

    def __init__(
        self,
        student: nn.Module,
        ema_decay: float = 0.99,
        consistency: float = 1.0,
        ramp_up: int = 0,
        noise: float = 0.0,
        rows: str = "all",
    ) -> None:
        super().__init__(student, consistency, ramp_up, noise, rows)
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)):
            raise invalid("ema_decay", "MeanTeacher", "a float in [0, 1]", ema_decay)
        if not 0.0 <= ema_decay <= 1.0:
            raise invalid("ema_decay", "MeanTeacher", "a float in [0, 1]", ema_decay)
        self.ema_decay = float(ema_decay)
        self.teacher = copy.deepcopy(student)
        self.teacher.requires_grad_(False)

    def _target_logits(self, x: torch.Tensor) -> torch.Tensor:
        self.teacher.train(self.student.training)
        return self.teacher(self._perturb(x))

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher toward the student (``bind`` calls it)."""
        alpha = min(1.0 - 1.0 / (self.step + 1), self.ema_decay)
        for t, s in zip(self.teacher.parameters(), self.student.parameters(), strict=True):
            t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
        for t, s in zip(self.teacher.buffers(), self.student.buffers(), strict=True):
            t.copy_(s)

    def _after_step(self) -> None:
        self.update_teacher()
        self.step += 1

    def extra_repr(self) -> str:
        return f"ema_decay={self.ema_decay}, " + super().extra_repr()
