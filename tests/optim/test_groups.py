"""``reglab.param_groups``: decay on kernels, none on biases, normalization layers (torch's,
third-party by class name, and by the name they are stored under), 1-D tensors, embeddings on
request and whatever ``model.no_weight_decay()`` lists — on real ``transformers`` models built
from configs, ``nn.TransformerEncoder`` and a model with its own RMSNorm class."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reglab
from reglab import InvalidParameterError
from reglab.optim import classify
from tests.integration.test_transformers import bert, gpt2


def _split(groups: list[dict]) -> tuple[set[int], set[int]]:
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    rest = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    return decay, rest


def _names(model: nn.Module, ids: set[int]) -> set[str]:
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_bert_decays_exactly_its_linear_and_embedding_weights() -> None:
    model = bert()
    decay, rest = _split(reglab.param_groups(model, 0.01))
    expected = {
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Embedding))
        for n in [f"{n}.weight"]
    }
    assert _names(model, decay) == expected
    assert _names(model, rest) == {n for n, _ in model.named_parameters()} - expected
    assert any("LayerNorm.weight" in n for n in _names(model, rest))
    # Hugging Face's own rule (decay all but biases and LayerNorm weights) agrees.
    hf = {n for n, _ in model.named_parameters() if "bias" not in n and "LayerNorm" not in n}
    assert _names(model, decay) == hf


def test_gpt2_conv1d_kernels_decay_and_its_ln_layers_do_not() -> None:
    model = gpt2()
    decisions = {d.name: d for d in classify(model, decay_embeddings=False)}
    conv = [n for n in decisions if n.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight"))]
    assert len(conv) == 2 * 4
    assert all(decisions[n].decay for n in conv)
    assert decisions["transformer.ln_f.weight"].reason == "in a normalization layer (LayerNorm)"
    # The output projection is tied to wte: listed once, as the embedding.
    assert "lm_head.weight" not in decisions
    assert decisions["transformer.wte.weight"].reason == "an embedding (decay_embeddings=False)"
    assert not decisions["transformer.wpe.weight"].decay
    groups = reglab.param_groups(model, 0.1, decay_embeddings=False, lr=1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert all(g["lr"] == 1e-3 for g in groups)


def test_transformer_encoder() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    decay, _ = _split(reglab.param_groups(model, 0.01))
    assert sorted(_names(model, decay)) == sorted(
        f"layers.{i}.{n}"
        for i in range(2)
        for n in (
            "self_attn.in_proj_weight",
            "self_attn.out_proj.weight",
            "linear1.weight",
            "linear2.weight",
        )
    )


class RMSNorm(nn.Module):
    """A custom RMSNorm, as in many LLM codebases: no torch norm class to match by type."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale


class Gain(nn.Module):
    """A norm whose class name says nothing: caught by the name it is stored under."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, d))  # 2-D on purpose: ndim alone would decay it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.pos = nn.Parameter(torch.zeros(1, 4, 8))
        self.block = nn.Linear(8, 8)
        self.rms = RMSNorm(8)
        self.final_norm = Gain(8)
        self.head = nn.Linear(8, 3)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self) -> set[str]:
        return {"pos"}


def test_custom_norms_no_weight_decay_and_reasons(capsys) -> None:
    model = Net()
    decisions = {d.name: d.reason for d in classify(model)}
    assert decisions == {
        "embed.weight": "an embedding table",
        "pos": "listed by model.no_weight_decay()",
        "block.weight": "a kernel (2-D)",
        "block.bias": "a bias",
        "rms.scale": "in a normalization layer (class RMSNorm)",
        "final_norm.weight": "in a normalization layer (named 'final_norm')",
        "head.weight": "a kernel (2-D)",
        "head.bias": "a bias",
    }
    groups = reglab.param_groups(model, 0.05, no_decay=["head"], verbose=True)
    printed = capsys.readouterr().out.splitlines()
    assert "no decay  head.weight  (name contains 'head')" in printed
    assert "decay     block.weight  (a kernel (2-D))" in printed
    decay, _ = _split(groups)
    assert _names(model, decay) == {"embed.weight", "block.weight"}
    torch.optim.AdamW(groups, lr=1e-3)  # plain dicts any optimizer takes


def test_bad_input_is_named() -> None:
    with pytest.raises(InvalidParameterError, match=r"'weight_decay' parameter of param_groups"):
        reglab.param_groups(nn.Linear(2, 2), -1.0)

    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self._flat_param = nn.Parameter(torch.zeros(10))

    with pytest.raises(InvalidParameterError, match=r"_flat_param is a flattened FSDP parameter"):
        reglab.param_groups(Flat(), 0.1)


def _timm_no_decay(model: nn.Module) -> set[str]:
    """timm's ``param_groups_weight_decay`` rule, written out: ``ndim <= 1``, a name ending in
    ``.bias``, or an ``fnmatch`` match of a ``model.no_weight_decay()`` entry."""
    import fnmatch

    patterns = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    return {
        n
        for n, p in model.named_parameters()
        if p.ndim <= 1 or n.endswith(".bias") or any(fnmatch.fnmatch(n, q) for q in patterns)
    }


class NormedLinear(nn.Linear):
    """A cosine classifier: normalizes rows at forward time, but its weight is a kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(
            nn.functional.normalize(x), nn.functional.normalize(self.weight)
        )


class AdaLNBlock(nn.Module):
    """DiT-style block: a Linear inside the norm (adaptive layer norm), a relative-position
    bias table (2-D), a projection named ``ln_proj`` and timm-style attention."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(8, elementwise_affine=False)
        self.norm1.linear = nn.Linear(4, 16)
        self.ln_proj = nn.Linear(8, 8)
        self.rel_pos_bias = nn.Parameter(torch.zeros(7, 7))
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(8, 24)


class AdaLNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AdaLNBlock() for _ in range(2))
        self.head = NormedLinear(8, 3, bias=False)

    def no_weight_decay(self) -> set[str]:
        return {"blocks.*.attn.qkv.weight"}


def test_decisions_match_timm_on_norm_named_kernels_and_patterns() -> None:
    model = AdaLNNet()
    decisions = {d.name: d for d in classify(model)}
    assert {n for n, d in decisions.items() if not d.decay} == _timm_no_decay(model)
    for name in ("blocks.0.norm1.linear.weight", "blocks.1.ln_proj.weight", "head.weight"):
        assert decisions[name].decay, decisions[name]
    assert decisions["blocks.0.rel_pos_bias"].reason == "a kernel (2-D)"
    assert decisions["blocks.1.attn.qkv.weight"].reason == (
        "matches 'blocks.*.attn.qkv.weight' of model.no_weight_decay()"
    )
    # The whole BERT and GPT-2 agree with timm's rule too.
    for model in (bert(), gpt2()):
        decided = {d.name for d in classify(model) if not d.decay}
        assert decided == _timm_no_decay(model) - {"lm_head.weight"}
