"""One test per torch internal that ``reglab._internals.compat`` reaches (see its docstring):
each runs on every supported torch, so an upgrade that moves one fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from reglab._internals import compat as _compat


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("ord", [1, 2])
def test_foreach_norm_accumulates_in_the_given_dtype(dtype: torch.dtype, ord: int) -> None:
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(5, 7, generator=g).to(dtype), torch.randn(11, generator=g).to(dtype)]
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    got = _compat.foreach_norm(ws, ord, acc)
    for norm, w in zip(got, ws, strict=True):
        assert norm.dtype == acc
        expected = torch.linalg.vector_norm(w.to(torch.float64), ord)
        torch.testing.assert_close(norm.double(), expected, rtol=1e-6, atol=1e-6)


def test_dtensor_module_is_found_only_once_imported() -> None:
    code = (
        "from reglab._internals import compat as _compat\n"
        "assert _compat.dtensor_module() is None\n"
        "types = _compat.placement_types()\n"  # imports it
        "module = _compat.dtensor_module()\n"
        "assert module is not None and isinstance(module.DTensor, type)\n"
        "assert types.Shard(0).is_shard() and not types.Replicate().is_shard()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fully_shard_is_found() -> None:
    function = _compat.fully_shard_function()
    assert callable(function)
    assert function.__module__.startswith("torch.distributed")
