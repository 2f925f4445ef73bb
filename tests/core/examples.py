"""Run inside a venv holding only reglab's core dependencies (torch, numpy, platformdirs):
every library module imports, the examples that need nothing else run, and features that
need an extra fail with a one-line install hint. Exit status 0 means all of that held.

    python tests/core/examples.py
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import sys

#: The library: every module of these packages (the lab and the CLI need the lab extra).
PACKAGES = [
    "layouts",
    "penalties",
    "constraints",
    "regularization",
    "training",
    "stochastic",
    "losses",
    "sharing",
    "ensembles",
    "autoencoders",
    "data",
]


def library_modules() -> list[str]:
    import pkgutil

    import reglab

    names = ["reglab"]
    for package in PACKAGES:
        module = importlib.import_module(f"reglab.{package}")
        names.append(module.__name__)
        if hasattr(module, "__path__"):
            names += [m.name for m in pkgutil.iter_modules(module.__path__, f"{module.__name__}.")]
    del reglab
    return names


#: Features that need an extra, and the hint their failure must give.
NEEDS_EXTRA = [
    ("reglab.data", "digits", (), "reglab[lab]"),
    ("reglab.stochastic", "RandomAffine", (), "reglab[images]"),
    ("reglab.data", "image_patches", (), "reglab[images]"),
    (
        "reglab.autoencoders",
        "plot_filters",
        (__import__("torch").zeros(1, 1), (1, 1)),
        "reglab[lab]",
    ),
]
#: Modules whose examples use an extra (they still import with the core alone).
EXAMPLES_NEED_EXTRA = {
    "reglab.data.digits",
    "reglab.data.patches",
    "reglab.stochastic.augmentation",
    "reglab.ensembles.bagging",
    "reglab.autoencoders.plots",
    "reglab.autoencoders.linear",
}


def main() -> int:
    for absent in ("sklearn", "optuna", "matplotlib", "rich", "kornia", "safetensors"):
        if importlib.util.find_spec(absent) is not None:
            print(f"not a core-only environment: {absent} is installed")
            return 1
    failures = 0
    for name in library_modules():
        module = importlib.import_module(name)
        if name in EXAMPLES_NEED_EXTRA:
            print(f"{name}: imports (its examples need an extra)")
            continue
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        failures += result.failed
        print(f"{name}: {result.attempted} examples, {result.failed} failed")
    for module, attr, args, hint in NEEDS_EXTRA:
        try:
            getattr(importlib.import_module(module), attr)(*args)
        except ModuleNotFoundError as err:
            message = str(err)
            if hint not in message or "\n" in message:
                print(f"{module}.{attr}: unhelpful error {message!r}")
                failures += 1
            else:
                print(f"{module}.{attr}: {message}")
        else:
            print(f"{module}.{attr} worked without its extra?")
            failures += 1
    failures += _train_with_fit()
    return 1 if failures else 0


def _train_with_fit() -> int:
    """The README's library example with the core alone: attach, fit, early stopping."""
    import torch
    from torch import nn

    import reglab
    from reglab.constraints import MaxNorm
    from reglab.penalties import L1, L1L2
    from reglab.training import EarlyStopping, accuracy, fit

    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    reg = reglab.attach(
        model,
        {
            nn.Linear: dict(kernel=L1L2(1e-4, 1e-3), kernel_constraint=MaxNorm(3.0)),
            "1": dict(activity=L1(1e-3)),
        },
    )
    history = fit(
        model,
        (x[:200], y[:200]),
        (x[200:], y[200:]),
        loss=nn.functional.cross_entropy,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        epochs=5,
        regularization=reg,
        callbacks=[EarlyStopping(patience=3)],
        metrics={"acc": accuracy},
    )
    ok = len(history) >= 1 and "penalty/1.activity" in history
    print(f"fit with the core alone: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
