"""The AWD-LSTM-style language model: shapes, tying, AR/TAR exactly as AWD-LSTM computes them."""

from __future__ import annotations

import torch

import reglab
from reglab.data import tokenize
from reglab.lab.kinds.language import LSTMLanguageModel, sequence_loss, windows
from reglab.penalties import L2, TemporalDifference


def _model(**kwargs) -> LSTMLanguageModel:
    torch.manual_seed(0)
    return LSTMLanguageModel(50, emb_size=8, hidden_size=12, **kwargs)


def test_shapes_tying_and_eval_determinism() -> None:
    model = _model()
    tokens = torch.randint(0, 50, (3, 7))
    assert model(tokens).shape == (3, 7, 50)
    assert model.body["decoder"].weight is model.body["encoder"].embedding.weight
    model.eval()
    torch.testing.assert_close(model(tokens), model(tokens))
    model.train()
    assert not torch.equal(model(tokens), model(tokens))  # dropout, WeightDrop, ...
    untied = _model(tie=False)
    assert untied.body["decoder"].weight is not untied.body["encoder"].embedding.weight


def test_ar_and_tar_rules_compute_awd_lstm_penalties() -> None:
    model = _model()
    seen: dict[str, torch.Tensor] = {}
    model.body["drop_out"].register_forward_hook(lambda m, i, o: seen.update(dropped=o))
    model.body["rnn1"].register_forward_hook(lambda m, i, o: seen.update(raw=o[0]))
    reg = reglab.attach(
        model.body,
        {
            "drop_out": {"activity": L2(2.0), "activity_reduction": "mean"},
            "rnn1": {"activity": TemporalDifference(1.0)},
        },
    )
    model(torch.randint(0, 50, (4, 9)))
    dropped, raw = seen["dropped"], seen["raw"]
    assert dropped.shape == raw.shape == (9, 4, 8)  # time-major inside
    expected = 2.0 * dropped.pow(2).mean() + (raw[1:] - raw[:-1]).pow(2).mean()
    torch.testing.assert_close(reg.penalty(), expected)
    assert not torch.equal(dropped, raw)  # AR sees the dropped output, TAR the raw one


def test_windows_are_next_word_pairs() -> None:
    stream = torch.arange(23)
    x, y = windows(stream, 5)
    assert x.shape == y.shape == (4, 5)
    torch.testing.assert_close(y, x + 1)
    x, _ = windows(stream, 5, limit=10)
    assert x.shape == (2, 5)


def test_sequence_loss_is_mean_cross_entropy_over_positions() -> None:
    logits = torch.zeros(2, 3, 4)
    assert float(sequence_loss(logits, torch.zeros(2, 3, dtype=torch.long))) == (
        torch.tensor(4.0).log().item()
    )


def test_tokenize_lowercases_marks_numbers_and_paragraph_ends() -> None:
    assert tokenize("It's 1851.\n \nThe END") == ["it's", "N", "<eos>", "the", "end", "<eos>"]
