"""The CNNGeometric matcher, its grid generators and the grid loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from volumetric.models.matching import (
    FeatureExtractor,
    GeometricMatcher,
    RegressionHead,
    correlation,
    grid_loss,
)
from volumetric.models.warps import (
    affine_grid,
    affine_points,
    control_points,
    identity_theta,
    tps_grid,
    tps_points,
    transform_grid,
    warp,
)

SHAPE = (2, 64, 64)
TINY = {"features": 4, "depth": 3, "head_features": (8, 8)}


def _images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, *SHAPE, generator=generator)
    return F.avg_pool2d(noise, 9, stride=1, padding=4)


@pytest.mark.parametrize(("kind", "size"), [("affine", 6), ("tps", 18)])
def test_matcher_outputs_theta_of_its_kind_and_starts_at_identity(kind: str, size: int) -> None:
    torch.manual_seed(0)
    matcher = GeometricMatcher(kind, SHAPE, **TINY)
    source, target = _images(seed=1), _images(seed=2)
    theta = matcher(source, target)
    assert theta.shape == (2, size)
    assert matcher.kind == kind and matcher.input_shape == SHAPE
    torch.testing.assert_close(theta, identity_theta(kind, 2))
    warped = warp(source, transform_grid(theta, SHAPE[1:], kind))
    torch.testing.assert_close(warped, source, atol=1e-5, rtol=0)
    assert grid_loss(theta, identity_theta(kind, 2), kind).item() == 0.0


def test_matcher_refuses_images_of_another_shape() -> None:
    matcher = GeometricMatcher("affine", SHAPE, **TINY)
    with pytest.raises(ValueError, match="shape"):
        matcher(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64))


def test_features_are_unit_vectors_and_correlation_has_one_channel_per_position() -> None:
    features = FeatureExtractor(2, features=4, depth=3)(_images())
    assert features.shape == (2, 16, 8, 8)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(2, 8, 8))
    raw = correlation(features, features.flip(-1), normalise=False)
    assert raw.shape == (2, 64, 8, 8)
    torch.testing.assert_close(raw[:, 3 * 8 + 5, 2, 6],
                               (features[:, :, 3, 5] * features.flip(-1)[:, :, 2, 6]).sum(1))
    normalised = correlation(features, features.flip(-1))
    assert normalised.min() >= 0
    torch.testing.assert_close(normalised.norm(dim=1), torch.ones(2, 8, 8))


def test_regression_head_starts_at_identity_with_dropout() -> None:
    head = RegressionHead(16, (4, 4), "tps", features=(8, 4), dropout=0.5).train()
    torch.testing.assert_close(head(torch.rand(2, 16, 4, 4)), torch.zeros(2, 18))


def test_affine_grid_translates_and_rotates_points() -> None:
    shift = torch.tensor([[1.0, 0.0, 0.5, 0.0, 1.0, -0.25]])
    grid = affine_grid(shift, (5, 5), align_corners=True)
    torch.testing.assert_close(grid[0, 2, 2], torch.tensor([0.5, -0.25]))
    torch.testing.assert_close(grid[0, 0, 0], torch.tensor([-0.5, -1.25]))
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    rotation = torch.tensor([[c, -s, 0.0, s, c, 0.0]])
    torch.testing.assert_close(affine_points(rotation, torch.tensor([[1.0, 0.0]])),
                               torch.tensor([[[0.0, 1.0]]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(affine_grid(rotation, (5, 5), align_corners=True)[0, 2, 4],
                               torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)


def test_tps_grid_is_identity_at_zero_and_interpolates_control_points() -> None:
    zero = identity_theta("tps", 2)
    torch.testing.assert_close(tps_grid(zero, (7, 9)), affine_grid(identity_theta("affine", 2),
                                                                   (7, 9)), atol=1e-6, rtol=0)
    theta = torch.randn(2, 18, generator=torch.Generator().manual_seed(3)) * 0.1
    offsets = theta.reshape(2, 2, 9).transpose(1, 2)
    torch.testing.assert_close(tps_points(theta, control_points()), control_points() + offsets,
                               atol=1e-5, rtol=0)
    grid = tps_grid(theta, (5, 5), align_corners=True)
    torch.testing.assert_close(grid[:, ::2, ::2].reshape(2, 9, 2), control_points() + offsets,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["affine", "tps"])
def test_grid_loss_is_zero_for_equal_thetas_positive_otherwise_and_symmetric(kind: str) -> None:
    generator = torch.Generator().manual_seed(4)
    a = identity_theta(kind, 2) + 0.1 * torch.randn(2, 6 if kind == "affine" else 18,
                                                    generator=generator)
    b = identity_theta(kind, 2)
    assert grid_loss(a, a, kind).item() == 0.0
    assert grid_loss(a, b, kind).item() > 0.0
    torch.testing.assert_close(grid_loss(a, b, kind), grid_loss(b, a, kind))


def test_a_few_steps_reduce_the_grid_loss_on_a_shifted_pair() -> None:
    torch.manual_seed(0)
    source = _images()
    theta_true = torch.tensor([[1.0, 0.0, 0.15, 0.0, 1.0, -0.1]]).repeat(2, 1)
    target = warp(source, affine_grid(theta_true, SHAPE[1:]))
    matcher = GeometricMatcher("affine", SHAPE, **TINY).train()
    optimiser = torch.optim.Adam(matcher.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = grid_loss(matcher(source, target), theta_true, "affine")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
