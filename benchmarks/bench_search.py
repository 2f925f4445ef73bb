"""Grid vs coarse-to-fine vs TPE vs TPE + ASHA vs PBT: what each costs and what it finds.

The task of the built-in search studies: an L2 coefficient in [1e-6, 1e-1] for a
64-256-256-10 ReLU MLP on digits (Adam, lr 1e-3, 20 % of the training rows held out for
validation), ``--epochs`` epochs, one seed; ``--data mnist`` (with ``--subset N`` training
rows) the same on MNIST with a 784-256-256-10 MLP. Each method runs through the lab as
``reglab run`` does (its own SQLite storage, one worker, trials trained one by one):

* ``grid``: ``--grid`` log-spaced values, every one trained alone (the exhaustive reference),
  and ``grid (stacked)``: the same trained as one ModelStack, as ``reglab run`` does;
* ``coarse-to-fine``: one value per decade, then 5 values in the best decade's cell, each
  trial alone, and ``coarse-to-fine (stacked)``: each stage as one ModelStack;
* ``tpe`` and ``tpe+asha``: ``--trials`` trials of Optuna's TPE, the second with ASHA;
* ``tpe+asha (stacked)``: the same with ``[search] batch = --batch``: each worker asks
  ``--batch`` candidates together and trains them as one ModelStack, ASHA pruning member by
  member and the stack compacted to the live members (``reglab.lab.sweep.stacked_search``);
* ``pbt``: ``--members`` members (initial coefficients log-uniform) trained as one stack,
  exploit/explore every ``--interval`` epochs (default: a fifth of the epochs); its row counts
  every member as a trial, and the chosen coefficient is the best member's final one.

For each: wall time, the process's CPU time (all its threads), trials and epochs trained, the
chosen coefficient (best validation accuracy at the last epoch), its validation and test
accuracy, and whether its validation accuracy reaches the grid's best within noise
(``val >= best - --noise``, default 1 point; PBT's schedules, which no grid point has, can
also beat it). Run by hand (minutes on 2 CPU cores; ``--methods`` runs a subset, "x grid"
relative to the first grid row that ran; ``--repeat N`` runs N rounds of the methods, one
after the other, and shows each method's smallest wall and CPU time: on a shared machine the
load of the moment is the largest term):

    python benchmarks/bench_search.py [--epochs 20] [--grid 16] [--trials 16] [--batch 8]
        [--members 8] [--interval E] [--repeat 1] [--data digits] [--subset N] [--methods ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from reglab.lab import RunDir, Sweep
from reglab.lab.settings.studyfile import parse_study
from reglab.lab.sweep.search import SearchSweep

L2 = "rules.fc*.kernel.l2"


#: ``--data`` -> the study's ``[data]`` and the MLP's sizes
TASKS = {
    "digits": ({"name": "digits", "validation": 0.2}, [64, 256, 256, 10]),
    "mnist": ({"name": "mnist", "validation": 0.2}, [784, 256, 256, 10]),
}


def _study(search: dict | None, axis: dict, epochs: int, task: tuple = TASKS["digits"]) -> dict:
    data, sizes = task
    return {
        "name": "bench",
        "seeds": [0],
        "data": data,
        "model": {"sizes": sizes},
        "train": {"optimizer": "adam", "lr": 1e-3, "epochs": epochs, "batch_size": 64},
        **({"search": search} if search else {}),
        "grid": [
            {
                "name": "L2",
                "rules": {"fc*": {"kernel": {"class_name": "L2", "config": {"l2": axis}}}},
            }
        ],
    }


def _run(method: str, raw: dict, folder: Path, stack: bool = False) -> dict:
    study = parse_study(raw, "bench")
    run_dir = RunDir(folder / method)
    run_dir.path.mkdir(parents=True)
    start, cpu = time.perf_counter(), time.process_time()
    if study.searched is None:
        sweep = Sweep.create(study, run_dir.storage_url)
        sweep.work(run_dir, stack=stack)
    else:
        sweep = SearchSweep.create(study, run_dir.storage_url)
        sweep.work(run_dir, advance=True, stack=stack)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    records = sweep.results()
    finished = [r for r in records if not r["diverged"] and not r.get("pruned")]
    best = max(finished, key=lambda r: r["history"][-1]["val_acc"])
    return {
        "method": method,
        "seconds": seconds,
        "cpu": cpu,
        "trials": len(records),
        "epochs": sum(len(r["history"]) for r in records),
        "l2": best["params"][L2],
        "val": best["history"][-1]["val_acc"],
        "test": best["metrics"]["test_acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="stacked search: K per stack")
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds; the table shows each method's fastest"
    )
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--interval", type=int, help="PBT's (default: epochs // 5, at least 1)")
    parser.add_argument("--methods", nargs="*", help="run only these (default: all)")
    parser.add_argument("--data", choices=sorted(TASKS), default="digits")
    parser.add_argument("--subset", type=int, help="train on this many rows (default: all)")
    args = parser.parse_args()
    data, sizes = TASKS[args.data]
    task = ({**data, **({"subset": args.subset} if args.subset else {})}, sizes)
    interval = args.interval or max(1, args.epochs // 5)
    log = {"log": [1e-6, 1e-1]}
    methods = {
        "grid": (None, {**log, "num": args.grid}),
        "grid (stacked)": (None, {**log, "num": args.grid}),
        "coarse-to-fine": ({"method": "coarse-to-fine", "points": 5}, log),
        "coarse-to-fine (stacked)": ({"method": "coarse-to-fine", "points": 5}, log),
        "tpe": ({"method": "tpe", "trials": args.trials, "seed": 0}, log),
        "tpe+asha": (
            {"method": "tpe", "trials": args.trials, "pruner": "asha", "seed": 0},
            log,
        ),
        "tpe+asha (stacked)": (
            {
                "method": "tpe",
                "trials": args.trials,
                "pruner": "asha",
                "batch": args.batch,
                "seed": 0,
            },
            log,
        ),
        "pbt": ({"method": "pbt", "members": args.members, "interval": interval}, log),
    }
    print(
        f"{args.data}{f' (subset {args.subset})' if args.subset else ''}, "
        f"{'-'.join(map(str, sizes))}, {args.epochs} epochs, "
        f"torch threads {torch.get_num_threads()}"
    )
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        # untimed warm-up: data loading, first imports and allocations count against no method
        _run("warm-up", _study(None, {"values": [1e-4]}, 1, task), Path(folder))
        for round_ in range(args.repeat):  # rounds interleave the methods: load hits them alike
            for method, (search, axis) in methods.items():
                if args.methods and method not in args.methods:
                    continue
                raw = _study(search, axis, args.epochs, task)
                r = _run(method, raw, Path(folder) / str(round_), stack="stacked" in method)
                print(f"  {method}: {r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU", flush=True)
                kept = best.setdefault(method, r)
                kept["seconds"] = min(kept["seconds"], r["seconds"])
                kept["cpu"] = min(kept["cpu"], r["cpu"])
    rows = list(best.values())
    # the reference: the exhaustive grid (alone if it ran, else stacked)
    reference = next((r for r in rows if r["method"].startswith("grid")), rows[0])
    print(
        f"\n{'method':25} {'wall s':>7} {'x grid':>7} {'CPU s':>7} {'trials':>6} {'epochs':>6} "
        f"{'chosen l2':>10} {'val %':>6} {'test %':>6}  reaches the grid's best (within noise)"
    )
    for r in rows:
        near = r["val"] >= reference["val"] - args.noise  # PBT's schedules can beat it
        print(
            f"{r['method']:25} {r['seconds']:7.1f} {r['seconds'] / reference['seconds']:7.2f} "
            f"{r['cpu']:7.1f} "
            f"{r['trials']:6d} {r['epochs']:6d} {r['l2']:10.3g} {100 * r['val']:6.1f} "
            f"{100 * r['test']:6.1f}  {'yes' if near else 'no'}"
        )


if __name__ == "__main__":
    main()
