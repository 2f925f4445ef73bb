"""Pruning: magnitude pruning through ``torch.nn.utils.prune``, one-shot or on a schedule."""

from reglab.pruning.magnitude import MagnitudePruning, cubic_sparsity, magnitude_prune

__all__ = ["MagnitudePruning", "cubic_sparsity", "magnitude_prune"]
