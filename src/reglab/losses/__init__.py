"""Losses that regularize (label smoothing) and measures of calibration."""

from reglab.losses.calibration import (
    Reliability,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from reglab.losses.smoothing import LabelSmoothingCrossEntropy, smooth_targets

__all__ = [
    "LabelSmoothingCrossEntropy",
    "Reliability",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_diagram",
    "smooth_targets",
]
