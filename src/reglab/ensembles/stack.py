"""K copies of one architecture trained at once: ``ModelStack``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state
from torch.nn import functional as F

from reglab._validation import InvalidParameterError, check_positive_int
from reglab.layouts import UnitLayout, named_kernels, register_layout
from reglab.stochastic import GaussianDropout, GaussianNoise

__all__ = ["ModelStack", "StackedLinear", "fused_optimizer", "stacked_loss"]

# Parameter-free layers that act elementwise, so they run unchanged on (K, B, ...) tensors
# (dropout draws an independent mask for every member).
_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.AlphaDropout,
    GaussianNoise,
    GaussianDropout,
)


class StackedLinear(nn.Module):
    """K ``Linear`` layers evaluated as one batched GEMM.

    Shape:
        ``(B, in)`` (the same input for every member) or ``(K, B, in)`` -> ``(K, B, out)``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, out, in)
        self.bias = nn.Parameter(bias) if bias is not None else None  # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        if k == 1 and (x.ndim == 2 or (x.ndim == 3 and x.shape[0] == 1)):
            # One member: a plain addmm on views (their backward is a view, not a copy).
            out = F.linear(
                x.view(-1, x.shape[-1]),
                self.weight.view(self.weight.shape[1:]),
                None if self.bias is None else self.bias.view(-1),
            )
            return out.view(1, -1, out.shape[-1])
        w_t = self.weight.transpose(1, 2)  # (K, in, out)
        if x.ndim == 2:  # shared input: broadcast over members
            out = torch.matmul(x, w_t)
            return out if self.bias is None else out + self.bias.unsqueeze(1)
        if x.ndim != 3 or x.shape[0] != self.weight.shape[0]:
            raise ValueError(
                f"StackedLinear of {self.weight.shape[0]} members takes (B, in) or (K, B, in) "
                f"inputs. Got shape {tuple(x.shape)}."
            )
        if self.bias is None:
            return torch.bmm(x, w_t)
        return torch.baddbmm(self.bias.unsqueeze(1), x, w_t)

    def extra_repr(self) -> str:
        k, out, inp = self.weight.shape
        return f"members={k}, in_features={inp}, out_features={out}, bias={self.bias is not None}"


# Units of a stacked weight (K, out, in) are each member's output units.
register_layout(StackedLinear, UnitLayout(stacked=True))


def _materialize(models_or_factory: Any, k: int | None) -> list[nn.Module]:
    if isinstance(models_or_factory, nn.Module):
        raise InvalidParameterError(
            "ModelStack takes a sequence of models or a factory, not one model; use "
            "ModelStack(lambda: make_model(), k=K) or ModelStack([m1, m2, ...])."
        )
    if callable(models_or_factory):
        if k is None:
            raise InvalidParameterError("ModelStack(factory) needs k, the number of members.")
        k = check_positive_int(k, "k", "ModelStack")
        return [models_or_factory() for _ in range(k)]
    models = list(models_or_factory) if isinstance(models_or_factory, Iterable) else []
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise InvalidParameterError(
            "The 'models_or_factory' parameter of ModelStack must be a non-empty sequence of "
            f"nn.Module or a factory. Got {models_or_factory!r} instead."
        )
    if k is not None and k != len(models):
        raise InvalidParameterError(f"ModelStack got {len(models)} models but k={k}.")
    return models


def _describe(entry: tuple[tuple[int, ...], torch.dtype] | None) -> str:
    if entry is None:
        return "missing"
    shape, dtype = entry
    return f"{shape} {str(dtype).removeprefix('torch.')}"


def _differences(reference: dict[str, Any], other: dict[str, Any]) -> str:
    """The first three state entries whose shape or dtype differ, by name (names sort;
    dtypes do not)."""
    names = sorted(n for n in reference.keys() | other.keys() if reference.get(n) != other.get(n))
    parts = [
        f"{n!r}: {_describe(reference.get(n))} vs {_describe(other.get(n))}" for n in names[:3]
    ]
    return "; ".join(parts) or "none in shapes or dtypes"


def _check_stackable(models: list[nn.Module]) -> None:
    reference = {n: (tuple(t.shape), t.dtype) for n, t in models[0].state_dict().items()}
    for i, model in enumerate(models[1:], start=1):
        other = {n: (tuple(t.shape), t.dtype) for n, t in model.state_dict().items()}
        if other != reference or type(model) is not type(models[0]):
            raise InvalidParameterError(
                f"ModelStack members must share one architecture; member {i} differs from "
                f"member 0 ({type(model).__name__} vs {type(models[0]).__name__}; first "
                f"differences: {_differences(reference, other)})."
            )


