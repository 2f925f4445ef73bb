"""reglab in the real Hugging Face Trainer on a tiny BERT built from a config: training equals
a hand-written loop with and without gradient accumulation; terms are logged; constraints
project after every step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab.constraints import MaxNorm
from reglab.penalties import L1, L2

transformers = pytest.importorskip("transformers")
from reglab.integrations.transformers import RegularizedTrainer  # noqa: E402

transformers.logging.set_verbosity_error()

RULES = {
    "bert.encoder.layer.?.intermediate.dense": dict(
        kernel=L2(1e-2), kernel_constraint=MaxNorm(0.5)
    ),
    "bert.encoder.layer.?.output": dict(activity=L1(1e-3)),
    "classifier": dict(kernel=L2(1e-2)),
}


def bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).double()


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(2)
        self.ids = torch.randint(0, 40, (n, 7), generator=g)
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class InOrder(RegularizedTrainer):
    """Batches in dataset order, so a hand-written loop can see the same ones."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


class MeanLoss(InOrder):
    """BERT's classification loss is a per-batch mean even when it is given
    ``num_items_in_batch``; telling the Trainer so makes it divide by the accumulation steps
    (transformers otherwise sums the micro-batch means, a known quirk of that model)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False


def _args(tmp_path, accumulate: int) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulate,
        max_steps=3,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=0.0,
        optim="adamw_torch",
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def by_hand(accumulate: int) -> list[torch.Tensor]:
    model = bert()
    model.train()
    reg = reglab.attach(model, RULES)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    data = Rows()
    batches = [data[list(range(i, i + 4))] for i in range(0, 24, 4)]
    for step in range(3):
        for micro in batches[step * accumulate : (step + 1) * accumulate]:
            loss = model(**micro).loss + reg.penalty()
            (loss / accumulate).backward()
        optimizer.step()
        reg.apply_constraints()
        optimizer.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_trainer_equals_a_hand_written_loop(tmp_path, accumulate: int) -> None:
    model = bert()
    trainer = MeanLoss(
        model=model, args=_args(tmp_path, accumulate), train_dataset=Rows(), regularization=RULES
    )
    trainer.train()
    for got, want in zip(model.parameters(), by_hand(accumulate), strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-9, atol=1e-12)
    norms = model.bert.encoder.layer[0].intermediate.dense.weight.detach().norm(dim=1)
    assert float(norms.max()) <= 0.5 + 1e-9
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == 3
    keys = {
        "penalty/bert.encoder.layer.0.intermediate.dense.kernel",
        "penalty/bert.encoder.layer.1.output.activity",
        "penalty/classifier.kernel",
    }
    assert keys <= set(logged[0])


def test_folded_trainer_trains_the_same(tmp_path) -> None:
    model = bert()
    trainer = MeanLoss(
        model=model,
        args=_args(tmp_path, 2),
        train_dataset=Rows(),
        regularization=RULES,
        fold=True,
        log_statistics=True,
    )
    trainer.train()
    for got, want in zip(model.parameters(), by_hand(2), strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-9, atol=1e-12)
    logged = trainer.state.log_history[0]
    assert "sparsity/bert.encoder.layer.0.output" in logged
    assert any(k.startswith("projected/") for k in logged)


GPT2_RULES = {
    "transformer.h.?.mlp.c_fc": dict(kernel=L2(1e-2)),
    "transformer.h.?.mlp.act": dict(activity=L1(1e-3)),
}


def gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=40,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=16,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).double()


class Texts(Rows):
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_loss_normalised_over_the_accumulated_batch_gets_the_penalty_once(tmp_path) -> None:
    """GPT-2's loss takes num_items_in_batch (the tokens of the whole accumulated batch), so
    the Trainer does not divide it by the accumulation steps: the penalty is divided here."""
    model = gpt2()
    trainer = InOrder(
        model=model, args=_args(tmp_path, 2), train_dataset=Texts(), regularization=GPT2_RULES
    )
    assert trainer.model_accepts_loss_kwargs
    trainer.train()

    reference = gpt2()
    reference.train()
    reg = reglab.attach(reference, GPT2_RULES)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=0.0)
    data = Texts()
    for step in range(3):
        micro = [data[list(range(i, i + 4))] for i in (8 * step, 8 * step + 4)]
        # The items the Trainer normalises by (its own count, whatever it shifts).
        tokens = trainer._get_num_items_in_batch(micro, torch.device("cpu"))
        for batch in micro:
            loss = reference(**batch, num_items_in_batch=tokens).loss
            (loss + reg.penalty() / 2).backward()
        optimizer.step()
        optimizer.zero_grad()
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-9, atol=1e-12)
