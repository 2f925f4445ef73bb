"""How long a study takes on this machine, estimated from its document alone.

``reglab studies`` shows the estimate next to each study. The model counts work, then prices
it with this machine's speed measured just before (:func:`measure`, ~0.1 s)::

    seconds = START + sum over trials of
        TRIAL + once
        + epochs * (steps * layers * step_cost
                    + (3 * train_rows + eval_rows) * macs_per_row / speed)

* ``macs_per_row``: the model's multiply-adds for one input row (one token for a language
  model), from its kind and sizes (:func:`forward_macs`) and the dataset's shape
  (:data:`reglab.lab.settings.data.DATASETS`); a backward pass costs two forwards;
* ``steps``: optimizer steps per epoch (``ceil(rows / batch_size)``), each paying a fixed
  cost per weight layer (:func:`weight_layers`; kernels launched, regularizers and hooks
  run, Python) — what dominates small models on small data;
* trials: grid points x seeds, or a search's trials (stages of points, a PBT population);
  ensemble members and techniques with extra passes (SAM, R-Drop, semi-supervised) multiply
  the arithmetic; ``once``: Monte-Carlo dropout's passes, greedy pre-training;
* ``speed`` (multiply-adds per second) and ``step_cost`` (seconds) come from timing a matrix
  product and a small training step now; START, TRIAL and the efficiency factors were fitted
  to measured runs of built-in studies (``docs/guide/lab.md``, "How long a study takes").

The estimate is ``None`` where the document does not say enough: a ``factory`` model, the
user's own data (``format = ...``), or a dataset of unknown size. Nothing is parsed beyond
the decoded TOML, and no trial kind is imported. Every trial is counted to its last epoch
(a pruner or early stopping ends some sooner), and stacking trials into one ``ModelStack`` is
not modelled: the constants were fitted to runs that stacked as ``reglab run`` does.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Speed",
    "StudyCost",
    "format_duration",
    "forward_macs",
    "measure",
    "study_cost",
]

#: Seconds every ``reglab run`` pays once: start-up (imports, storage), the report.
START = 6.0
#: Seconds every trial pays besides training: building, final metrics, saving.
TRIAL = 0.15
#: One optimizer step of the lab (loss, regularizers, hooks, logging) for a model of as many
#: weight layers as the calibration MLP (3), in units of the calibration step (:func:`measure`).
STEP = 45.0
#: The share of the calibration product's speed that training reaches, per layer family:
#: convolutions and recurrences run well below a large dense product on a CPU.
EFFICIENCY = {"dense": 0.45, "conv": 0.05, "recurrent": 0.05}
#: Work multipliers of techniques that run extra passes per step.
EXTRA_PASSES = {"sam": 2.0, "rdrop": 2.0, "semi_supervised": 2.0}
#: Monte-Carlo dropout's stochastic passes over the test rows (dropout models).
MC_PASSES = 20
#: Vocabulary of the built-in ``gutenberg`` corpus.
VOCABULARY = 10000


@dataclass(frozen=True)
class Speed:
    """This machine now: dense multiply-adds per second (a 256x256 matrix product) and the
    seconds of one small training step (a 64-256-256-10 MLP, batch 64, SGD)."""

    macs_per_second: float
    step_seconds: float


def measure(budget: float = 0.1) -> Speed:
    """Time a matrix product and a small training step for about ``budget`` seconds (torch
    is imported here, not at import time). Shared machines make this a snapshot: the speed
    of one process under the load of this moment."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core's speed: threads fighting other jobs make noise
    try:
        return _timed(torch, budget)
    finally:
        torch.set_num_threads(threads)


def _timed(torch: Any, budget: float) -> Speed:
    a = torch.randn(256, 256)
    torch.mm(a, a)  # warm-up: first calls allocate
    macs = 256**3 / _median_seconds(lambda: torch.mm(a, a), budget / 2)

    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )  # fmt: skip
    parameters = list(model.parameters())
    x, y = (
        torch.randn(64, 64, generator=generator),
        torch.randint(0, 10, (64,), generator=generator),
    )

    def step() -> None:  # plain SGD by hand: torch.optim's first step imports torch._dynamo
        for p in parameters:
            p.grad = None
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in parameters:
                p.add_(p.grad, alpha=-1e-3)

    step()
    return Speed(macs_per_second=macs, step_seconds=_median_seconds(step, budget / 2))


