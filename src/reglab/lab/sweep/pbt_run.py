"""``method = "pbt"`` in a :class:`~reglab.lab.sweep.search.SearchSweep`: one Optuna trial
per seed trains the whole population as one stack.

* **Queue.** When the search is created, one trial per study seed is enqueued (stage 1, no
  parameters: the population is drawn from the seed). Resume and exactly-once are the
  search's own: a trial left running by a killed run is failed and enqueued again, and trains
  its population from scratch.
* **Trial.** The ``[search] members`` initial coefficients are drawn by
  :func:`~reglab.lab.search.pbt.initial_population` (seeded by ``[search] seed`` and the trial's
  seed; member ``k`` trains under seed ``seed · members + k``) and trained by
  :func:`~reglab.lab.work.population.train_population`, exploiting and exploring every
  ``[search] interval`` epochs on the study's validation objective (never a test metric).
* **Stored.** Each member's final metrics, history, initial and final coefficients and its
  coefficient schedule are the trial's ``members`` user attribute (and each member's files
  are saved under ``trials/pbt_s<seed>_m<k>/``); ``steps`` lists the copies made. The trial's
  value is its best member's final objective; ``best_member`` says which.
* **Conclusion.** The surviving members' schedules, best first, and the best member of the
  best trial as paste-ready text: ``best.py`` (``reglab.attach`` + ``reglab.schedule`` calls),
  ``best.toml`` (a ``[[grid]]`` entry with ``schedules = [...]``, which ``reglab run`` replays
  on one model) and ``schedules.json`` (every member of every trial).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from reglab._io import atomic_write_text, json_safe
from reglab.lab.interrupts import deferred
from reglab.lab.metrics import strict_metrics
from reglab.lab.rundir import RunDir
from reglab.lab.search.entry import SearchedEntry
from reglab.lab.search.export import study_fragment
from reglab.lab.search.pbt import initial_population, schedule_call, schedule_entries
from reglab.lab.settings.grid import GridPoint, Trial
from reglab.lab.settings.schema import StudyError
from reglab.lab.settings.studyfile import Study
from reglab.lab.sweep.heartbeat import Heartbeat
from reglab.lab.sweep.pruning import objective_value
from reglab.lab.work.population import bind, train_population
from reglab.lab.work.stacking import stack_key, stack_rules
from reglab.lab.work.training import TrialContext, tensor_shapes
from reglab.training import Diverged

__all__ = [
    "check_population_stacks",
    "population_conclusion",
    "population_records",
    "population_spec",
    "run_population",
]


class PopulationSweep(Protocol):
    """What this module reads of a :class:`~reglab.lab.sweep.search.SearchSweep` (a protocol,
    so that the sweep imports this module and not the other way round)."""

    study: Study
    settings: Any
    entry: SearchedEntry
    objective: Any
    storage: Any

    def _trials(self) -> list[optuna.trial.FrozenTrial]: ...

    def _tell(self, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None: ...


def _numeric(entry: SearchedEntry) -> list[str]:
    return [a.name for a in entry.space.axes if a.kind != "choice"]


def _population(study: Study, seed: int) -> tuple[list[dict[str, Any]], list[tuple[Any, int]]]:
    """The initial settings of the population trained with ``seed``, and its ``(config,
    member seed)`` pairs."""
    settings, entry = study.search, study.searched
    assert entry is not None  # a searched study
    params = initial_population(entry.space, settings.members, seed=1000 * settings.seed + seed)
    members = [(entry.point(p).config, seed * settings.members + k) for k, p in enumerate(params)]
    return params, members


def check_population_stacks(study: Study) -> None:
    """Raise a one-line :class:`StudyError` when the searched entry cannot train as one
    stack, or a searched coefficient is not a stack penalty's (checked before anything
    trains, with the first seed's population)."""
    entry = study.searched
    assert entry is not None
    params, members = _population(study, study.seeds[0])
    configs = [c for c, _ in members]
    keys = {stack_key(c) for c in configs}
    if None in keys or len(keys) != 1:
        raise StudyError(
            f"{entry.path}: method 'pbt' trains its population as one stack, and this entry "
            "does not stack (an MLP classifier with L1 / L2 / L1L2 rules and no per-trial "
            "logic such as early stopping or schedules: docs/guide/performance.md)"
        )
    try:
        bind(stack_rules(configs), {n: [p[n] for p in params] for n in _numeric(entry)})
    except ValueError as err:
        raise StudyError(f"{entry.path}: method 'pbt': {err}") from None


