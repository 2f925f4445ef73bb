"""Real torch.distributed on 2 CPU processes (gloo): DDP and FSDP2 training with penalties
equals single-process training."""

from __future__ import annotations

import gc
import os
import socket
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L1L2, Orthogonal

WORLD = 2
STEPS = 3


def model() -> nn.Sequential:
    torch.manual_seed(0)
    layers = OrderedDict(fc0=nn.Linear(6, 16), act0=nn.ReLU(), fc1=nn.Linear(16, 3))
    return nn.Sequential(layers).double()


def data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(8, 6, generator=g).double(), torch.randn(8, 3, generator=g).double())
        for _ in range(STEPS)
    ]


RULES = {
    nn.Linear: dict(kernel=L1L2(1e-3, 1e-2), kernel_constraint=MaxNorm(1.5)),
    "*act0": dict(activity=L1(1e-2)),
}
FSDP_RULES = {
    nn.Linear: dict(kernel=L1L2(1e-3, 1e-2), kernel_constraint=MaxNorm(1.5)),
    "act0": dict(activity=L1(1e-2)),
}


def train(net: nn.Module, batches, rules=RULES, wrapper=None, rank=0, attach_to=None):
    """SGD on ``batches`` (rank ``rank`` of WORLD takes its half of every batch)."""
    target = wrapper if wrapper is not None else net
    reg = reglab.attach(attach_to if attach_to is not None else target, rules)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    reg.bind(optimizer)
    values = []
    for x, y in batches:
        if wrapper is not None:
            n = len(x) // WORLD
            x, y = x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]
        loss = (target(x) - y).square().mean() + reg.penalty()
        values.append({k: float(v) for k, v in reg.terms().items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return values


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)


def _finish() -> None:
    """Leave together: every rank past its last collective, then the group destroyed."""
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _ddp_worker(rank: int, port: int, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    _init(rank, port)
    results = {}
    for where in ("wrapper", "inner"):
        net = model()
        ddp = DDP(net)
        terms = train(
            net, data(), wrapper=ddp, rank=rank, attach_to=ddp if where == "wrapper" else net
        )
        results[where] = ({n: p.detach() for n, p in net.named_parameters()}, terms)
        del ddp  # its reducer must go before the process group (a gloo abort at exit otherwise)
    torch.save(results, Path(out) / f"ddp{rank}.pt")
    _finish()


def _fsdp_worker(rank: int, port: int, out: str) -> None:
    from reglab._internals.compat import fully_shard  # its home moved in torch 2.6

    _init(rank, port)
    results = {}
    for when in ("after", "before"):
        net = model()
        rules = FSDP_RULES
        reg = reglab.attach(net, rules) if when == "before" else None
        for layer in (net.fc0, net.fc1):
            fully_shard(layer)
        fully_shard(net)
        if reg is None:
            reg = reglab.attach(net, rules)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        reg.bind(optimizer)
        terms = []
        for x, y in data():
            n = len(x) // WORLD
            x, y = x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]
            loss = (net(x) - y).square().mean() + reg.penalty()
            terms.append({k: float(v) for k, v in reg.terms().items()})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        full = {n: p.full_tensor().detach() for n, p in net.named_parameters()}
        results[when] = (full, terms)
    # A penalty that needs the whole tensor is refused on shards, naming the parameter (when
    # attached to sharded parameters, at once; attached before sharding, at the first penalty).
    try:
        reglab.attach(net, {"fc0": dict(kernel=Orthogonal(0.1))}).penalty()
        results["error"] = None
    except reglab.InvalidParameterError as err:
        results["error"] = str(err)
    reg = reglab.attach(net, {"fc0": dict(kernel_constraint=MaxNorm(1.0, axis=0))})
    try:
        reg.apply_constraints()
        results["constraint_error"] = None
    except reglab.InvalidParameterError as err:
        results["constraint_error"] = str(err)
    torch.save(results, Path(out) / f"fsdp{rank}.pt")
    _finish()


def _spawn(worker, tmp_path: Path) -> list[dict]:
    mp.spawn(worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    name = "ddp" if worker is _ddp_worker else "fsdp"
    return [torch.load(tmp_path / f"{name}{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed")
def test_ddp_equals_single_process_with_penalties_and_constraints(tmp_path: Path) -> None:
    net = model()
    expected_terms = train(net, data())
    expected_params = {n: p.detach() for n, p in net.named_parameters()}
    for rank_results in _spawn(_ddp_worker, tmp_path):
        for where in ("wrapper", "inner"):
            params, terms = rank_results[where]
            for name, value in expected_params.items():
                torch.testing.assert_close(params[name], value, rtol=0, atol=1e-12)
            # Weight terms are the same everywhere; the activity term is each rank's half.
            for got, want in zip(terms, expected_terms, strict=True):
                for key in ("fc0.kernel", "fc1.kernel"):
                    k = f"module.{key}" if where == "wrapper" else key
                    assert got[k] == pytest.approx(want[key], rel=1e-12)


@pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed")
def test_fsdp2_sharded_penalties_equal_unsharded(tmp_path: Path) -> None:
    net = model()
    expected_terms = train(net, data(), rules=FSDP_RULES)
    expected = {n: p.detach() for n, p in net.named_parameters()}
    for rank_results in _spawn(_fsdp_worker, tmp_path):
        for when in ("after", "before"):
            params, terms = rank_results[when]
            for name, value in expected.items():
                torch.testing.assert_close(params[name], value, rtol=0, atol=1e-12)
            for got, want in zip(terms, expected_terms, strict=True):
                for key in ("fc0.kernel", "fc1.kernel"):  # unsharded values on every rank
                    assert got[key] == pytest.approx(want[key], rel=1e-12)
        assert "fc0.weight is sharded" in rank_results["error"]
        assert "Sharded parameters take L1, L2 and L1L2" in rank_results["error"]
        assert "needs values of other shards" in rank_results["constraint_error"]
