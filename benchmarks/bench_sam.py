"""Cost of one SAM / ASAM step against the base optimizer's step.

A 64-256-256-10 ReLU MLP on random digits-shaped batches (batch 128), SGD with momentum as
the base. Rows: the base step (one forward-backward), SAM and ASAM (two forward-backward
passes plus the perturbation), SAM with an L2 penalty attached (``reg.penalty()`` in both
passes). Prints the median wall time per step (the best of ``--rounds`` interleaved rounds)
and the ratio to the base step. Run by hand:

    python benchmarks/bench_sam.py [--steps 100] [--rounds 3] [--device cpu|cuda] [--width 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

import reglab
from reglab.optim import SAM
from reglab.penalties import L2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model(width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    ).to(device)


def _stepper(kind: str, width: int, device: torch.device):
    model = _model(width, device)
    x = torch.randn(128, 64, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    reg = reglab.attach(model, {nn.Linear: dict(kernel=L2(1e-4))}) if "L2" in kind else None

    def loss_fn() -> torch.Tensor:
        loss = F.cross_entropy(model(x), y)
        return loss + reg.penalty() if reg is not None else loss

    if kind == "base":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn().backward()
            optimizer.step()

        return step
    optimizer = SAM(
        model.parameters(),
        torch.optim.SGD,
        rho=0.5 if kind == "ASAM" else 0.05,
        adaptive=kind == "ASAM",
        lr=0.05,
        momentum=0.9,
    )

    def closure() -> torch.Tensor:
        loss = loss_fn()
        loss.backward()
        return loss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        closure()
        optimizer.step(closure)

    return step


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
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    kinds = ("base", "SAM", "ASAM", "base + L2", "SAM + L2")
    steppers = {kind: _stepper(kind, args.width, device) for kind in kinds}
    rows: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved rounds, the best median: less drift from load
        for kind in kinds:
            seconds = _time(steppers[kind], args.steps, args.warmup, device)
            rows[kind] = min(rows.get(kind, seconds), seconds)
    print(f"{'step':<12} {'ms/step':>9} {'× base':>8}")
    for kind, seconds in rows.items():
        reference = rows["base + L2" if "L2" in kind else "base"]
        print(f"{kind:<12} {1e3 * seconds:>9.3f} {seconds / reference:>8.2f}")


if __name__ == "__main__":
    main()
