"""Hugging Face models built from config objects (no downloads): BERT with a classification
head and GPT-2 with its ``Conv1D`` layers. reglab equals hand-written penalties, per-unit
rules follow ``Conv1D``'s ``(in, out)`` layout, and gradient checkpointing (both settings)
changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L2

transformers = pytest.importorskip("transformers")
from transformers.pytorch_utils import Conv1D  # noqa: E402

transformers.logging.set_verbosity_error()


def bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).double()


def gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=50,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).double()


def _batch(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (3, 9), generator=g)
    if isinstance(model, transformers.GPT2LMHeadModel):
        return {"input_ids": ids, "labels": ids}
    return {"input_ids": ids, "labels": torch.randint(0, 3, (3,), generator=g)}


KERNELS = {"bert": (nn.Linear,), "gpt2": (Conv1D,)}
ACTIVITY = {"bert": "bert.encoder.layer.?.output", "gpt2": "transformer.h.?.mlp.act"}


def _activity_modules(model: nn.Module, kind: str) -> list[nn.Module]:
    if kind == "bert":
        return [layer.output for layer in model.bert.encoder.layer]
    return [block.mlp.act for block in model.transformer.h]


def _train(model: nn.Module, kind: str, with_reglab: bool, steps: int = 3) -> list[torch.Tensor]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    kernels = [m.weight for m in model.modules() if isinstance(m, KERNELS[kind])]
    acts: list[torch.Tensor] = []
    reg = None
    if with_reglab:
        reg = reglab.attach(
            model, {KERNELS[kind]: dict(kernel=L2(1e-3)), ACTIVITY[kind]: dict(activity=L1(1e-3))}
        )
    else:  # by hand: hooks keep the outputs, autograd penalties
        for module in _activity_modules(model, kind):
            module.register_forward_hook(lambda _m, _i, out: acts.append(out))
    model.train()
    for step in range(steps):
        loss = model(**_batch(model, step)).loss
        if reg is not None:
            loss = loss + reg.penalty()
        else:
            loss = loss + 1e-3 * sum(w.square().sum() for w in kernels)
            loss = loss + 1e-3 * sum(h.abs().sum() / h.shape[0] for h in acts)
            assert len(acts) == 2
            acts.clear()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_three_adamw_steps_equal_hand_written_training(kind: str) -> None:
    make = bert if kind == "bert" else gpt2
    by_hand = _train(make(), kind, with_reglab=False)
    with_reglab = _train(make(), kind, with_reglab=True)
    for a, b in zip(by_hand, with_reglab, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_max_norm_on_gpt2_conv1d_is_per_output_unit() -> None:
    model = gpt2()
    layer = model.transformer.h[0].attn.c_attn  # Conv1D, weight (in=16, out=48)
    with torch.no_grad():
        layer.weight.mul_(20)
    before = layer.weight.detach().clone()
    reglab.attach(
        model, {"transformer.h.0.attn.c_attn": dict(kernel_constraint=MaxNorm(1.0))}
    ).apply_constraints()
    for j in range(before.shape[1]):  # each output unit's incoming weights: a column
        column = before[:, j]
        n = column.norm()
        torch.testing.assert_close(
            layer.weight.detach()[:, j], column * n.clamp(0, 1.0) / (1e-7 + n)
        )


def _enable_checkpointing(model: nn.Module, reentrant: bool) -> None:
    kwargs = {"use_reentrant": reentrant}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


@pytest.mark.parametrize("reentrant", [True, False], ids=["reentrant", "non-reentrant"])
@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_gradient_checkpointing_changes_nothing(kind: str, reentrant: bool) -> None:
    make = bert if kind == "bert" else gpt2
    plain = make()
    checkpointed = copy.deepcopy(plain)
    _enable_checkpointing(checkpointed, reentrant)
    expected = _train(plain, kind, with_reglab=True)
    got = _train(checkpointed, kind, with_reglab=True)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