class ModelStack(nn.Module):
    """K copies of one architecture, trained at once; ``stack(x)`` returns ``(K, B, ...)``.

    The stack mirrors the member architecture: its module names and ``state_dict`` keys are
    the member's, each tensor gaining a leading member dimension K (``fc0.weight`` is
    ``(K, out, in)``). So ``reglab.attach`` rules written for one model apply to the stack,
    with per-member coefficients as ``(K,)`` tensors (``L2(torch.tensor([...]))``).

    Two execution paths, same results:

    * **MLPs** (an ``nn.Sequential`` of ``Linear`` and elementwise layers — activations,
      dropout, noise): every ``Linear`` becomes a ``StackedLinear`` (batched GEMMs) and
      the layers run as real modules on ``(K, B, ...)`` tensors, so forward hooks and activity
      penalties work; dropout draws independent masks per member. This is the fast path.
    * **Anything else** (convnets, ...): ``torch.vmap`` over ``torch.func.functional_call``
      with ``randomness="different"`` (each member draws its own dropout masks). Running
      statistics (``BatchNorm``) are per member: the stacked ``(K, ...)`` buffers are updated
      in place inside ``vmap``, each member's from its own batch, as it would be alone. The
      stack's ``train()`` / ``eval()`` mode is the members'. Forward hooks cannot run inside
      ``vmap``; attaching activity penalties to such a stack raises an error at forward.

    Train with one optimizer over ``stack.parameters()`` and a loss *summed* over members
    (``stacked_loss``), so each member receives exactly the gradient it would get alone;
    elementwise optimizers (SGD, Adam, AdamW ...) then update each member exactly as separate
    training would. (Anything that couples parameters, such as global-norm gradient clipping,
    would couple the members.)

    Args:
        models_or_factory: a sequence of K models of one architecture (their current weights
            are copied), or a zero-argument factory called ``k`` times.
        k: number of members (required with a factory).

    Shape:
        ``forward(x)``: ``x`` of shape ``(B, ...)`` is shared by every member;
        ``forward(x, per_member=True)``: ``x`` of shape ``(K, B, ...)`` gives each member its
        own data. Output ``(K, B, ...)``.

    >>> stack = ModelStack(lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), k=5)
    >>> tuple(stack(torch.randn(3, 4)).shape)
    (5, 3, 2)
    >>> len(stack.unstack())
    5
    """

    def __init__(
        self, models_or_factory: Iterable[nn.Module] | Callable[[], nn.Module], k: int | None = None
    ) -> None:
        super().__init__()
        models = _materialize(models_or_factory, k)
        _check_stackable(models)
        base = models[0]
        self.n_members = len(models)
        # A plain list keeps the template out of the module tree (and out of parameters()).
        self._template = [copy.deepcopy(base)]
        self.batched_gemm = isinstance(base, nn.Sequential) and all(
            isinstance(layer, (nn.Linear, *_ELEMENTWISE)) for layer in base
        )
        if self.batched_gemm:
            for name, layer in base.named_children():
                if isinstance(layer, nn.Linear):
                    weight = torch.stack([m.get_submodule(name).weight.detach() for m in models])
                    bias = (
                        None
                        if layer.bias is None
                        else torch.stack([m.get_submodule(name).bias.detach() for m in models])
                    )
                    layer = StackedLinear(weight.clone(), None if bias is None else bias.clone())
                else:
                    layer = copy.deepcopy(layer)
                layer.reglab_batch_dim = 1  # outputs are (K, B, ...): see reglab.attach
                self.add_module(name, layer)
            return
        params, buffers = stack_module_state(models)
        mirror = copy.deepcopy(base)
        for name, tensor in params.items():
            owner, _, attr = name.rpartition(".")
            mirror.get_submodule(owner)._parameters[attr] = nn.Parameter(tensor.detach())
        for name, tensor in buffers.items():
            owner, _, attr = name.rpartition(".")
            mirror.get_submodule(owner)._buffers[attr] = tensor
        for name, child in mirror.named_children():
            self.add_module(name, child)
        for name, param in mirror.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in mirror.named_buffers(recurse=False):
            self.register_buffer(name, buffer)

    @property
    def k(self) -> int:
        """The number of members K."""
        return self.n_members

    def optimizer(
        self, cls: type[torch.optim.Optimizer] = torch.optim.Adam, **kwargs: Any
    ) -> torch.optim.Optimizer:
        """The stack's default optimizer: ``cls(self.parameters(), **kwargs)``, fused where
        this torch supports it for ``cls`` and the parameters' device.

        A stack's parameters are few and large; the default (foreach) implementations
        allocate fresh intermediates of that size every step, which costs page faults on CPU,
        while the fused kernels have none (see the README's performance section).

        Fused CPU optimizers need torch >= 2.4; on an older torch the CPU default is foreach.

        >>> stack = ModelStack(lambda: nn.Linear(3, 2), k=4)
        >>> optimizer = stack.optimizer(torch.optim.Adam, lr=1e-3)
        >>> bool(optimizer.defaults["fused"]) == (torch.__version__ >= "2.4")
        True
        """
        return fused_optimizer(cls, self.parameters(), **kwargs)

    def forward(self, x: torch.Tensor, *, per_member: bool = False) -> torch.Tensor:
        if per_member and (x.ndim == 0 or x.shape[0] != self.n_members):
            raise ValueError(
                f"ModelStack(per_member=True) needs inputs of shape (K={self.n_members}, B, ...)."
                f" Got shape {tuple(x.shape)}."
            )
        if self.batched_gemm:
            first = next(iter(self.children()), None)
            if not per_member and not isinstance(first, StackedLinear):
                x = x.expand(self.n_members, *x.shape)  # (K, B, ...) view, no copy
            for layer in self.children():
                x = layer(x)
            return x
        hooked = [
            n for n, m in self.named_modules() if n and (m._forward_hooks or m._forward_pre_hooks)
        ]
        if hooked:
            raise InvalidParameterError(
                f"ModelStack runs {type(self._template[0]).__name__} through torch.vmap, where "
                f"forward hooks cannot run (hooks on {hooked[:3]}, e.g. activity penalties). "
                "Activity penalties on stacks need an MLP (nn.Sequential of Linear and "
                "elementwise layers)."
            )
        params = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        template = self._template[0]
        template.train(self.training)  # dropout, BatchNorm: the stack's mode

        def member(p: dict, b: dict, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (p, b), (xb,))

        in_dims = (0, 0, 0 if per_member else None)
        return torch.vmap(member, in_dims=in_dims, randomness="different")(params, buffers, x)

    @torch.no_grad()
    def kernel_norms(self) -> torch.Tensor:
        """``(K,)``: each member's L2 norm of all its kernels together,
        ``sqrt(Σ_kernels Σ w²)`` — what ``torch.linalg.vector_norm`` of one model's
        concatenated kernels gives, member by member, never summed over members. Kernels are
        the member architecture's (``reglab.layouts.is_kernel``: a ``LayerNorm`` weight stays
        out, though stacked it has 2 dimensions).

        >>> stack = ModelStack(lambda: nn.Linear(3, 2, bias=False), k=2)
        >>> with torch.no_grad():
        ...     _ = stack.weight.copy_(torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]],
        ...                                          [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))
        >>> stack.kernel_norms()
        tensor([5., 1.])
        """
        stacked = dict(self.named_parameters())
        squares = [
            stacked[name].flatten(1).square().sum(1)
            for name, *_ in named_kernels(self._template[0])
        ]  # each (K,)
        if not squares:
            return torch.zeros(self.n_members)
        return torch.stack(squares).sum(0).sqrt()

    def unstack(self) -> list[nn.Module]:
        """K independent copies of the member architecture holding the current weights."""
        state = self.state_dict()
        device = next((t.device for t in state.values()), torch.device("cpu"))
        members = []
        for i in range(self.n_members):
            member = copy.deepcopy(self._template[0]).to(device)
            member.load_state_dict({name: tensor[i] for name, tensor in state.items()})
            members.append(member)
        return members

    def extra_repr(self) -> str:
        path = "batched GEMM" if self.batched_gemm else "vmap"
        return f"members={self.n_members}, path={path!r}"


def fused_optimizer(
    cls: type[torch.optim.Optimizer], params: Iterable[torch.Tensor], **kwargs: Any
) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **kwargs)`` where supported, else ``cls(params, **kwargs)``."""
    params = list(params)
    if "fused" not in kwargs:
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this case
            pass
    return cls(params, **kwargs)


def stacked_loss(
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    per_member_targets: bool = False,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Turn a per-model loss into a stack loss: ``Σ_k criterion(output[k], target[k])``.

    The sum (not the mean) over members gives every member the gradient it would receive if
    trained alone. ``target`` is shared ``(B, ...)`` unless ``per_member_targets`` (then
    ``(K, B, ...)``, e.g. bootstrap samples).

    >>> loss = stacked_loss(nn.functional.cross_entropy)
    >>> out, y = torch.zeros(3, 4, 2), torch.zeros(4, dtype=torch.long)
    >>> round(loss(out, y).item(), 4)  # 3 members x log(2)
    2.0794
    """
    in_dims = (0, 0 if per_member_targets else None)
    batched = torch.vmap(criterion, in_dims=in_dims)

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.shape[0] == 1:  # one member: skip vmap's fixed cost
            return criterion(output[0], target[0] if per_member_targets else target)
        return batched(output, target).sum()

    return loss
