"""Fixed costs of ``reglab run`` on the default study: start-up phases and the report.

Every measurement runs in a fresh interpreter (as ``reglab run`` does), repeated ``--repeats``
times; the best of the repeats is printed, as CPU time (user + system of that process: less
sensitive than wall time to other load on a shared machine) and wall time. Phases, in the
order ``reglab run`` meets them:

- ``interpreter``: Python's own start-up (with site packages) before the first reglab import;
- ``imports``: what ``reglab run`` imports before it reads its arguments (the CLI parser and
  every subcommand module it names);
- ``study``: parsing the default study (``find_study``) and writing it into the run directory;
- ``storage``: creating the Optuna storage (SQLite) and enqueuing the trials;
- ``data``: loading the study's data (digits, from scikit-learn);
- ``report``: ``write_report`` on a finished run of the default study (figures, HTML,
  Markdown), after ``report-imports`` (the report's modules) and ``results`` (reading the
  records from the storage).

Floors beside them: ``python -c pass`` and ``python -c "import torch"``; and the light
commands ``reglab --help``, ``reglab studies``, ``reglab show default`` end to end.

Compare two trees by running the script twice with a different ``PYTHONPATH`` (the script
imports reglab only in its children), on the same finished run:

    python benchmarks/bench_fixed_costs.py --run /tmp/default-run      # runs it if missing
    PYTHONPATH=/path/to/other/src python benchmarks/bench_fixed_costs.py --run /tmp/default-run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One child: prints one JSON line {phase: [cpu seconds, wall seconds since the previous mark]}.
_MARK = """
import json, resource, sys, time
_marks = {}
_last = [0.0, float(sys.argv[1])]
def mark(name):
    r = resource.getrusage(resource.RUSAGE_SELF)
    now = [r.ru_utime + r.ru_stime, time.time()]
    _marks[name] = [now[0] - _last[0], now[1] - _last[1]]
    _last[:] = now
mark("interpreter")
"""

_STARTUP = (
    _MARK
    + """
out = sys.argv[2]
from reglab.cli.main import _parser
_parser()
mark("imports")
from pathlib import Path
from reglab.lab import Overrides, RunDir, find_study
from reglab.lab.sweep import optuna_study_name
from reglab.lab.sweep.search import sweep_class
study, _, text = find_study("default", Overrides(None, None), None)
run_dir = RunDir(Path(out))
name = optuna_study_name(study)
run_dir.path.mkdir(parents=True, exist_ok=True)
run_dir.write_study(study, text, Overrides(None, None), name, None, "")
mark("study")
sweep = sweep_class(study).create(study, run_dir.storage_url, name=name, alone=True)
sweep.recover_local()
sweep.finished()
mark("storage")
from reglab.lab.settings.data import load_data
load_data(study.trials[0].point.config.data)
mark("data")
print(json.dumps(_marks))
"""
)

_REPORT = (
    _MARK
    + """
from pathlib import Path
from reglab.lab import RunDir
from reglab.lab.report import write_report
from reglab.lab.sweep.search import sweep_class
mark("report-imports")
run_dir = RunDir(Path(sys.argv[2]))
study = run_dir.study()
sweep = sweep_class(study).open(study, run_dir.storage_url, run_dir.optuna_study)
records = sweep.results()
mark("results")
write_report(run_dir, study, records, len(sweep.trials))
mark("report")
print(json.dumps(_marks))
"""
)


def _timed(args: list[str]) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, stdout) of one child, its CPU read with os.wait4."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.time()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - start
        if proc.returncode != 0:
            errors.seek(0)
            raise SystemExit(
                f"{' '.join(args[:5])} failed with exit code {proc.returncode}: "
                + errors.read().strip()[-2000:]
            )
    return usage.ru_utime + usage.ru_stime, wall, out


def _phases(script: str, extra: str) -> dict[str, list[float]]:
    cpu, wall, out = _timed([sys.executable, "-c", script, repr(time.time()), extra])
    phases = json.loads(out.strip().splitlines()[-1])
    phases["(process)"] = [cpu, wall]
    return phases


def _best(runs: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per phase, the smallest CPU and the smallest wall time over the repeats."""
    return {k: [min(r[k][0] for r in runs), min(r[k][1] for r in runs)] for k in runs[0]}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run",
        type=Path,
        help="a finished run of the default study "
        "(made with `reglab run --out RUN` when it does not exist)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import_path = subprocess.run(
        [sys.executable, "-c", "import reglab; print(reglab.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"reglab from {import_path}; {os.cpu_count()} CPUs; load before: {_load()}")

    rows: list[tuple[str, list[float]]] = []
    for label, code in (("python -c pass", "pass"), ("import torch", "import torch")):
        best = min(_timed([sys.executable, "-c", code])[:2] for _ in range(args.repeats))
        rows.append((label, list(best)))
    for label, argv in (
        ("reglab --help", ["--help"]),
        ("reglab studies", ["studies"]),
        ("reglab show default", ["show", "default"]),
    ):
        runs = [_timed([sys.executable, "-m", "reglab", *argv])[:2] for _ in range(args.repeats)]
        rows.append((label, [min(r[0] for r in runs), min(r[1] for r in runs)]))

    with tempfile.TemporaryDirectory() as tmp:
        startup = _best([_phases(_STARTUP, f"{tmp}/start{i}") for i in range(args.repeats)])
        run = args.run or Path(tmp) / "run"
        if not (run / "storage.db").is_file():
            print(f"running the default study into {run} (once, for the report)...")
            subprocess.run(
                [sys.executable, "-m", "reglab", "run", "--out", str(run), "--no-progress"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        reports = []
        for i in range(args.repeats):
            copy = Path(tmp) / f"report{i}"
            shutil.copytree(run, copy)
            for stale in [copy / "report.html", copy / "summary.md", *copy.glob("*.png")]:
                stale.unlink(missing_ok=True)  # as a fresh run's report, every time
            reports.append(_phases(_REPORT, str(copy)))
        report = _best(reports)

    print(f"\n{f'phase (best of {args.repeats})':<34} {'CPU s':>7} {'wall s':>7}")
    for label, (cpu, wall) in rows:
        print(f"{label:<34} {cpu:7.2f} {wall:7.2f}")
    print("reglab run start-up, by phase:")
    for label, (cpu, wall) in startup.items():
        print(f"  {label:<32} {cpu:7.2f} {wall:7.2f}")
    total = [sum(v[i] for k, v in startup.items() if k != "(process)") for i in (0, 1)]
    print(f"  {'start-up (sum of the best)':<32} {total[0]:7.2f} {total[1]:7.2f}")
    print("report of a finished default run:")
    for label, (cpu, wall) in report.items():
        print(f"  {label:<32} {cpu:7.2f} {wall:7.2f}")
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
