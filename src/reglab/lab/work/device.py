"""Where the lab trains: ``reglab run/worker --device auto|cpu|cuda|cuda:N|mps``.

A device is parsed once (:func:`parse_device`) into a ``torch.device`` that exists on this
machine; every trial then trains there (:class:`~reglab.lab.work.training.TrialContext`'s
``device``). The code that uses it never assumes CUDA: it asks ``torch.device.type`` and moves
tensors with ``.to(device)``.

What a trial does on a device (:func:`~reglab.lab.work.training.train_model`):

* in-memory data is moved there once, before the first epoch, when it fits
  (:func:`to_device`), so no batch is copied; data that does not fit stays on the CPU and
  :func:`reglab.fit` moves each batch;
* after training the model comes back to the CPU, where every metric is computed and the
  weights are saved, as on a CPU run.

CPU stays the default, and on the CPU a trial is deterministic for a given seed.

>>> parse_device("cpu")
device(type='cpu')
>>> parse_device("tpu")
Traceback (most recent call last):
...
reglab.lab.work.device.DeviceError: 'tpu' is not a device; use auto, cpu, cuda, cuda:N or mps
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from reglab._validation import InvalidParameterError
from reglab.training.precision import Precision

__all__ = ["DEVICES", "DeviceError", "check_study", "fits", "parse_device", "to_device"]

#: What ``--device`` accepts (``cuda:N`` is any CUDA device by index).
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")

#: Share of a device's free memory that data moved there once may take (the rest is for the
#: model, its activations and the optimizer's state).
_DATA_SHARE = 0.5


class DeviceError(ValueError):
    """A device that is not a name the lab knows, or that this machine does not have."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def parse_device(text: str) -> torch.device:
    """The ``torch.device`` ``text`` names, checked to exist here.

    ``auto`` is the first of CUDA (device 0), MPS and the CPU that this machine has.
    Raises :class:`DeviceError` with a one-line message for an unknown name or an
    unavailable device.
    """
    name = str(text).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("mps is not available on this machine (no Apple-silicon GPU)")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise DeviceError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"{name} is not available (this torch {torch.__version__} sees no CUDA device); "
            "use --device cpu or auto"
        )
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"{name} is not available: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def check_study(study: Any, device: torch.device) -> None:
    """Refuse, before anything runs, a study with a ``[train] precision`` that ``device``
    cannot train with (``fp16`` on the CPU: :class:`reglab.training.precision.Precision`),
    or with an optimizer that ``fp16``'s gradient scaler cannot drive (``sam``)."""
    for point in study.points:
        precision = point.config.train.precision
        if precision == "fp16" and point.config.train.optimizer == "sam":
            raise DeviceError(
                f"grid point {point.label!r}: train.precision = 'fp16' cannot be combined with "
                "optimizer = 'sam' (GradScaler takes no closure); use 'bf16' or '32'"
            )
        try:
            Precision(precision, device)
        except InvalidParameterError:
            raise DeviceError(
                f"--device {device}: grid point {point.label!r} has train.precision = "
                f"{precision!r}, which needs an accelerator (cuda or mps); on the CPU use "
                "'bf16' or '32'"
            ) from None


def _tensors(data: Any) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [t for v in data.values() for t in _tensors(v)]
    if isinstance(data, (tuple, list)):
        return [t for v in data for t in _tensors(v)]
    return []


def fits(data: Any, device: torch.device) -> bool:
    """Whether the tensors in ``data`` (nested tuples, lists, dicts) take at most half of
    ``device``'s free memory (always true for the CPU and for devices that do not say)."""
    if device.type != "cuda":
        return True
    size = sum(t.numel() * t.element_size() for t in _tensors(data) if t.device != device)
    free, _ = torch.cuda.mem_get_info(device)
    return size <= _DATA_SHARE * free


def _move(data: Any, device: torch.device) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, Mapping):
        return {k: _move(v, device) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(_move(v, device) for v in data)
    return data


def to_device(data: Any, device: torch.device) -> Any:
    """``data`` (a tensor, or tuples, lists and dicts of them) with every tensor on
    ``device`` when it fits there (:func:`fits`), else unchanged. Anything else (a
    ``DataLoader``, ``None``) is returned as is: its batches are moved one by one."""
    if data is None or device.type == "cpu" or not _tensors(data) or not fits(data, device):
        return data
    return _move(data, device)
