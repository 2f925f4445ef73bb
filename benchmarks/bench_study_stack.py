"""End-to-end wall time of built-in studies, stacked vs ``--no-stack``, alternating runs.

Each repeat runs ``reglab run STUDY`` once stacked and once with ``--no-stack`` (order
alternates between repeats) in a fresh run directory, and prints the wall time of each with
its CPU time (user + system of the run's process: less sensitive than wall time to other
load on a shared machine) and the 1-minute load average before the run.

    python benchmarks/bench_study_stack.py default noise-and-augmentation --repeats 2
    python benchmarks/bench_study_stack.py dropout-maxnorm --epochs 2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(study: str, stacked: bool, epochs: int | None, seeds: int | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``reglab run``."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "reglab", "run", study, "--out", f"{out}/run"]
        command += ["--no-progress"] + ([] if stacked else ["--no-stack"])
        command += [] if epochs is None else ["--epochs", str(epochs)]
        command += [] if seeds is None else ["--seeds", str(seeds)]
        start, cpu = time.perf_counter(), _cpu()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    for study in args.studies:
        for r in range(args.repeats):
            for stacked in (True, False) if r % 2 == 0 else (False, True):
                load = os.getloadavg()[0]
                wall, cpu = _run(study, stacked, args.epochs, args.seeds)
                label = "stacked " if stacked else "no-stack"
                print(
                    f"{study} {label} wall {wall:7.1f} s, CPU {cpu:7.1f} s (load {load:.1f})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
