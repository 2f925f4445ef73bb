"""reglab.lab.work.heap: a process that retains freed memory stops faulting on the pages of
tensors it allocates again every step (what a stack's training step does)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

# One child per setting: the allocator tuning lasts for the whole process. It prints the
# minor page faults of each of 10 windows of 5 steps, after 20 warm-up steps.
_FAULTS = """
import json, resource, sys, torch
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
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
windows = []
for _ in range(10):
    before = faults()
    for _ in range(5):
        step()
    windows.append(faults() - before)
print(json.dumps(windows))
"""


def _fault_windows(setting: str) -> list[int] | None:
    """Minor faults per window of 5 steps; None where there is no glibc malloc to tune."""
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, setting], capture_output=True, text=True, check=True
    ).stdout.strip()
    return None if out == "unsupported" else json.loads(out)


def test_retained_memory_is_reused_without_page_faults() -> None:
    tuned = _fault_windows("tuned")
    if tuned is None:
        pytest.skip("no glibc malloc to tune on this platform")
    plain = _fault_windows("plain")
    assert plain is not None
    # A (21, 256, 256) float32 gradient is 5.5 MB, 1,344 pages of 4 KiB. glibc serves and
    # returns such blocks with mmap / munmap, or trims them off the top of the heap, at its own
    # dynamic thresholds: the plain heap faults in most windows, by amounts that differ from run
    # to run and machine to machine (159 to 2,700 faults per step measured).
    gradient_pages = 1344
    assert sum(plain) >= gradient_pages, f"expected the plain heap to fault, got {plain}"
    # Tuned, the heap stops growing after the warm-up: no fault in most windows (the median
    # ignores a window or two where it still grows by a block once).
    assert statistics.median(tuned) < gradient_pages / 20, (
        f"the tuned heap still faults: {tuned} (plain: {plain})"
    )
