"""End-to-end wall time of built-in studies, stacked vs ``--no-stack``, alternating runs.

Each repeat runs ``reglab run STUDY`` once stacked and once with ``--no-stack`` (order
alternates between repeats) in a fresh run directory, and prints the wall time of each with
the 1-minute load average before the run (the machine may be shared).

    python benchmarks/bench_study_stack.py default noise-and-augmentation --repeats 2
    python benchmarks/bench_study_stack.py dropout-maxnorm --epochs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def _run(study: str, stacked: bool, epochs: int | None) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "reglab", "run", study, "--out", f"{out}/run"]
        command += ["--no-progress"] + ([] if stacked else ["--no-stack"])
        command += [] if epochs is None else ["--epochs", str(epochs)]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    for study in args.studies:
        for r in range(args.repeats):
            for stacked in (True, False) if r % 2 == 0 else (False, True):
                load = os.getloadavg()[0]
                seconds = _run(study, stacked, args.epochs)
                label = "stacked " if stacked else "no-stack"
                print(f"{study} {label} {seconds:7.1f} s (load {load:.1f})", flush=True)


if __name__ == "__main__":
    main()
