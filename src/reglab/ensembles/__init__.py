"""Ensembles: model stacks trained at once, bagging, dropout as an ensemble, weight averaging,
and the decompositions that show why averaging helps."""

from reglab.ensembles.averaging import EMA, SWA
from reglab.ensembles.bagging import Bagging
from reglab.ensembles.decomposition import ambiguity_decomposition, error_decomposition
from reglab.ensembles.dropout_ensemble import (
    MCDropoutPrediction,
    compare_inference_rules,
    mc_dropout_predict,
)
from reglab.ensembles.pbt import PBTStep, PopulationBasedTraining, copy_member_
from reglab.ensembles.stack import ModelStack, StackedLinear, fused_optimizer, stacked_loss

__all__ = [
    "EMA",
    "SWA",
    "Bagging",
    "MCDropoutPrediction",
    "ModelStack",
    "PBTStep",
    "PopulationBasedTraining",
    "StackedLinear",
    "ambiguity_decomposition",
    "compare_inference_rules",
    "copy_member_",
    "error_decomposition",
    "fused_optimizer",
    "mc_dropout_predict",
    "stacked_loss",
]
