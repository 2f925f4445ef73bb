"""Cost of a training step with weight + activity penalties: hand-written vs reglab.attach.

784-1024-1024-10 ReLU MLP, batch 128, SGD and Adam. Penalties: L1L2(1e-5, 1e-4) on every
kernel and L1(1e-3) activity on both hidden ReLU outputs (Keras' batch reduction). Variants are
timed round-robin in one process so machine noise hits them alike; medians and ratios to the
unregularized step are printed. ``injection floor`` is not a usable implementation: it adds
the closed-form kernel gradients straight into ``.grad`` after backward (no penalty value is
computed at all) with the activity term through autograd; it shows what any exact method must
pay on this machine. Run by hand:

    python benchmarks/bench_penalty_overhead.py [--steps 200] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab.lab import mlp
from reglab.penalties import L1, L1L2

L1_W, L2_W, L1_ACT = 1e-5, 1e-4, 1e-3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(variant: str, opt_name: str, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    model = mlp([784, 1024, 1024, 10]).to(device)
    opt_cls = torch.optim.SGD if opt_name == "sgd" else torch.optim.Adam
    kwargs = {"lr": 0.01, "momentum": 0.9} if opt_name == "sgd" else {"lr": 1e-3}
    optimizer = opt_cls(model.parameters(), **kwargs)
    x = torch.randn(128, 784, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    kernels = [m.weight for m in model if isinstance(m, nn.Linear)]
    reg = None
    if variant == "reglab":
        reg = reglab.attach(
            model,
            {"fc*": dict(kernel=L1L2(L1_W, L2_W)), "act*": dict(activity=L1(L1_ACT))},
        )

    def step() -> None:
        if variant == "injection floor":
            h1 = model.act0(model.fc0(x))
            h2 = model.act1(model.fc1(h1))
            loss = F.cross_entropy(model.fc2(h2), y)
            loss = loss + L1_ACT * (h1.abs().sum() + h2.abs().sum()) / x.shape[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for w in kernels:
                    w.grad.add_(torch.sign(w), alpha=L1_W).add_(w, alpha=2 * L2_W)
            optimizer.step()
            return
        if variant == "hand-written":
            # What users write today: an explicit forward keeping the codes, autograd penalties.
            h1 = model.act0(model.fc0(x))
            h2 = model.act1(model.fc1(h1))
            loss = F.cross_entropy(model.fc2(h2), y)
            loss = loss + sum(L1_W * w.abs().sum() + L2_W * w.pow(2).sum() for w in kernels)
            loss = loss + L1_ACT * (h1.abs().sum() + h2.abs().sum()) / x.shape[0]
        else:
            loss = F.cross_entropy(model(x), y)
            if reg is not None:
                loss = loss + reg.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = ("none", "hand-written", "injection floor", "reglab")
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    for opt_name in ("sgd", "adam"):
        steps = {v: make_step(v, opt_name, device) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(args.warmup + args.steps):
            for v in variants:  # round-robin: noise affects every variant alike
                _sync(device)
                start = time.perf_counter()
                steps[v]()
                _sync(device)
                if i >= args.warmup:
                    times[v].append(time.perf_counter() - start)
        base = statistics.median(times["none"])
        print(f"\n{opt_name.upper()} step, median of {args.steps}:")
        for v in variants:
            med = statistics.median(times[v])
            q1, _, q3 = statistics.quantiles(times[v], n=4)
            print(
                f"  {v:<16} {1e3 * med:7.2f} ms  (IQR {1e3 * q1:.2f}-{1e3 * q3:.2f})  "
                f"{med / base:5.3f}x"
            )


if __name__ == "__main__":
    main()