def population_spec(sweep: PopulationSweep, trial: optuna.Trial) -> Trial:
    """The popped trial as the progress display shows it: the population of its seed."""
    seed = int(trial.user_attrs["seed"])
    entry = sweep.entry
    point = entry.point(entry.sample())
    label = f"{entry.name} pbt population of {sweep.settings.members}"
    shown = GridPoint(f"pbt_s{seed}", label, entry.name, {}, point.config)
    return Trial(f"pbt_s{seed}", shown, seed)


def _member_label(entry: SearchedEntry, seed: int, k: int, schedule: dict[str, Any]) -> str:
    """``L2 pbt s0 m3 l2=0.0001→0.000156``: first and last value of each coefficient."""
    parts = [
        f"{name.split('.')[-1]}={s['values'][0]:.3g}→{s['values'][-1]:.3g}"
        for name, s in schedule.items()
    ]
    return " ".join([entry.name, f"pbt s{seed} m{k}", *parts])


def run_population(
    sweep: PopulationSweep,
    trial: optuna.Trial,
    spec: Trial,
    run_dir: RunDir | None,
    on_trial: Callable[[list[Trial], str], None] | None,
    context: TrialContext,
) -> None:
    """Train the population of ``trial``'s seed, store it and tell the trial (module doc)."""
    seed = spec.seed
    settings, entry, objective = sweep.settings, sweep.entry, sweep.objective.key
    params, members = _population(sweep.study, seed)
    numeric = _numeric(entry)
    config = members[0][0]

    def specs(labels: list[str]) -> list[Trial]:
        """One per member, for the progress display and its lines (files by key)."""
        keys = [f"pbt_s{seed}_m{k}" for k in range(len(members))]
        return [
            Trial(key, GridPoint(key, label, entry.name, {}, config), member_seed)
            for key, label, (_, member_seed) in zip(keys, labels, members, strict=True)
        ]

    started = specs([entry.label(p, f"pbt s{seed} m{k}") for k, p in enumerate(params)])
    if on_trial is not None:
        on_trial(started, "start")
    interval = sweep.storage.get_heartbeat_interval() or 10
    with Heartbeat(sweep.storage, [trial._trial_id], interval):
        try:
            result = train_population(
                members,
                {n: [p[n] for p in params] for n in numeric},
                objective=objective,
                interval=settings.interval,
                seed=1000 * settings.seed + seed,
                fraction=settings.fraction,
                factors=settings.factors,
                context=context,
            )
        except Diverged as err:
            with deferred():
                if run_dir is not None:
                    run_dir.save_divergence(spec.key, str(err))
                trial.set_user_attr("key", spec.key)
                trial.set_user_attr("diverged", str(err))
                sweep._tell(trial, state=TrialState.FAIL)
            if on_trial is not None:
                on_trial([spec], "done")  # one line: the population diverged
            return
        except Exception:
            sweep._tell(trial, state=TrialState.FAIL)
            raise
    stored = []
    for k, (outcome, schedule) in enumerate(zip(result.outcomes, result.schedules, strict=True)):
        metrics = strict_metrics(outcome.metrics)
        key = f"pbt_s{seed}_m{k}"
        final = {**params[k], **{n: schedule[n]["values"][-1] for n in numeric}}
        stored.append(
            {
                "member": k,
                "key": key,
                "label": _member_label(entry, seed, k, schedule),
                "seed": members[k][1],
                "initial": params[k],
                "final": final,
                "schedule": schedule,
                "value": objective_value(metrics, objective),
                "metrics": metrics,
                "history": json_safe(outcome.history),
                "reliability": json_safe(outcome.reliability),
                "tensors": tensor_shapes(outcome.model),
            }
        )
    finite = [m for m in stored if m["value"] is not None]
    with deferred():  # the members' files and the trial's state change together
        if run_dir is not None:
            for member, outcome in zip(stored, result.outcomes, strict=True):
                run_dir.save_trial(member["key"], outcome, member["metrics"])
        trial.set_user_attr("members", stored)
        steps = [{"epoch": s.epoch, "copies": [list(c) for c in s.copies]} for s in result.steps]
        trial.set_user_attr("steps", steps)
        if not finite:
            trial.set_user_attr("key", spec.key)
            trial.set_user_attr("diverged", f"no member logged a finite {objective}")
            sweep._tell(trial, state=TrialState.FAIL)
        else:
            best = max(finite, key=lambda m: m["value"])
            trial.set_user_attr("best_member", best["member"])
            for name in ("key", "label", "schedule"):
                trial.set_user_attr(name, best[name])
            trial.set_user_attr("point", best["key"])
            sweep._tell(trial, best["value"])
    if on_trial is not None:
        on_trial(specs([m["label"] for m in stored]), "done")


def _finished(sweep: PopulationSweep) -> list[optuna.trial.FrozenTrial]:
    return [
        t for t in sweep._trials() if t.state == TrialState.COMPLETE and "members" in t.user_attrs
    ]


