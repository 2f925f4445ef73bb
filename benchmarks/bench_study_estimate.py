"""``reglab studies``' estimated time against the measured wall time of ``reglab run``.

For each study: the estimate (:mod:`reglab.cli.estimate`, this machine's speed measured just
before the run, with the same ``--epochs``/``--seeds``), then one ``reglab run`` in a fresh
run directory (the whole command: start-up, trials, report), its wall time, the ratio and
the 1-minute load average before and after. The table in ``docs/guide/lab.md`` ("How long a
study takes") came from this.

    python benchmarks/bench_study_estimate.py default weight-penalties --epochs 2 --seeds 1
    python benchmarks/bench_study_estimate.py bagging --seeds 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from reglab._optional import toml
from reglab.cli.estimate import format_duration, measure, study_cost
from reglab.lab import builtin_studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    texts = builtin_studies()
    for study in args.studies:
        speed = measure()
        cost = study_cost(toml().loads(texts[study]), epochs=args.epochs, seeds=args.seeds)
        estimate = None if cost is None else cost.seconds(speed)
        command = [sys.executable, "-m", "reglab", "run", study, "--no-progress"]
        command += [] if args.epochs is None else ["--epochs", str(args.epochs)]
        command += [] if args.seeds is None else ["--seeds", str(args.seeds)]
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([*command, "--out", f"{out}/run"], check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
        ratio = "" if estimate is None else f", measured / estimate {wall / estimate:.2f}"
        print(
            f"{study}: estimate {format_duration(estimate)}, measured {wall:.1f} s{ratio} "
            f"(load {load:.1f} -> {os.getloadavg()[0]:.1f}; speed "
            f"{speed.macs_per_second / 1e9:.0f} G multiply-adds/s, step "
            f"{speed.step_seconds * 1e3:.2f} ms)",
            flush=True,
        )


if __name__ == "__main__":
    main()
