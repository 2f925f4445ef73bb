"""K MLPs trained one after another vs as one ModelStack.

64-256-256-10 ReLU MLPs, batch 64, Adam, K = 1, 4, 16, 32. "sequential" trains K ordinary
models, each with its own default (foreach) Adam, one step of each per iteration; "stack"
trains one ModelStack (batched GEMMs) with one Adam and the summed loss: with the stack's
default optimizer (``stack.optimizer(torch.optim.Adam)``: fused where available, no
per-step intermediates) and with torch's default foreach Adam (whose intermediates for the
large stacked tensors are fresh allocations). All see the same batches and do the same
arithmetic. Prints median wall time per iteration and speedups over sequential, measured in
one run. Run by hand:

    python benchmarks/bench_model_stack.py [--steps 60] [--device cpu|cuda] [--ks 1 4 16 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from reglab.ensembles import ModelStack, stacked_loss
from reglab.lab import mlp


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    print(
        f"{'K':>3} {'sequential ms':>14} {'stack (default) ms':>19} {'speedup':>8} "
        f"{'stack, foreach Adam ms':>23} {'speedup':>8}"
    )
    x = torch.randn(64, 64, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    for k in args.ks:
        torch.manual_seed(0)
        models = [mlp([64, 256, 256, 10]).to(device) for _ in range(k)]
        optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]

        def sequential(models=models, optimizers=optimizers) -> None:
            for model, optimizer in zip(models, optimizers, strict=True):
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        stack = ModelStack(models).to(device)
        criterion = stacked_loss(F.cross_entropy)

        def stacked_step(optimizer: torch.optim.Optimizer, stack=stack, criterion=criterion):
            def step() -> None:
                loss = criterion(stack(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            return step

        default = stacked_step(stack.optimizer(torch.optim.Adam, lr=1e-3))
        foreach = stacked_step(torch.optim.Adam(stack.parameters(), lr=1e-3))
        t_seq = _time(sequential, args.steps, args.warmup, device)
        t_default = _time(default, args.steps, args.warmup, device)
        t_foreach = _time(foreach, args.steps, args.warmup, device)
        print(
            f"{k:>3} {1e3 * t_seq:>14.2f} {1e3 * t_default:>19.2f} {t_seq / t_default:>7.2f}x "
            f"{1e3 * t_foreach:>23.2f} {t_seq / t_foreach:>7.2f}x"
        )


if __name__ == "__main__":
    main()
