"""What a trial does: train one grid point with one seed and measure it. Receives parsed
settings (:mod:`reglab.lab.settings`), never parses; knows no storage.

* :mod:`~reglab.lab.work.training`: the training run every kind shares, weight statistics,
  :class:`TrialOutcome`
* :mod:`~reglab.lab.work.classifier`: the classifier trial (the classifier kinds' runner)
* :mod:`~reglab.lab.work.bagging`: a bagged classifier (``ensemble``)
* :mod:`~reglab.lab.work.stacking`: several grid points trained as one vmapped stack
* :mod:`~reglab.lab.work.posthoc`: post-hoc stopping criteria over logged curves
* :mod:`~reglab.lab.work.runner`: :func:`run_trial`, dispatched by the kind registry
"""
