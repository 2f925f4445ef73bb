"""Stochastic regularizers: noise injection, the dropout family (DropPath and DropBlock for
convolutional networks), mixup and CutMix, and augmentation.

Each is a pure function in ``reglab.stochastic.functional`` plus a thin ``nn.Module``;
all are the identity in eval mode. Use torch's own ``nn.Dropout``, ``nn.Dropout2d`` and
``nn.AlphaDropout`` for standard dropout — reglab does not rewrite them.
"""

from reglab.stochastic import functional
from reglab.stochastic.augmentation import RandomAffine
from reglab.stochastic.functional import embedding_dropout
from reglab.stochastic.image import DropBlock, DropPath
from reglab.stochastic.mixing import CutMix, MixUp, cutmix, mixup
from reglab.stochastic.noise import GaussianDropout, GaussianNoise
from reglab.stochastic.recurrent import EmbeddingDropout, LockedDropout
from reglab.stochastic.weights import DropConnect, WeightDrop, WeightNoise

__all__ = [
    "CutMix",
    "DropBlock",
    "DropConnect",
    "DropPath",
    "EmbeddingDropout",
    "GaussianDropout",
    "GaussianNoise",
    "LockedDropout",
    "MixUp",
    "RandomAffine",
    "WeightDrop",
    "WeightNoise",
    "cutmix",
    "embedding_dropout",
    "functional",
    "mixup",
]
