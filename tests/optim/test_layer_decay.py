"""Layer-wise LR decay: ``param_groups(..., layer_decay=)`` against timm's
``param_groups_layer_decay`` (its algorithm written out below, timm being not importable here)
on a ViT-like model with timm's ``group_matcher`` and on transformers' BERT; the edge cases of
timm's reports #2532 (lr_scale never applied), #2691 (frozen parameters shift the scales) and
#2712 (``reg_token`` left out of the matcher)."""

from __future__ import annotations

import fnmatch
import math
import re
from collections import defaultdict

import pytest
import torch
from torch import nn

import reglab
from reglab import InvalidParameterError
from reglab.optim import apply_lr_scale, layer_ids
from tests.integration.test_transformers import bert

# -- timm's algorithm, written out (timm/models/_manipulate.py group_with_matcher and
# -- timm/optim/_param_groups.py param_groups_layer_decay) ---------------------------------


def timm_group_ids(named_params, matcher) -> dict[str, int]:
    compiled = []
    for ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):
            for sub in spec:
                compiled.append((re.compile(sub[0]), (ordinal,), sub[1]))
        else:
            compiled.append((re.compile(spec), (ordinal,), None))

    def grouping(name):
        for pattern, prefix, suffix in compiled:
            r = pattern.match(name)
            if r:
                parts = [prefix, r.groups(), suffix]
                return tuple(float(x) for part in parts if part for x in part)
        return (float("inf"),)

    groups = defaultdict(list)
    for name, _ in named_params:
        groups[grouping(name)].append(name)
    ids, lid = {}, -1
    for key in sorted(groups):
        if lid < 0 or key[-1] != 99999:
            lid += 1
        for name in groups[key]:
            ids[name] = lid
    return ids


def timm_layer_decay(model, weight_decay, no_weight_decay_list, layer_decay, matcher):
    """-> {name: (lr_scale, weight_decay)} and the groups as sets of names."""
    layer_map = timm_group_ids(model.named_parameters(), matcher)
    num_layers = max(layer_map.values()) + 1
    layer_max = num_layers - 1
    scales = [max(0.0, layer_decay ** (layer_max - i)) for i in range(num_layers)]
    per_param, groups = {}, defaultdict(set)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or any(fnmatch.fnmatch(name, p) for p in no_weight_decay_list):
            g, wd = "no_decay", 0.0
        else:
            g, wd = "decay", weight_decay
        layer = layer_map.get(name, layer_max)
        per_param[name] = (scales[layer], wd)
        groups[f"layer_{layer}_{g}"].add(name)
    return per_param, sorted(map(sorted, groups.values()))


def ours(model, groups) -> tuple[dict, list]:
    names = {id(p): n for n, p in model.named_parameters()}
    per_param = {
        names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]
    }
    return per_param, sorted(sorted(names[id(p)] for p in g["params"]) for g in groups)


# -- models ----------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))


