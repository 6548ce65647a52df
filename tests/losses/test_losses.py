"""Losses: VGG pyramid (layout, loading, errors), GAN/R1, latent consistency, decorrelation, bank diagnostics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from edtalk.config import GeneratorConfig
from edtalk.losses import (
    VGGPyramidLoss,
    bank_diagnostics,
    coefficient_invariance,
    d_nonsaturating,
    decorrelation,
    g_nonsaturating,
    latent_consistency,
    r1_penalty,
    random_similarity,
    standardised_invariance,
)
from edtalk.losses.perceptual import AntiAliasDownsample, vgg19_features
from edtalk.nn.navigation import BasesBanks


def test_vgg_layout_matches_torchvision_and_loads(tmp_path: Path) -> None:
    tv = make_layers(cfgs["E"])[:30]  # torchvision VGG19 features up to relu5_1
    ours = vgg19_features()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in tv.state_dict().items()
    }
    sd = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file also holds the classifier
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    loss = VGGPyramidLoss(path=path)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = make_layers(cfgs["E"])[:2]
        expected.load_state_dict(
            {k.removeprefix("features."): v for k, v in sd.items() if k.startswith("features.0.")}
        )
        xn = (x - loss.mean) / loss.std
        assert torch.allclose(loss._taps(x * 2 - 1)[0], expected(xn), atol=1e-5)
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training


def test_vgg_missing_file_error_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*vgg19-dcbb9e9d\.pth.*init=random"):
        VGGPyramidLoss(path=tmp_path / "nope.pth")


def test_vgg_loss_zero_on_identical_positive_otherwise_and_skips_small_scales() -> None:
    loss = VGGPyramidLoss(init="random", width=0.125)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(x, x).item() == 0.0
    y = x.flip(-1)
    pred = x.clone().requires_grad_(True)
    value = loss(pred, y)
    value.backward()
    assert value.item() > 0 and pred.grad is not None and pred.grad.abs().sum() > 0
    assert len(loss._pyramid(x)) == 3  # 64, 32, 16 (8 is below min_size)
    with pytest.raises(ValueError, match="min_size"):
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_antialias_downsample_keeps_constant_images() -> None:
    down = AntiAliasDownsample(0.25)
    x = torch.full((1, 3, 64, 64), 0.3)
    out = down(x)
    assert out.shape == (1, 3, 16, 16)
    assert torch.allclose(out[..., 4:-4, 4:-4], torch.full_like(out[..., 4:-4, 4:-4], 0.3), atol=1e-6)


def test_gan_losses_values() -> None:
    zero = torch.zeros(4, 1)
    assert math.isclose(g_nonsaturating(zero).item(), math.log(2), rel_tol=1e-6)
    assert math.isclose(d_nonsaturating(zero, zero).item(), 2 * math.log(2), rel_tol=1e-6)
    assert d_nonsaturating(torch.full((4, 1), 10.0), torch.full((4, 1), -10.0)).item() < 1e-3


def test_r1_penalty_of_linear_critic() -> None:
    w = torch.randn(3 * 4 * 4)
    real = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = real.flatten(1) @ w
    assert torch.allclose(r1_penalty(logits, real), w.pow(2).sum(), rtol=1e-5)


def test_latent_consistency_and_decorrelation() -> None:
    a = torch.randn(5, 8)
    assert math.isclose(latent_consistency(a, 2 * a).item(), 5 * math.exp(-1), rel_tol=1e-5)
    assert math.isclose(latent_consistency(a, -a, "mean").item(), math.exp(1), rel_tol=1e-5)
    b = torch.randn(256, 3)
    assert decorrelation(b, b).item() > 0.9
    assert decorrelation(b, torch.randn(256, 4)).item() < 0.1
    assert decorrelation(b[:1], b[:1]).item() == 0.0


def test_coefficient_invariance_is_the_changed_fraction_of_the_spread() -> None:
    torch.manual_seed(0)
    self_ = torch.randn(64, 20)
    assert coefficient_invariance(self_, self_).item() == 0.0
    noise = 0.1 * torch.randn(64, 20)
    value = coefficient_invariance(self_ + noise, self_).item()
    spread = torch.cat([self_ + noise, self_]).var(0, unbiased=False).mean()  # by hand
    assert math.isclose(value, noise.pow(2).mean().item() / spread.item(), rel_tol=1e-5)
    assert 0.005 < value < 0.02  # ~0.01: the noise is a tenth of the spread (variance 1e-2 of 1)
    assert math.isclose(coefficient_invariance(3 * (self_ + noise), 3 * self_).item(), value, rel_tol=1e-5)
    unrelated = coefficient_invariance(torch.randn(64, 20), self_).item()
    assert 1.5 < unrelated < 2.5  # independent weights: |x - y|^2 = 2 var


def test_standardised_invariance_weighs_a_small_dimension_as_a_large_one() -> None:
    """A change confined to a low-variance dimension is ~invisible to the pooled ratio but counts fully per
    dimension; equal weights give 0; the variance floor bounds what an unused dimension adds."""
    torch.manual_seed(0)
    self_ = torch.randn(256, 10)
    self_[:, 9] *= 0.1  # a small dimension (variance 1e-2 of the others')
    moved = self_.clone()
    moved[:, 9] += 0.1 * torch.randn(256)  # it changes by its own size
    assert standardised_invariance(self_, self_).item() == 0.0
    pooled, per_dim = (
        coefficient_invariance(moved, self_).item(),
        standardised_invariance(moved, self_).item(),
    )
    assert pooled < 0.003 and 0.04 < per_dim < 0.2  # 1 of 10 dimensions at ratio ~0.7 (its variance doubled)
    unused = self_.clone()
    unused[:, 9] = 0.0
    jitter = unused.clone()
    jitter[:, 9] = 1e-4 * torch.randn(256)  # an unused dimension's noise: the floor keeps it negligible
    assert standardised_invariance(jitter, unused).item() < 1e-6


def test_random_similarity_moves_a_dot_where_its_parameters_say() -> None:
    """A bright dot lands where the drawn rotation, scales and shift put it (the inverse of the sampling map,
    y down), a constant frame stays constant, amplitudes 0 give the frames back, amplitudes bound the draws."""
    size, n = 64, 16
    frames = torch.zeros(n, 1, size, size)
    frames[:, :, 20:24, 40:44] = 1.0  # a 4 px dot right of and above the centre
    gen = torch.Generator().manual_seed(3)
    warped, params = random_similarity(frames, roll=20.0, scale=0.1, shift=0.1, generator=gen)
    angle, sx, sy, tx, ty = params.unbind(1)
    assert angle.abs().max() <= 20 and angle.abs().max() > 5 and (sx - 1).abs().max() <= 0.1
    assert torch.cat([tx, ty]).abs().max() <= 0.1 and (sy - 1).abs().max() > 0.01
    coords = (torch.arange(size) + 0.5) / size * 2 - 1  # pixel centres, normalised (align_corners=False)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    mass = warped[:, 0].clamp(min=0)
    got = torch.stack([(mass * xx).sum((1, 2)), (mass * yy).sum((1, 2))], 1) / mass.sum((1, 2))[:, None]
    src = torch.tensor([(42 / size) * 2 - 1, (22 / size) * 2 - 1])  # the dot's centre, normalised
    rad = torch.deg2rad(angle)
    for i in range(n):  # output p maps to input A p + t, so the dot lands at A^-1 (src - t)
        a = torch.tensor(
            [[rad[i].cos() / sx[i], -rad[i].sin() / sx[i]], [rad[i].sin() / sy[i], rad[i].cos() / sy[i]]]
        )
        want = torch.linalg.solve(a, src - torch.stack([tx[i], ty[i]]))
        assert torch.allclose(got[i], want, atol=0.03), (i, got[i], want)  # 1 px = 0.031
    flat = torch.full((2, 3, 32, 32), 0.25)
    assert torch.allclose(random_similarity(flat, 30.0, 0.2, 0.2)[0], flat, atol=1e-6)
    same, still = random_similarity(frames, 0.0, 0.0, 0.0)
    assert (
        same is frames
        and torch.equal(still[:, 0], torch.zeros(n))
        and torch.equal(still[:, 1:3], torch.ones(n, 2))
    )


def test_bank_diagnostics() -> None:
    banks = BasesBanks(GeneratorConfig.tiny("full"))
    d = bank_diagnostics(banks)
    assert d["orth/q_gram_err"] < 1e-5
    assert d["orth/q_mouth_pose"] < 1e-5 and d["orth/q_mouth_exp"] < 1e-5 and d["orth/q_pose_exp"] < 1e-5
    assert 0 < d["orth/raw_mouth_pose"] < 0.5 and d["orth/cond"] >= 1
    with torch.no_grad():
        banks.mouth_pose[:, 20] = banks.mouth_pose[:, 0]  # a pose column collapses onto a mouth column
    assert bank_diagnostics(banks)["orth/raw_mouth_pose"] > d["orth/raw_mouth_pose"]


def test_box_mask_takes_the_pixels_whose_centres_are_inside() -> None:
    from edtalk.losses.region import box_mask

    boxes = torch.tensor([[2.0, 3.0, 6.0, 5.0], [0.0, 0.0, 8.0, 8.0], [1.6, 1.4, 2.4, 1.6]])
    mask = box_mask(boxes, 8, 8)
    expected = torch.zeros(3, 1, 8, 8)
    expected[0, 0, 3:5, 2:6] = 1
    expected[1] = 1
    assert torch.equal(mask, expected)  # the third box holds no pixel centre


def test_region_l1_weighs_only_the_box_and_matches_slicing() -> None:
    from edtalk.losses.region import region_l1

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 16, 16, generator=g, requires_grad=True)
    target = torch.rand(2, 3, 16, 16, generator=g)
    boxes = torch.tensor([[4.0, 8.0, 12.0, 12.0], [0.0, 10.0, 16.0, 16.0]])
    loss = region_l1(pred, target, boxes)
    manual = ((pred[0, :, 8:12, 4:12] - target[0, :, 8:12, 4:12]).abs().mean()
              + (pred[1, :, 10:16, :] - target[1, :, 10:16, :]).abs().mean()) / 2  # fmt: skip
    assert torch.allclose(loss, manual, atol=1e-6)
    loss.backward()
    assert pred.grad is not None
    assert pred.grad[0, :, :8].abs().sum() == 0 and pred.grad[0, :, 8:12, 4:12].abs().min() > 0
    with pytest.raises(ValueError, match="B x 4"):
        region_l1(pred, target, boxes[:1])