def _median_seconds(call: Callable[[], object], budget: float) -> float:
    """The median time of repeated ``call()`` for about ``budget`` seconds (3 calls at
    least): a moment's interruption by another job moves it little."""
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget or len(times) < 3:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@dataclass(frozen=True)
class Work:
    """One trial's work: epochs of ``steps`` optimizer steps over ``train_rows`` rows and a
    forward pass over ``eval_rows`` rows, at ``macs`` multiply-adds per row (by layer
    family), plus ``extra_macs`` and ``extra_steps`` (steps x weight layers) done once:
    greedy pre-training, Monte-Carlo passes."""

    epochs: int
    steps: int
    layers: int
    train_rows: float
    eval_rows: float
    macs: Mapping[str, float]
    extra_macs: Mapping[str, float]
    extra_steps: int = 0


@dataclass(frozen=True)
class StudyCost:
    """A study's work: its trials, each described by a :class:`Work`."""

    trials: tuple[Work, ...]

    def seconds(self, speed: Speed) -> float:
        """Estimated wall time on a machine of ``speed`` (see the module's formula)."""
        step = STEP * speed.step_seconds / 3  # per weight layer: the calibration MLP has 3
        total = START
        for work in self.trials:
            per_row = sum(
                m / (EFFICIENCY[family] * speed.macs_per_second) for family, m in work.macs.items()
            )
            once = sum(
                m / (EFFICIENCY[family] * speed.macs_per_second)
                for family, m in work.extra_macs.items()
            )
            once += work.extra_steps * step
            epoch = (
                work.steps * work.layers * step + (3 * work.train_rows + work.eval_rows) * per_row
            )
            total += TRIAL + work.epochs * epoch + once
        return total

    @property
    def training_macs(self) -> float:
        """Multiply-adds of training (forward and backward) over all trials: the work term,
        proportional to epochs and to trials."""
        return sum(w.epochs * 3 * w.train_rows * sum(w.macs.values()) for w in self.trials)

    def describe(self) -> str:
        """The counted work in words, e.g. ``24 trials, 12,240 optimizer steps, 2.1e+12
        multiply-adds`` (what ``reglab studies --long`` prints under the estimate)."""
        steps = sum(w.epochs * w.steps for w in self.trials)
        macs = sum(
            w.epochs * (3 * w.train_rows + w.eval_rows) * sum(w.macs.values())
            + sum(w.extra_macs.values())
            for w in self.trials
        )
        return f"{len(self.trials)} trials, {steps:,} optimizer steps, {macs:.2g} multiply-adds"


