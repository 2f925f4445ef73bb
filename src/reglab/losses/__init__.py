"""Losses that regularize (label smoothing, the confidence penalty, R-Drop) and measures of
calibration."""

from reglab.losses.calibration import (
    Reliability,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from reglab.losses.confidence import ConfidencePenalty
from reglab.losses.focal import FocalLoss
from reglab.losses.rdrop import RDrop, r_drop, symmetric_kl
from reglab.losses.smoothing import LabelSmoothingCrossEntropy, smooth_targets

__all__ = [
    "ConfidencePenalty",
    "FocalLoss",
    "LabelSmoothingCrossEntropy",
    "RDrop",
    "Reliability",
    "expected_calibration_error",
    "fit_temperature",
    "r_drop",
    "reliability_diagram",
    "smooth_targets",
    "symmetric_kl",
]
