"""Search, not only grids: the ``[search]`` table and its methods (issue 23).

* :mod:`~reglab.lab.search.settings` — ``[search]`` parsed once into :class:`SearchSettings`;
* a registry of methods behind one interface (:func:`get_method`), one module each:
  ``grid``, ``coarse_to_fine``, ``tpe``, ``random_search``, ``qmc`` and ``pbt`` (its engine is
  :class:`reglab.ensembles.PopulationBasedTraining`);
* :func:`make_pruner` — Optuna's pruners by name;
* :mod:`~reglab.lab.search.axes` — a grid entry's axes as Optuna distributions and back;
* :mod:`~reglab.lab.search.batch` — K candidates asked together, trained as one stack,
  reported and pruned per member;
* :func:`pareto_front`, :func:`attach_call`, :func:`study_fragment` — the results as the
  user reads and pastes them.

Settings only: nothing here trains or knows a run directory.
"""

from reglab.lab.search import grid, qmc, random_search, tpe  # noqa: F401  (registers methods)
from reglab.lab.search._base import SearchMethod, get_method, method_names, register
from reglab.lab.search.axes import (
    Axis,
    SearchSpace,
    concrete,
    find_axes,
    is_search_axis,
    stored_params,
    suggest,
)
from reglab.lab.search.batch import Candidate, ask_batch, report_members, tell_batch
from reglab.lab.search.coarse_to_fine import (
    CoarseToFine,
    Refinement,
    decade_values,
    evidence,
    first_stage,
    next_stage,
    refine,
)
from reglab.lab.search.export import attach_call, study_fragment
from reglab.lab.search.pareto import ParetoPoint, pareto_front
from reglab.lab.search.pbt import PBT, initial_population
from reglab.lab.search.pruners import make_pruner
from reglab.lab.search.settings import METHODS, PRUNERS, SearchSettings, parse_search

__all__ = [
    "METHODS",
    "PBT",
    "PRUNERS",
    "Axis",
    "Candidate",
    "CoarseToFine",
    "ParetoPoint",
    "Refinement",
    "SearchMethod",
    "SearchSettings",
    "SearchSpace",
    "ask_batch",
    "attach_call",
    "concrete",
    "decade_values",
    "evidence",
    "find_axes",
    "first_stage",
    "get_method",
    "initial_population",
    "is_search_axis",
    "make_pruner",
    "method_names",
    "next_stage",
    "pareto_front",
    "parse_search",
    "refine",
    "register",
    "report_members",
    "stored_params",
    "study_fragment",
    "suggest",
    "tell_batch",
]