def format_duration(seconds: float | None) -> str:
    """``~40 s``, ``~6 min``, ``~1.5 h``, ``~3 d``; ``?`` for None. Rounded to what the
    estimate can say (it is good to about 2x): two digits of seconds, whole minutes, hours
    with one decimal below ten."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"~{float(f'{max(seconds, 1):.2g}'):g} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours = seconds / 3600
        return f"~{hours:.1f} h" if hours < 10 else f"~{hours:.0f} h"
    return f"~{seconds / 86400:.0f} d"


# -- multiply-adds per row ----------------------------------------------------------------


def _pooled(side: int, downsample: str) -> int:
    return side if downsample == "none" else math.ceil(side / 2)


def forward_macs(model: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, float] | None:
    """Multiply-adds of one forward pass over one input row (a token for ``lstm-lm``) by
    layer family (``dense``, ``conv``, ``recurrent``), from a decoded ``[model]`` and
    ``[data]`` table; None where they do not say (a factory, unknown data)."""
    from reglab.lab.settings.data import DATASETS  # the one home of dataset shapes

    kind = model.get("kind", "mlp")
    name = data.get("name", "digits")
    dataset = DATASETS.get(name)
    if "format" in data or dataset is None:
        return None
    classes = dataset.classes or 10
    if kind == "mlp":
        sizes = model.get("sizes", [64, 256, 256, 10])
        return {"dense": float(sum(a * b for a, b in itertools.pairwise(sizes)))}
    if kind == "autoencoder":
        inputs, hidden = model["sizes"]
        return {"dense": 2.0 * inputs * hidden}  # encoder and decoder
    if kind == "linear":
        return {"dense": float(data.get("inputs", 100))}
    if kind == "lstm-lm":
        options = model.get("options", {})
        emb, hidden = options.get("emb_size", 200), options.get("hidden_size", 400)
        layers = options.get("layers", 2)
        widths = [emb] + [hidden] * (layers - 1) + [emb if options.get("tie", True) else hidden]
        gates = sum(4 * (a + b) * b for a, b in itertools.pairwise(widths))
        return {"recurrent": float(gates), "dense": float(widths[-1] * VOCABULARY)}
    if dataset.image is None:
        return None
    c, h, w = dataset.image
    if kind == "cnn":
        k = model.get("kernel_size", 3)
        downsample = model.get("downsample", "max")
        conv = 0.0
        for width in model.get("channels", [16, 32]):
            if downsample == "stride":  # the convolution's output is the smaller map
                h, w = _pooled(h, downsample), _pooled(w, downsample)
                conv += h * w * c * width * k * k
            else:  # pooled after the convolution
                conv += h * w * c * width * k * k
                h, w = _pooled(h, downsample), _pooled(w, downsample)
            c = width
        hidden = model.get("hidden", 0)
        flat = c * h * w if model.get("pool", "avg") == "flatten" else c
        dense = flat * hidden + hidden * classes if hidden else flat * classes
        return {"conv": conv, "dense": float(dense)}
    if kind == "resnet":
        width = model.get("width", 16)
        conv = float(h * w * c * width * 9)  # stem
        c = width
        for s, blocks in enumerate(model.get("stages", [1, 1, 1])):
            out = width * 2**s
            for b in range(blocks):
                if s and not b:
                    h, w = math.ceil(h / 2), math.ceil(w / 2)
                    conv += h * w * c * out  # 1x1 shortcut
                conv += h * w * (c + out) * out * 9  # two 3x3 convolutions
                c = out
        return {"conv": conv, "dense": float(c * classes)}
    return None  # a factory: the document does not say


def weight_layers(model: Mapping[str, Any]) -> int:
    """Layers with weights (a Linear, a convolution, a batch norm, an LSTM layer) of a decoded
    ``[model]`` table: each costs a step some fixed time whatever its size."""
    kind = model.get("kind", "mlp")
    if kind == "mlp":
        return len(model.get("sizes", [64, 256, 256, 10])) - 1
    if kind == "autoencoder":
        return 2
    if kind == "linear":
        return 1
    if kind == "lstm-lm":
        return model.get("options", {}).get("layers", 2) + 2  # embedding, decoder
    if kind == "cnn":  # a convolution and its batch norm per block, the head
        return 2 * len(model.get("channels", [16, 32])) + (2 if model.get("hidden") else 1)
    if kind == "resnet":  # stem, blocks of two norm+conv pairs, shortcuts, norm, head
        stages = model.get("stages", [1, 1, 1])
        return 1 + 4 * sum(stages) + (len(stages) - 1) + 2
    return 3


# -- grid points and search trials --------------------------------------------------------

#: Settings that change a trial's cost; other axes only multiply the trials.
_COSTLY = ("model", "data", "train.epochs", "train.batch_size", "ensemble", "pretrain")


def _is_axis(value: Any) -> bool:
    return isinstance(value, Mapping) and (
        set(value) == {"values"}
        or set(value) == {"log", "num"}
        or set(value) in ({"log"}, {"linear"})
    )


def _axes(value: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    if _is_axis(value):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _axes(item, f"{path}.{key}" if path else str(key))


def _axis_values(axis: Mapping[str, Any]) -> list[Any]:
    """An axis' values: listed, ``num`` log-spaced, or a searched range's bounds."""
    if "values" in axis:
        values = axis["values"]
        return values if isinstance(values, list) else [values]
    low, high = axis.get("log", axis.get("linear", [1, 1]))
    num = axis.get("num", 2)
    if num == 1 or low <= 0 or high <= 0:
        return [low]
    return [low * (high / low) ** (i / (num - 1)) for i in range(num)]


def _set(table: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        table = table.setdefault(key, {})
    table[keys[-1]] = value


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def _entry_points(document: Mapping[str, Any], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An entry's points as far as cost goes: the costly axes expanded (crossed, or zipped
    with ``mode = "zip"``), each point repeated for the cheap axes' values."""
    merged: dict[str, Any] = {
        k: {**document.get(k, {}), **entry.get(k, {})}
        for k in ("model", "train", "data")
        if isinstance(entry.get(k, {}), Mapping)
    }
    merged.update({k: v for k, v in entry.items() if k not in merged and k != "name"})
    axes = list(_axes(merged))
    costly = [(p, a) for p, a in axes if p.startswith(_COSTLY)]
    cheap = [a for p, a in axes if not p.startswith(_COSTLY)]
    zipped = entry.get("mode") == "zip"
    values = [_axis_values(a) for _, a in costly]
    combos = list(zip(*values, strict=False)) if zipped else list(itertools.product(*values))
    repeat = 1 if zipped or not cheap else math.prod(len(_axis_values(a)) for a in cheap)
    if zipped and not costly and cheap:
        repeat = len(_axis_values(cheap[0]))
    points = []
    for combo in combos or [()]:
        point = _copy(merged)
        for (path, _), value in zip(costly, combo, strict=True):
            _set(point, path, value)
        points.extend([point] * repeat)
    return points


