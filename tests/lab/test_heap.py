"""reglab.lab.work.heap: a process that retains freed memory stops faulting on the pages of
tensors it allocates again every step (what a stack's training step does)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# One child per setting: the allocator tuning lasts for the whole process.
_FAULTS = """
import resource, sys, torch
from reglab.lab.work.heap import retain_freed_memory
tuned = retain_freed_memory() if sys.argv[1] == "tuned" else None
if tuned is False:
    print("unsupported"); raise SystemExit
from torch import nn
from reglab.ensembles import ModelStack
torch.manual_seed(0)
stack = ModelStack(lambda: nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256),
                                         nn.ReLU(), nn.Linear(256, 10)), k=21)
optimizer = stack.optimizer(torch.optim.Adam, lr=1e-3)
x, y = torch.randn(21, 64, 64), torch.randint(0, 10, (21 * 64,))
def step():  # the default study's 21-member stack (as reglab run trains it)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(stack(x, per_member=True).reshape(-1, 10), y).backward()
    optimizer.step()
for _ in range(20):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def _faults_per_step(setting: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, setting], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_retained_memory_is_reused_without_page_faults() -> None:
    tuned = _faults_per_step("tuned")
    if tuned == "unsupported":
        pytest.skip("no glibc malloc to tune on this platform")
    plain = float(_faults_per_step("plain"))
    # A (21, 256, 256) float32 gradient is 5.5 MB, 1,344 pages of 4 KiB: glibc serves and
    # returns such blocks with mmap / munmap (or trims them off the heap), faulting every step.
    assert plain > 300, f"expected the plain heap to fault on every step, got {plain}"
    # Tuned, the heap stops growing after a few steps: 0 faults per step, or a block's pages
    # once or twice in the 50 steps measured (27-54 per step); untuned 380–2,700 per step.
    assert float(tuned) < 0.2 * plain, f"tuned heap still faults: {tuned} vs {plain}"
