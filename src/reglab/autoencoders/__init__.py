"""Autoencoders: basic (optionally tied), sparse (L1, KL, TopK), denoising, linear (~PCA),
greedy layer-wise pre-training, outlier detection, dictionaries of features for any model,
and plots of what they learned."""

from reglab.autoencoders.base import AEOutput, Autoencoder, reconstruction_loss
from reglab.autoencoders.denoising import DenoisingAutoencoder, corrupt
from reglab.autoencoders.dictionary import (
    DictionaryMetrics,
    collect_activations,
    dictionary_metrics,
    train_dictionary,
)
from reglab.autoencoders.linear import LinearAutoencoder, principal_angles
from reglab.autoencoders.outliers import ReconstructionOutlierDetector
from reglab.autoencoders.plots import plot_filters, plot_reconstructions
from reglab.autoencoders.pretrain import pretrain_layerwise
from reglab.autoencoders.sparse import SparseAutoencoder, TopK

__all__ = [
    "AEOutput",
    "Autoencoder",
    "DenoisingAutoencoder",
    "DictionaryMetrics",
    "LinearAutoencoder",
    "ReconstructionOutlierDetector",
    "SparseAutoencoder",
    "TopK",
    "collect_activations",
    "corrupt",
    "dictionary_metrics",
    "plot_filters",
    "plot_reconstructions",
    "pretrain_layerwise",
    "principal_angles",
    "reconstruction_loss",
    "train_dictionary",
]
