"""An AWD-LSTM-style word language model (Merity et al. 2017) and its training trial."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from reglab._validation import InvalidParameterError, check_positive_int
from reglab.data import gutenberg
from reglab.lab.settings.config import TrialConfig
from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.registry import Kind, register
from reglab.lab.settings.schema import KeyPath, Table, boolean, fail, integer, number, spec, table
from reglab.lab.work.training import (
    TrialContext,
    TrialOutcome,
    grid_regularizers,
    history_rows,
    train_model,
)
from reglab.sharing import tie_weights
from reglab.stochastic import EmbeddingDropout, LockedDropout, WeightDrop

__all__ = [
    "KIND",
    "LSTMLanguageModel",
    "LanguageModel",
    "LanguageOptions",
    "language_model_metrics",
    "run_language_model",
    "windows",
]


class LSTMLanguageModel(nn.Module):
    """Embedding → LSTM layers → tied decoder, with AWD-LSTM's regularizers.

    Modules (names for ``reglab.attach`` rules): ``encoder`` (an
    ``EmbeddingDropout``: whole word vectors dropped with
    ``dropout_embedding``), ``drop_in`` (``LockedDropout``,
    ``dropout_input``), ``rnn0 … rnn{L-1}`` (one-layer ``nn.LSTM`` each, its hidden-to-hidden
    matrix under ``WeightDrop`` with ``weight_drop``), ``drop0 …``
    (locked dropout ``dropout_hidden`` between layers), ``drop_out`` (locked dropout
    ``dropout_output`` on the last layer's output) and ``decoder``. AWD-LSTM's activation
    regularization (AR) is an activity penalty on ``drop_out``'s output (the dropped
    last-layer output); temporal activation regularization (TAR) one on ``rnn{L-1}``'s
    (undropped) output. The last LSTM layer has ``emb_size`` units so that the decoder can
    share the embedding matrix (``tie=True``).

    Shape:
        ``(B, T)`` token ids → ``(B, T, vocab_size)`` logits; inside, time-major ``(T, B, H)``
        (so ``TemporalDifference(time_dim=0)`` sees time on dim 0). Every sequence starts from
        a zero state.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_size: int = 200,
        hidden_size: int = 400,
        layers: int = 2,
        dropout_embedding: float = 0.1,
        dropout_input: float = 0.4,
        dropout_hidden: float = 0.25,
        dropout_output: float = 0.4,
        weight_drop: float = 0.5,
        tie: bool = True,
    ) -> None:
        super().__init__()
        owner = "LSTMLanguageModel"
        vocab_size = check_positive_int(vocab_size, "vocab_size", owner, minimum=2)
        layers = check_positive_int(layers, "layers", owner)
        emb_size = check_positive_int(emb_size, "emb_size", owner)
        hidden_size = check_positive_int(hidden_size, "hidden_size", owner)
        modules: dict[str, nn.Module] = {
            "encoder": EmbeddingDropout(nn.Embedding(vocab_size, emb_size), dropout_embedding),
            "drop_in": LockedDropout(dropout_input),
        }
        sizes = [emb_size] + [hidden_size] * (layers - 1) + [emb_size]
        for i in range(layers):
            lstm = nn.LSTM(sizes[i], sizes[i + 1])
            modules[f"rnn{i}"] = WeightDrop(lstm, "weight_hh_l0", weight_drop)
            last = i == layers - 1
            modules["drop_out" if last else f"drop{i}"] = LockedDropout(
                dropout_output if last else dropout_hidden
            )
        modules["decoder"] = nn.Linear(emb_size, vocab_size)
        self.body = nn.ModuleDict(OrderedDict(modules))
        self.layers = layers
        if tie:
            tie_weights(self.body["encoder"].embedding, "weight", self.body["decoder"], "weight")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.body["drop_out"](self._last_layer(tokens))
        return self.body["decoder"](h).transpose(0, 1)

    def _last_layer(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last LSTM layer's (undropped) output ``(T, B, emb_size)``."""
        h = self.body["drop_in"](self.body["encoder"](tokens.T))
        for i in range(self.layers):
            h, _ = self.body[f"rnn{i}"](h)
            if i < self.layers - 1:
                h = self.body[f"drop{i}"](h)
        return h

    @torch.no_grad()
    def last_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last LSTM layer's output ``(T, B, emb_size)`` in the current mode."""
        return self._last_layer(tokens)


_RATE = number(0.0, below=1.0)


@dataclass(frozen=True)
class LanguageOptions(Table):
    """``model.options`` of ``kind = "lstm-lm"``: :class:`LSTMLanguageModel`'s keyword
    arguments (its defaults) and ``bptt``, the training window length."""

    emb_size: int = spec(200, integer(1))
    hidden_size: int = spec(400, integer(1))
    layers: int = spec(2, integer(1))
    dropout_embedding: float = spec(0.1, _RATE)
    dropout_input: float = spec(0.4, _RATE)
    dropout_hidden: float = spec(0.25, _RATE)
    dropout_output: float = spec(0.4, _RATE)
    weight_drop: float = spec(0.5, _RATE)
    tie: bool = spec(True, boolean())
    bptt: int = spec(35, integer(2))


@dataclass(frozen=True)
class LanguageModel(Table):
    """``[model] kind = "lstm-lm"``, with ``[data] name = "gutenberg"``."""

    kind: ClassVar[str] = "lstm-lm"
    options: LanguageOptions = spec(LanguageOptions(), table(LanguageOptions))
    stochastic: ClassVar[bool] = True

    def check(self, data: DataConfig, where: KeyPath) -> None:
        if data.name != "gutenberg":
            raise fail(
                where("kind"),
                "the 'gutenberg' data and model.kind = 'lstm-lm' go together",
                "lstm-lm",
            )

    def build(self, data: DataConfig, vocab_size: int = 2) -> LSTMLanguageModel:
        """The model (``vocab_size`` from the corpus; 2 is enough to name the modules)."""
        del data
        options = self.options.to_dict()
        options.pop("bptt")
        try:
            return LSTMLanguageModel(vocab_size, **options)
        except InvalidParameterError as err:
            raise fail("model.options", str(err), options) from None


def windows(stream: torch.Tensor, length: int, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping ``(inputs, next-word targets)`` of ``length`` tokens, ``(N, length)``
    each, from the first ``limit`` tokens of ``stream`` (all of it when 0)."""
    length = check_positive_int(length, "length", "windows", minimum=2)
    if limit:
        stream = stream[: limit + 1]
    n = (len(stream) - 1) // length
    x = stream[: n * length].view(n, length)
    y = stream[1 : n * length + 1].view(n, length)
    return x, y


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-word cross-entropy over every position of ``(B, T, V)`` logits."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def language_model_metrics(
    model: LSTMLanguageModel, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], batch: int = 64
) -> dict[str, float]:
    """Eval-mode perplexity ``exp(mean cross-entropy)`` per split, and on the test windows the
    last layer's mean squared activation ``E[h²]`` (what AR penalises) and mean squared
    step-to-step change ``E[(h[t+1] − h[t])²]`` (what TAR penalises)."""
    model.eval()
    out = {}
    for name, (x, y) in splits.items():
        total = sum(
            float(sequence_loss(model(x[i : i + batch]), y[i : i + batch])) * len(x[i : i + batch])
            for i in range(0, len(x), batch)
        )
        out[f"{name}_ppl"] = math.exp(total / len(x))
    h = model.last_hidden(splits["test"][0][:batch])
    out["act_sq"] = float(h.square().mean())
    out["act_diff_sq"] = float(h.diff(dim=0).square().mean())
    return out


def corpus_windows(
    data: DataConfig, length: int
) -> tuple[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(vocabulary size, windows of each split) for a study's ``[data]`` (``subset``: training
    tokens to use; validation and test use ``subset // 4`` tokens each, or all with 0)."""
    corpus = gutenberg()
    limit = data.subset
    held_out = limit // 4
    return len(corpus.vocab), {
        "train": windows(corpus.train, length, limit),
        "val": windows(corpus.val, length, held_out),
        "test": windows(corpus.test, length, held_out),
    }


def run_language_model(config: TrialConfig, seed: int, context: TrialContext) -> TrialOutcome:
    """An ``LSTMLanguageModel`` trained on windows of the Gutenberg corpus; perplexities and
    the AR/TAR activation statistics of ``language_model_metrics``."""
    m: LanguageModel = config.model  # type: ignore[assignment]
    vocab_size, splits = corpus_windows(config.data, m.options.bptt)
    torch.manual_seed(seed)
    model = m.build(config.data, vocab_size)
    history, seconds = train_model(
        model,
        splits["train"],
        splits["val"],
        config,
        seed,
        context,
        regularizers=grid_regularizers(config, model.body),
        loss=sequence_loss,
    )
    metrics = {
        **language_model_metrics(model, splits),
        "epochs_run": float(len(history)),
        "seconds": seconds,
    }
    return TrialOutcome(metrics, history_rows(history), model, None)


def _network(config: TrialConfig) -> nn.Module:
    """The LSTM body (what the rules attach to; the embedding and head are tied around it)."""
    return config.model.build(config.data).body  # type: ignore[union-attr,call-arg]


KIND = register(
    Kind("lstm-lm", LanguageModel, "language", network=_network, run=run_language_model, order=6)
)
