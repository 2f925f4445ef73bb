"""Bagging (Breiman 1996) with the members trained at once as a ModelStack."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import check_choice, check_coefficient, check_positive_int, invalid
from reglab.ensembles.stack import ModelStack, stacked_loss
from reglab.training.divergence import Diverged, FiniteWatch

__all__ = ["Bagging"]


class Bagging:
    """A bagged ensemble of neural classifiers, scikit-learn style.

    ``fit`` draws one bootstrap sample per member once (n rows with replacement, from a seed
    derived per member from ``seed``), initialises member k under its own seed, and
    trains all members at once as a ``ModelStack`` on their own samples (each epoch
    visits each member's sample in a fresh order), with Adam (fused where available) and
    cross-entropy.
    Prediction averages the members' probabilities (``vote="soft"``) or their votes
    (``"hard"``).

    Args:
        model_fn: zero-argument factory of one member (a classifier returning logits).
        n_members: K >= 1.
        bootstrap: sample with replacement; ``False`` trains every member on all rows (then
            only initialisation and batch order differ).
        vote: ``"soft"`` or ``"hard"``.
        seed: int seed (``None``: fresh entropy).
        epochs: training epochs of each member (Adam).
        batch_size: rows per step.
        lr: Adam's learning rate.
        weight_decay: Adam's own (coupled) weight decay, ``grad += weight_decay · w`` — the
            gradient of ``L2(weight_decay / 2)``.
        device: where to train.

    Attributes:
        members_: the K trained models (ordinary modules).
        stack_: the trained ``ModelStack`` (``stack_.kernel_norms()``: each member's ‖W‖₂).
        bootstrap_indices_: ``(K, n)`` int64 rows each member was trained on.
        member_seeds_: the K member seeds.
        classes_: the class labels seen in ``fit``.

    >>> from reglab.data import digits
    >>> (x, y), (xt, yt) = digits()
    >>> bag = Bagging(lambda: nn.Linear(64, 10), n_members=4, epochs=5, lr=1e-2, seed=0)
    >>> bag.fit(x, y).score(xt, yt) > 0.85
    True
    """

    def __init__(
        self,
        model_fn: Callable[[], nn.Module],
        n_members: int = 10,
        bootstrap: bool = True,
        vote: str = "soft",
        seed: int | None = None,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model_fn = model_fn
        self.n_members = n_members
        self.bootstrap = bootstrap
        self.vote = vote
        self.seed = seed
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device

    def _validate(self) -> None:
        owner = "Bagging"
        check_positive_int(self.n_members, "n_members", owner)
        check_choice(self.vote, "vote", owner, ("soft", "hard"))
        check_positive_int(self.epochs, "epochs", owner)
        check_positive_int(self.batch_size, "batch_size", owner)
        check_coefficient(self.lr, "lr", owner)
        check_coefficient(self.weight_decay, "weight_decay", owner)

    def fit(self, X: torch.Tensor, y: torch.Tensor) -> Bagging:
        """Draw the bootstrap samples and train the members; returns ``self``. Raises
        ``reglab.training.Diverged`` at the first step whose loss is not finite."""
        self._validate()
        if X.ndim < 2 or y.shape != X.shape[:1]:
            raise invalid(
                "X",
                "Bagging.fit",
                "(n, ...) with y of shape (n,)",
                f"X {tuple(X.shape)}, y {tuple(y.shape)}",
            )
        device = torch.device(self.device)
        n, k = len(X), self.n_members
        self.classes_, y_index = torch.unique(y, return_inverse=True)
        sequence = np.random.SeedSequence(self.seed)
        self.member_seeds_ = [int(s.generate_state(1)[0]) for s in sequence.spawn(k)]
        rows = []
        models = []
        for seed in self.member_seeds_:
            rng = np.random.default_rng(seed)
            rows.append(rng.integers(0, n, n) if self.bootstrap else np.arange(n))
            torch.manual_seed(seed)
            models.append(self.model_fn())
        self.bootstrap_indices_ = torch.from_numpy(np.stack(rows)).long()  # (K, n)
        stack = ModelStack(models).to(device)
        optimizer = stack.optimizer(torch.optim.Adam, lr=self.lr, weight_decay=self.weight_decay)
        criterion = stacked_loss(F.cross_entropy, per_member_targets=True)
        shuffle = torch.Generator().manual_seed(self.member_seeds_[0])
        X, y_index = X.to(device), y_index.to(device)
        stack.train()
        watch, step = FiniteWatch(device), 0
        for epoch in range(self.epochs):
            order = torch.rand(k, n, generator=shuffle).argsort(dim=1)
            rows_now = self.bootstrap_indices_.gather(1, order).to(device)  # (K, n)
            for start in range(0, n, self.batch_size):
                batch = rows_now[:, start : start + self.batch_size]  # (K, b)
                loss = criterion(stack(X[batch], per_member=True), y_index[batch])
                step += 1
                found = watch.add(step, {"loss": loss})
                if found is None and start + self.batch_size >= n:
                    found = watch.flush()
                if found is not None:
                    raise Diverged(f"{found} (epoch {epoch + 1}) of Bagging's members")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        stack.eval()
        self.stack_ = stack
        self.members_ = stack.unstack()
        return self

    @torch.no_grad()
    def member_proba(self, X: torch.Tensor) -> torch.Tensor:
        """``(K, N, C)`` class probabilities of every member."""
        return self.stack_(X.to(next(self.stack_.parameters()).device)).softmax(-1).cpu()

    def predict_proba(self, X: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: mean member probability (soft) or the fraction of votes (hard)."""
        probs = self.member_proba(X)
        if self.vote == "soft":
            return probs.mean(0)
        votes = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return votes.mean(0)

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """``(N,)`` predicted labels (ties go to the lowest class)."""
        return self.classes_[self.predict_proba(X).argmax(-1)]

    def score(self, X: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy on ``(X, y)``."""
        return (self.predict(X) == y).double().mean().item()
