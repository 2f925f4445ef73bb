"""Start a trial from ``[train] init`` (parsed and checked by :mod:`reglab.lab.settings.init`).

:func:`load_init` copies the weights into the freshly built network before its regularizers
are attached and its optimizer is made, so training (and every penalty) starts from them:

* from a file: the safetensors tensors, read as data (``safetensors.torch.load_file``; never
  ``torch.load``), tied names restored as a run directory saved them;
* from a grid entry: the weights that entry's trial of the same seed trained. A lone trial of
  an entry that others start from keeps its final weights in this process
  (:func:`remember`), so with one worker the entry trains once per seed; a trial that finds
  none (another worker, a resumed run) trains that trial itself, alone, with the same seed on
  the same device — on the CPU exactly the weights the entry's own trial ended with.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from reglab.lab.settings.init import (
    InitSource,
    config_id,
    model_shapes,
    shape_difference,
    wanted,
)
from reglab.lab.work.training import TrialContext

__all__ = ["load_init", "remember", "wanted"]

#: Trained weights of wanted grid points: (point id, seed, device) -> CPU state dict.
_TRAINED: OrderedDict[tuple[str, int, str], dict[str, torch.Tensor]] = OrderedDict()
#: How many state dicts the process keeps (oldest dropped first).
_KEEP = 32


def _key(config: Any, seed: int, device: torch.device) -> tuple[str, int, str]:
    return config_id(config), seed, str(device)


def remember(config: Any, seed: int, model: nn.Module, device: torch.device) -> None:
    """Keep ``model``'s weights when some grid point starts from ``config``'s trials."""
    if not wanted(config):
        return
    key = _key(config, seed, device)
    _TRAINED[key] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _TRAINED.move_to_end(key)
    while len(_TRAINED) > _KEEP:
        _TRAINED.popitem(last=False)


def _from_entry(source: InitSource, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    key = _key(source.config, seed, device)
    if key not in _TRAINED:  # train the entry's trial alone, as the sweep's lone trials do
        config = source.config
        outcome = config.model_kind.run(config, seed, TrialContext(device=device))
        remember(source.config, seed, outcome.model, device)
        if key not in _TRAINED:  # not marked wanted (a config parsed on its own)
            return outcome.model.state_dict()
    return _TRAINED[key]


def _from_file(source: InitSource) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    assert source.file is not None
    state = load_file(str(source.file))
    with safe_open(str(source.file), framework="pt") as f:
        tied = json.loads((f.metadata() or {}).get("tied", "{}"))
    state.update({dropped: state[kept] for dropped, kept in tied.items() if kept in state})
    return state


def load_init(config: Any, seed: int, net: nn.Module, device: torch.device | None = None) -> None:
    """Copy ``config``'s ``[train] init`` weights into ``net`` (no-op without ``init``).

    ``net`` is the network the kind builds (``config.network()``'s module: the one the rules
    attach to). A mismatch of names or shapes (possible only for a factory model, which is
    not built at parse time) raises ``ValueError`` naming the first difference.
    """
    text = config.train.init
    if not text:
        return
    source = config.init_source
    if source is None:  # a point parsed outside its study (TrialConfig.override): a file
        from reglab.lab.settings.init import init_source

        source = init_source(text, "train.init", {}, "")
    device = device or torch.device("cpu")
    state = _from_file(source) if source.file is not None else _from_entry(source, seed, device)
    where = source.file.name if source.file is not None else f"grid entry {source.entry!r}"
    difference = shape_difference(
        {k: tuple(v.shape) for k, v in state.items()}, model_shapes(net), where
    )
    if difference is not None:
        raise ValueError(f"train.init: {difference} (got {text!r})")
    with torch.no_grad():
        net.load_state_dict(state, strict=True)