class ViT(nn.Module):
    """timm's VisionTransformer layout: tokens on the root, patch_embed, blocks, norm, head."""

    def __init__(self, depth: int = 4, d: int = 8, reg_tokens: int = 0) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, d)) if reg_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, d))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, 4, 4)
        self.blocks = nn.Sequential(*(Block(d) for _ in range(depth)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def group_matcher(self, coarse: bool = False) -> dict:  # timm's, verbatim semantics
        return dict(
            stem=r"^cls_token|pos_embed|patch_embed",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )


class PlainViT(ViT):
    """The same without timm's hooks: reglab's path rule decides."""

    group_matcher = None  # type: ignore[assignment]


@pytest.mark.parametrize("decay", [0.75, 0.5])
def test_vit_with_timm_group_matcher_equals_timm(decay) -> None:
    model = ViT()
    groups = reglab.param_groups(model, 0.05, layer_decay=decay)
    expected = timm_layer_decay(model, 0.05, model.no_weight_decay(), decay, model.group_matcher())
    assert ours(model, groups) == expected
    # timm's matcher puts the final norm with the last block, the head alone on top
    scales = ours(model, groups)[0]
    assert scales["norm.weight"][0] == scales["blocks.3.mlp.2.weight"][0] == decay
    assert scales["head.weight"][0] == 1.0
    assert scales["cls_token"][0] == pytest.approx(decay**5)


def test_bert_path_rule_equals_timm_with_beit_matcher() -> None:
    model = bert()
    groups = reglab.param_groups(model, 0.01, layer_decay=0.8)
    beit = dict(embeddings=r"^bert\.embeddings", blocks=r"^bert\.encoder\.layer\.(\d+)")
    assert ours(model, groups) == timm_layer_decay(model, 0.01, (), 0.8, beit)
    ids = layer_ids(model)
    assert ids["bert.embeddings.word_embeddings.weight"] == 0
    assert ids["bert.encoder.layer.1.output.dense.weight"] == 2
    assert ids["bert.pooler.dense.weight"] == ids["classifier.weight"] == 3


def test_path_rule_on_a_vit_beit_style() -> None:
    """BEiT's get_layer_id_for_vit: tokens and patch_embed 0, block i -> i + 1, the rest
    (final norm included) the last id; ``reg_token`` too is stem (timm #2712)."""
    model = PlainViT(reg_tokens=2)
    ids = layer_ids(model)
    assert {ids[n] for n in ("cls_token", "reg_token", "pos_embed", "patch_embed.proj.weight")} == {
        0
    }
    assert [ids[f"blocks.{i}.attn.qkv.weight"] for i in range(4)] == [1, 2, 3, 4]
    assert ids["norm.weight"] == ids["head.weight"] == 5
    per_param, _ = ours(model, reglab.param_groups(model, 0.05, layer_decay=0.5))
    assert per_param["reg_token"] == (0.5**5, 0.05)  # 3-D and not listed: weight decay


def test_timm_2712_reg_token_with_timm_matcher_and_the_override() -> None:
    model = ViT(reg_tokens=2)
    theirs, _ = timm_layer_decay(model, 0.05, (), 0.5, model.group_matcher())
    assert theirs["reg_token"][0] == 1.0  # the reported bug: top scale for a stem token
    fixed = dict(
        stem=r"^cls_token|reg_token|pos_embed|patch_embed",
        blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
    )
    per_param, _ = ours(model, reglab.param_groups(model, 0.05, layer_decay=0.5, layer_id=fixed))
    assert per_param["reg_token"][0] == per_param["cls_token"][0] == 0.5**5


def test_timm_2691_frozen_parameters_do_not_shift_the_scales() -> None:
    class Model(nn.Module):  # the report's model
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.Sequential(*(nn.Linear(4, 4) for _ in range(3)))
            self.emablocks = nn.Sequential(*(nn.Linear(4, 4) for _ in range(3)))
            self.emablocks.requires_grad_(False)

        def group_matcher(self, coarse: bool = False) -> dict:
            return dict(blocks=r"^blocks\.(\d+)", emablocks=r"^emablocks\.")

    model = Model()
    theirs, _ = timm_layer_decay(model, 0.0, (), 0.5, model.group_matcher())
    assert theirs["blocks.2.weight"][0] == 0.5  # timm: the frozen group sits on top
    per_param, _ = ours(model, reglab.param_groups(model, 0.0, layer_decay=0.5))
    assert [per_param[f"blocks.{i}.weight"][0] for i in range(3)] == [0.25, 0.5, 1.0]
    assert not any(n.startswith("emablocks") for n in per_param)


def test_timm_2532_lr_scale_is_applied_and_kept_by_torch_schedulers() -> None:
    model = PlainViT(depth=2)
    groups = reglab.param_groups(model, 0.05, layer_decay=0.5, lr=0.1)
    optimizer = torch.optim.AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [
        pytest.approx(0.1 * g["lr_scale"]) for g in optimizer.param_groups
    ]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    for g in optimizer.param_groups:
        assert g["lr"] == pytest.approx(0.1 * g["lr_scale"] * 0.125)
    # apply_lr_scale: the same from groups without lr, once however often it is called
    other = torch.optim.SGD(reglab.param_groups(model, 0.05, layer_decay=0.5), lr=0.2)
    apply_lr_scale(other)
    apply_lr_scale(other)
    assert [g["lr"] for g in other.param_groups] == [0.2 * g["lr_scale"] for g in groups]
    apply_lr_scale(other, lr=1.0)
    assert [g["lr"] for g in other.param_groups] == [g["lr_scale"] for g in groups]


def test_layer_decay_one_gives_the_plain_split_with_unit_scales() -> None:
    model = bert()
    groups = reglab.param_groups(model, 0.01, layer_decay=1.0)
    assert {g["lr_scale"] for g in groups} == {1.0}
    plain = reglab.param_groups(model, 0.01)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for p in plain[0]["params"]}


def test_callable_layer_id_and_min_scale() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    per_param, _ = ours(
        model,
        reglab.param_groups(
            model, 0.0, layer_decay=0.1, min_scale=0.05, layer_id=lambda n: -int(n[0])
        ),
    )
    # ordinals 0, -1, -2 sort as -2 < -1 < 0: "2.*" is layer 0, "0.*" the top layer
    assert per_param["0.weight"][0] == 1.0
    assert per_param["1.weight"][0] == pytest.approx(0.1)
    assert per_param["2.weight"][0] == 0.05  # 0.1**2 clamped to min_scale


def test_bad_input() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(
        InvalidParameterError,
        match=r"'layer_decay' parameter of param_groups must be None or a float in \(0, 1\]\. "
        r"Got 1\.5",
    ):
        reglab.param_groups(model, 0.1, layer_decay=1.5)
    with pytest.raises(InvalidParameterError, match=r"'layer_id' parameter of param_groups"):
        reglab.param_groups(model, 0.1, layer_id=lambda n: 0)
    assert math.isfinite(reglab.param_groups(model, 0.1, layer_decay=0.5)[0]["lr_scale"])


def test_the_longest_stack_is_the_blocks() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 4))  # a shorter stack first
            self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(4))
            self.head = nn.Linear(4, 1)

    ids = layer_ids(Net())
    assert ids["stem.0.weight"] == ids["stem.1.weight"] == 0
    assert [ids[f"layers.{i}.weight"] for i in range(4)] == [1, 2, 3, 4]
    assert ids["head.weight"] == 5