def _trial_work(point: Mapping[str, Any], epochs: int | None) -> Work | None:
    """One trial's :class:`Work` for a point (merged tables, axes resolved)."""
    model, train, data = point.get("model", {}), point.get("train", {}), point.get("data", {})
    macs = forward_macs(model, data)
    if macs is None:
        return None
    from reglab.lab.settings.data import DATASETS

    dataset = DATASETS[data.get("name", "digits")]
    subset = data.get("subset", 0)
    if dataset.train_rows is None:  # teacher (rows = subset) or gutenberg (tokens)
        rows = subset or (90 if data.get("name") == "teacher" else 0)
        if not rows:
            return None
    else:
        rows = min(subset, dataset.train_rows) if subset else dataset.train_rows
    validation = data.get("validation", 0.0)
    train_rows = rows * (1 - validation)
    test_rows = {"mnist": 10000, "fashion-mnist": 10000, "digits": 450, "patches": 4000}.get(
        data.get("name", "digits"), 0.25 * rows
    )
    batch = train.get("batch_size", 64)
    if model.get("kind") == "lstm-lm":
        batch *= model.get("options", {}).get("bptt", 35)  # tokens per step
        test_rows = rows / 2  # validation and test: subset // 4 tokens each
    passes = math.prod(EXTRA_PASSES[k] for k in EXTRA_PASSES if k in point)
    if train.get("optimizer") == "sam":
        passes = max(passes, EXTRA_PASSES["sam"])
    members = (point.get("ensemble") or {}).get("members", 1)
    scale = passes * members
    extra: dict[str, float] = {}
    if model.get("dropout") or model.get("input_dropout"):
        extra = {f: MC_PASSES * test_rows * m for f, m in macs.items()}
    pretrain = point.get("pretrain")
    extra_steps = 0
    if isinstance(pretrain, Mapping) and model.get("kind", "mlp") == "mlp":
        # one autoencoder (encoder and decoder) per hidden layer, batch 64, on every row
        pairs = list(itertools.pairwise(model.get("sizes", [])[:-1]))
        ae_epochs = pretrain.get("epochs", 10)
        extra["dense"] = extra.get("dense", 0.0) + 3 * ae_epochs * train_rows * sum(
            2 * a * b for a, b in pairs
        )
        extra_steps = ae_epochs * math.ceil(train_rows / 64) * 2 * len(pairs)
    return Work(
        epochs=epochs or train.get("epochs", 1),
        steps=math.ceil(train_rows / batch),
        layers=weight_layers(model),
        train_rows=train_rows,
        eval_rows=rows * validation + test_rows,
        macs={f: m * scale for f, m in macs.items()},
        extra_macs=extra,
        extra_steps=extra_steps,
    )


def _search_trials(search: Mapping[str, Any], point: Mapping[str, Any]) -> int:
    """How many trials (per seed) a search runs; PBT trains its population as one stack."""
    method = search.get("method", "grid")
    if method == "pbt":
        return search.get("members", 8)
    if method == "coarse-to-fine":
        first = 1
        for _, axis in _axes(point):
            low, high = axis.get("log", axis.get("linear", [1, 10]))
            decades = math.log10(high / low) if low > 0 and high > 0 else 4
            first *= math.floor(decades) + 1
        later = search.get("points", 5) ** max(1, len(list(_axes(point))))
        return first + (search.get("stages", 2) - 1) * later
    return search.get("trials") or 1


def study_cost(
    document: Mapping[str, Any], epochs: int | None = None, seeds: int | None = None
) -> StudyCost | None:
    """The work of a decoded study file (``reglab run``'s ``--epochs`` and ``--seeds`` as
    arguments); None where any trial's cost cannot be told from the document."""
    n_seeds = len(document.get("seeds", [0, 1, 2]))
    n_seeds = min(seeds, n_seeds) if seeds else n_seeds
    search = document.get("search", {})
    trials: list[Work] = []
    for entry in document.get("grid", []):
        if not isinstance(entry, Mapping):
            return None
        points = _entry_points(document, entry)
        if search.get("method", "grid") != "grid":
            per_seed = _search_trials(search, points[0])
            points = [points[0]] * per_seed
        for point in points:
            work = _trial_work(point, epochs)
            if work is None:
                return None
            trials.extend([work] * n_seeds)
    return StudyCost(tuple(trials)) if trials else None
