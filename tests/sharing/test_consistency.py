"""Mean teacher and Π-model: the EMA, the loss and the ramp-up by hand, fit against the
explicit loop, and one effect on digits (50 labels): the predictions under two noise draws
agree."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reglab import InvalidParameterError
from reglab.data import digits
from reglab.sharing import MeanTeacher, PiModel, sigmoid_ramp_up
from reglab.training import fit


def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    return x, torch.tensor([0, 1, -1, -1, 2, -1, 0, -1])


def test_ramp_up_formula() -> None:
    assert sigmoid_ramp_up(0, 100) == pytest.approx(math.exp(-5.0))
    assert sigmoid_ramp_up(50, 100) == pytest.approx(math.exp(-5.0 * 0.25))
    assert sigmoid_ramp_up(100, 100) == sigmoid_ramp_up(7, 0) == 1.0


@pytest.mark.parametrize("rows", ["all", "unlabelled"])
def test_loss_by_hand(rows) -> None:
    x, y = _data()
    model = MeanTeacher(_student(), consistency=3.0, ramp_up=10, rows=rows)
    with torch.no_grad():  # make the teacher differ from the student
        for p in model.teacher.parameters():
            p.add_(0.3)
    model.step = 4
    logits = model(x)
    labelled = y >= 0
    chosen = ~labelled if rows == "unlabelled" else torch.ones(8, dtype=torch.bool)
    p = F.softmax(model.student(x), -1)[chosen]
    q = F.softmax(model.teacher(x), -1)[chosen]
    w = 3.0 * math.exp(-5.0 * (1 - 4 / 10) ** 2)
    expected = F.cross_entropy(model.student(x)[labelled], y[labelled]) + w * ((p - q) ** 2).mean()
    torch.testing.assert_close(model.loss(logits, y), expected, rtol=1e-12, atol=1e-14)


def test_the_teacher_is_the_ema_of_the_student() -> None:
    x, y = _data()
    model = MeanTeacher(_student(), ema_decay=0.9, consistency=1.0)
    optimizer = torch.optim.SGD(model.student.parameters(), lr=0.5)
    model.bind(optimizer)
    expected = [p.detach().clone() for p in model.student.parameters()]
    for t in range(5):
        optimizer.zero_grad()
        model.loss(model(x), y).backward()
        optimizer.step()
        alpha = min(1 - 1 / (t + 1), 0.9)  # 0 at t = 0: the teacher becomes the student
        expected = [
            alpha * e + (1 - alpha) * s.detach()
            for e, s in zip(expected, model.student.parameters(), strict=True)
        ]
    assert model.step == 5
    for got, want in zip(model.teacher.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert all(not p.requires_grad for p in model.teacher.parameters())
    model.remove()
    optimizer.step()
    assert model.step == 5
    state = model.state_dict()
    other = MeanTeacher(_student(1))
    other.load_state_dict(state)
    assert other.step == 5


def test_pi_model_in_fit_equals_the_explicit_loop() -> None:
    x, y = _data()
    ours = PiModel(_student(), consistency=2.0, ramp_up=3, noise=0.1)
    theirs = copy.deepcopy(ours.student)
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.2)
    ours.bind(optimizer)
    torch.manual_seed(7)
    fit(
        ours,
        (x, y),
        loss=ours.loss,
        optimizer=optimizer,
        epochs=3,
        batch_size=8,
        shuffle=False,
        progress=False,
    )
    reference = torch.optim.SGD(theirs.parameters(), lr=0.2)
    torch.manual_seed(7)
    for t in range(3):
        logits = theirs(x + 0.1 * torch.randn_like(x))
        with torch.no_grad():
            target = theirs(x + 0.1 * torch.randn_like(x))
        w = 2.0 * sigmoid_ramp_up(t, 3)
        loss = F.cross_entropy(logits[y >= 0], y[y >= 0]) + w * F.mse_loss(
            F.softmax(logits, -1), F.softmax(target, -1)
        )
        reference.zero_grad()
        loss.backward()
        reference.step()
    for a, b in zip(ours.student.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    ours.eval()
    assert torch.equal(ours(x), ours.student(x))  # eval: the student, no noise


def test_errors() -> None:
    with pytest.raises(InvalidParameterError, match=r"'ema_decay' parameter of MeanTeacher"):
        MeanTeacher(_student(), ema_decay=1.5)
    with pytest.raises(InvalidParameterError, match=r"'rows' parameter of PiModel"):
        PiModel(_student(), rows="labelled")


def test_effect_on_digits_noisy_predictions_agree() -> None:
    (x, y), (xt, _) = digits()
    g = torch.Generator().manual_seed(0)
    keep = torch.zeros_like(y, dtype=torch.bool)
    for c in range(10):  # 5 labels per class, the rest unlabelled (-1)
        idx = (y == c).nonzero().flatten()
        keep[idx[torch.randperm(len(idx), generator=g)[:5]]] = True
    y = torch.where(keep, y, -1)

    def disagreement(kind: str, consistency: float) -> float:
        torch.manual_seed(0)
        student = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        if kind == "mean teacher":
            model = MeanTeacher(student, 0.99, consistency, ramp_up=200, noise=0.3)
        else:
            model = PiModel(student, consistency, ramp_up=200, noise=0.3)
        optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
        model.bind(optimizer)
        fit(
            model,
            (x, y),
            loss=model.loss,
            optimizer=optimizer,
            epochs=15,
            batch_size=64,
            seed=0,
            progress=False,
        )
        torch.manual_seed(1)
        with torch.no_grad():
            p = F.softmax(student(xt + 0.3 * torch.randn_like(xt)), -1)
            q = F.softmax(student(xt + 0.3 * torch.randn_like(xt)), -1)
        return float(F.mse_loss(p, q))

    supervised = disagreement("pi", 0.0)  # consistency 0: cross-entropy on the 50 labels only
    got = {kind: disagreement(kind, 100.0) for kind in ("pi", "mean teacher")}
    # measured: supervised 0.0172, Π-model 0.0066, mean teacher 0.0034
    for kind, value in got.items():
        assert value < 0.6 * supervised, (kind, value, supervised)
