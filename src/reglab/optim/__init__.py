"""Weight regularization on the optimizer's side: parameter groups for weight decay, and the
proximal L1 step.

Three ways to regularize weights, and when they are the same:

* a **loss penalty** (``reglab.attach(model, {...: dict(kernel=L2(l2))})``): the penalty's
  gradient joins the data gradient, and the optimizer treats both alike;
* **decoupled decay** (``torch.optim.AdamW(param_groups(model, wd))``): ``w ← w − lr·wd·w``
  beside the optimizer's update; with plain SGD, ``SGD(weight_decay=wd)`` equals the loss
  penalty ``L2(wd / 2)`` exactly, but under Adam the loss penalty's gradient is rescaled per
  coordinate and the two differ;
* a **proximal step** (:func:`proximal_l1`): soft-thresholding after each step, which gives
  exact zeros where a subgradient ``L1`` penalty leaves near-zeros.
"""

from reglab.optim.groups import Decision, classify, param_groups
from reglab.optim.layer_decay import apply_lr_scale, layer_ids, layer_scales
from reglab.optim.proximal import ProximalL1, proximal_l1
from reglab.optim.sam import SAM

__all__ = [
    "SAM",
    "Decision",
    "ProximalL1",
    "apply_lr_scale",
    "classify",
    "layer_ids",
    "layer_scales",
    "param_groups",
    "proximal_l1",
]
