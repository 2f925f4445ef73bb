"""Cost of a training step with weight + activity penalties: hand-written vs reglab.attach.

Two models:

* ``mlp``: 784-1024-1024-10 ReLU MLP, batch 128. L1L2(1e-5, 1e-4) on every kernel and
  L1(1e-3) activity on both hidden ReLU outputs (Keras' batch reduction).
* ``transformer``: a pure-torch pre-LN decoder, 18 layers of width 128 with separate q/k/v/o
  projections and a 4x MLP (108 penalised kernels), sequence 128, batch 8. L2(1e-4) on every
  kernel and L1(1e-5) on every MLP activation.

Variants, timed round-robin in one process so machine noise hits them alike (medians and
ratios to the unregularized step are printed, with the interquartile range, and the minimum
of each variant with its ratio to the unregularized minimum):

* ``none``: no penalty.
* ``hand-written``: what users write today — forward hooks keep the activations, autograd
  penalties.
* ``injection floor``: not a usable implementation: closed-form kernel gradients added straight
  into ``.grad`` after backward (no penalty value computed at all), activity through autograd;
  what any exact loss-side method must pay on this machine.
* ``reglab (activity only)``: ``loss + reg.penalty()`` with the activity rules alone; its
  ratio minus 1 is what the activity penalties cost (issue 26's goal: at most 0.02 of a step).
* ``reglab``: ``loss + reg.penalty()``.
* ``reglab (folded)``: ``reg.fold_into(optimizer)``: weight penalties added inside the optimizer
  step, ``penalty()`` holds the activity terms only.
* ``none (compiled update)``: no penalty, the optimizer's update compiled (``torch.compile``
  of the update without torch's step wrappers) — the baseline of the next row.
* ``reglab (folded, compiled)``: ``reg.fold_into(optimizer, compile=True)``: the penalty's
  gradient compiled into that same update, one pass over memory.

The two compiled rows compile on their first (warm-up) step; ``--no-compiled-update`` leaves
them out.

``--model activity`` times the activity penalty alone, forward and backward of one activation
feeding a small linear head, without it, on the token path (``fused_activity = False``: the
path every activity penalty took before issue 26) and fused: ReLU + L1 (the MLP's
``(128, 1024)``), GELU + L1 and GELU + L2 (a ``(1024, 512)`` transformer MLP activation).
It reports the minimum over repeats (the least disturbed time on a shared machine) and the
microseconds each path adds.

Run by hand:

    python benchmarks/bench_penalty_overhead.py [--model mlp|transformer|all|activity] [--steps N]
        [--device cpu|cuda] [--compile] [--weights-only] [--threads N] [--optimizers sgd,adam]

To compare two checkouts on a noisy machine, alternate runs of this file with
``PYTHONPATH=<checkout>/src`` and compare each run's ratios.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab.lab import mlp
from reglab.penalties import L1, L1L2, L2

VARIANTS = (
    "none",
    "hand-written",
    "injection floor",
    "reglab (activity only)",
    "reglab",
    "reglab (folded)",
    "none (compiled update)",
    "reglab (folded, compiled)",
)
COMPILED_UPDATE = ("none (compiled update)", "reglab (folded, compiled)")


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.fc, self.act, self.proj = nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (
            f(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
            for f in (self.q, self.k, self.v)
        )  # (B, heads, T, d/heads)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
        return x + self.proj(self.act(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    def __init__(self, vocab: int = 512, d: int = 128, layers: int = 18, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(256, d))
        self.blocks = nn.Sequential(*(Block(d, heads) for _ in range(layers)))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        return self.head(self.ln(self.blocks(x)))  # (B, T, vocab)


def setup(
    model_name: str, device: torch.device, weights_only: bool = False
) -> tuple[nn.Module, Callable, dict, dict]:
    """(model, loss(model_output), attach rules, penalty coefficients) of one benchmark model."""
    torch.manual_seed(0)
    if model_name == "mlp":
        model = mlp([784, 1024, 1024, 10]).to(device)
        x = torch.randn(128, 784, device=device)
        y = torch.randint(0, 10, (128,), device=device)
        rules = {"fc*": dict(kernel=L1L2(1e-5, 1e-4)), "act*": dict(activity=L1(1e-3))}
        coefficients = dict(l1=1e-5, l2=1e-4, act=1e-3, kernels=nn.Linear, acts=nn.ReLU)
        if weights_only:
            del rules["act*"]
            coefficients["acts"] = ()
        return model, (lambda m: F.cross_entropy(m(x), y)), rules, coefficients
    model = Decoder().to(device)
    ids = torch.randint(0, 512, (8, 129), device=device)

    def loss(m: nn.Module) -> torch.Tensor:
        return F.cross_entropy(m(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())

    rules = {nn.Linear: dict(kernel=L2(1e-4)), "blocks.*.act": dict(activity=L1(1e-5))}
    coefficients = dict(l1=0.0, l2=1e-4, act=1e-5, kernels=nn.Linear, acts=nn.GELU)
    if weights_only:
        del rules["blocks.*.act"]
        coefficients["acts"] = ()
    return model, loss, rules, coefficients


def make_step(
    variant: str, model_name: str, opt_name: str, device: torch.device, args: argparse.Namespace
) -> Callable[[], None]:
    model, loss_fn, rules, c = setup(model_name, device, args.weights_only)
    opt_cls = torch.optim.SGD if opt_name == "sgd" else torch.optim.Adam
    kwargs = {"lr": 0.01, "momentum": 0.9} if opt_name == "sgd" else {"lr": 1e-3}
    optimizer = opt_cls(model.parameters(), **kwargs)
    kernels = [m.weight for m in model.modules() if isinstance(m, c["kernels"])]
    acts: list[torch.Tensor] = []
    if variant in ("hand-written", "injection floor") and c["acts"]:
        for m in model.modules():
            if isinstance(m, c["acts"]):
                m.register_forward_hook(lambda _m, _i, out: acts.append(out))
    reg = None
    if variant == "reglab (activity only)":
        rules = {k: v for k, v in rules.items() if "activity" in v}
        if not rules:  # --weights-only: nothing to measure, time the unregularized step
            variant = "none"
    if variant.startswith("reglab"):
        reg = reglab.attach(model, rules)
        if variant.startswith("reglab (folded"):
            reg.fold_into(optimizer, compile=variant == "reglab (folded, compiled)")
    update = optimizer.step
    if variant == "none (compiled update)":  # what fold_into(compile=True) compiles, unpenalised
        compiled = torch.compile(inspect.unwrap(type(optimizer).step))

        def update() -> None:
            with torch.no_grad():
                compiled(optimizer)

    forward = torch.compile(model) if args.compile else model

    def activity() -> torch.Tensor | float:
        total = sum(h.abs().sum() / h.shape[0] for h in acts)
        acts.clear()
        return c["act"] * total

    def step() -> None:
        loss = loss_fn(forward)
        if variant == "hand-written":
            weights = sum(c["l1"] * w.abs().sum() + c["l2"] * w.square().sum() for w in kernels)
            loss = loss + weights + activity()
        elif variant == "injection floor":
            loss = loss + activity()
        elif reg is not None:
            loss = loss + reg.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if variant == "injection floor":
            with torch.no_grad():
                for w in kernels:
                    if c["l1"]:
                        w.grad.add_(torch.sign(w), alpha=c["l1"])
                    w.grad.add_(w, alpha=2 * c["l2"])
        update()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(model_name: str, args: argparse.Namespace, device: torch.device) -> None:
    variants = [v for v in VARIANTS if args.compiled_update or v not in COMPILED_UPDATE]
    for opt_name in args.optimizers.split(","):
        steps = {v: make_step(v, model_name, opt_name, device, args) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(args.warmup + args.steps):
            for v in variants:  # round-robin: noise affects every variant alike
                _sync(device)
                start = time.perf_counter()
                steps[v]()
                _sync(device)
                if i >= args.warmup:
                    times[v].append(time.perf_counter() - start)
        base, base_min = statistics.median(times["none"]), min(times["none"])
        print(f"\n{model_name} {opt_name.upper()} step, median of {args.steps} (and minimum):")
        for v in variants:
            med = statistics.median(times[v])
            q1, _, q3 = statistics.quantiles(times[v], n=4)
            # On a shared machine the minimum is the step with the least interference.
            print(
                f"  {v:<26} {1e3 * med:8.2f} ms  (IQR {1e3 * q1:.2f}-{1e3 * q3:.2f})  "
                f"{med / base:5.3f}x   min {1e3 * min(times[v]):7.2f} ms "
                f"{min(times[v]) / base_min:5.3f}x"
            )


def activity_cost(args: argparse.Namespace, device: torch.device) -> None:
    """The activity penalty alone: none / token / fused, minimum of interleaved repeats."""
    cases = [
        (nn.ReLU(), L1(1e-3), (128, 1024)),
        (nn.GELU(), L1(1e-5), (1024, 512)),
        (nn.GELU(), L2(1e-5), (1024, 512)),
    ]
    repeats = args.steps or 300
    for act, penalty, shape in cases:
        torch.manual_seed(0)
        z = torch.randn(*shape, device=device, requires_grad=True)
        head = nn.Linear(shape[1], 64).to(device)
        steps = {}
        for kind in ("none", "token", "fused"):
            model = nn.Sequential(copy.deepcopy(act))
            reg = None
            if kind != "none":
                reg = reglab.attach(model, {"0": dict(activity=penalty)})
                reg.fused_activity = kind == "fused"

            def step(model=model, reg=reg, z=z, head=head) -> None:
                loss = head(model(z)).sum()
                if reg is not None:
                    loss = loss + reg.penalty()
                z.grad = None
                head.zero_grad(set_to_none=True)
                loss.backward()

            steps[kind] = step
        times: dict[str, list[float]] = {k: [] for k in steps}
        for i in range(repeats + 10):
            for kind, step in steps.items():
                _sync(device)
                start = time.perf_counter()
                step()
                _sync(device)
                if i >= 10:
                    times[kind].append(time.perf_counter() - start)
        best = {k: min(v) for k, v in times.items()}
        print(
            f"{type(act).__name__} {penalty!r} on {shape}: fwd+bwd minimum of {repeats}: "
            + ", ".join(f"{k} {1e6 * v:.0f} us" for k, v in best.items())
            + f"; activity adds: token {1e6 * (best['token'] - best['none']):.0f} us, "
            f"fused {1e6 * (best['fused'] - best['none']):.0f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "transformer", "all", "activity"), default="all")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--weights-only", action="store_true", help="no activity penalty")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--optimizers", default="sgd,adam", help="comma-separated: sgd, adam")
    parser.add_argument(
        "--no-compiled-update",
        dest="compiled_update",
        action="store_false",
        help="leave out the two rows that compile the optimizer's update",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"compile {args.compile}, weights only {args.weights_only}"
    )
    if args.model == "activity":
        activity_cost(args, device)
        return
    models = ("mlp", "transformer") if args.model == "all" else (args.model,)
    for name in models:
        small = name == "mlp" or device.type == "cuda"
        args_n = argparse.Namespace(**vars(args))
        args_n.steps = args.steps or (200 if small else 30)
        args_n.warmup = args.warmup if args.warmup is not None else (20 if small else 5)
        if name == "transformer":
            n = sum(1 for m in Decoder().modules() if isinstance(m, nn.Linear))
            print(f"\ntransformer: {n} penalised kernels")
        run(name, args_n, device)


if __name__ == "__main__":
    main()
