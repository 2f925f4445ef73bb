"""What a study says: study files parsed once into typed, frozen tables, validated before
anything trains. Nothing here trains; the trials (:mod:`reglab.lab.work`) and the sweep
(:mod:`reglab.lab.sweep`) receive these objects.

* :mod:`~reglab.lab.settings.schema`: the table helpers, key paths and :class:`StudyError`
* :mod:`~reglab.lab.settings.registry`: the trial-kind registry (``[model] kind``)
* :mod:`~reglab.lab.settings.data`: ``[data]`` and the embedded datasets
* :mod:`~reglab.lab.settings.train`: ``[train]``, ``norm_bound``, ``schedules``
* :mod:`~reglab.lab.settings.techniques`: the grid's technique tables
* :mod:`~reglab.lab.settings.config`: one grid point, :class:`TrialConfig`
* :mod:`~reglab.lab.settings.grid`: sweep axes expanded into grid points
* :mod:`~reglab.lab.settings.studyfile`: a study file, :class:`Study`
"""
