"""Outlier detection by reconstruction error, scikit-learn style."""

from __future__ import annotations

from collections.abc import Callable

import torch

from reglab._validation import check_positive_int, invalid
from reglab.autoencoders.base import Autoencoder

__all__ = ["ReconstructionOutlierDetector"]


class ReconstructionOutlierDetector:
    """Flag inputs an autoencoder trained on normal data reconstructs badly.

    ``fit(X)`` trains ``autoencoder_factory()`` on ``X`` and sets ``threshold_`` to the
    ``1 − contamination`` quantile of the training reconstruction errors. Conventions follow
    scikit-learn's outlier detectors: ``score_samples`` is the *negated* error (higher = more
    normal), ``decision_function = score_samples − offset_`` is negative for outliers, and
    ``predict`` returns +1 (inlier) or −1 (outlier).

    Args:
        autoencoder_factory: zero-argument callable returning an ``Autoencoder``.
        contamination: expected fraction of outliers in the training data, in (0, 0.5].
        epochs: training epochs of the autoencoder.
        lr: its learning rate.
        batch_size: its batch size.
        seed: seeds initialisation and batch order.

    Attributes:
        autoencoder_: the trained autoencoder.
        threshold_: the reconstruction-error threshold.
        offset_: ``−threshold_``.
    """

    def __init__(
        self,
        autoencoder_factory: Callable[[], Autoencoder],
        contamination: float = 0.1,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.autoencoder_factory = autoencoder_factory
        self.contamination = contamination
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, X: torch.Tensor, y: object = None) -> ReconstructionOutlierDetector:
        """Train the autoencoder on ``X`` and set the threshold; ``y`` is ignored."""
        if not 0 < self.contamination <= 0.5:
            raise invalid(
                "contamination",
                "ReconstructionOutlierDetector",
                "a number in (0, 0.5]",
                self.contamination,
            )
        check_positive_int(self.epochs, "epochs", "ReconstructionOutlierDetector")
        torch.manual_seed(self.seed)
        ae = self.autoencoder_factory()
        if not isinstance(ae, Autoencoder):
            raise invalid(
                "autoencoder_factory",
                "ReconstructionOutlierDetector",
                "a callable returning a reglab Autoencoder",
                type(ae).__name__,
            )
        self.autoencoder_ = ae.fit(
            X, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed
        )
        errors = self.autoencoder_.reconstruction_error(X)
        self.threshold_ = float(torch.quantile(errors.double(), 1 - self.contamination))
        self.offset_ = -self.threshold_
        return self

    def score_samples(self, X: torch.Tensor) -> torch.Tensor:
        """``−||x − x̂||²`` per sample: the lower, the more abnormal."""
        return -self.autoencoder_.reconstruction_error(X)

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        """``score_samples − offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """+1 for inliers, −1 for outliers."""
        return torch.where(self.decision_function(X) >= 0, 1, -1)
