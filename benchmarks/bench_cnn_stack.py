"""Convnet trials stacked (``ModelStack``'s vmap path) vs trained one after another.

The lab's ``cnn`` kind on digits (8×8, channels 16/32, batch 64), with ``--batch-norm`` as
the lab builds it (each member's running statistics updated under vmap): K members trained
for ``--steps`` Adam steps each,
(a) one after another, (b) as one vmapped stack with per-member batches. Prints seconds per
member-step and the ratio; the lab stacks convnets only where (b) is faster.

    python benchmarks/bench_cnn_stack.py --k 3 6 --steps 60
"""

from __future__ import annotations

import argparse
import time

import torch

from reglab.ensembles import ModelStack, fused_optimizer, stacked_loss
from reglab.lab.kinds.convnets import cnn

BATCH_NORM = [False]


def _net() -> torch.nn.Module:
    return cnn((1, 8, 8), 10, channels=(16, 32), batch_norm=BATCH_NORM[0])


def _alone(k: int, steps: int, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    for _ in range(k):
        net = _net()
        opt = fused_optimizer(torch.optim.Adam, net.parameters(), lr=1e-3)
        for s in range(steps):
            i = (s * 64) % (len(x) - 64)
            loss = torch.nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def _stacked(k: int, steps: int, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    stack = ModelStack(_net, k=k)
    opt = stack.optimizer(torch.optim.Adam, lr=1e-3)
    loss_fn = stacked_loss(torch.nn.functional.cross_entropy, per_member_targets=True)
    for s in range(steps):
        i = (s * 64) % (len(x) - 64)
        xb = x[i : i + 64].expand(k, -1, -1)  # (K, b, 64)
        yb = y[i : i + 64].expand(k, -1)
        loss = loss_fn(stack(xb, per_member=True), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-norm", action="store_true", help="the lab's default cnn")
    args = parser.parse_args()
    BATCH_NORM[0] = args.batch_norm
    torch.manual_seed(0)
    x, y = torch.rand(1000, 64), torch.randint(0, 10, (1000,))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, BN {args.batch_norm}")
    for k in args.k:
        for r in range(args.repeats):  # alternate, the machine is shared
            alone = _alone(k, args.steps, x, y)
            stacked = _stacked(k, args.steps, x, y)
            print(
                f"K={k} run {r}: alone {alone:.2f} s, stacked {stacked:.2f} s, "
                f"alone/stacked {alone / stacked:.2f}x"
            )


if __name__ == "__main__":
    main()
