"""reglab where people already train: PyTorch Lightning, the Hugging Face ``Trainer``,
TensorBoard.

Each integration is a module that needs its extra (``pip install 'reglab[lightning]'``,
``'reglab[transformers]'``, ``'reglab[tensorboard]'``); importing one without it raises a
one-line install hint. Nothing here is imported by ``import reglab``.
"""
