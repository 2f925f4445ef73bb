"""DropPath, DropBlock, mixup and CutMix: eval-mode identity, statistics on large seeded
draws, and the same computation done another way (DropBlock's blocks by explicit loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from reglab import InvalidParameterError
from reglab.stochastic import CutMix, DropBlock, DropPath, MixUp, cutmix, mixup
from reglab.stochastic.functional import drop_block, drop_path
from reglab.stochastic.mixing import cutmix_box, soft_targets


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("module", [DropPath(0.3), DropBlock(0.2, 3)], ids=lambda m: repr(m))
def test_eval_mode_is_identity_and_shape_is_preserved(module) -> None:
    x = torch.randn(4, 3, 8, 8)
    assert module.eval()(x) is x
    assert module.train()(x).shape == x.shape
    assert "p=" in repr(module)


def test_drop_path_drops_whole_samples_and_keeps_the_mean() -> None:
    x = torch.ones(200_000, 3, 2)
    out = drop_path(x, 0.25, generator=_gen())
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.75).all(1)
    assert bool((dropped | kept).all()), "a sample was partly dropped"
    assert float(dropped.double().mean()) == pytest.approx(0.25, abs=0.005)  # SE 0.001
    assert float(out.mean()) == pytest.approx(1.0, abs=0.01)


def test_drop_block_equals_explicit_blocks_around_the_drawn_centres() -> None:
    x = torch.randn(2, 3, 10, 10)
    p, b = 0.15, 3
    out = drop_block(x, p, b, generator=_gen(1))
    # The same draws, then each centre's b × b square by explicit loops.
    gamma = p / b**2 * 100 / ((10 - b + 1) ** 2)
    centres = torch.empty(x.shape).bernoulli_(gamma, generator=_gen(1)).numpy()
    dropped = np.zeros(x.shape, dtype=bool)
    for n, c, i, j in zip(*np.nonzero(centres), strict=True):
        dropped[n, c, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2] = True
    keep = ~dropped
    expected = x.numpy() * keep * (keep.size / keep.sum())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert dropped.any(), "the draw dropped nothing: the test would not test"


def test_drop_block_drops_about_p_and_preserves_the_sum() -> None:
    x = torch.ones(64, 8, 28, 28)
    out = drop_block(x, 0.1, 5, generator=_gen(2))
    fraction = float((out == 0).double().mean())
    assert 0.08 < fraction < 0.14, fraction  # p before overlaps; measured 0.11
    assert float(out.sum()) == pytest.approx(x.numel(), rel=1e-5)


def test_mixup_mixes_inputs_and_labels_with_one_beta_lambda() -> None:
    x = torch.randn(8, 5)
    y = torch.arange(8) % 4
    lams = []
    for seed in range(3000):
        mixed, targets = mixup(x, y, 4, alpha=0.4, generator=_gen(seed))
        lam = float(targets[0, 0])  # sample 0 (class 0) is mixed with sample 7 (class 3)
        torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        lams.append(lam)
    lams = np.array(lams)
    # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 · (2α + 1)) = 0.1389.
    assert lams.mean() == pytest.approx(0.5, abs=0.02)
    assert lams.var() == pytest.approx(1 / (4 * 1.8), rel=0.06)


def test_mixup_smooths_the_labels_before_mixing() -> None:
    y = torch.tensor([0, 1, 2])
    _, targets = mixup(torch.randn(3, 2), y, 3, alpha=1.0, label_smoothing=0.3, generator=_gen())
    smooth = soft_targets(y, 3, 0.3)
    torch.testing.assert_close(smooth[0], torch.tensor([0.8, 0.1, 0.1]))
    lam = float((targets[0] - smooth.flip(0)[0])[0] / (smooth[0] - smooth.flip(0)[0])[0])
    torch.testing.assert_close(targets, lam * smooth + (1 - lam) * smooth.flip(0))


def test_cutmix_pastes_a_box_and_mixes_labels_by_its_area() -> None:
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 12, 12).clone()  # image i is all i
    y = torch.arange(4)
    pasted_fractions = []
    for seed in range(500):
        mixed, targets = cutmix(x, y, 4, alpha=1.0, generator=_gen(seed))
        from_other = (mixed[0] == 3.0).double().mean()  # sample 0 gets sample 3's box
        torch.testing.assert_close(targets[0, 3].double(), from_other)  # area-corrected λ
        torch.testing.assert_close(targets[0, 0].double(), 1 - from_other)
        assert bool(((mixed[0] == 0) | (mixed[0] == 3)).all())
        pasted_fractions.append(float(from_other))
    # E[1 − λ] = 1/2 before the box is clipped at the border; clipping can only shrink it.
    assert 0.25 < np.mean(pasted_fractions) < 0.5
    # λ = 0 asks for the whole image: a box of full sides, clipped by its random centre.
    top, bottom, left, right = cutmix_box(10, 10, 0.0, _gen())
    assert bottom - top <= 10
    assert right - left <= 10
    assert min(bottom - top, right - left) >= 5


def test_cutmix_on_flat_rows_and_eval_mode() -> None:
    x = torch.randn(6, 784)
    mixed, targets = CutMix(10, image_shape=(28, 28), generator=_gen())(x, torch.arange(6))
    assert mixed.shape == x.shape
    assert targets.shape == (6, 10)
    layer = MixUp(10).eval()
    same, one_hot = layer(x, torch.arange(6))
    assert same is x
    torch.testing.assert_close(one_hot, F.one_hot(torch.arange(6), 10).float())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DropPath(1.5), r"'p' parameter of DropPath"),
        (lambda: DropBlock(0.1, 0), r"'block_size' parameter of DropBlock"),
        (lambda: drop_block(torch.ones(2, 3), 0.1), r"'x' parameter of drop_block"),
        (lambda: MixUp(0), r"'num_classes' parameter of MixUp"),
        (lambda: mixup(torch.ones(2, 3), torch.ones(3), 4), r"'y' parameter of mixup"),
        (lambda: cutmix(torch.ones(2, 9), torch.arange(2), 4), r"'x' parameter of cutmix"),
    ],
)
def test_bad_arguments(build, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        build()