def population_records(sweep: PopulationSweep) -> list[dict[str, Any]]:
    """One record per member of every finished population (Sweep's format)."""
    records = []
    for t in _finished(sweep):
        for m in t.user_attrs["members"]:
            records.append(
                {
                    "key": m["key"],
                    "point": m["key"],
                    "label": m["label"],
                    "entry": sweep.entry.name,
                    "seed": m["seed"],
                    "params": m["final"],
                    "metrics": m["metrics"],
                    "history": m["history"],
                    "reliability": m["reliability"],
                    "tensors": m["tensors"],
                    "diverged": None,
                    "stage": None,
                    "pruned": False,
                    "schedule": m["schedule"],
                }
            )
    for t in sweep._trials():  # a diverged population: one record, as a diverged trial
        if t.state == TrialState.FAIL and "diverged" in t.user_attrs and "key" in t.user_attrs:
            key = t.user_attrs["key"]
            records.append(
                {
                    "key": key,
                    "point": key,
                    "label": f"{sweep.entry.name} pbt population ({key})",
                    "entry": sweep.entry.name,
                    "seed": t.user_attrs.get("seed"),
                    "params": {},
                    "metrics": {},
                    "history": [],
                    "reliability": None,
                    "tensors": None,
                    "diverged": t.user_attrs["diverged"],
                    "stage": None,
                    "pruned": False,
                }
            )
    return records


def _schedule_text(schedule: dict[str, Any]) -> str:
    """``l2: 0.0001 → 0.000125 (epoch 4) → 0.0001 (epoch 8)``."""
    parts = []
    for name, s in schedule.items():
        steps = [f"{s['values'][0]:.3g}"] + [
            f"{v:.3g} (epoch {b})" for b, v in zip(s["boundaries"], s["values"][1:], strict=True)
        ]
        parts.append(f"{name.split('.')[-1]}: " + " → ".join(steps))
    return "; ".join(parts)


def population_conclusion(sweep: PopulationSweep, run_dir: RunDir | None = None) -> str:
    """What ``reglab run`` prints at the end of a PBT search; writes ``best.py``,
    ``best.toml`` and ``schedules.json`` into ``run_dir`` (module doc)."""
    trials = _finished(sweep)
    if not trials:
        return "no population finished: nothing to choose"
    entry, objective = sweep.entry, sweep.objective.key
    lower = sweep.objective.direction == "minimize"
    lines = []
    everything = []
    for t in trials:
        steps = t.user_attrs.get("steps", [])
        copies = sum(len(s["copies"]) for s in steps)
        lines.append(
            f"population seed {t.user_attrs['seed']}: {len(t.user_attrs['members'])} members, "
            f"{len(steps)} exploit/explore steps, {copies} copies"
        )
        ranked = sorted(
            t.user_attrs["members"],
            key=lambda m: -m["value"] if m["value"] is not None else float("inf"),
        )
        for m in ranked:
            value = "nan" if m["value"] is None else f"{(-1 if lower else 1) * m['value']:.4g}"
            lines.append(f"  m{m['member']} {objective} {value}: {_schedule_text(m['schedule'])}")
            everything.append({"trial_seed": t.user_attrs["seed"], **m})
    best_trial = max(trials, key=lambda t: t.value)
    chosen = best_trial.user_attrs["best_member"]
    best = next(m for m in best_trial.user_attrs["members"] if m["member"] == chosen)
    lines.append(
        f"chosen: {best['label']} ({objective} {(-1 if lower else 1) * best['value']:.4g}), "
        "its coefficients as a schedule:"
    )
    entries = schedule_entries(entry.space, best["schedule"])
    # the lineage's first values (a member that copied a donor starts from the donor's)
    first = {**best["initial"], **{n: v["values"][0] for n, v in best["schedule"].items()}}
    concrete = entry.fragment_entry(first)
    concrete["schedules"] = entries
    texts = {"best.toml": study_fragment(concrete, name=f"{entry.name}-pbt-best") + "\n"}
    if concrete.get("rules"):
        texts["best.py"] = schedule_call(concrete["rules"], entries) + "\n"
    keep = ("member", "trial_seed", "seed", "initial", "final", "schedule", "value", "metrics")
    schedules = [{k: m[k] for k in keep} for m in everything]
    texts["schedules.json"] = (
        json.dumps({"objective": objective, "per": "epoch", "members": schedules}, indent=1) + "\n"
    )
    if run_dir is not None:
        for file, text in texts.items():
            atomic_write_text(run_dir.output(file), text)
    shown = "\n".join(texts[f] for f in ("best.py", "best.toml") if f in texts)
    return "\n".join(lines) + "\n\n" + shown
