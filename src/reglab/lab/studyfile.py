"""Study files: TOML read with ``tomllib``, validated into frozen dataclasses.

Never evaluated as code. Every error names the key path, the value and what is allowed::

    study.grid[1].rules."fc*".kernel: could not interpret penalty ... (got {...})
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reglab import constraints, penalties
from reglab._optional import toml
from reglab._validation import InvalidParameterError

__all__ = [
    "DATASETS",
    "MODEL_KINDS",
    "GridEntry",
    "Study",
    "StudyError",
    "load_study",
    "parse_study",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "patches", "teacher", "gutenberg")
MODEL_KINDS = ("mlp", "factory", "autoencoder", "linear", "lstm-lm")


_DATA_DEFAULTS = {
    "name": "digits",
    "subset": 0,
    "standardize": False,
    "validation": 0.0,
    # keep labels on only this many training rows (the rest get label -1): for pre-training,
    # semi-supervised learning and linear probes; 0 keeps every label
    "labels": 0,
    # name = "teacher": input dimension and training-target noise (subset = training rows)
    "inputs": 100,
    "noise": 0.5,
}
_MODEL_DEFAULTS = {
    "kind": "mlp",
    "sizes": [64, 256, 256, 10],
    "activation": "relu",
    "dropout": 0.0,
    "input_dropout": 0.0,
    "factory": "",
    "options": {},
    # kind = "autoencoder": sizes = [d_in, d_code]
    "sparsity": "none",
    "coefficient": 0.0,
    "target": 0.05,
    "k": 0,
    "tied": False,
    "corruption": "none",
    "level": 0.0,
    "linear": False,  # a LinearAutoencoder on centred inputs, compared with PCA
}
_TRAIN_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "epochs": 30, "batch_size": 64}
_GRID_KEYS = {
    "name",
    "mode",
    "rules",
    "model",
    "train",
    "label_smoothing",
    "input_noise",
    "augment",
    "early_stopping",
    "ensemble",
    "weight_noise",
    "norm_bound",
    "pretrain",
    "semi_supervised",
    "multitask",
    "post_hoc_stopping",
}
#: Keys of the grid tables that configure one technique each.
_GRID_TABLES = {
    "label_smoothing": {"eps", "form"},
    "norm_bound": {"max_norm", "lr_dual"},
    "pretrain": {"kind", "epochs", "level"},
    "semi_supervised": {"recon_weight"},
    "multitask": {"parity_weight"},
    "post_hoc_stopping": {"patience", "gl", "pq", "up"},
}
_RULE_KEYS = {
    "kernel",
    "bias",
    "activity",
    "kernel_constraint",
    "bias_constraint",
    "activity_reduction",
}


class StudyError(InvalidParameterError):
    """A study file is invalid; the message starts with the key path."""


def _fail(path: str, message: str, value: Any) -> StudyError:
    return StudyError(f"{path}: {message} (got {value!r})")


def is_axis(value: Any) -> bool:
    """A sweep axis: ``{values = [...]}`` or ``{log = [low, high], num = n}``."""
    return isinstance(value, Mapping) and (set(value) == {"values"} or set(value) == {"log", "num"})


def axis_values(path: str, value: Mapping[str, Any]) -> list[Any]:
    """The values of one sweep axis (log ranges are geometric, endpoints included)."""
    if "values" in value:
        values = value["values"]
        if not isinstance(values, list) or not values:
            raise _fail(path, "'values' must be a non-empty list", values)
        return list(values)
    bounds, num = value["log"], value["num"]
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, (int, float)) and b > 0 for b in bounds)
    ):
        raise _fail(path, "'log' must be [low, high] with 0 < low", bounds)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise _fail(path, "'num' must be an int >= 1", num)
    lo, hi = (math.log10(b) for b in bounds)
    if num == 1:
        return [float(bounds[0])]
    return [float(f"{10 ** (lo + (hi - lo) * i / (num - 1)):.6g}") for i in range(num)]


def _check_keys(path: str, table: Any, allowed: Mapping[str, Any] | set[str]) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise _fail(path, "expected a table", table)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _fail(
            f"{path}.{unknown[0]}",
            f"unknown key; allowed: {', '.join(sorted(allowed))}",
            table[unknown[0]],
        )
    return dict(table)


def _check_type(path: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if is_axis(value):
        for i, v in enumerate(axis_values(path, value)):
            _check_type(f"{path}.values[{i}]", v, kind, what)
        return value
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(path, f"expected {what}", value)
    if not isinstance(value, kind):
        raise _fail(path, f"expected {what}", value)
    return value


def _first(value: Any) -> Any:
    """A representative concrete value (the first of an axis), for validation."""
    if is_axis(value):
        return _first(axis_values("", value)[0])
    if isinstance(value, Mapping):
        return {k: _first(v) for k, v in value.items()}
    return value


def _check_section(path: str, table: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    table = _check_keys(path, table, defaults)
    for key, value in table.items():
        default = defaults[key]
        if isinstance(default, bool):
            _check_type(f"{path}.{key}", value, bool, "true or false")
        elif isinstance(default, (int, float)):
            _check_type(f"{path}.{key}", value, (int, float), "a number")
        elif isinstance(default, str):
            _check_type(f"{path}.{key}", value, str, "a string")
        elif isinstance(default, list):
            _check_type(f"{path}.{key}", value, list, "a list")
        elif isinstance(default, dict):
            _check_type(f"{path}.{key}", value, dict, "a table")
    return table


def _check_rules(path: str, rules: Any) -> None:
    if not isinstance(rules, Mapping):
        raise _fail(path, "expected a table of glob pattern -> rule", rules)
    for pattern, rule in rules.items():
        rpath = f'{path}."{pattern}"'
        rule = _check_keys(rpath, rule, _RULE_KEYS)
        for kind, spec in rule.items():
            concrete = _first(spec)
            try:
                if kind == "activity_reduction":
                    if concrete not in ("batch", "sum", "mean"):
                        raise ValueError("must be 'batch', 'sum' or 'mean'")
                elif kind.endswith("constraint"):
                    constraints.get(concrete)
                else:
                    penalties.get(concrete)
            except (ValueError, TypeError) as err:
                raise _fail(f"{rpath}.{kind}", str(err).rstrip("."), spec) from None


@dataclass(frozen=True)
class GridEntry:
    """One ``[[grid]]`` table: a named configuration, possibly with sweep axes inside."""

    name: str
    mode: str
    overrides: dict[str, Any]  # everything but name and mode, as written


@dataclass(frozen=True)
class Study:
    """A validated study: defaults for data, model and training, seeds, and the grid."""

    name: str
    description: str
    seeds: tuple[int, ...]
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    grid: tuple[GridEntry, ...]
    source: dict[str, Any] = field(repr=False, compare=False)


def parse_study(raw: Mapping[str, Any], origin: str = "study") -> Study:
    """Validate a decoded TOML document; raise ``StudyError`` naming the key path."""
    top = {"name", "description", "seeds", "data", "model", "train", "grid"}
    raw = _check_keys(origin, raw, top)
    name = _check_type(f"{origin}.name", raw.get("name"), str, "a string")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise _fail(f"{origin}.name", "use letters, digits, '-' and '_'", name)
    seeds = raw.get("seeds", [0, 1, 2])
    if (
        not isinstance(seeds, list)
        or not seeds
        or len(set(seeds)) != len(seeds)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise _fail(f"{origin}.seeds", "expected a list of distinct ints >= 0", seeds)
    data = {
        **_DATA_DEFAULTS,
        **_check_section(f"{origin}.data", raw.get("data", {}), _DATA_DEFAULTS),
    }
    model = {
        **_MODEL_DEFAULTS,
        **_check_section(f"{origin}.model", raw.get("model", {}), _MODEL_DEFAULTS),
    }
    train = {
        **_TRAIN_DEFAULTS,
        **_check_section(f"{origin}.train", raw.get("train", {}), _TRAIN_DEFAULTS),
    }
    if data["name"] not in DATASETS:
        raise _fail(f"{origin}.data.name", f"expected one of {', '.join(DATASETS)}", data["name"])
    if model["kind"] not in MODEL_KINDS:
        raise _fail(
            f"{origin}.model.kind", f"expected one of {', '.join(MODEL_KINDS)}", model["kind"]
        )
    for dataset, kind in (("teacher", "linear"), ("gutenberg", "lstm-lm")):
        if (data["name"] == dataset) != (model["kind"] == kind):
            raise _fail(
                f"{origin}.model.kind",
                f"the '{dataset}' data and model.kind = '{kind}' go together",
                model["kind"],
            )

    if data["name"] == "patches" and model["kind"] != "autoencoder":
        raise _fail(
            f"{origin}.data.name",
            "'patches' has no labels: use model.kind = 'autoencoder'",
            data["name"],
        )
    if model["kind"] == "autoencoder":
        sizes = model["sizes"]
        candidates = axis_values(f"{origin}.model.sizes", sizes) if is_axis(sizes) else [sizes]
        if any(not isinstance(s, list) or len(s) != 2 for s in candidates):
            raise _fail(
                f"{origin}.model.sizes", "an autoencoder takes [d_in, d_code]", model["sizes"]
            )
        if model["sparsity"] not in ("none", "l1", "kl", "topk"):
            raise _fail(
                f"{origin}.model.sparsity",
                "expected 'none', 'l1', 'kl' or 'topk'",
                model["sparsity"],
            )
        if model["corruption"] not in ("none", "mask", "gaussian", "salt_pepper"):
            raise _fail(
                f"{origin}.model.corruption",
                "expected 'none', 'mask', 'gaussian' or 'salt_pepper'",
                model["corruption"],
            )
    if model["kind"] == "lstm-lm":
        from reglab.lab.language import OPTIONS

        _check_keys(f"{origin}.model.options", model["options"], set(OPTIONS))
    if model["kind"] == "factory" and ":" not in model["factory"]:
        raise _fail(
            f"{origin}.model.factory",
            "expected 'package.module:function' with kind = 'factory'",
            model["factory"],
        )
    if train["optimizer"] not in ("adam", "sgd"):
        raise _fail(f"{origin}.train.optimizer", "expected 'adam' or 'sgd'", train["optimizer"])
    grid_raw = raw.get("grid")
    if not isinstance(grid_raw, list) or not grid_raw:
        raise _fail(f"{origin}.grid", "expected a non-empty array of [[grid]] tables", grid_raw)
    entries, names = [], set()
    for i, entry in enumerate(grid_raw):
        path = f"{origin}.grid[{i}]"
        entry = _check_keys(path, entry, _GRID_KEYS)
        gname = _check_type(f"{path}.name", entry.get("name"), str, "a string")
        if gname in names:
            raise _fail(f"{path}.name", "grid names must be unique", gname)
        names.add(gname)
        mode = entry.get("mode", "cross")
        if mode not in ("cross", "zip"):
            raise _fail(f"{path}.mode", "expected 'cross' or 'zip'", mode)
        if "rules" in entry:
            _check_rules(f"{path}.rules", entry["rules"])
        if "model" in entry:
            _check_section(f"{path}.model", entry["model"], _MODEL_DEFAULTS)
        if "train" in entry:
            _check_section(f"{path}.train", entry["train"], _TRAIN_DEFAULTS)
        for key in ("input_noise", "weight_noise"):
            if key in entry:
                _check_type(f"{path}.{key}", entry[key], (int, float), "a number")
        smoothing = entry.get("label_smoothing")
        if isinstance(smoothing, (int, float)) or is_axis(smoothing):  # shorthand for eps
            entry["label_smoothing"] = {"eps": smoothing}
        if "label_smoothing" in entry:
            _check_type(
                f"{path}.label_smoothing.eps",
                entry["label_smoothing"].get("eps", 0.1),
                (int, float),
                "a number",
            )

        for key, allowed in _GRID_TABLES.items():
            if key in entry:
                _check_keys(f"{path}.{key}", entry[key], allowed)
        form = _first(entry.get("label_smoothing", {})).get("form", "uniform")
        if form not in ("uniform", "others"):
            raise _fail(f"{path}.label_smoothing.form", "expected 'uniform' or 'others'", form)
        if "norm_bound" in entry:
            _check_type(
                f"{path}.norm_bound.max_norm",
                entry["norm_bound"].get("max_norm"),
                (int, float),
                "a number (the bound k)",
            )
        kind = _first(entry.get("pretrain", {})).get("kind", "denoising")
        if kind not in ("autoencoder", "denoising"):
            raise _fail(f"{path}.pretrain.kind", "expected 'autoencoder' or 'denoising'", kind)
        for criterion, values in entry.get("post_hoc_stopping", {}).items():
            if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values
            ):
                raise _fail(
                    f"{path}.post_hoc_stopping.{criterion}",
                    "expected a list of thresholds > 0",
                    values,
                )
        if "semi_supervised" in entry and ({"multitask", "label_smoothing"} & set(entry)):
            raise _fail(
                f"{path}.semi_supervised",
                "cannot be combined with multitask or label_smoothing (it has its own loss)",
                entry["semi_supervised"],
            )

        if "post_hoc_stopping" in entry and float(data["validation"]) <= 0:
            raise _fail(
                f"{path}.post_hoc_stopping",
                "needs data.validation > 0 (the criteria watch the validation loss)",
                entry["post_hoc_stopping"],
            )

        if "augment" in entry:
            _check_keys(f"{path}.augment", entry["augment"], {"degrees", "translate", "scale"})
        if "ensemble" in entry:
            ensemble = _check_keys(f"{path}.ensemble", entry["ensemble"], {"members", "bootstrap"})
            _check_type(f"{path}.ensemble.members", ensemble.get("members"), int, "an int >= 1")
            clash = sorted(
                set(entry)
                & {"rules", "early_stopping", "label_smoothing", "input_noise", "augment"}
            )
            if clash:
                raise _fail(
                    f"{path}.ensemble",
                    f"cannot be combined with {', '.join(clash)} "
                    "(bagged members train with plain Adam)",
                    entry["ensemble"],
                )
        if "early_stopping" in entry:
            _check_keys(
                f"{path}.early_stopping",
                entry["early_stopping"],
                {
                    "monitor",
                    "patience",
                    "min_delta",
                    "restore_best_weights",
                    "criterion",
                    "alpha",
                    "strip_length",
                    "successive_strips",
                    "start_from_epoch",
                },
            )
            if float(data["validation"]) <= 0:
                raise _fail(
                    f"{path}.early_stopping",
                    "needs data.validation > 0 (a held-out split to monitor)",
                    entry["early_stopping"],
                )
        overrides = {k: copy.deepcopy(v) for k, v in entry.items() if k not in ("name", "mode")}
        entries.append(GridEntry(gname, mode, overrides))
    return Study(
        name,
        str(raw.get("description", "")),
        tuple(seeds),
        data,
        model,
        train,
        tuple(entries),
        dict(raw),
    )


def load_study(path: str | Path) -> Study:
    """Read and validate a study file."""
    path = Path(path)
    tomllib = toml()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file") from None
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{path}: not valid TOML: {err}") from None
    return parse_study(raw, origin=path.stem)
